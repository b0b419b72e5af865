"""benchmarks/relight_video.py: a conveyor under drifting, flickering, uneven light and a shaking mount."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from benchmarks import relight_video as relight


def test_gains_follow_the_drift_and_stay_within_the_flicker():
    cfg = relight.Relight(drift=0.2, period=40, flicker=0.05, seed=1)
    gains = relight.frame_gains(cfg, 80)
    drift = 1.0 + 0.2 * np.sin(2 * np.pi * np.arange(80) / 40)
    assert np.all(np.abs(gains / drift - 1.0) <= 0.05 + 1e-9)
    assert np.allclose(gains, relight.frame_gains(cfg, 80))  # same seed, same gains
    assert gains[10] == pytest.approx(1.2, abs=0.07) and gains[30] == pytest.approx(0.8, abs=0.05)
    assert np.all(relight.frame_gains(relight.Relight(), 5) == 1.0)


def test_the_vignette_is_one_at_the_centre_and_loses_its_share_at_the_corners():
    gain = relight.vignette_gain(relight.Relight(vignette=0.3), width=65, height=33)[..., 0]
    assert gain.shape == (33, 65)
    assert gain[16, 32] == pytest.approx(1.0)
    for y, x in ((0, 0), (0, 64), (32, 0), (32, 64)):
        assert gain[y, x] == pytest.approx(0.7, abs=0.02)


def test_a_shift_moves_the_pixels_across_the_motion():
    frame = np.zeros((20, 30, 3), np.uint8)
    frame[5:8, 10:14] = 255
    moved = relight.shift_frame(frame, 2, axis=1)
    ys, xs = np.nonzero(moved[..., 0])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (7, 9, 10, 13)
    ys, xs = np.nonzero(relight.shift_frame(frame, -3, axis=0)[..., 0])
    assert (xs.min(), xs.max()) == (7, 10)


def test_the_relit_video_carries_each_frame_gain_and_shake(belt, tmp_path):
    """Each relit frame is the original moved by its shake (the best-matching shift among -2..2, across the
    motion: y for this right-to-left belt) and brightened by its gain (to codec noise), and each frame's boxes
    move by its shake."""
    out = tmp_path / "relit.mp4"
    assert relight.main([str(belt), "--drift", "0.2", "--period", "12", "--shake", "2", "--seed", "5",
                         "--output", str(out)]) == 0
    truth = json.loads((tmp_path / "relit.mp4.json").read_text())
    source = json.loads((belt.parent / "belt.mp4.json").read_text())
    cfg = relight.Relight(drift=0.2, period=12, shake=2, seed=5)
    frames = len(source["frames"])
    gains, shakes = relight.frame_gains(cfg, frames), relight.frame_shakes(cfg, frames)
    assert truth["relight"]["shake"] == 2 and truth["defects"] == source["defects"]
    assert len(set(shakes.tolist())) > 1 and np.abs(shakes).max() <= 2
    # The reference: the video re-encoded unchanged (each encoding darkens these frames by about 3 grey levels).
    assert relight.main([str(belt), "--output", str(tmp_path / "same.mp4")]) == 0
    capture, original = cv2.VideoCapture(str(out)), cv2.VideoCapture(str(tmp_path / "same.mp4"))
    for index in range(frames):
        ok, lit = capture.read()
        assert ok
        plain = np.clip(original.read()[1].astype(np.float32) * gains[index], 0, 255)[4:-4]
        errors = {shift: np.abs(np.roll(lit.astype(np.float32), -shift, axis=0)[4:-4] - plain).mean()
                  for shift in range(-2, 3)}
        assert min(errors, key=errors.get) == shakes[index], (index, errors)
        back = np.roll(lit.astype(np.float32), -int(shakes[index]), axis=0)[4:-4]
        assert back.mean() / plain.mean() == pytest.approx(1.0, abs=0.02), index
        for before, after in zip(source["frames"][index]["defects"], truth["frames"][index]["defects"]):
            x1, y1, x2, y2 = before["box"]
            assert after["box"] == [x1, y1 + shakes[index], x2, y2 + shakes[index]]


def test_motion_blur_averages_along_the_motion_only():
    """A bright column on a belt moving along x spreads into a box of L columns of 1/L its height (a moving
    surface seen over L px of travel); a bright row on a belt moving along y stays sharp along x. 0 or 1: as it is."""
    frame = np.zeros((9, 21, 3), np.float32)
    frame[:, 10] = 210.0
    smeared = relight.blur_along_motion(frame, 3, axis=1)  # axis 1: shakes along y, the belt moves along x
    assert np.allclose(smeared[4, 8:13, 0], [0, 70, 70, 70, 0])
    assert smeared.sum() == pytest.approx(frame.sum())
    assert np.array_equal(relight.blur_along_motion(frame, 3, axis=0), frame)  # belt along y: columns stay
    assert relight.blur_along_motion(frame, 1, axis=1) is frame


def test_the_motion_blurred_video_keeps_the_physical_ground_truth(belt, tmp_path):
    """--motion_blur 4 (.avi, lossless): every frame is the source's smeared over 4 px along the belt's x motion,
    to rounding; the defects' boxes and areas stay the painted ones."""
    out = tmp_path / "blurred.avi"
    assert relight.main([str(belt), "--motion_blur", "4", "--output", str(out)]) == 0
    truth = json.loads((tmp_path / "blurred.avi.json").read_text())
    source = json.loads((belt.parent / "belt.mp4.json").read_text())
    assert truth["relight"]["motion_blur"] == 4
    assert truth["defects"] == source["defects"] and truth["frames"] == source["frames"]
    capture, original = cv2.VideoCapture(str(out)), cv2.VideoCapture(str(belt))
    ok, smeared = capture.read()
    plain = original.read()[1].astype(np.float32)
    expected = np.rint(cv2.blur(plain, (4, 1), borderType=cv2.BORDER_REFLECT_101))
    assert ok and np.abs(smeared.astype(np.float32) - expected).max() <= 1
    assert np.abs(np.diff(smeared.astype(np.float32), axis=1)).mean() < np.abs(np.diff(plain, axis=1)).mean()


def test_dropped_frames_leave_the_video_and_its_ground_truth_renumbered(belt, tmp_path):
    """--drop 0.3 (.avi): the delivered frames are the source's frames the draw kept, in order, exactly; the
    sidecar lists just those, renumbered, and each defect's first/last visible frame is the first/last delivered
    frame that shows it."""
    out = tmp_path / "dropped.avi"
    assert relight.main([str(belt), "--drop", "0.3", "--seed", "4", "--output", str(out)]) == 0
    source = json.loads((belt.parent / "belt.mp4.json").read_text())
    truth = json.loads((tmp_path / "dropped.avi.json").read_text())
    keep = relight.kept_frames(relight.Relight(drop=0.3, seed=4), len(source["frames"]))
    kept = np.flatnonzero(keep)
    assert keep[0] and 0 < len(kept) < len(source["frames"]) - 5
    assert truth["num_frames"] == len(truth["frames"]) == len(kept)
    assert [frame["index"] for frame in truth["frames"]] == list(range(len(kept)))
    assert [frame["source"] for frame in truth["frames"]] == [source["frames"][old]["source"] for old in kept]
    for defect in truth["defects"]:
        shown = [new for new, frame in enumerate(truth["frames"])
                 if any(seen["defect_id"] == defect["defect_id"] for seen in frame["defects"])]
        assert (defect["first_visible_frame"], defect["last_visible_frame"]) == (shown[0], shown[-1])
    capture, original = cv2.VideoCapture(str(out)), cv2.VideoCapture(str(belt))
    originals = []
    while (frame := original.read())[0]:
        originals.append(frame[1])
    for old in kept:
        ok, delivered = capture.read()
        assert ok and np.array_equal(delivered, originals[old]), old
    assert not capture.read()[0]


def test_compression_departs_from_the_frame_more_at_lower_quality():
    """A JPEG round trip of a busy frame: quality 0 returns it unchanged, 95 changes it little, 20 more, both keep
    its shape and type; 8x8 blocks show at 20 (the jumps across block borders exceed those within)."""
    frame = np.random.default_rng(0).integers(0, 256, (64, 96, 3)).astype(np.uint8)
    frame = cv2.GaussianBlur(frame, (5, 5), 1.5)
    assert relight.compress_frame(frame, 0) is frame
    errors = {}
    for quality in (95, 20):
        out = relight.compress_frame(frame, quality)
        assert out.shape == frame.shape and out.dtype == np.uint8
        errors[quality] = np.abs(out.astype(np.float32) - frame).mean()
    assert 0 < errors[95] < errors[20]
    steps = np.abs(np.diff(relight.compress_frame(frame, 20).astype(np.float32), axis=1)).mean(axis=(0, 2))
    assert steps[7::8].mean() > steps[np.arange(len(steps)) % 8 != 7].mean()


def test_defocus_zero_leaves_the_frame_as_it_is():
    """--defocus 0 (the default) returns the very frame; the blur itself is preprocess.defocus (tested there)."""
    frame = np.zeros((8, 8, 3), np.uint8)
    assert relight.defocus_frame(frame, 0.0) is frame


@pytest.mark.parametrize("flag,value,expected", [
    ("--defocus", 1.5, lambda frame: np.rint(relight.defocus_frame(frame.astype(np.float32), 1.5))),
    ("--jpeg", 30, lambda frame: relight.compress_frame(frame, 30)),
])
def test_a_defocused_or_compressed_video_keeps_the_ground_truth(belt, tmp_path, flag, value, expected):
    """--defocus 1.5 / --jpeg 30 (.avi): each frame is the source's Gaussian blur of sigma 1.5 (to rounding) / its
    JPEG round trip at quality 30 (exactly); the ground truth unchanged, the setting recorded."""
    out = tmp_path / "changed.avi"
    assert relight.main([str(belt), flag, str(value), "--output", str(out)]) == 0
    truth = json.loads((tmp_path / "changed.avi.json").read_text())
    source = json.loads((belt.parent / "belt.mp4.json").read_text())
    assert truth["relight"][flag[2:]] == value and truth["frames"] == source["frames"]
    ok, changed = cv2.VideoCapture(str(out)).read()
    plain = cv2.VideoCapture(str(belt)).read()[1]
    assert ok and np.abs(changed.astype(np.float32) - expected(plain)).max() <= (1 if flag == "--defocus" else 0)


@pytest.mark.parametrize("flag,value", [("--drift", "0.8"), ("--shake", "-1"), ("--vignette", "1.5"),
                                        ("--motion_blur", "-2"), ("--drop", "0.9"), ("--jpeg", "101"),
                                        ("--defocus", "-1")])
def test_a_bad_value_is_one_line_naming_the_flag_and_exit_2(belt, tmp_path, capsys, flag, value):
    assert relight.main([str(belt), flag, value, "--output", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0]
    assert not (tmp_path / "o.mp4").exists()


def test_a_video_without_ground_truth_is_one_line_and_exit_2(tmp_path, capsys):
    assert relight.main([str(tmp_path / "none.mp4"), "--output", str(tmp_path / "o.mp4")]) == 2
    assert "no ground truth beside the video" in capsys.readouterr().err


def test_an_avi_output_holds_the_relit_frames_exactly(belt, tmp_path):
    """.avi: lossless, so the relit frames are the source's decoded frames times their gain, to rounding."""
    out = tmp_path / "relit.avi"
    assert relight.main([str(belt), "--drift", "0.2", "--period", "12", "--output", str(out)]) == 0
    gains = relight.frame_gains(relight.Relight(drift=0.2, period=12), 53)
    capture, source = cv2.VideoCapture(str(out)), cv2.VideoCapture(str(belt))
    for index in range(53):
        ok, lit = capture.read()
        assert ok
        expected = np.clip(np.rint(source.read()[1].astype(np.float32) * np.float32(gains[index])), 0, 255)
        assert np.abs(lit.astype(np.float32) - expected).max() <= 1, index
    assert not capture.read()[0]
    assert json.loads((tmp_path / "relit.avi.json").read_text())["video"] == "relit.avi"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial file left
