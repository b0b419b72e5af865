"""Defect tracking across video frames on a moving surface (ByteTrack + surface motion)."""
from defect_tracking.fabric_bytetrack import FabricByteTracker, TrackedBox, TrackerConfig, TrackingError
from defect_tracking.glass_integration import (
    FrameTrack,
    FrameTracks,
    GLASSDefectTracker,
    TrackedDefectSummary,
    draw_tracks,
    track_colour,
)
from defect_tracking.motion_estimation import METHODS, FabricMotionEstimator, MotionEstimationError

__all__ = [
    "METHODS",
    "FabricByteTracker",
    "FabricMotionEstimator",
    "FrameTrack",
    "FrameTracks",
    "GLASSDefectTracker",
    "MotionEstimationError",
    "TrackedBox",
    "TrackedDefectSummary",
    "TrackerConfig",
    "TrackingError",
    "draw_tracks",
    "track_colour",
]
