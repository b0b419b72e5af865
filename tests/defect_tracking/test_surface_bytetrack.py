"""SurfaceByteTracker: ids through fast surface motion, lost-track buffer, two-stage scores, errors."""
from __future__ import annotations

import numpy as np
import pytest

from defect_tracking.surface_bytetrack import SurfaceByteTracker, TrackedBox, TrackerConfig, TrackingError

# Three defects on the surface (x1, y1, x2, y2 at frame 0), all narrower than 25 px.
DEFECTS = np.array([[300.0, 20.0, 312.0, 32.0], [340.0, 60.0, 358.0, 70.0], [420.0, 90.0, 434.0, 104.0]])


def belt_boxes(frame: int, speed: float) -> np.ndarray:
    """Frame boxes of the defects on a belt moving -speed px/frame (x), visible within 0..512."""
    boxes = DEFECTS - np.array([speed * frame, 0.0, speed * frame, 0.0])
    return boxes[(boxes[:, 2] > 0) & (boxes[:, 0] < 512)]


def run_belt(speed: float, frames: int, use_motion: bool,
             config: TrackerConfig | None = None) -> list[list[TrackedBox]]:
    """Per-frame tracker output on the belt, with or without the surface motion."""
    tracker = SurfaceByteTracker(config or TrackerConfig())
    outputs = []
    for frame in range(frames):
        boxes = belt_boxes(frame, speed)
        motion = (-speed, 0.0) if use_motion and frame > 0 else (0.0, 0.0)
        outputs.append(tracker.update(boxes, np.full(len(boxes), 0.9), motion))
    return outputs


def ids_per_defect(outputs: list[list[TrackedBox]]) -> dict[int, set[int]]:
    """Defect (by its frame-0 y1, unique) -> track ids it was reported under."""
    rows = {float(y): i for i, y in enumerate(DEFECTS[:, 1])}
    found: dict[int, set[int]] = {i: set() for i in range(len(DEFECTS))}
    for frame_output in outputs:
        for item in frame_output:
            found[rows[item.box[1]]].add(item.track_id)
    return found


def test_fast_belt_keeps_one_id_per_defect_with_motion() -> None:
    outputs = run_belt(speed=25.0, frames=18, use_motion=True)
    found = ids_per_defect(outputs)
    assert found == {0: {1}, 1: {2}, 2: {3}}
    # Every defect is reported in every frame it is visible in, except its first (birth) frame.
    visible = sum(len(belt_boxes(f, 25.0)) for f in range(18))
    reported = sum(len(frame_output) for frame_output in outputs)
    assert reported == visible - len(DEFECTS)
    assert outputs[0] == []  # nothing is confirmed on its first frame


def test_fast_belt_loses_ids_without_motion() -> None:
    found = ids_per_defect(run_belt(speed=25.0, frames=18, use_motion=False))
    assert not all(len(ids) == 1 for ids in found.values())


def test_slow_belt_works_either_way() -> None:
    for use_motion in (True, False):
        found = ids_per_defect(run_belt(speed=3.0, frames=40, use_motion=use_motion))
        assert found == {0: {1}, 1: {2}, 2: {3}}


def test_reported_boxes_are_the_inputs_in_frame_coordinates() -> None:
    tracker = SurfaceByteTracker()
    for frame in range(3):
        boxes = belt_boxes(frame, 25.0)
        scores = np.linspace(0.7, 0.9, len(boxes))
        output = tracker.update(boxes, scores, (-25.0, 0.0) if frame else (0.0, 0.0))
    assert [item.detection_index for item in output] == [0, 1, 2]
    for item in output:
        assert item.box == tuple(boxes[item.detection_index])
        assert item.score == pytest.approx(scores[item.detection_index])
    assert tracker.offset == (-50.0, 0.0)


@pytest.mark.parametrize("buffer, frame_rate, expected", [(4, 30.0, 4), (10, 15.0, 5), (3, 25.0, 3), (0, 30.0, 0)])
def test_lost_buffer_in_frames_matches_the_library(buffer: int, frame_rate: float, expected: int) -> None:
    config = TrackerConfig(lost_track_buffer=buffer, frame_rate=frame_rate)
    assert config.max_missed_frames == expected
    assert SurfaceByteTracker(config).max_missed_frames == expected


def run_with_gap(gap: int, config: TrackerConfig) -> list[int]:
    """Track ids of one defect on a moving belt that is undetected for `gap` frames."""
    tracker = SurfaceByteTracker(config)
    ids = []
    box = np.array([[200.0, 40.0, 214.0, 52.0]])
    for frame in range(5 + gap + 3):
        shifted = box - np.array([6.0 * frame, 0.0, 6.0 * frame, 0.0])
        hidden = 5 <= frame < 5 + gap
        detections = np.empty((0, 4)) if hidden else shifted
        output = tracker.update(detections, np.full(len(detections), 0.9), (-6.0, 0.0) if frame else (0.0, 0.0))
        ids.extend(item.track_id for item in output)
    return ids


@pytest.mark.parametrize("frame_rate", [30.0, 15.0])
def test_missing_defect_keeps_id_within_buffer_then_gets_new_one(frame_rate: float) -> None:
    config = TrackerConfig(lost_track_buffer=8, frame_rate=frame_rate)
    budget = config.max_missed_frames  # 8 at 30 FPS, 4 at 15 FPS
    assert set(run_with_gap(budget, config)) == {1}
    after = run_with_gap(budget + 1, config)
    assert after[0] == 1 and after[-1] == 2 and set(after) == {1, 2}


def test_low_scores_continue_tracks_but_never_start_them() -> None:
    config = TrackerConfig(track_activation_threshold=0.6, high_score_threshold=0.6)
    tracker = SurfaceByteTracker(config)
    box = np.array([[50.0, 50.0, 60.0, 60.0]])
    faint = np.array([[150.0, 50.0, 160.0, 60.0]])
    ids = []
    for frame in range(8):
        strong = 0.9 if frame < 3 else 0.3  # the defect fades below the high-score threshold
        output = tracker.update(np.vstack([box, faint]), np.array([strong, 0.3]))
        ids.append([(item.track_id, item.detection_index) for item in output])
    assert ids[0] == []
    assert all(frame_ids == [(1, 0)] for frame_ids in ids[1:])  # the faint box never gets an id


def test_reset_restarts_ids_and_motion() -> None:
    tracker = SurfaceByteTracker()
    box = np.array([[10.0, 10.0, 20.0, 20.0]])
    for _ in range(3):
        tracker.update(box, np.array([0.9]), (1.0, 0.0))
    tracker.reset()
    assert tracker.offset == (0.0, 0.0) and tracker.frame_count == 0
    outputs = [tracker.update(box, np.array([0.9])) for _ in range(2)]
    assert outputs[1][0].track_id == 1


def test_same_input_same_output() -> None:
    assert run_belt(25.0, 18, True) == run_belt(25.0, 18, True)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"track_activation_threshold": 1.5}, "track_activation_threshold"),
    ({"high_score_threshold": -0.1}, "high_score_threshold"),
    ({"minimum_iou_threshold": "0.2"}, "minimum_iou_threshold"),
    ({"lost_track_buffer": -1}, "lost_track_buffer"),
    ({"lost_track_buffer": 2.5}, "lost_track_buffer"),
    ({"minimum_consecutive_frames": 0}, "minimum_consecutive_frames"),
    ({"frame_rate": 0.0}, "frame_rate"),
    ({"frame_rate": float("nan")}, "frame_rate"),
])
def test_bad_config_raises_one_line(kwargs: dict, fragment: str) -> None:
    with pytest.raises(TrackingError, match=fragment) as error:
        TrackerConfig(**kwargs)
    assert isinstance(error.value, ValueError) and "\n" not in str(error.value)


def test_bad_update_inputs_raise_one_line() -> None:
    tracker = SurfaceByteTracker()
    with pytest.raises(TrackingError, match=r"shape \(N, 4\)"):
        tracker.update(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(TrackingError, match=r"shape \(2,\)"):
        tracker.update(np.zeros((2, 4)), np.zeros(3))
    with pytest.raises(TrackingError, match="finite"):
        tracker.update(np.array([[0.0, 0.0, np.nan, 1.0]]), np.ones(1))
    with pytest.raises(TrackingError, match="x2 >= x1"):
        tracker.update(np.array([[5.0, 0.0, 1.0, 1.0]]), np.ones(1))
    with pytest.raises(TrackingError, match="motion"):
        tracker.update(np.zeros((0, 4)), np.zeros(0), (1.0,))
    assert tracker.update(np.zeros((0, 4)), np.zeros(0)) == []
    assert tracker.frame_count == 1
