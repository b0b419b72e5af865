"""benchmarks/turn_video.py: a conveyor mirrored or turned a quarter, its ground truth turned alike."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from benchmarks import turn_video


@pytest.mark.parametrize("turn", sorted(turn_video.TURNS))
def test_a_turned_box_bounds_the_turned_pixels(turn):
    """The box arithmetic against the frame operation itself, on a 7x5 patch of a 40x24 frame."""
    frame = np.zeros((24, 40), np.uint8)
    frame[3:8, 30:37] = 255  # box (30, 3, 37, 8)
    turned = turn_video.TURNS[turn][0](frame)
    ys, xs = np.nonzero(turned)
    assert turn_video.turn_box((30, 3, 37, 8), turn, 40, 24) == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_the_turned_video_shows_each_defect_inside_its_turned_frame_box(belt, tmp_path):
    """Bottom to top: portrait frames that turn back into the original ones (to codec noise), sizes swapped, the
    surface offset 0, and every frame's defect boxes turned as turn_box turns them."""
    out = tmp_path / "turned.mp4"
    assert turn_video.main([str(belt), "--turn", "bottom_to_top", "--output", str(out)]) == 0
    truth = json.loads((tmp_path / "turned.mp4.json").read_text())
    source = json.loads((belt.parent / "belt.mp4.json").read_text())
    assert (truth["width"], truth["height"]) == (source["height"], source["width"]) == (64, 96)
    assert truth["frames"][0]["offset"] == 0 and truth["turn"] == "bottom_to_top"
    capture, original = cv2.VideoCapture(str(out)), cv2.VideoCapture(str(belt))
    ok, frame = capture.read()
    assert ok and frame.shape == (96, 64, 3)
    back = cv2.rotate(frame, cv2.ROTATE_90_COUNTERCLOCKWISE)
    assert np.abs(back.astype(int) - original.read()[1].astype(int)).mean() < 3  # the same frame, turned
    for before, after in zip(source["frames"], truth["frames"]):
        for seen_before, seen_after in zip(before["defects"], after["defects"]):
            assert seen_after["box"] == turn_video.turn_box(seen_before["box"], "bottom_to_top", 96, 64)


def test_a_video_without_ground_truth_is_one_line_and_exit_2(tmp_path, capsys):
    assert turn_video.main([str(tmp_path / "none.mp4"), "--turn", "left_to_right",
                            "--output", str(tmp_path / "o.mp4")]) == 2
    assert "no ground truth beside the video" in capsys.readouterr().err
