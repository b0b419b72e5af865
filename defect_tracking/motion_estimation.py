"""Global surface motion between consecutive frames (conveyor belt, fabric web, sheet metal).

`SurfaceMotionEstimator.estimate(frame)` returns the displacement (dx, dy) in pixels of the
surface content from the previous frame to this one: content at x in the previous frame is at
x + dx now. Three selectable methods, all OpenCV:

- "phase": phase correlation (cv2.phaseCorrelate) of Hanning-windowed gray frames. Default:
  fastest, exact to a fraction of a pixel, follows shifts up to half the frame size. Each frame is
  compared with a keyframe rather than with the previous frame, and the keyframe moves on once the
  surface has travelled a quarter of the view. What does not move with the belt (the lens's light
  falloff) correlates at zero shift and pulled each frame-to-frame estimate a few hundredths of a pixel
  short; a quarter view away that peak lies far from the belt's, and a keyframe's small error enters
  once per keyframe instead of once per frame, so positions along the belt no longer drift (measured
  on brushed steel at 2.3 px/frame: 1.8 % of the distance travelled frame to frame, 0.06 % against
  keyframes; tests/defect_tracking/test_motion_estimation.py).
- "flow": dense Farneback optical flow (cv2.calcOpticalFlowFarneback) of the residual motion
  after the phase-correlation shift; the answer is that shift plus the median residual, so
  local outliers (a defect or a fold moving on its own) do not pull it.
- "template": normalised cross-correlation (cv2.matchTemplate) of the previous frame's central
  patch in the current frame, with parabolic sub-pixel refinement of the peak. Follows shifts
  up to (1 - template_fraction) / 2 of the frame size.

With a `view` (x0, y0, x1, y1: the belt, e.g. tracking's --roi) only that part of each frame is compared:
static machine parts beside the belt hold the zero shift, and where they fill most of the frame they win
(tried on the wide gravel conveyor under static photo bands: the belt's -6 px/frame read right with the belt
on 40 % of the rows or more, -0.7 to -4.8 with the belt on the top 25 %; a test builds such a case).

Frames are downscaled by an integer factor before estimation (auto by default: the longer
side is brought to about 256 px for phase/template and 64 px for flow); the result is scaled
back to frame pixels.

Each estimate has a confidence (phase-correlation peak, or normalised cross-correlation peak
for "template"). Below the method's minimum (flat or featureless frames, a shift beyond the
method's range, a scene cut) the estimate is unreliable and the last reliable displacement is
returned instead: a belt keeps its speed from one frame to the next, while a wrong shift
would move every track's expected position.
"""
from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from errors import UserError

LOGGER = logging.getLogger(__name__)

METHODS = ("phase", "flow", "template")

# Working size (longer side, pixels) the automatic downscale aims at, per method: measured on
# skimage brick/gravel/grass strips, these keep every method near or below 1-1.5 ms per frame
# on one core with sub-0.5 px error.
_AUTO_WORK_SIDE = {"phase": 256, "template": 256, "flow": 64}

# Least confidence of a usable estimate, per method. Measured on skimage gravel, brick, grass
# and camera strips (128 px, sensor noise): valid shifts up to half the frame gave phase peaks
# >= 0.19 and (within the template's range) correlation peaks >= 0.97; unrelated or flat
# frames gave phase peaks <= 0.05 and correlation peaks <= 0.06.
MIN_CONFIDENCE = {"phase": 0.1, "flow": 0.1, "template": 0.5}
# A template patch flatter than this (gray-level standard deviation) cannot be located.
_MIN_PATCH_STD = 1.0


class MotionEstimationError(UserError):
    """A bad motion-estimation setting or frame; the message is one line naming the fix."""


class SurfaceMotionEstimator:
    """Stateful estimator of the global surface displacement between consecutive frames."""

    def __init__(self, method: str = "phase", downscale: int | None = None,
                 template_fraction: float = 0.5, view: tuple[int, int, int, int] | None = None) -> None:
        """method: phase | flow | template; downscale: integer factor, None = automatic; view: the part of the
        frame (x0, y0, x1, y1) the surface fills, None = the whole frame."""
        if method not in METHODS:
            raise MotionEstimationError(
                f"unknown motion method {method!r}: use one of {', '.join(METHODS)}")
        if downscale is not None and (not isinstance(downscale, (int, np.integer)) or downscale < 1):
            raise MotionEstimationError(f"motion downscale must be an integer >= 1, got {downscale!r}")
        if not 0.1 <= template_fraction <= 0.9:
            raise MotionEstimationError(
                f"template_fraction must lie in [0.1, 0.9], got {template_fraction!r}")
        self.method = method
        self.downscale = None if downscale is None else int(downscale)
        self.template_fraction = float(template_fraction)
        self.view = None if view is None else _check_view(view)
        self._frame_shape: tuple[int, int] | None = None
        self._work_size: tuple[int, int] = (0, 0)  # (width, height) after downscaling
        self._window: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._key: np.ndarray | None = None  # phase: the keyframe (prepared) and its position, working px
        self._key_position = (0.0, 0.0)
        self._position = (0.0, 0.0)  # phase: the previous frame's position (frame 0 at (0, 0)), working px
        self._last_reliable = (0.0, 0.0)
        self.confidence = 0.0  # of the latest estimate
        self.reliable = True  # False: the latest estimate repeats the last reliable one
        self.unreliable_count = 0

    def reset(self) -> None:
        """Forgets the previous frame (call between videos); the next estimate is (0, 0)."""
        self._frame_shape = None
        self._window = None
        self._previous = None
        self._key = None
        self._key_position = self._position = (0.0, 0.0)
        self._last_reliable = (0.0, 0.0)
        self.confidence = 0.0
        self.reliable = True
        self.unreliable_count = 0

    def estimate(self, frame: np.ndarray) -> tuple[float, float]:
        """Surface displacement (dx, dy) in frame pixels from the previous frame to this one."""
        if self.view is not None:
            x0, y0, x1, y1 = self.view
            if frame.shape[0] < y1 or frame.shape[1] < x1:
                raise MotionEstimationError(f"motion view {self.view} lies outside the {frame.shape[1]}x"
                                            f"{frame.shape[0]} frame; give a view inside it")
            frame = frame[y0:y1, x0:x1]
        gray = _to_gray(frame)
        if self._frame_shape is None:
            self._start(gray.shape)
        elif gray.shape != self._frame_shape:
            raise MotionEstimationError(
                f"frame size changed from {self._frame_shape[1]}x{self._frame_shape[0]} to "
                f"{gray.shape[1]}x{gray.shape[0]}: call reset() before a new video")
        current = self._prepare(gray)
        previous, self._previous = self._previous, current
        if previous is None:
            self.confidence, self.reliable = 1.0, True
            self._key, self._key_position, self._position = current, (0.0, 0.0), (0.0, 0.0)
            return 0.0, 0.0
        if self.method == "phase":
            (kx, ky), confidence = _phase_shift(self._key, current)
            position = (self._key_position[0] + kx, self._key_position[1] + ky)
            dx, dy = position[0] - self._position[0], position[1] - self._position[1]
        elif self.method == "flow":
            (dx, dy), confidence = self._flow_shift(previous, current)
        else:
            (dx, dy), confidence = self._template_shift(previous, current)
        self.confidence = float(confidence) if math.isfinite(confidence) else 0.0
        self.reliable = (self.confidence >= MIN_CONFIDENCE[self.method]
                         and math.isfinite(dx) and math.isfinite(dy))
        scale_x = self._frame_shape[1] / self._work_size[0]
        scale_y = self._frame_shape[0] / self._work_size[1]
        if not self.reliable:
            self.unreliable_count += 1
            LOGGER.debug("unreliable %s motion estimate (confidence %.3f): keeping %s",
                         self.method, self.confidence, self._last_reliable)
            if self.method == "phase":  # the keyframe link is broken: start again from this frame
                self._position = (self._position[0] + self._last_reliable[0] / scale_x,
                                  self._position[1] + self._last_reliable[1] / scale_y)
                self._key, self._key_position = current, self._position
            return self._last_reliable
        if self.method == "phase":
            self._position = position
            if abs(kx) > self._work_size[0] / 4 or abs(ky) > self._work_size[1] / 4:
                self._key, self._key_position = current, position
        self._last_reliable = (float(dx * scale_x), float(dy * scale_y))
        return self._last_reliable

    def factor_for(self, shape: tuple[int, int]) -> int:
        """The downscale factor used for frames of this (height, width)."""
        if self.downscale is not None:
            return self.downscale
        factor = math.ceil(max(shape) / _AUTO_WORK_SIDE[self.method] - 1e-9)
        return max(1, min(factor, min(shape) // 16))  # an elongated view keeps 16 px across

    def _start(self, shape: tuple[int, int]) -> None:
        """Fixes the frame and working sizes from the first frame."""
        factor = self.factor_for(shape)
        height, width = shape
        work = (max(1, width // factor), max(1, height // factor))
        if min(work) < 16:
            raise MotionEstimationError(
                f"frame {width}x{height} downscaled by {factor} is smaller than 16 px: use a smaller downscale")
        self._frame_shape = (height, width)
        self._work_size = work
        if self.method in ("phase", "flow"):
            self._window = cv2.createHanningWindow(work, cv2.CV_32F)

    def _prepare(self, gray: np.ndarray) -> np.ndarray:
        """Downscaled working image: windowed zero-mean float32 (phase), uint8 otherwise."""
        if self._work_size != (gray.shape[1], gray.shape[0]):
            gray = cv2.resize(gray, self._work_size, interpolation=cv2.INTER_AREA)
        if self.method == "phase":
            return _windowed(gray, self._window)
        if self.method == "template":
            return gray.astype(np.float32)
        return gray

    def _flow_shift(self, previous: np.ndarray, current: np.ndarray) -> tuple[tuple[float, float], float]:
        """Phase-correlation shift refined by the median Farneback flow of the residual motion."""
        # Farneback is a local method: measured here, alone it loses shifts beyond its pyramid's
        # reach (25 px/frame on 128 px frames gives ~0), locks onto the wrong period of periodic
        # textures (bricks, weaves) and returns ~0 on flat areas whatever initial flow it gets.
        # So the current frame is first shifted back by the global phase-correlation estimate,
        # Farneback measures the small residual there, and the answer is the shift plus the
        # median residual over the pixels that overlap in both frames.
        (coarse_x, coarse_y), confidence = _phase_shift(_windowed(previous, self._window),
                                                        _windowed(current, self._window))
        if confidence < MIN_CONFIDENCE["flow"]:
            return (coarse_x, coarse_y), confidence
        height, width = previous.shape
        back = np.float32([[1.0, 0.0, coarse_x], [0.0, 1.0, coarse_y]])
        aligned = cv2.warpAffine(current, back, (width, height),
                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        residual = cv2.calcOpticalFlowFarneback(
            previous, aligned, None, pyr_scale=0.5, levels=1, winsize=11, iterations=2,
            poly_n=5, poly_sigma=1.1, flags=0)
        margin_x = min(width // 3, int(math.ceil(abs(coarse_x))) + width // 16)
        margin_y = min(height // 3, int(math.ceil(abs(coarse_y))) + height // 16)
        overlap = residual[margin_y: height - margin_y, margin_x: width - margin_x]
        return (coarse_x + float(np.median(overlap[..., 0])),
                coarse_y + float(np.median(overlap[..., 1]))), confidence

    def _template_shift(self, previous: np.ndarray, current: np.ndarray) -> tuple[tuple[float, float], float]:
        """Where the previous frame's central patch lies in the current frame, sub-pixel."""
        height, width = previous.shape
        patch_h = max(8, int(round(height * self.template_fraction)))
        patch_w = max(8, int(round(width * self.template_fraction)))
        top, left = (height - patch_h) // 2, (width - patch_w) // 2
        patch = previous[top: top + patch_h, left: left + patch_w]
        if float(patch.std()) < _MIN_PATCH_STD:  # normalised correlation of a flat patch is meaningless
            return (0.0, 0.0), 0.0
        response = cv2.matchTemplate(current, patch, cv2.TM_CCOEFF_NORMED)
        _, peak, _, (peak_x, peak_y) = cv2.minMaxLoc(response)
        found_x = peak_x + _parabola_offset(response[peak_y, :], peak_x)
        found_y = peak_y + _parabola_offset(response[:, peak_x], peak_y)
        return (found_x - left, found_y - top), float(peak)


FRAME_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))  # what OpenCV's steps all take


def _check_view(view: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """A view (x0, y0, x1, y1) as ints, non-empty; else MotionEstimationError."""
    x0, y0, x1, y1 = (int(v) for v in view)
    if not (0 <= x0 < x1 and 0 <= y0 < y1):
        raise MotionEstimationError(f"motion view {tuple(view)}: give x0, y0, x1, y1 with 0 <= x0 < x1, 0 <= y0 < y1")
    return x0, y0, x1, y1


def _to_gray(frame: np.ndarray) -> np.ndarray:
    """Gray uint8/float view of a BGR (H,W,3), BGRA (H,W,4) or gray (H,W) frame."""
    if not isinstance(frame, np.ndarray) or frame.size == 0:
        raise MotionEstimationError("frame must be a non-empty numpy array (H,W) or (H,W,3) BGR")
    if frame.dtype not in FRAME_DTYPES:
        raise MotionEstimationError(f"frame dtype {frame.dtype} is not supported; pass uint8 (video frames), "
                                    "uint16 or float32")
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[..., 0]
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        code = cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        return cv2.cvtColor(frame, code)
    raise MotionEstimationError(f"frame of shape {frame.shape} is not (H,W) gray or (H,W,3) BGR")


def _windowed(gray: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Zero-mean float32 image times the Hanning window."""
    work = gray.astype(np.float32)
    work -= float(work.mean(dtype=np.float64))  # float64: exact, whatever the summation order
    return work * window


def _phase_shift(previous: np.ndarray, current: np.ndarray) -> tuple[tuple[float, float], float]:
    """Phase-correlation shift of `current` relative to `previous` (both pre-windowed) and its response (the
    correlation summed over the 5x5 pixels around the peak, as cv2.phaseCorrelate reports it; checked equal).

    The sub-pixel shift comes from the peak and its two neighbours on each axis: for a shift by a fraction f of
    a broadband image they are sinc(f), sinc(1 - f) and about 0, so f = right / (right + peak) (Foroosh,
    Zerubia and Berthod 2002); the left neighbour's share is taken off in the same way, so that a peak that
    windowing or a flat frame widened symmetrically stays centred."""
    # Written here rather than cv2.phaseCorrelate: its sub-pixel step (a 5x5 centroid) pulls fractions towards
    # the nearest integer (measured on gravel belts downscaled 5x: a 0.6 px shift read 0.78, 2.4 px read 2.22,
    # so a 1280x720 belt at 12 px/frame read 11.1), and it returns no correlation surface to refine on.
    spectrum = cv2.mulSpectrums(cv2.dft(current, flags=cv2.DFT_COMPLEX_OUTPUT),
                                cv2.dft(previous, flags=cv2.DFT_COMPLEX_OUTPUT), 0, conjB=True)
    spectrum /= cv2.magnitude(spectrum[..., 0], spectrum[..., 1])[..., None] + 1e-12
    surface = cv2.idft(spectrum, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
    height, width = surface.shape
    peak_y, peak_x = np.unravel_index(int(np.argmax(surface)), surface.shape)
    rows, cols = (np.arange(peak_y - 2, peak_y + 3) % height), (np.arange(peak_x - 2, peak_x + 3) % width)
    response = float(surface[np.ix_(rows, cols)].sum())
    shift = []
    for peak, size, row in ((peak_x, width, surface[peak_y, :]), (peak_y, height, surface[:, peak_x])):
        centre = float(row[peak])
        left, right = max(float(row[(peak - 1) % size]), 0.0), max(float(row[(peak + 1) % size]), 0.0)
        fraction = right / (right + centre) - left / (left + centre) if centre > 0.0 else 0.0
        shift.append((peak if peak <= size // 2 else peak - size) + fraction)
    return (shift[0], shift[1]), response


def _parabola_offset(profile: np.ndarray, peak: int) -> float:
    """Sub-pixel offset of a 1-D peak from the parabola through it and its neighbours."""
    if peak <= 0 or peak >= len(profile) - 1:
        return 0.0
    left, centre, right = float(profile[peak - 1]), float(profile[peak]), float(profile[peak + 1])
    curvature = left - 2.0 * centre + right
    if curvature >= 0.0:  # not a maximum (flat or numerically degenerate)
        return 0.0
    return 0.5 * (left - right) / curvature
