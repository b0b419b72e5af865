"""benchmarks/bench_line.py: how the line's videos are recorded (the whole workflow runs for minutes: README)."""
from __future__ import annotations

import argparse
import json

import cv2
import pytest

from benchmarks import bench_line


def test_a_turned_vignetted_video_is_wide_lossless_and_keeps_its_ground_truth(tmp_path):
    """--width 48 --height 96 --turn top_to_bottom --vignette 0.3: 96x48 frames in an .avi with its sidecar,
    corners darker than the middle; the intermediate videos lie beside it."""
    args = argparse.Namespace(turn="top_to_bottom", vignette=0.3, motion_blur=0, footage="conveyor")
    target = bench_line.video_path(args, tmp_path, "defects")
    target.parent.mkdir()
    flags = ["--width", "48", "--height", "96", "--texture", "gravel", "--speed", "4", "--defects", "1",
             "--seed", "1"]
    assert bench_line.record(args, tmp_path / "log.txt", target, flags) > 0.0
    assert target.suffix == ".avi"
    capture = cv2.VideoCapture(str(target))
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (48, 96, 3)
    truth = json.loads(target.with_name(target.name + ".json").read_text())
    assert truth["turn"] == "top_to_bottom" and truth["relight"]["vignette"] == pytest.approx(0.3)
    assert truth["defects"]
    assert (tmp_path / "videos" / "defects_generated.mp4").exists()
    assert (tmp_path / "videos" / "defects_turned.mp4").exists()


@pytest.mark.parametrize("flag,value", [("--vignette", "1.5"), ("--motion_blur", "-1"), ("--jpeg", "101"),
                                        ("--speed", "5.4")])
def test_a_bad_relight_value_is_a_usage_error(tmp_path, capsys, flag, value):
    """--vignette 1.5, --motion_blur -1, --jpeg 101 or a fractional --speed for the toolkit's conveyor stops before
    recording anything, naming the flag."""
    with pytest.raises(SystemExit) as stop:
        bench_line.main([flag, value, "--out", str(tmp_path / "line")])
    assert stop.value.code == 2
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "line").exists()


def test_a_motion_blurred_video_is_lossless_and_records_the_blur(tmp_path):
    """--motion_blur 3 alone: the line's videos go through relight_video.py too (.avi), the blur in the sidecar."""
    args = argparse.Namespace(turn=None, vignette=0.0, motion_blur=3, footage="conveyor")
    target = bench_line.video_path(args, tmp_path, "normal")
    target.parent.mkdir()
    flags = ["--width", "64", "--height", "32", "--texture", "brick", "--speed", "3", "--defects", "0",
             "--frames", "6", "--seed", "2"]
    assert bench_line.record(args, tmp_path / "log.txt", target, flags) > 0.0
    assert target.name == "normal.avi"
    truth = json.loads(target.with_name(target.name + ".json").read_text())
    assert truth["relight"]["motion_blur"] == 3 and truth["relight"]["vignette"] == 0.0


def test_steel_footage_is_recorded_by_the_second_generator(tmp_path):
    """--footage steel: the video comes from benchmarks/steel_conveyor.py at a fractional speed, its frame size and
    camera noise from the line's flags (no texture), with a sidecar naming that generator."""
    args = argparse.Namespace(turn=None, vignette=0.0, motion_blur=0, footage="steel", width=96, height=64, noise=0.0)
    target = bench_line.video_path(args, tmp_path, "normal")
    target.parent.mkdir()
    flags = [*bench_line.surface_flags(args, "normal"), "--speed", "2.7", "--defects", "0", "--frames", "5",
             "--seed", "1"]
    assert "--texture" not in flags and "--noise" not in flags
    assert bench_line.record(args, tmp_path / "log.txt", target, flags) > 0.0
    truth = json.loads(target.with_name(target.name + ".json").read_text())
    assert truth["settings"]["generator"] == "benchmarks/steel_conveyor.py"
    assert (truth["width"], truth["height"], truth["num_frames"]) == (96, 64, 5)
    assert truth["speed_px_per_frame"] == pytest.approx(2.7) and truth["defects"] == []
