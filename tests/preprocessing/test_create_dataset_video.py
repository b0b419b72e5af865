"""preprocessing/create_dataset_video.py: combined or per-type videos of a dataset class, structure listing, errors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import video_io
from preprocessing import create_dataset_video
from tests.helpers import assert_frames_show_sources, assert_sidecar_matches_sources, assert_user_error, labels_of


def test_dataset_video_combined(data: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "tv"
    assert create_dataset_video.cli(["--dataset", "mvtec", "--class_name", "toy", "--data_path", str(data),
                                     "--output_dir", str(out_dir)]) == 0
    video = out_dir / "mvtec" / "toy" / "toy_all.mp4"
    assert sorted(p.name for p in video.parent.iterdir()) == ["toy_all.mp4", "toy_all.mp4.json"]
    info = video_io.probe_video(video)
    assert (info.frame_count, info.width, info.height) == (6, 64, 64)  # pad: largest size (all 64 px)
    sidecar = video_io.read_sidecar(video)
    assert labels_of(sidecar) == ["good"] * 3 + ["blob"] * 3
    assert sidecar["settings"]["resize_method"] == "pad" and sidecar["settings"]["test_types"] == ["good", "blob"]
    assert_sidecar_matches_sources(sidecar)
    assert_frames_show_sources(video, sidecar)


def test_dataset_video_separate_and_test_types(data: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "tv"
    base = ["--dataset", "mvtec", "--class_name", "toy", "--data_path", str(data), "--output_dir", str(out_dir)]
    assert create_dataset_video.cli([*base, "--separate", "--resize_method", "fixed", "--size", "32"]) == 0
    folder = out_dir / "mvtec" / "toy"
    for kind in ("good", "blob"):
        video = folder / f"toy_{kind}.mp4"
        info = video_io.probe_video(video)
        assert (info.frame_count, info.width) == (3, 32)
        assert labels_of(video_io.read_sidecar(video)) == [kind] * 3
    # space-separated list, user order kept
    assert create_dataset_video.cli([*base, "--test_types", "blob", "good", "--enhance"]) == 0
    sidecar = video_io.read_sidecar(folder / "toy_blob+good.mp4")
    assert labels_of(sidecar) == ["blob"] * 3 + ["good"] * 3
    assert sidecar["settings"]["enhance"] is True and sidecar["settings"]["enhancement"]["clip_limit"] == 2.0


def test_dataset_video_list_structure(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (data / "toy" / "test" / "stain").mkdir()
    cv2.imwrite(str(data / "toy" / "test" / "stain" / "000.png"), np.zeros((8, 8, 3), np.uint8))
    out_dir = tmp_path / "tv"
    assert create_dataset_video.cli(["--dataset", "mvtec", "--class_name", "toy", "--data_path", str(data),
                                     "--output_dir", str(out_dir), "--list_structure"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[3:]}
    assert rows == {"good": ["3", "-", "(good)"], "blob": ["3", "yes", "(3/3)"], "stain": ["1", "no"],
                    "total": ["7"]}
    assert not out_dir.exists()


def test_dataset_video_errors(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["--dataset", "mvtec", "--class_name", "toy", "--data_path", str(data), "--output_dir", str(tmp_path / "tv")]
    assert_user_error(capsys, create_dataset_video.cli([*base, "--test_types", "good", "scratch"]),
                      "--test_types scratch", "available: good, blob")
    assert_user_error(capsys, create_dataset_video.cli([*base, "--resize_method", "crop"]), "--resize_method")
    assert_user_error(capsys, create_dataset_video.cli(["--class_name", "toy"]), "--dataset")
    assert_user_error(capsys, create_dataset_video.cli([*base[:4], "--data_path", str(tmp_path / "none")]),
                      "--data_path")
    (tmp_path / "blocker").write_text("x")
    assert_user_error(capsys, create_dataset_video.cli([*base[:6], "--output_dir", str(tmp_path / "blocker")]),
                      "--output_dir")
    assert not (tmp_path / "tv").exists()
