"""Synthetic conveyor video: known motion, known defects, ground truth in the sidecar."""
from __future__ import annotations

import numpy as np
import pytest

import video_io
from preprocessing import create_conveyor_video as conveyor

SIZE = 64


def test_video_moves_by_speed_and_sidecar_holds_the_truth(tmp_path):
    cfg = conveyor.ConveyorConfig(texture="gravel", size=SIZE, speed=5, defects=2, seed=1, fps=20.0)
    out = tmp_path / "belt.mp4"
    data = conveyor.create_conveyor_video(out, cfg)
    length = SIZE * (2 * cfg.defects + 2)
    expected_frames = (length - SIZE) // cfg.speed + 1
    info = video_io.probe_video(out, exact=True)
    assert (info.frame_count, info.width, info.height, info.fps) == (expected_frames, SIZE, SIZE, 20.0)
    sidecar = video_io.read_sidecar(out)
    assert sidecar == data
    assert sidecar["motion_px_per_frame"] == [-5.0, 0.0]
    assert [r["offset"] for r in sidecar["frames"]] == [5 * i for i in range(expected_frames)]
    defects = sidecar["defects"]
    assert [d["defect_id"] for d in defects] == [1, 2] and all(d["area_pixels"] > 0 for d in defects)
    for d in defects:
        x1, y1, x2, y2 = d["box"]
        assert (x2 - x1) * (y2 - y1) >= d["area_pixels"]
    # a frame that shows a defect whole reports its full area at its strip position minus the offset
    for d in defects:
        x1, y1, x2, y2 = d["box"]
        whole = [r for r in sidecar["frames"] if r["offset"] <= x1 and x2 <= r["offset"] + SIZE]
        assert whole, "every defect is seen whole in some frame"
        seen = next(v for v in whole[0]["defects"] if v["defect_id"] == d["defect_id"])
        assert seen["visible_area_pixels"] == d["area_pixels"]
        assert seen["box"] == [x1 - whole[0]["offset"], y1, x2 - whole[0]["offset"], y2]
    assert [r["is_defect"] for r in sidecar["frames"]] == [bool(r["defects"]) for r in sidecar["frames"]]
    assert not sidecar["frames"][0]["is_defect"] and not sidecar["frames"][-1]["is_defect"]  # clear lead-in and out


def test_frames_are_the_strip_seen_through_a_sliding_window(tmp_path):
    cfg = conveyor.ConveyorConfig(texture="brick", size=SIZE, speed=4, defects=1)
    out = tmp_path / "belt.mp4"
    conveyor.create_conveyor_video(out, cfg)
    frames = [f for batch in video_io.iter_frames(out, 8) for f in batch]
    # consecutive frames: the second is the first shifted left by `speed` (up to compression noise)
    a, b = frames[0].astype(np.float32), frames[1].astype(np.float32)
    assert np.abs(a[:, 4:] - b[:, :-4]).mean() < 6.0
    assert np.abs(a - b).mean() > 2 * np.abs(a[:, 4:] - b[:, :-4]).mean()


def test_same_seed_same_video(tmp_path):
    cfg = conveyor.ConveyorConfig(texture="grass", size=SIZE, speed=8, defects=2, seed=7)
    first = conveyor.create_conveyor_video(tmp_path / "a.mp4", cfg)
    second = conveyor.create_conveyor_video(tmp_path / "b.mp4", cfg)
    assert first["defects"] == second["defects"] and first["frames"] == second["frames"]
    other = conveyor.create_conveyor_video(tmp_path / "c.mp4", conveyor.ConveyorConfig(
        texture="grass", size=SIZE, speed=8, defects=2, seed=8))
    assert other["defects"] != first["defects"]


@pytest.mark.parametrize("flags, needle", [
    (["--texture", "marble"], "--texture"),
    (["--speed", "0"], "--speed"),
    (["--size", "16"], "--size"),
    (["--size", "65"], "--size"),
    (["--defects", "-1"], "--defects"),
    (["--fps", "0"], "--fps"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, capsys, flags, needle):
    code = conveyor.cli([*flags, "--output", str(tmp_path / "x.mp4")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0]
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_the_default_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert conveyor.cli(["--size", "64", "--defects", "1", "--speed", "16"]) == 0
    path = tmp_path / "test-video" / "conveyor_brick" / "conveyor_brick.mp4"
    assert video_io.probe_video(path).frame_count > 0 and video_io.sidecar_path(path).is_file()


def test_tracking_the_encoded_video_with_ground_truth_maps_finds_each_defect_once(tmp_path):
    """Decoded MP4 frames + the painted masks as maps: one track per defect, true areas, true motion."""
    from defect_tracking import GLASSDefectTracker
    from size_analyzer import DefectSizeAnalyzer

    cfg = conveyor.ConveyorConfig(texture="brick", size=128, speed=6, defects=4, seed=2)
    out = tmp_path / "belt.mp4"
    truth = conveyor.create_conveyor_video(out, cfg)
    _, labels, _ = conveyor.paint_defects(conveyor.build_strip(cfg), cfg)
    tracker = GLASSDefectTracker(DefectSizeAnalyzer(0.1, "mm", 10), threshold=0.5, use_morphology=False,
                                 fps=cfg.fps)
    frames = [f for batch in video_io.iter_frames(out, 16) for f in batch]
    assert len(frames) == len(truth["frames"])
    for record, frame in zip(truth["frames"], frames):
        window = labels[:, record["offset"]:record["offset"] + cfg.size]
        tracker.update(record["index"], frame, (window > 0).astype(np.float32))
    report = tracker.report()
    assert report["totals"]["num_tracks"] == 4
    assert report["totals"]["mean_motion_px_per_frame"][0] == pytest.approx(-6.0, abs=0.5)
    for track, defect in zip(report["tracks"], truth["defects"]):
        assert track["max_area_pixels"] == pytest.approx(defect["area_pixels"], rel=0.15)
