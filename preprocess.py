"""The one way an image becomes the network's input, for training, testing, the engine, ONNX and the service.

Training and testing take a view of an image: the shorter side scaled to `resize` (bilinear,
antialiased, torchvision on PIL as the reference does), then a centre crop of `imagesize`.
Frames (video, single images at inference) are scored whole at that same scale: the shorter
side of the frame (or of its region of interest) is scaled to `resize` with the same call, and
the input is padded at the bottom and right to a multiple of the backbone's largest stride, so
every layer's grid divides evenly; the pad is cut off the anomaly map again. Both paths share
`scale_short_side` and `normalize`, so a frame that is already a training view gets exactly the
training input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple
from collections.abc import Sequence

import cv2
import numpy as np
import PIL.Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from errors import UserError

Roi = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels (x1, y1 exclusive)


class PreprocessError(UserError):
    """A frame or region that cannot be turned into a network input (one-line message)."""


def scale_short_side(image: PIL.Image.Image, short_side: int) -> PIL.Image.Image:
    """The image with its shorter side scaled to `short_side` (bilinear, antialiased when shrinking)."""
    return TF.resize(image, short_side, interpolation=InterpolationMode.BILINEAR)


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """A BGR (or grey) uint8 image after JPEG compression at `quality` (1-100) and decoding."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not JPEG-encode an image of shape {image.shape}")
    return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)


def defocus(image: np.ndarray, sigma: float) -> np.ndarray:
    """The image as a lens out of focus shows it: a Gaussian blur of `sigma` (> 0) pixels, borders mirrored."""
    return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)


def training_view(image: PIL.Image.Image, resize: int, imagesize: int) -> PIL.Image.Image:
    """The view training and testing use: shorter side to `resize`, centre crop of `imagesize`."""
    return TF.center_crop(scale_short_side(image, resize), imagesize)


def normalize(image: PIL.Image.Image | np.ndarray, mean: Sequence[float], std: Sequence[float],
              out: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 (H,W,3) -> float32 (3,H,W): scaled to [0, 1], then (x - mean) / std per channel (into `out`
    when given)."""
    # NumPy rather than torch ops: per-item tensor ops pay thread start-up costs in loader workers. One float32
    # buffer updated in place: the same operations in the same order as (x / 255 - mean) / std, so the same
    # bits (tested), without a fresh frame-sized array per step.
    array = np.asarray(image)
    if out is None:
        out = np.empty((3, *array.shape[:2]), np.float32)
    out[...] = array.transpose(2, 0, 1)
    out /= np.float32(255.0)
    shape = (3, 1, 1)
    out -= np.asarray(mean, np.float32).reshape(shape)
    out /= np.asarray(std, np.float32).reshape(shape)
    return out


def scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(h, w) after scaling the shorter side to `short_side`, as torchvision rounds it."""
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


@dataclass(frozen=True)
class FrameGeometry:
    """Where a frame's pixels go: region of interest, its size at the training scale, the padded input."""

    frame: tuple[int, int]  # (height, width) of the whole frame
    roi: Roi
    scaled: tuple[int, int]  # (h, w) of the region at the training scale
    padded: tuple[int, int]  # (H, W): scaled, padded up to a multiple of the stride
    start: tuple[int, int] = (0, 0)  # (y, x) of the scaled region where the input begins (a grid shift)

    @property
    def roi_size(self) -> tuple[int, int]:
        """(height, width) of the region of interest in frame pixels."""
        x0, y0, x1, y1 = self.roi
        return y1 - y0, x1 - x0


def frame_geometry(frame_shape: Sequence[int], short_side: int, stride: int, roi: Roi | None = None) -> FrameGeometry:
    """The geometry of scoring a frame of this shape whole (or its ROI) at the training scale."""
    height, width = int(frame_shape[0]), int(frame_shape[1])
    if height < 1 or width < 1:
        raise PreprocessError(f"frame of shape {tuple(frame_shape)} is empty; a frame needs at least one pixel")
    roi = check_roi(roi, height, width)
    x0, y0, x1, y1 = roi
    scaled = scaled_size(y1 - y0, x1 - x0, short_side)
    padded = (-(-scaled[0] // stride) * stride, -(-scaled[1] // stride) * stride)
    return FrameGeometry((height, width), roi, scaled, padded)


class GridShift(NamedTuple):
    """Where the patch grid meets a frame: the input begins `offset` pixels into the scaled region along `axis`
    (0: rows, 1: columns), 0 <= offset < the backbone's largest stride."""

    axis: int
    offset: int


def shifted_geometry(geometry: FrameGeometry, shift: GridShift, stride: int) -> FrameGeometry:
    """The geometry of scoring the scaled region from `shift.offset` on along its axis, over the longest
    multiple of `stride` that every offset leaves inside it (so the frames of a batch keep one input size and
    no pad is added along that axis: a mirrored pad's seam raised the maps at the frame's edges); the region
    as it is when it is too short for that (under two strides)."""
    axis, offset = int(shift.axis), int(shift.offset)
    if axis not in (0, 1) or not 0 <= offset < stride:
        raise PreprocessError(f"grid shift {tuple(shift)}: axis 0 or 1, offset in [0, {stride})")
    length = (geometry.scaled[axis] - stride + 1) // stride * stride
    if length < stride:
        return geometry
    padded = list(geometry.padded)
    padded[axis] = length
    start = (offset, 0) if axis == 0 else (0, offset)
    return FrameGeometry(geometry.frame, geometry.roi, geometry.scaled, (padded[0], padded[1]), start)


GRID_SHIFT_SEED = 20261202


def grid_shift(frame_index: int, stride: int, axis: int) -> GridShift:
    """A pseudo-random offset in [0, stride) along `axis`, fixed per frame index (same video, same shifts).

    Why: averaging a frame's map with earlier frames' maps at the same surface points (tracking's
    --surface_window) damps the peaks that depend on where the patch grid meets the texture only when
    that phase changes from frame to frame, and along the motion it does not at a speed that is a
    multiple of the stride: on bench_line's brick line the averaged defect-free peaks reached 0.552 at
    8 px/frame and 0.535 at 4 against 0.479 at 9 (where the thresholds were calibrated), so a slower
    recording had false defects. A random offset along the motion makes that phase uniform whatever the
    speed (a fixed sequence 0, 1, 2, ... could cancel against a constant speed). Across the motion the
    phase never changes, in calibration or later, and the frame's edges there stay where the network
    saw them in training."""
    rng = np.random.default_rng((GRID_SHIFT_SEED, int(frame_index)))
    return GridShift(int(axis), int(rng.integers(0, stride)))


def check_roi(roi: Roi | None, height: int, width: int) -> Roi:
    """The ROI clipped to the frame (the whole frame when None); an empty one is an error."""
    if roi is None:
        return 0, 0, width, height
    x0, y0, x1, y1 = (int(v) for v in roi)
    x0, x1 = max(0, x0), min(width, x1)
    y0, y1 = max(0, y0), min(height, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise PreprocessError(f"--roi {','.join(str(v) for v in roi)}: leaves no area inside the "
                              f"{width}x{height} frame; give x0,y0,x1,y1 in frame pixels with x0 < x1, y0 < y1")
    return x0, y0, x1, y1


def parse_roi(text: str | None) -> Roi | None:
    """'x0,y0,x1,y1' -> a ROI tuple (None stays None); bad text raises PreprocessError."""
    if text is None or not str(text).strip():
        return None
    parts = str(text).split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or values[0] < 0 or values[1] < 0 or values[2] <= values[0] or values[3] <= values[1]:
        raise PreprocessError(f"--roi {text}: use x0,y0,x1,y1 in frame pixels (integers, x0 < x1, y0 < y1), "
                              "e.g. --roi 0,40,640,220")
    return values  # type: ignore[return-value]


def frame_to_rgb(frame: np.ndarray) -> np.ndarray:
    """A uint8 BGR (H,W,3) or gray (H,W) frame as RGB (H,W,3): a view, not a copy."""
    if frame.dtype != np.uint8:
        raise PreprocessError(f"frame of dtype {frame.dtype}: expected uint8 BGR images")
    if frame.ndim == 2:
        return np.broadcast_to(frame[..., None], (*frame.shape, 3))
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise PreprocessError(f"frame of shape {frame.shape}: expected HxWx3 BGR images")
    return frame[..., ::-1]


def frame_input(frame: np.ndarray, geometry: FrameGeometry, mean: Sequence[float], std: Sequence[float],
                out: np.ndarray | None = None) -> np.ndarray:
    """A BGR frame -> the normalised network input (3,H,W) of its geometry (ROI, scale, pad), into `out` when
    given: the region scaled as training scales images, then cut to the input and normalised."""
    x0, y0, x1, y1 = geometry.roi
    rgb = frame_to_rgb(frame[y0:y1, x0:x1])
    if rgb.shape[:2] != geometry.scaled:  # (PIL's resize to the same size is a copy: skipped)
        rgb = np.asarray(scale_short_side(PIL.Image.fromarray(np.ascontiguousarray(rgb)), min(geometry.scaled)))
    if rgb.shape[:2] != geometry.scaled:
        raise PreprocessError(f"frame scaled to {rgb.shape[:2]}, expected {geometry.scaled}")
    # Cut before normalising (the same values: both are per pixel), so only the input's pixels are converted.
    (y0, x0), (height, width) = geometry.start, geometry.padded
    rgb = rgb[y0:y0 + height, x0:x0 + width]
    pad_h, pad_w = height - rgb.shape[0], width - rgb.shape[1]
    if not (pad_h or pad_w):
        return normalize(rgb, mean, std, out)
    # Mirrored content rather than a flat colour: no artificial edge inside the receptive
    # fields of the last real patches (the pad is cut off the map again).
    mode = "reflect" if pad_h < rgb.shape[0] and pad_w < rgb.shape[1] else "edge"
    return normalize(np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode), mean, std, out)


# ---------------------------------------------------------------- light compensation (video frames)
LIGHT_SAMPLE_STEP = 4  # the light level reads every 4th row and column of the region
MAX_LIGHT_GAIN = 2.0  # light compensation scales a frame by at most 2x (or 1/2x)


def light_level(frame: np.ndarray, roi: Roi | None = None) -> float:
    """A frame's light: the median grey level (mean of its channels) of its region, on a sparse grid of pixels
    (the median, so that a defect or a glint does not move it)."""
    x0, y0, x1, y1 = roi or (0, 0, frame.shape[1], frame.shape[0])
    sample = frame[y0:y1:LIGHT_SAMPLE_STEP, x0:x1:LIGHT_SAMPLE_STEP]
    grey = sample.mean(axis=-1) if sample.ndim == 3 else sample.astype(np.float32)
    return float(np.median(grey)) if grey.size else 0.0


def compensate_light(frame: np.ndarray, reference: float, roi: Roi | None = None) -> np.ndarray:
    """The frame scaled so that its light level becomes `reference` (a camera's gain: brighter or darker light
    on the same surface scales its grey levels; the gain is kept within MAX_LIGHT_GAIN, values saturate)."""
    gain = reference / max(light_level(frame, roi), 1.0)
    gain = min(max(gain, 1.0 / MAX_LIGHT_GAIN), MAX_LIGHT_GAIN)
    if abs(gain - 1.0) < 1e-3:
        return frame
    return cv2.convertScaleAbs(frame, alpha=gain)
