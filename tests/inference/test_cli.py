"""inference.cli: default output path, one-line errors (exit 2) for bad input, Ctrl-C (exit 130)."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import pytest

from inference import renderers, video_inference, video_inference_clean, video_inference_with_size
from tests.helpers import CLIP_SIZE as SIZE
from tests.helpers import files_under, model_args, write_unreadable


def test_default_output_path():
    from inference import cli

    expected = Path("output/mvtec_grid/line 3_size.mp4")
    assert cli.default_output_path("mvtec_grid", "videos/line 3.mp4", "size") == expected


def test_display_without_screen_is_a_one_line_error(tiny_model, clip, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    code = video_inference.cli(model_args(tiny_model, "--video_path", str(clip), "--output_path",
                                          str(tmp_path / "o" / "x.mp4"), "--display"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--display" in err[0]
    assert files_under(tmp_path / "o") == []


def write_empty(folder: Path) -> Path:
    """An MP4 container opened and closed without frames."""
    path = folder / "empty.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (SIZE, SIZE))
    writer.release()
    if not path.exists():
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize("case, needle", [
    ("unreadable video", "broken.mp4"),
    ("empty video", "empty.mp4"),
    ("missing video", "nowhere.mp4"),
    ("missing model directory", "model directory not found"),
    ("wrong class name", "mvtec_nope"),
    ("unwritable output folder", "--output_path"),
    ("output not mp4", "--output_path"),
    ("bad intensity", "--intensity"),
    ("bad threshold", "--threshold"),
    ("bad max_frames", "--max_frames"),
    ("bad pixel size", "--pixel_size"),
    ("bad unit", "--physical_unit"),
    ("bad device", "--device"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tiny_model, clip, tmp_path, capsys, case, needle):
    out_dir = tmp_path / "out"
    video, out, script, extra = str(clip), out_dir / "result.mp4", video_inference, []
    model = model_args(tiny_model)
    if case == "unreadable video":
        video = str(write_unreadable(tmp_path))
    elif case == "empty video":
        video = str(write_empty(tmp_path))
    elif case == "missing video":
        video = str(tmp_path / "nowhere.mp4")
    elif case == "missing model directory":
        model = ["--model_path", str(tmp_path / "no_models"), "--class_name", "mvtec_toy"]
    elif case == "wrong class name":
        model = ["--model_path", str(tiny_model.model_path), "--class_name", "mvtec_nope"]
    elif case == "unwritable output folder":
        blocker = out_dir / "a_file"
        blocker.parent.mkdir()
        blocker.write_text("")
        out = blocker / "result.mp4"  # a folder below a regular file cannot be created
    elif case == "output not mp4":
        out = out_dir / "result.avi"
    elif case == "bad intensity":
        script, extra = video_inference_clean, ["--intensity", "1.5"]
    elif case == "bad threshold":
        extra = ["--threshold", "2"]
    elif case == "bad max_frames":
        extra = ["--max_frames", "0"]
    elif case == "bad pixel size":
        script, extra = video_inference_with_size, ["--pixel_size", "0"]
    elif case == "bad unit":
        script, extra = video_inference_with_size, ["--physical_unit", "furlong"]
    elif case == "bad device":
        extra = ["--device", "tpu"]
    before = files_under(out_dir)
    code = script.cli([*model, "--video_path", video, "--output_path", str(out), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert files_under(out_dir) == before


def test_interrupt_in_cli_returns_130_and_saves_nothing(tiny_model, clip, tmp_path, monkeypatch, capsys):
    def interrupt(self, frame, result, index):
        raise KeyboardInterrupt

    monkeypatch.setattr(renderers.OverlayRenderer, "render", interrupt)
    out_dir = tmp_path / "out"
    code = video_inference.cli(model_args(tiny_model, "--video_path", str(clip), "--output_path",
                                          str(out_dir / "x.mp4")))
    assert code == 130 and files_under(out_dir) == []
