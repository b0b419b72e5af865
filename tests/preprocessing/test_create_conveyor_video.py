"""Synthetic conveyor video: known motion, known defects, ground truth in the sidecar."""
from __future__ import annotations

import json

import numpy as np
import pytest

import video_io
from preprocessing import create_conveyor_video as conveyor
from tests.helpers import assert_user_error

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


# --- wide frames, defect placement, the new defect types, the preset --------------------------------

WIDE = dict(width=160, height=64)


def _mask(labels, defect_id):
    return labels == defect_id


@pytest.mark.parametrize("speed", [3, 6, 12])
def test_wide_frames_have_the_asked_shape_and_move_by_speed(tmp_path, speed):
    cfg = conveyor.ConveyorConfig(texture="brick", speed=speed, defects=1, **WIDE)
    out = tmp_path / "wide.mp4"
    data = conveyor.create_conveyor_video(out, cfg)
    length = data["strip"]["width"]
    expected = (length - 160) // speed + 1
    info = video_io.probe_video(out, exact=True)
    assert (info.frame_count, info.width, info.height) == (expected, 160, 64)
    assert (data["width"], data["height"], data["num_frames"], data["strip"]["height"]) == (160, 64, expected, 64)
    assert data["speed_px_per_frame"] == speed and data["motion_px_per_frame"] == [-float(speed), 0.0]
    assert data["direction"] == "right_to_left"
    frames = [f for batch in video_io.iter_frames(out, 4) for f in batch][:2]
    assert frames[0].shape == (64, 160, 3)
    a, b = frames[0].astype(np.float32), frames[1].astype(np.float32)
    assert np.abs(a[:, speed:] - b[:, :-speed]).mean() < 6.0
    assert np.abs(a - b).mean() > 2 * np.abs(a[:, speed:] - b[:, :-speed]).mean()


def test_strip_is_tall_enough_for_tall_frames_and_keeps_the_demo_scale():
    tall = conveyor.build_strip(conveyor.ConveyorConfig(texture="gravel", width=64, height=160, speed=4, defects=0))
    assert tall.shape == (160, 128, 3)
    # the frame's shorter side shows DEMO_CROP_FRACTION of the photo's short side, whatever the frame shape
    square = conveyor.build_strip(conveyor.ConveyorConfig(texture="gravel", size=64, speed=4, defects=0))
    wide = conveyor.build_strip(conveyor.ConveyorConfig(texture="gravel", speed=4, defects=0, **WIDE))
    assert np.array_equal(wide[:, :128], square[:, :128])


def test_sidecar_defects_agree_with_the_painted_masks_speed_and_frames(tmp_path):
    cfg = conveyor.ConveyorConfig(texture="gravel", speed=5, defects=4, pairs=1, edge_defects=2, seed=3,
                                  defect_types=("branching_crack", "faint_stain", "hole", "crack"), **WIDE)
    data = conveyor.create_conveyor_video(tmp_path / "belt.mp4", cfg)
    _, labels, _ = conveyor.paint_defects(conveyor.build_strip(cfg), cfg)
    width, height, speed, frames = 160, 64, 5, data["frames"]
    assert [d["defect_type"] for d in data["defects"]] == ["branching_crack", "faint_stain", "hole", "crack"]
    assert [d["placement"] for d in data["defects"]] == ["interior", "interior", "edge_top", "edge_bottom"]
    assert [d["group"] for d in data["defects"]] == [0, 0, 1, 2]
    for d in data["defects"]:
        mask = _mask(labels, d["defect_id"])
        ys, xs = np.nonzero(mask)
        assert d["area_pixels"] == mask.sum() > 0
        assert d["box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert d["centroid"] == pytest.approx([xs.mean(), ys.mean()], abs=0.01)
        x1, _, x2, _ = d["box"]
        # a frame shows strip columns [i * speed, i * speed + width)
        assert d["first_visible_frame"] == max(0, (x1 - width) // speed + 1)
        assert d["last_visible_frame"] == min(len(frames) - 1, -(-x2 // speed) - 1)
        assert d["first_full_frame"] == -(-(x2 - width) // speed)
        assert d["last_full_frame"] == x1 // speed
        shown = [r["index"] for r in frames if any(v["defect_id"] == d["defect_id"] for v in r["defects"])]
        assert shown == list(range(d["first_visible_frame"], d["last_visible_frame"] + 1))
        for r in frames[d["first_full_frame"]:d["last_full_frame"] + 1]:
            seen = next(v for v in r["defects"] if v["defect_id"] == d["defect_id"])
            assert seen["visible_area_pixels"] == d["area_pixels"]
            assert seen["box"] == [x1 - r["offset"], d["box"][1], x2 - r["offset"], d["box"][3]]
            if d["placement"] == "edge_top":
                assert seen["box"][1] <= conveyor.EDGE_TOLERANCE_PX
            if d["placement"] == "edge_bottom":
                assert seen["box"][3] >= height - conveyor.EDGE_TOLERANCE_PX
    # the pair is in view at once; the groups are not
    together = [r for r in frames if len(r["defects"]) == 2]
    assert together and all({v["defect_id"] for v in r["defects"]} == {1, 2} for r in together)
    assert max(len(r["defects"]) for r in frames) == 2


def test_edge_defects_touch_the_frame_edge_for_many_seeds_and_types():
    for seed in range(4):
        cfg = conveyor.ConveyorConfig(texture="brick", speed=8, defects=6, edge_defects=6, seed=seed,
                                      defect_types=("hole", "stain", "contamination", "crack", "smudge", "scratch"),
                                      **WIDE)
        _, labels, painted = conveyor.paint_defects(conveyor.build_strip(cfg), cfg)
        assert [d.placement for d in painted] == ["edge_top", "edge_bottom"] * 3
        for d in painted:
            assert d.box[1] <= conveyor.EDGE_TOLERANCE_PX if d.placement == "edge_top" else \
                d.box[3] >= 64 - conveyor.EDGE_TOLERANCE_PX
            assert d.area_pixels == _mask(labels, d.defect_id).sum() > 0


def _skeleton_junctions(mask):
    from scipy import ndimage
    from skimage.morphology import skeletonize
    skeleton = skeletonize(mask)
    neighbours = ndimage.convolve(skeleton.astype(int), np.ones((3, 3), int), mode="constant") - 1
    return int((skeleton & (neighbours >= 3)).sum()), int((skeleton & (neighbours == 1)).sum())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_branching_crack_is_one_piece_that_branches(seed):
    from scipy import ndimage
    cfg = conveyor.ConveyorConfig(texture="grass", speed=16, defects=2, seed=seed,
                                  defect_types=("branching_crack",), **WIDE)
    _, labels, painted = conveyor.paint_defects(conveyor.build_strip(cfg), cfg)
    for d in painted:
        mask = _mask(labels, d.defect_id)
        assert ndimage.label(mask, structure=np.ones((3, 3)))[1] == 1
        junctions, ends = _skeleton_junctions(mask)
        assert junctions > 0 and ends >= 3


def test_faint_stain_has_lower_contrast_than_a_stain():
    cfg = conveyor.ConveyorConfig(texture="gravel", speed=8, defects=0, **WIDE)
    tile = conveyor.build_strip(cfg)[:, :64]
    contrast = {}
    for kind in ("stain", "faint_stain"):
        values = []
        for seed in range(6):
            image, mask = conveyor.render_defect(tile, kind, np.random.default_rng(seed))
            assert mask.any()
            values.append(np.abs(image.astype(float) - tile)[mask].mean())
        contrast[kind] = np.mean(values)
    assert 0 < contrast["faint_stain"] < 0.6 * contrast["stain"]


def test_same_seed_same_frames_and_sidecar(tmp_path):
    cfg = conveyor.ConveyorConfig(texture="gravel", speed=12, defects=3, pairs=1, edge_defects=1, seed=5,
                                  defect_types=("branching_crack", "faint_stain", "contamination"), **WIDE)
    first = conveyor.create_conveyor_video(tmp_path / "a" / "belt.mp4", cfg)
    second = conveyor.create_conveyor_video(tmp_path / "b" / "belt.mp4", cfg)
    assert first == second
    decoded = [np.stack([f for batch in video_io.iter_frames(tmp_path / name / "belt.mp4", 16) for f in batch])
               for name in ("a", "b")]
    assert np.array_equal(decoded[0], decoded[1])
    other = conveyor.create_conveyor_video(tmp_path / "c" / "belt.mp4",
                                           conveyor.ConveyorConfig(**{**cfg.__dict__, "seed": 6}))
    assert other["defects"] != first["defects"]


@pytest.mark.parametrize("flags, needle", [
    (["--width", "161"], "--width"),
    (["--height", "63"], "--height"),
    (["--width", "160", "--height", "64", "--speed", "81"], "--speed"),
    (["--defect_types", "hole,dent"], "--defect_types"),
    (["--defect_types", ","], "--defect_types"),
    (["--edge_defects", "5"], "--edge_defects"),
    (["--pairs", "3"], "--pairs"),
    (["--size", "32", "--speed", "16", "--defects", "2", "--pairs", "1"], "--pairs"),
    (["--preset", "narrow"], "--preset"),
    (["--preset", "wide", "--width", "99"], "--width"),
])
def test_bad_new_flags_exit_2_with_one_line(tmp_path, capsys, flags, needle):
    code = conveyor.cli([*flags, "--output", str(tmp_path / "x.mp4")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_wide_preset_is_the_acceptance_scenario_and_flags_override_it(tmp_path, monkeypatch):
    wide = conveyor.PRESETS["wide"]
    assert (wide["width"], wide["height"], wide["speed"]) == (640, 256, 6)
    assert (wide["defects"], wide["texture"]) == (8, "gravel")
    assert {"branching_crack", "faint_stain"} <= set(wide["defect_types"]) and wide["edge_defects"] >= 1
    assert wide["pairs"] >= 1
    monkeypatch.chdir(tmp_path)
    assert conveyor.cli(["--preset", "wide", "--width", "160", "--height", "64", "--speed", "12"]) == 0
    path = tmp_path / "test-video" / "conveyor_wide_gravel" / "conveyor_wide_gravel.mp4"
    data = video_io.read_sidecar(path)
    info = video_io.probe_video(path)
    assert (info.width, info.height, data["speed_px_per_frame"], data["settings"]["texture"]) == (160, 64, 12, "gravel")
    defects = data["defects"]
    assert len(defects) == 8 and {"branching_crack", "faint_stain"} <= {d["defect_type"] for d in defects}
    assert {"edge_top", "edge_bottom"} <= {d["placement"] for d in defects}
    assert max(len(r["defects"]) for r in data["frames"]) == 2
    # --size alone makes the preset's frames square
    assert conveyor.cli(["--preset", "wide", "--size", "64", "--defects", "2", "--output", "sq.mp4"]) == 0
    assert video_io.read_sidecar(tmp_path / "sq.mp4")["settings"]["pairs"] == 1
    square = video_io.probe_video(tmp_path / "sq.mp4")
    assert (square.width, square.height) == (64, 64)


def test_frames_makes_a_longer_defect_free_recording(tmp_path):
    """--frames N with --defects 0: a defect-free video of at least N frames (a recording to train on)."""
    from preprocessing.create_conveyor_video import cli

    out = tmp_path / "normal.mp4"
    assert cli(["--width", "96", "--height", "64", "--speed", "4", "--defects", "0", "--frames", "40",
                "--output", str(out)]) == 0
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    assert sidecar["num_frames"] >= 40 and sidecar["defects"] == []
    assert not any(frame["is_defect"] for frame in sidecar["frames"])
    assert cli(["--frames", "0", "--output", str(tmp_path / "x.mp4")]) == 2


# ---------------------------------------------------------------- belt motion profile (temporal anomalies)

def test_default_motion_adds_no_motion_fields(tmp_path):
    data = conveyor.create_conveyor_video(tmp_path / "a.mp4", conveyor.ConveyorConfig(size=SIZE, defects=0, frames=12))
    assert "motion_profile" not in data and "motion" not in data["frames"][0]
    assert [r["offset"] for r in data["frames"]] == [4 * i for i in range(len(data["frames"]))]


def test_stop_then_jerk_holds_the_frame_then_catches_up(tmp_path):
    cfg = conveyor.ConveyorConfig(texture="gravel", width=96, height=64, speed=4, defects=0, frames=30)
    motion = conveyor.MotionProfile(stop_at=10, stop_frames=5, jerk_frames=2)
    data = conveyor.create_conveyor_video(tmp_path / "belt.mp4", cfg, motion)
    frames = data["frames"]
    offsets = [r["offset"] for r in frames]
    assert offsets[9:15] == [36] * 6 and offsets[15:18] == [50, 64, 68]  # 20 px lag caught up in 2 frames
    assert [r["motion"] for r in frames[8:18]] == ["normal"] * 2 + ["stop"] * 5 + ["jerk"] * 2 + ["normal"]
    assert [r["temporal_anomaly"] for r in frames] == [r["motion"] != "normal" for r in frames]
    assert [r["step_px"] for r in frames[1:]] == [b - a for a, b in zip(offsets, offsets[1:])]
    assert data["motion_profile"]["jerk_step"] == 14 and data["motion_profile"]["anomalous_frames"] == 7
    assert len(frames) >= 30
    video = [f for batch in video_io.iter_frames(tmp_path / "belt.mp4", 8) for f in batch]
    still = np.abs(video[12].astype(float) - video[9]).mean()  # the belt stands still: codec noise only
    assert still < 0.3 * np.abs(video[16].astype(float) - video[15]).mean()
    assert still < 0.3 * np.abs(video[5].astype(float) - video[4]).mean()


def test_reverse_runs_back_and_painted_defects_follow_the_offsets(tmp_path):
    cfg = conveyor.ConveyorConfig(texture="brick", size=SIZE, speed=4, defects=1)
    data = conveyor.create_conveyor_video(tmp_path / "r.mp4", cfg, conveyor.MotionProfile(reverse_at=20,
                                                                                          reverse_frames=3))
    offsets = [r["offset"] for r in data["frames"]]
    assert offsets[19:24] == [76, 72, 68, 64, 68]
    x1, y1, x2, y2 = data["defects"][0]["box"]
    for record in data["frames"]:
        if record["offset"] <= x1 and x2 <= record["offset"] + SIZE:
            assert record["defects"][0]["box"] == [x1 - record["offset"], y1, x2 - record["offset"], y2]


@pytest.mark.parametrize("flags, needle", [
    (["--stop_at", "5"], "--stop_at and --stop_frames"),
    (["--jerk_frames", "3"], "--jerk_frames 3"),
    (["--stop_at", "0", "--stop_frames", "2"], "--stop_at 0"),
    (["--stop_at", "5", "--stop_frames", "2", "--jerk_frames", "1", "--jerk_speed", "200"], "--jerk_speed 200"),
    (["--stop_at", "5", "--stop_frames", "4", "--reverse_at", "6", "--reverse_frames", "2"], "--reverse_at 6"),
    (["--reverse_at", "2", "--reverse_frames", "9"], "--reverse_at 2"),
])
def test_bad_motion_flags_exit_2_with_one_line(tmp_path, capsys, flags, needle):
    code = conveyor.cli(["--size", "64", "--defects", "0", "--frames", "20", *flags,
                         "--output", str(tmp_path / "x.mp4")])
    assert_user_error(capsys, code, needle)


def test_cli_writes_a_defect_free_video_with_a_stop(tmp_path, capsys):
    out = tmp_path / "stop.mp4"
    assert conveyor.cli(["--size", "64", "--defects", "0", "--frames", "20", "--stop_at", "5", "--stop_frames", "3",
                         "--output", str(out)]) == 0
    assert "3 frames of abnormal motion" in capsys.readouterr().out
    sidecar = video_io.read_sidecar(out)
    assert sum(r["temporal_anomaly"] for r in sidecar["frames"]) == 3 and not sidecar["defects"]


def _patches(image: np.ndarray, size: int = 8) -> set[bytes]:
    """Every size x size block of a grey image at a step of `size`, as bytes (to count shared texture)."""
    grey = image.mean(axis=2).astype(np.uint8)
    rows, cols = grey.shape[0] // size, grey.shape[1] // size
    return {grey[r * size:(r + 1) * size, c * size:(c + 1) * size].tobytes() for r in range(rows) for c in range(cols)}


def test_surface_halves_share_no_texture_and_the_first_half_begins_the_whole():
    base = dict(texture="gravel", width=160, height=64, speed=4, defects=0)
    whole = conveyor.build_strip(conveyor.ConveyorConfig(**base))
    first = conveyor.build_strip(conveyor.ConveyorConfig(**base, surface="first_half"))
    second = conveyor.build_strip(conveyor.ConveyorConfig(**base, surface="second_half"))
    assert first.shape == second.shape == whole.shape
    # the first half starts with the photo's first columns (here 85 px wide at the demo scale, 42 px a half)
    assert np.array_equal(first[:, :40], whole[:, :40]) and not np.array_equal(second[:, :40], whole[:, :40])
    # no 8x8 block of one half occurs in the other (the mirrored tiles repeat within each half)
    assert not _patches(first) & _patches(second)
    assert _patches(first) & _patches(conveyor.build_strip(conveyor.ConveyorConfig(**{**base, "speed": 5},
                                                                                     surface="first_half")))


def test_noise_has_the_asked_spread_is_seeded_per_video_and_frame(tmp_path):
    cfg = conveyor.ConveyorConfig(texture="brick", width=96, height=64, speed=4, defects=0, frames=3, noise=5.0)
    frame = np.full((64, 96, 3), 128, np.uint8)
    noisy = [conveyor.with_noise(frame, cfg, index).astype(np.float32) - 128 for index in range(2)]
    assert abs(noisy[0].std() - 5.0) < 0.3 and abs(noisy[0].mean()) < 0.3
    assert not np.array_equal(noisy[0], noisy[1])  # new noise in every frame
    assert np.array_equal(conveyor.with_noise(frame, cfg, 0), conveyor.with_noise(frame, cfg, 0))  # seeded
    other = conveyor.with_noise(frame, replace_cfg(cfg, speed=5), 0)
    assert not np.array_equal(other, conveyor.with_noise(frame, cfg, 0))  # another video, other noise
    assert conveyor.with_noise(frame, replace_cfg(cfg, noise=0.0), 0) is frame
    # in the video: frames differ from the noise-free video's by about the noise (plus compression)
    clean, loud = tmp_path / "clean.mp4", tmp_path / "loud.mp4"
    conveyor.create_conveyor_video(clean, replace_cfg(cfg, noise=0.0))
    conveyor.create_conveyor_video(loud, cfg)
    a, b = (next(iter(video_io.iter_frames(path, 1)))[0].astype(np.float32) for path in (clean, loud))
    assert 2.0 < (a - b).std() < 6.0


def replace_cfg(cfg: conveyor.ConveyorConfig, **changes) -> conveyor.ConveyorConfig:
    """The config with some fields changed."""
    from dataclasses import replace

    return replace(cfg, **changes)


@pytest.mark.parametrize(("flags", "needle"), [
    (["--surface", "middle"], "--surface"),
    (["--noise", "-1"], "--noise"),
    (["--noise", "100"], "--noise"),
])
def test_bad_surface_and_noise_flags_exit_2_with_one_line(tmp_path, capsys, flags, needle):
    code = conveyor.cli([*flags, "--size", "64", "--output", str(tmp_path / "x.mp4")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert list(tmp_path.iterdir()) == []


def _found_in(block: np.ndarray, photo: np.ndarray) -> bool:
    """True when the block occurs exactly in the photo or one of its mirror images."""
    import cv2

    for image in (photo, photo[:, ::-1], photo[::-1], photo[::-1, ::-1]):
        match = cv2.matchTemplate(np.ascontiguousarray(image), block, cv2.TM_SQDIFF)
        if match.min() < 0.5:  # integer pixels: any real mismatch adds at least 1 (the FFT leaves round-off)
            return True
    return False


def test_quilt_is_made_of_photo_crops_never_repeats_and_follows_its_seed():
    base = dict(texture="gravel", width=160, height=64, speed=4, defects=0, frames=200, quilt=32)
    strip = conveyor.build_strip(conveyor.ConveyorConfig(**base))
    assert strip.shape == (64, 160 + 199 * 4, 3) and strip.dtype == np.uint8
    # the first crop's middle (no other crop overlaps it there) is a piece of the photo at the demo scale
    photo = conveyor.surface_photo(conveyor.ConveyorConfig(**base))
    assert photo.shape == (85, 85, 3)  # 64 px show 0.75 of the photo's side
    assert _found_in(np.ascontiguousarray(strip[8:24, 8:24]), photo)
    # a quilt of the photo's first half holds none of the second half's pixels
    halves = [conveyor.ConveyorConfig(**base, surface=part) for part in ("first_half", "second_half")]
    first = conveyor.build_strip(halves[0])
    for y, x in ((8, 8), (8, 200), (32, 512)):  # blocks inside one crop (crops every 24 px, 8 px overlaps)
        block = np.ascontiguousarray(first[y:y + 16, x:x + 16])
        assert _found_in(block, conveyor.surface_photo(halves[0]))
        assert not _found_in(block, conveyor.surface_photo(halves[1]))
    # mirrored tiling repeats every two photo widths (170 px); the quilt does not
    plain = conveyor.build_strip(conveyor.ConveyorConfig(**{**base, "quilt": 0}))
    assert np.array_equal(plain[:, 0:64], plain[:, 170:234])
    assert all(np.abs(strip[:, x:x + 64].astype(int) - strip[:, 0:64]).mean() > 10 for x in range(24, 700, 24))
    same = conveyor.build_strip(conveyor.ConveyorConfig(**base))
    other = conveyor.build_strip(conveyor.ConveyorConfig(**base, surface_seed=5))
    assert np.array_equal(strip, same) and not np.array_equal(strip, other)
    assert np.array_equal(conveyor.build_strip(conveyor.ConveyorConfig(**{**base, "seed": 5})), other)


@pytest.mark.parametrize("tile", ["8", "65"])
def test_bad_quilt_exits_2_naming_the_flag(tmp_path, capsys, tile):
    code = conveyor.cli(["--quilt", tile, "--size", "64", "--output", str(tmp_path / "x.mp4")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--quilt" in err[0], err
