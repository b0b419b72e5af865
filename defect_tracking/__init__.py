"""Defect tracking across video frames on a moving surface (ByteTrack + surface motion)."""
from defect_tracking.glass_integration import (
    FrameTrack,
    FrameTracks,
    GLASSDefectTracker,
    TrackedDefectSummary,
    draw_tracks,
    track_colour,
)
from defect_tracking.motion_estimation import METHODS, MotionEstimationError, SurfaceMotionEstimator
from defect_tracking.surface_bytetrack import SurfaceByteTracker, TrackedBox, TrackerConfig, TrackingError

__all__ = [
    "METHODS",
    "FrameTrack",
    "FrameTracks",
    "GLASSDefectTracker",
    "MotionEstimationError",
    "SurfaceByteTracker",
    "SurfaceMotionEstimator",
    "TrackedBox",
    "TrackedDefectSummary",
    "TrackerConfig",
    "TrackingError",
    "draw_tracks",
    "track_colour",
]
