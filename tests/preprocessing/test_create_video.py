"""preprocessing/create_video.py: a video of a class's test images with its sidecar JSON, one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import video_io
from preprocessing import create_video
from tests.helpers import (
    assert_frames_show_sources,
    assert_sidecar_matches_sources,
    assert_user_error,
    labels_of,
    write_tiny_mvtec,
)


def test_create_video_all_test_images(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "v" / "toy.mp4"
    assert create_video.cli(["toy", "--data_path", str(data), "--output", str(out), "--size", "64",
                             "--fps", "5"]) == 0
    info = video_io.probe_video(out)
    assert (info.frame_count, info.width, info.height, info.fps) == (6, 64, 64, 5.0)
    sidecar = video_io.read_sidecar(out)
    assert labels_of(sidecar) == ["good"] * 3 + ["blob"] * 3
    assert [Path(f["source"]).name for f in sidecar["frames"]] == ["000.png", "001.png", "002.png"] * 2
    assert sidecar["settings"]["tool"] == "create_video" and sidecar["settings"]["resize_method"] == "fixed"
    assert_sidecar_matches_sources(sidecar)
    assert_frames_show_sources(out, sidecar)


def test_create_video_one_defect_type_from_input_path(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "blob.mp4"
    code = create_video.cli(["toy", "--input_path", str(data / "toy" / "test"), "--defect", "blob",
                             "--output", str(out), "--size", "33"])
    assert code == 0
    info = video_io.probe_video(out)
    assert (info.frame_count, info.width, info.height) == (3, 34, 34)  # odd size rounded up to even
    assert labels_of(video_io.read_sidecar(out)) == ["blob"] * 3


def test_create_video_flat_folder_and_default_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tiny_mvtec(tmp_path / "datasets")  # datasets/mvtec/toy: the reference layout
    monkeypatch.chdir(tmp_path)
    assert create_video.cli(["toy", "--dataset", "MVTEC", "--size", "32"]) == 0  # folder name matched ignoring case
    default_out = tmp_path / "test-video" / "toy_all.mp4"
    assert video_io.probe_video(default_out).frame_count == 6
    assert create_video.cli(["toy", "--input_path", "datasets/mvtec/toy/test/good", "--size", "32",
                             "--output", "good.mp4"]) == 0
    assert labels_of(video_io.read_sidecar(tmp_path / "good.mp4")) == ["good"] * 3


def test_create_video_errors(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert_user_error(capsys, create_video.cli(["toy"]), "datasets/custom", "--data_path")
    assert_user_error(capsys, create_video.cli(["toy", "--data_path", str(data), "--defect", "hole"]),
                      "--defect hole", "good, blob")
    assert_user_error(capsys, create_video.cli(["nope", "--data_path", str(data)]), "--class_name nope", "toy")
    assert_user_error(capsys, create_video.cli(["toy", "--input_path", str(data / "toy" / "test" / "good"),
                                                "--defect", "blob"]), "--defect blob")
    assert_user_error(capsys, create_video.cli(["toy", "--data_path", str(data), "--fps", "0"]), "--fps")
    assert_user_error(capsys, create_video.cli(["toy", "--data_path", str(data), "--output", "x.avi"]), ".mp4")
    (tmp_path / "blocker").write_text("x")
    assert_user_error(capsys, create_video.cli(["toy", "--data_path", str(data), "--output", "blocker/x.mp4"]),
                      "writable")
    assert not (tmp_path / "test-video").exists()


def test_unreadable_image_is_a_one_line_error_and_no_video(data: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    (data / "toy" / "test" / "good" / "003.png").write_text("not an image")
    out = tmp_path / "out" / "toy.mp4"
    code = create_video.cli(["toy", "--data_path", str(data), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "error: cannot read image" in err and "003.png" in err and "Traceback" not in err
    assert list(out.parent.iterdir()) == []  # the temporary video was removed


def test_sidecar_is_json_with_documented_keys(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    assert create_video.cli(["toy", "--data_path", str(data), "--output", str(out), "--size", "16"]) == 0
    raw = json.loads(video_io.sidecar_path(out).read_text())
    assert set(raw) == {"video", "fps", "width", "height", "frames", "settings"}
    assert set(raw["frames"][0]) == {"index", "source", "label", "is_defect", "mask"}
    assert raw["video"] == "v.mp4" and (raw["width"], raw["height"]) == (16, 16)
