"""ByteTrack for defects on a moving surface (fabric web, conveyor belt, sheet metal).

The association (high-score detections first, then low-score ones against the remaining
tracks), the Kalman filter on the box state and the track life cycle (birth, loss, removal
after a buffer) are Roboflow's `trackers.ByteTrackTracker` (Apache-2.0), used as is.

What no maintained tracker offers is using the measured surface motion. ByteTrack predicts a
box with a constant-velocity Kalman filter, which needs a few frames to learn the velocity and,
before it has, matches by the overlap of the last box with the new one: a defect that moves
more than its own size per frame overlaps nothing and is born again with a new id every frame.
Here detections are converted into SURFACE coordinates (frame coordinates minus the
accumulated surface displacement) before they reach the library, and its boxes are converted
back. On the surface a defect is stationary, so the library's prediction (stay where you were)
is right from the second frame on, at any belt speed, and a lost defect is looked for where the
belt has carried it.

Lost-track buffer, in frames (checked against the library in tests): `lost_track_buffer`
follows ByteTrack's convention of 30-FPS frames and the library scales it by frame_rate / 30,
so a confirmed track survives `TrackerConfig.max_missed_frames = ceil(lost_track_buffer *
frame_rate / 30)` consecutive frames without a detection (0 when the buffer is 0): detected
again within that gap it keeps its id; after a longer gap a new detection starts a new id.
A new track is confirmed (gets an id) on its second consecutive detection at the earliest
(`minimum_consecutive_frames` 1 and 2 behave alike): the frame a defect first appears in is
not reported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from errors import UserError


class TrackingError(UserError):
    """A bad tracker setting or input; the message is one line naming the fix."""


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack settings; scores are detection confidences (for GLASS: max map score)."""

    track_activation_threshold: float = 0.5  # a detection needs this score to start a track
    high_score_threshold: float = 0.5  # first-stage association at or above, second stage below
    minimum_iou_threshold: float = 0.1  # least overlap (in surface coordinates) to associate
    lost_track_buffer: int = 30  # ByteTrack convention: 30-FPS frames, scaled by frame_rate / 30
    minimum_consecutive_frames: int = 2  # consecutive detections before a track gets an id
    frame_rate: float = 30.0  # frames per second of the video

    def __post_init__(self) -> None:
        """Rejects values the tracker cannot work with (one-line TrackingError)."""
        for name in ("track_activation_threshold", "high_score_threshold", "minimum_iou_threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise TrackingError(f"tracker {name} must lie in [0, 1], got {value!r}")
        if not isinstance(self.lost_track_buffer, (int, np.integer)) or self.lost_track_buffer < 0:
            raise TrackingError(f"tracker lost_track_buffer must be an integer >= 0, got {self.lost_track_buffer!r}")
        if (not isinstance(self.minimum_consecutive_frames, (int, np.integer))
                or self.minimum_consecutive_frames < 1):
            raise TrackingError(
                f"tracker minimum_consecutive_frames must be an integer >= 1, got {self.minimum_consecutive_frames!r}")
        if (not isinstance(self.frame_rate, (int, float)) or not math.isfinite(self.frame_rate)
                or self.frame_rate <= 0):
            raise TrackingError(f"tracker frame_rate must be a positive number, got {self.frame_rate!r}")

    @classmethod
    def for_map_threshold(cls, threshold: float, **overrides: float | int) -> TrackerConfig:
        """Config whose score thresholds equal an anomaly-map threshold (every region may start a track)."""
        settings: dict[str, float | int] = {
            "track_activation_threshold": threshold, "high_score_threshold": threshold}
        settings.update(overrides)
        return cls(**settings)

    @property
    def max_missed_frames(self) -> int:
        """Consecutive frames a confirmed track may go undetected and keep its id."""
        if self.lost_track_buffer == 0:
            return 0
        return max(1, math.ceil(self.frame_rate / 30.0 * self.lost_track_buffer))


@dataclass(frozen=True)
class TrackedBox:
    """One detection of this frame that belongs to a confirmed track."""

    track_id: int  # >= 1, stable while the track lives
    box: tuple[float, float, float, float]  # the detection's box, x1 y1 x2 y2 in frame pixels
    score: float
    detection_index: int  # row of the detection in this frame's input


class SurfaceByteTracker:
    """ByteTrack on surface coordinates: ids survive surface motion of any speed."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        """Builds the library tracker from the config."""
        self.config = config if config is not None else TrackerConfig()
        self._tracker = ByteTrackTracker(
            lost_track_buffer=int(self.config.lost_track_buffer),
            frame_rate=float(self.config.frame_rate),
            track_activation_threshold=float(self.config.track_activation_threshold),
            minimum_consecutive_frames=int(self.config.minimum_consecutive_frames),
            minimum_iou_threshold=float(self.config.minimum_iou_threshold),
            high_conf_det_threshold=float(self.config.high_score_threshold),
        )
        self._offset = np.zeros(2)  # accumulated surface displacement (x, y), frame pixels
        self.frame_count = 0

    @property
    def offset(self) -> tuple[float, float]:
        """Accumulated surface displacement since the first frame (frame pixels)."""
        return float(self._offset[0]), float(self._offset[1])

    @property
    def max_missed_frames(self) -> int:
        """The library's own lost-track budget in frames (equals config.max_missed_frames)."""
        return int(self._tracker.maximum_frames_without_update)

    def reset(self) -> None:
        """Forgets all tracks, ids and motion (call between videos)."""
        self._tracker.reset()
        self._offset[:] = 0.0
        self.frame_count = 0

    def update(self, boxes: np.ndarray, scores: np.ndarray,
               motion: tuple[float, float] = (0.0, 0.0)) -> list[TrackedBox]:
        """Associates this frame's boxes (N,4 xyxy frame px) to tracks; motion = surface (dx, dy)."""
        boxes, scores, motion_xy = _checked_inputs(boxes, scores, motion)
        # Surface coordinates of this frame: content at x in the previous frame is at x + dx now,
        # so a surface point's frame position grows by the accumulated displacement.
        self._offset += motion_xy
        shift = np.concatenate([self._offset, self._offset])
        detections = sv.Detections(
            xyxy=boxes - shift, confidence=scores,
            data={"detection_index": np.arange(len(boxes))})
        tracked = self._tracker.update(detections)
        self.frame_count += 1
        if len(tracked) == 0:
            return []
        results = []
        for index, library_id in zip(tracked.data["detection_index"], tracked.tracker_id):
            if library_id < 0:  # immature track: not reported
                continue
            index = int(index)
            results.append(TrackedBox(
                track_id=int(library_id) + 1,  # the library counts from 0
                box=tuple(float(v) for v in boxes[index]),
                score=float(scores[index]),
                detection_index=index))
        return sorted(results, key=lambda item: item.detection_index)


def _checked_inputs(boxes: np.ndarray, scores: np.ndarray,
                    motion: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 (N,4) boxes, (N,) scores and (2,) motion, or a one-line TrackingError."""
    boxes = np.asarray(boxes, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise TrackingError(f"boxes must have shape (N, 4) as x1 y1 x2 y2, got {boxes.shape}")
    if scores.shape != (len(boxes),):
        raise TrackingError(f"scores must have shape ({len(boxes)},) to match the boxes, got {scores.shape}")
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise TrackingError("boxes and scores must be finite numbers")
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise TrackingError("boxes must be x1 y1 x2 y2 with x2 >= x1 and y2 >= y1")
    motion_xy = np.asarray(motion, dtype=np.float64)
    if motion_xy.shape != (2,) or not np.isfinite(motion_xy).all():
        raise TrackingError(f"motion must be a finite (dx, dy) pair, got {motion!r}")
    return boxes, scores, motion_xy
