"""preprocessing/create_enhanced_video.py: defect frames spread evenly, seeds, saved good frames, bad flags."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import video_io
from preprocessing import create_enhanced_video
from preprocessing.create_enhanced_video import defect_count, defect_slots
from tests.helpers import assert_sidecar_matches_sources, assert_user_error, labels_of


@pytest.mark.parametrize("total", [1, 2, 7, 20, 33, 100])
def test_defect_slots_are_evenly_spread(total: int) -> None:
    for n in range(1, total + 1):
        slots = defect_slots(total, n)
        assert len(slots) == n and slots == sorted(set(slots))
        assert 0 <= slots[0] and slots[-1] < total
        for k, slot in enumerate(slots):  # one defect in each of n equal stretches (exact integer test)
            assert k * total <= slot * n < (k + 1) * total


def test_defect_count_rounds_half_up() -> None:
    assert [defect_count(t, r) for t, r in [(20, 0.3), (5, 0.5), (6, 0.3), (10, 0.0), (10, 1.0), (3, 0.1)]] == \
        [6, 3, 2, 0, 10, 0]


def enhanced_args(data: Path, out_dir: Path, *extra: str) -> list[str]:
    """Command line of create_enhanced_video on the tiny dataset."""
    return ["--dataset", "mvtec", "--class_name", "toy", "--data_path", str(data), "--output_dir", str(out_dir),
            "--size", "32", *extra]


def test_enhanced_video_spread_outputs_and_good_frames(data: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "tv"
    assert create_enhanced_video.cli(enhanced_args(data, out_dir, "--video_name", "clip", "--total_frames", "20",
                                                   "--seed", "4", "--save_good_frames")) == 0
    video = out_dir / "clip" / "clip.mp4"
    assert video_io.probe_video(video).frame_count == 20
    sidecar = video_io.read_sidecar(video)
    assert_sidecar_matches_sources(sidecar)
    defects = [f["index"] for f in sidecar["frames"] if f["is_defect"]]
    assert len(defects) == round(0.3 * 20) == 6
    assert defects == defect_slots(20, 6)
    assert min(defects) < 5 and max(defects) >= 15  # first and last quarter both hold defects
    assert max(np.diff(defects)) <= 4  # no long stretch without defects
    # every image is used before any repeats (3 good images over 14 good frames, 3 defect over 6)
    good_sources = [f["source"] for f in sidecar["frames"] if not f["is_defect"]]
    assert len(set(good_sources[:3])) == 3 and len(set(good_sources)) == 3
    good_dir = out_dir / "clip" / "good_frames"
    good_indices = [f["index"] for f in sidecar["frames"] if not f["is_defect"]]
    assert sorted(p.name for p in good_dir.iterdir()) == [f"frame_{i:05d}.jpg" for i in good_indices]
    assert sorted(p.name for p in (out_dir / "clip").iterdir()) == ["clip.mp4", "clip.mp4.json", "good_frames"]
    assert good_dir.stat().st_mode & 0o777 == (out_dir / "clip").stat().st_mode & 0o777  # not a temp dir's 0700
    # a saved good frame is its source image at the video's frame size (JPEG q95 4:4:4: small error)
    for record in sidecar["frames"][:6]:
        if not record["is_defect"]:
            saved = cv2.imread(str(good_dir / f"frame_{record['index']:05d}.jpg")).astype(int)
            source = cv2.resize(cv2.imread(record["source"]), (32, 32), interpolation=cv2.INTER_AREA)
            assert np.abs(saved - source).mean() < 4
    assert sidecar["settings"]["seed"] == 4 and sidecar["settings"]["defect_frames"] == 6


def test_enhanced_video_seed_determinism(data: Path, tmp_path: Path) -> None:
    def frames_for(seed: int, folder: str) -> list[dict]:
        assert create_enhanced_video.cli(enhanced_args(data, tmp_path / folder, "--total_frames", "15",
                                                       "--seed", str(seed), "--no_save_frames")) == 0
        sidecar = video_io.read_sidecar(tmp_path / folder / "mvtec_toy" / "mvtec_toy.mp4")
        return sidecar["frames"]

    first, again, other = frames_for(1, "a"), frames_for(1, "b"), frames_for(2, "c")
    assert first == again
    assert [f["source"] for f in first] != [f["source"] for f in other]
    assert [f["is_defect"] for f in first] == [f["is_defect"] for f in other]  # the spread does not depend on it
    assert not (tmp_path / "a" / "mvtec_toy" / "good_frames").exists()


def test_enhanced_video_default_length_and_extreme_ratios(data: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "tv"
    assert create_enhanced_video.cli(enhanced_args(data, out_dir, "--video_name", "d")) == 0
    sidecar = video_io.read_sidecar(out_dir / "d" / "d.mp4")
    assert len(sidecar["frames"]) == 6 and sum(f["is_defect"] for f in sidecar["frames"]) == 2
    assert create_enhanced_video.cli(enhanced_args(data, out_dir, "--video_name", "all", "--defect_ratio", "1",
                                                   "--total_frames", "4", "--enhance")) == 0
    sidecar = video_io.read_sidecar(out_dir / "all" / "all.mp4")
    assert labels_of(sidecar) == ["blob"] * 4 and sidecar["settings"]["enhance"] is True
    assert list((out_dir / "all" / "good_frames").iterdir()) == []
    assert create_enhanced_video.cli(enhanced_args(data, out_dir, "--video_name", "none", "--defect_ratio", "0",
                                                   "--total_frames", "4")) == 0
    assert labels_of(video_io.read_sidecar(out_dir / "none" / "none.mp4")) == ["good"] * 4


def test_enhanced_video_replaces_old_good_frames(data: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "tv"
    assert create_enhanced_video.cli(enhanced_args(data, out_dir, "--video_name", "v", "--total_frames", "10")) == 0
    assert create_enhanced_video.cli(enhanced_args(data, out_dir, "--video_name", "v", "--total_frames", "3")) == 0
    sidecar = video_io.read_sidecar(out_dir / "v" / "v.mp4")
    good = [f"frame_{f['index']:05d}.jpg" for f in sidecar["frames"] if not f["is_defect"]]
    assert sorted(p.name for p in (out_dir / "v" / "good_frames").iterdir()) == good
    assert sorted(p.name for p in (out_dir / "v").iterdir()) == ["good_frames", "v.mp4", "v.mp4.json"]


@pytest.mark.parametrize("extra, needle", [
    (["--defect_ratio", "1.5"], "--defect_ratio"),
    (["--defect_ratio", "-0.1"], "--defect_ratio"),
    (["--total_frames", "0"], "--total_frames"),
    (["--fps", "-1"], "--fps"),
    (["--video_name", "a/b"], "--video_name"),
    (["--seed", "x"], "--seed"),
])
def test_enhanced_video_bad_flags(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                  extra: list[str], needle: str) -> None:
    code = create_enhanced_video.cli(enhanced_args(data, tmp_path / "tv", *extra))
    assert_user_error(capsys, code, needle)
    assert not (tmp_path / "tv").exists()


def test_enhanced_video_needs_images_of_each_kind(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for path in (data / "toy" / "test" / "blob").iterdir():
        path.unlink()
    code = create_enhanced_video.cli(enhanced_args(data, tmp_path / "tv", "--defect_ratio", "0.5"))
    assert_user_error(capsys, code, "--defect_ratio 0.5", "no defect test images")
