"""Thresholds for surface-averaged maps, from a defect-free recording of the line.

    python inference/calibrate_surface.py --model_path results/models/backbone_0 --class_name mvtec_steel \
        --video_path normal.mp4 [--surface_window 30] [--surface_min_frames 10] [--motion_method phase]

Tracking can average each frame's anomaly map with the maps of the last frames at the same points
of the moving surface (`--surface_window` of video_inference_with_tracking.py;
defect_tracking.surface.SurfaceAverage): a faint defect persists at its surface point while most
defect-free peaks do not, so the average finds defects that no single frame shows above the map
threshold. The average of defect-free maps is far lower and steadier than one frame's map, so the
thresholds calibrated on held-out images (for single frames) do not apply to it. This script runs
the model over a defect-free video exactly as tracking does (engine, motion estimate, average) and
takes, over the frames after the first `surface_min_frames` (before them no pixel has been averaged
enough to count), the peak of each averaged map and a regular sample of its pixels (at most 4M pixels in
all, thinned evenly over the frames on long recordings):

* threshold (a region must reach it) = max(max, mean + 4 std) of those peaks (calibration.py's rule
  "max(max,mean+4std)"). Four, not the three of the held-out images: an average over 30 frames changes
  slowly, so a recording of 600 frames gives only some 20 independent peaks, and its frames are
  partly the training frames (optimistic); with three, a new brick recording had one 3-frame false
  defect 0.0003 above the threshold; four found the same defects on the gravel and grass lines;
* low threshold (regions extend down to it) = the 99th percentile of the averaged pixels (rule
  "q99(pixels)"), capped at the threshold: a region grows through the pixels that are unusual for the
  defect-free surface. Regions still need a pixel at the threshold (hysteresis), though a seed whose
  region was too small to keep may now grow past the minimum area; the lower level joins the pieces of
  a thin defect whose middle dips between them (measured on bench_line's gravel line: the edge crack,
  reported as two defects 2.7 mm apart with the earlier rule, the mean of the peaks, which lay above
  99.9 % of the averaged pixels, became one; the faint scratch's area error went from -75 % to -33 %;
  see README). Each region is then measured at half its height (tracking's --region_height), which the
  low level rarely binds.

The frames are scored and averaged exactly as tracking does it, so that the thresholds carry to other
belt speeds: each frame's patch grid is shifted by a pseudo-random offset along the motion
(preprocess.grid_shift: the grid's phase on the surface no longer depends on the speed), and pixels
within a band at the view's two ends along the motion are not averaged (engine.EDGE_STRIDES: the
network's border). File version 3: earlier files were made without either and are refused.

* frame threshold (the image threshold of single frames, by which tracking flags frames: the frames
  CSV and the verdict drawn) = max(max, mean + 4 std) of the recording's frame scores (file version 4).
  The held-out images of training lie between training frames of the same recording, so on surface the
  model has never seen their threshold flagged 8.7 % of a defect-free recording's frames (bench_line
  --new_surface); a recording of other surface gives the level new surface scores at.

`--surface_window 1` calibrates tracking's single-frame path (no averaging) the same way: each frame's own
map, scored as tracking scores single frames (no grid shift), gives its peak and pixels, so the region
levels and the frame threshold come from the recording instead of the checkpoint's held-out images.

All go to CLASS_DIR/surface_calibration.json (written atomically) with the window, the video and
the peaks' statistics, one calibration per window (calibrating a window again replaces its own); tracking
reads them by default, with the most recently calibrated window unless --surface_window asks for another
(--threshold overrides; an explicit --surface_window 1 without a window-1 calibration takes the checkpoint's
levels).
Use a defect-free recording of surface that the dataset did not come from (another stretch of the
belt or product): video_to_dataset.py trains on every Nth frame of its recording, so that recording's
frames score as seen surface; on bench_line's gravel line with surface the model had never seen
(--new_surface), calibrating on the training recording left 27 false tracks on the defect video and 5
defects on a defect-free one, calibrating on another recording none. Bad input ends with one `error:`
line and exit code 2.

With a single defect-free recording, train on its first part and calibrate on the rest: `video_to_dataset.py
--end E`, then `--start S` here with S at least one frame's length of belt travel after E (frame length along
the motion / speed in px per frame), so that no calibration frame shows surface a training frame showed.

Both rules take a maximum, so they hold on about as much surface as the recording showed: the output (and the
file's `belt_views`) gives the belt seen in frame lengths (one view plus the measured travel along the motion),
and a warning below MIN_BELT_VIEWS (8; on the gravel line 9.4 frame lengths of other surface left no false
track on the defect video, 3.3 left three: docs/calibration.md).

`--light compensate` also records the recording's light level (the median of its frames' median grey levels in
the ROI, preprocess.light_level) and scores every frame scaled to it, here and in tracking (which reads the
level from this file; tracking's `--light off` ignores it). Off by default: on the new-surface gravel line the
model held under +-15 % drift, +-5 % flicker and both together without it, and compensation neither helped
nor hurt (README, "Light and vibration").
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import sys
from dataclasses import MISSING, asdict, dataclass, replace
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

import click
import numpy as np
from tqdm import tqdm

import model as glass_model
import preprocess
import utils
import video_io
from defect_tracking import METHODS, SurfaceMotionEstimator
from defect_tracking.glass_integration import check_surface_window
from defect_tracking.surface import SurfaceAverage, in_view
from defect_tracking.surface_bytetrack import TrackingError
from errors import UserError
from inference import calibration
from inference import cli as shared
from inference.engine import InferenceEngine, frame_shifts, surface_edges

LOGGER = logging.getLogger(__name__)

FILE_NAME = "surface_calibration.json"
VERSION = 4  # 4: + frame_threshold; 3: frames scored with grid shifts (preprocess.grid_shift); 2: low = LOW_RULE
RULE = "max(max,mean+4std)"
FRAME_RULE = "max(max,mean+4std)"  # of the frames' own image scores
LOW_RULE = "q99(pixels)"
LOW_QUANTILE = 0.99
PIXELS_PER_MAP = 4096  # about this many pixels of each averaged map go into the low threshold's sample
MAX_SAMPLE_PIXELS = 1 << 22  # at most this many in all (16 MB; about 1000 maps' worth before thinning)
# Measured on bench_line's gravel line with new surface (the same model, window 30): a recording of other surface
# calibrated on 9.4 frame lengths left no false track on the defect video, on 3.3 of it three.
MIN_BELT_VIEWS = 8
LIGHT_CHOICES = ("compensate", "off")
DEFAULT_WINDOW = 30  # bench_line's gravel line: 15, 30 and 60 found the same defects; 30 flagged no new frame


class SurfaceCalibrationError(UserError):
    """A missing, mismatched or unreadable surface calibration; the message names the file and the fix."""


@dataclass(frozen=True)
class SurfaceCalibration:
    """The thresholds of surface-averaged maps for one trained class and one averaging window."""

    window: int
    min_frames: int
    threshold: float
    low_threshold: float
    frames: int  # averaged maps whose peaks were used
    peak_mean: float
    peak_std: float
    peak_max: float
    video: str
    motion_method: str
    frame_threshold: float  # image threshold of single frames (the frame flags), from the same recording
    start: int = 0  # the video's first frame used (files written before it existed: 0)
    belt_views: float | None = None  # frame lengths of surface the frames showed (belt_views; older files: None)
    # The recording's light level (preprocess.light_level, median over its frames) that its frames were
    # compensated to, and tracking compensates frames to; None: calibrated without light compensation.
    light_level: float | None = None
    rule: str = RULE
    low_rule: str = LOW_RULE
    frame_rule: str = FRAME_RULE
    version: int = VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path) -> SurfaceCalibration:
        """One calibration as `write` stores it; anything unreadable names the file and the fix."""
        fix = rewrite_fix(path)
        try:
            if data.get("version") != VERSION:
                raise SurfaceCalibrationError(f"{path}: version {data.get('version')!r}, this code reads "
                                              f"{VERSION}; {fix}")
            values = {name: data[name] for name, spec in cls.__dataclass_fields__.items()
                      if name in data or spec.default is MISSING}
            calibration_ = cls(**values)
            check_surface_window(calibration_.window, calibration_.min_frames)
            if not all(math.isfinite(float(v)) for v in (calibration_.threshold, calibration_.low_threshold,
                                                         calibration_.frame_threshold)):
                raise ValueError("thresholds not finite")
            return calibration_
        except SurfaceCalibrationError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, TrackingError) as err:
            raise SurfaceCalibrationError(f"{path}: unreadable surface calibration ({err}); {fix}") from None


def thresholds(peaks: np.ndarray, pixels: np.ndarray) -> tuple[float, float]:
    """(threshold, low threshold) from the peaks and a sample of the pixels of defect-free averaged maps."""
    peaks = np.asarray(peaks, np.float64)
    high = calibration.image_threshold(peaks, rule=RULE)
    return high, float(min(np.quantile(np.asarray(pixels, np.float64), LOW_QUANTILE), high))


def pixel_sample(averaged: np.ndarray, size: int = PIXELS_PER_MAP) -> np.ndarray:
    """About `size` pixels of a map on a regular grid (the sample the low threshold is taken from)."""
    step = max(1, math.ceil(math.sqrt(averaged.size / size)))
    return averaged[step // 2::step, step // 2::step].ravel()


class PixelSample:
    """The maps' pixel samples, thinned evenly (every other one dropped, from then on in new maps too) to stay
    at most `limit` long: a long recording keeps a sample of bounded size, equally dense over all its frames."""

    def __init__(self, limit: int = MAX_SAMPLE_PIXELS) -> None:
        self.limit = limit
        self.stride = 1  # every stride-th pixel of a map's sample is kept
        self.parts: list[np.ndarray] = []
        self.size = 0

    def add(self, pixels: np.ndarray) -> None:
        """Keeps this map's sample at the current density; halves the density of all of it past the limit."""
        kept = np.array(pixels[::self.stride], np.float32)
        self.parts.append(kept)
        self.size += kept.size
        if self.size > self.limit:
            self.parts = [self.values()[::2].copy()]
            self.size = self.parts[0].size
            self.stride *= 2

    def values(self) -> np.ndarray:
        """Every pixel kept, in the order the maps came."""
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)


@dataclass(frozen=True)
class RecordingLevels:
    """What a defect-free recording gives: the maps tracking cuts, the scores it flags frames by, the belt seen."""

    peaks: np.ndarray  # the peak of every averaged map from the min_frames-th frame on
    pixels: np.ndarray  # a regular sample of their pixels
    scores: np.ndarray  # every frame's own image score
    views: float  # frame lengths of surface the frames showed (belt_views)


def belt_views(travelled: tuple[float, float], frame_shape: tuple[int, int]) -> float:
    """Frame lengths of surface a recording showed: one view plus its travel along the motion's main axis
    (x: frame widths, y: frame heights)."""
    height, width = frame_shape
    dx, dy = abs(travelled[0]), abs(travelled[1])
    along, length = (dx, width) if dx >= dy else (dy, height)
    return 1.0 + along / max(length, 1)


def averaged_levels(engine: InferenceEngine, video_path: str | Path, window: int, min_frames: int,
                    motion_method: str, max_frames: int | None = None, start: int = 0) -> RecordingLevels:
    """The levels of a defect-free video from frame `start` on, scored, averaged and cut as tracking does."""
    info = video_io.probe_video(video_path)
    edges = surface_edges(engine, (info.height, info.width))  # as tracking averages
    estimator = SurfaceMotionEstimator(motion_method, view=edges["surface_view"])  # motion on the belt, as tracking
    # Window 1: each frame's own map, scored without grid shifts, as tracking cuts single frames.
    average = SurfaceAverage(window, min_frames, edges["surface_view"], edges["surface_margin"]) if window > 1 else None
    limit = max_frames if max_frames is not None else math.inf  # the decoder may give more than stated
    if start >= info.frame_count:
        raise SurfaceCalibrationError(f"--start {start}: {video_path} has {info.frame_count} frames; start earlier")
    peaks: list[float] = []
    pixels = PixelSample()
    scores: list[float] = []
    index = 0
    travelled = (0.0, 0.0)
    with tqdm(total=min(info.frame_count - start, limit), desc=Path(video_path).name, unit="frame", leave=False,
              disable=None) as progress:  # None: shown on a terminal only
        for batch in video_io.iter_frames(video_path, engine.batch_size, check=False, start=start):
            batch = batch[:int(min(len(batch), limit - index))]
            # Scored as tracking scores them: the grid shifted along the motion measured so far when averaging.
            shifts = frame_shifts(engine, index, len(batch), travelled) if average is not None else None
            for frame, result in zip(batch, engine.predict(batch, shifts)):
                motion = estimator.estimate(frame)  # the belt seen, in both paths; the average follows it
                travelled = (travelled[0] + motion[0], travelled[1] + motion[1])
                if average is not None:
                    averaged = average.update(result.anomaly_map, motion)
                else:
                    averaged = np.asarray(result.anomaly_map, np.float32)
                scores.append(result.score)
                if index >= min_frames - 1:
                    peaks.append(float(averaged.max()))
                    pixels.add(pixel_sample(in_view(averaged, edges["surface_view"])))  # the belt's pixels only
                index += 1
            progress.update(len(batch))
            if index >= limit:
                break
    return RecordingLevels(np.array(peaks, np.float64), pixels.values(), np.array(scores, np.float64),
                           belt_views(travelled, (info.height, info.width)))


def calibrate(engine: InferenceEngine, video_path: str | Path, window: int, min_frames: int,
              motion_method: str = "phase", max_frames: int | None = None, start: int = 0) -> SurfaceCalibration:
    """The surface calibration of a defect-free video (from frame `start` on)."""
    levels = averaged_levels(engine, video_path, window, min_frames, motion_method, max_frames, start)
    peaks = levels.peaks
    if len(peaks) < 2:
        raise SurfaceCalibrationError(
            f"{video_path}: {len(peaks)} averaged frames after the first {min_frames}; use a longer defect-free "
            "video (a few hundred frames) or a smaller --surface_min_frames")
    high, low = thresholds(peaks, levels.pixels)
    return SurfaceCalibration(window, min_frames, high, low, len(peaks), float(peaks.mean()), float(peaks.std()),
                              float(peaks.max()), str(video_path), motion_method,
                              calibration.image_threshold(levels.scores, rule=FRAME_RULE), start,
                              round(levels.views, 2), engine.light_level)


def recording_light_level(video_path: str | Path, roi: preprocess.Roi | None, start: int = 0,
                          max_frames: int | None = None) -> float:
    """The light level of a recording: the median of its frames' light levels (from frame `start`, at most
    `max_frames` of them)."""
    levels: list[float] = []
    for batch in video_io.iter_frames(video_path, 64, check=False, start=start):
        levels += [preprocess.light_level(frame, roi) for frame in batch]
        if max_frames is not None and len(levels) >= max_frames:
            break
    if not levels:
        raise SurfaceCalibrationError(f"{video_path}: no frame decoded from frame {start} on; use another recording")
    return float(np.median(levels[:max_frames]))


def coverage_warning(result: SurfaceCalibration) -> str | None:
    """A one-line warning when the recording showed too little belt for thresholds that hold, else None."""
    if result.belt_views is None or result.belt_views >= MIN_BELT_VIEWS:
        return None
    return (f"{result.video} showed {result.belt_views:.1f} frame lengths of surface from frame {result.start} "
            f"({result.frames} frames): thresholds from so little belt sit low and new surface crosses them; "
            f"calibrate on a recording of at least {MIN_BELT_VIEWS} frame lengths (a longer one, or more of it)")


def path_of(class_dir: Path) -> Path:
    """Where a class keeps its surface calibration."""
    return Path(class_dir) / FILE_NAME


def rewrite_fix(path: Path) -> str:
    """What to do about an unusable calibration file."""
    return f"re-run python inference/calibrate_surface.py for this class (it rewrites {path.name})"


def stored_entries(path: Path) -> list[dict[str, Any]]:
    """The calibrations a class's file holds as written, oldest first (a file of one calibration, as written
    before windows shared the file, is a list of one)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SurfaceCalibrationError(f"{path}: unreadable surface calibration ({err}); {rewrite_fix(path)}"
                                      ) from None
    entries = data.get("calibrations", [data]) if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise SurfaceCalibrationError(f"{path}: unreadable surface calibration (not a calibration object); "
                                      f"{rewrite_fix(path)}")
    return entries


def load_all(class_dir: Path) -> list[SurfaceCalibration]:
    """Every calibration of the class (one per window), the most recently written last; [] without a file."""
    path = path_of(class_dir)
    if not path.is_file():
        return []
    return [SurfaceCalibration.from_dict(entry, path) for entry in stored_entries(path)]


def load(class_dir: Path) -> SurfaceCalibration | None:
    """The class's most recently written calibration, or None when it has none."""
    found = load_all(class_dir)
    return found[-1] if found else None


def write(class_dir: Path, result: SurfaceCalibration) -> Path:
    """Adds the calibration to the class's file beside the checkpoint, replacing the one of the same window
    (temp file, then rename); a file it cannot read is replaced whole, with a warning."""
    path = path_of(class_dir)
    kept: list[dict[str, Any]] = []
    if path.is_file():
        try:
            kept = [entry for entry in stored_entries(path)
                    if SurfaceCalibration.from_dict(entry, path).window != result.window]
        except SurfaceCalibrationError as err:
            LOGGER.warning("%s; writing this calibration in its place", err)
    entry = {**result.to_dict(), "created": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    content = {"calibrations": [*kept, entry]}
    utils.atomic_write_text(path, json.dumps(content, indent=2, allow_nan=False) + "\n")
    return path


@dataclass(frozen=True)
class TrackingLevels:
    """What tracking cuts maps with: the averaging window and the two region levels, and their source."""

    window: int
    min_frames: int
    threshold: float
    low_threshold: float
    source: str  # "model" (held-out images), "command line", or the surface calibration's path
    frame_threshold: float | None = None  # the frame flags' image threshold (None: the engine's)


def levels_given(options: Mapping[str, Any]) -> bool:
    """Whether the command line sets the region levels (--pixel_threshold or --threshold)."""
    return options.get("pixel_threshold") is not None or options.get("threshold") is not None


def surface_plan(class_dir: Path, options: Mapping[str, Any]) -> tuple[int, int, SurfaceCalibration | None]:
    """(window, min frames, the calibration whose levels the run cuts with, or None when they come from the
    model or the command line), from the flags and the class's file; checked without loading the model, so a
    run fails before any work."""
    window, min_frames = options.get("surface_window"), options.get("surface_min_frames")
    calibrated = load_all(class_dir)
    if window is None:  # the most recently calibrated window, else single frames
        window = calibrated[-1].window if calibrated else 1
        if calibrated and min_frames is None:
            min_frames = calibrated[-1].min_frames
    stored = next((entry for entry in reversed(calibrated) if entry.window == window), None)
    try:
        window, min_frames = check_surface_window(window, min_frames)
    except TrackingError as err:
        raise SurfaceCalibrationError(f"--surface_window/--surface_min_frames: {err}") from None
    if levels_given(options):
        return window, min_frames, None
    if window == 1:  # single frames: the recording's levels when it was calibrated for them, else the model's
        return window, min_frames, stored
    fix = (f"run python inference/calibrate_surface.py --model_path {class_dir} --video_path <defect-free video> "
           f"--surface_window {window} --surface_min_frames {min_frames}, or pass --pixel_threshold")
    if not calibrated:
        raise SurfaceCalibrationError(f"--surface_window {window}: {class_dir} has no {FILE_NAME}; {fix}")
    if stored is None or stored.min_frames != min_frames:
        held = ", ".join(f"window {entry.window}, min frames {entry.min_frames}" for entry in calibrated)
        raise SurfaceCalibrationError(f"--surface_window {window} --surface_min_frames {min_frames}: "
                                      f"{path_of(class_dir)} was calibrated for {held}; {fix}")
    return window, min_frames, stored


def tracking_levels(engine: InferenceEngine, class_dir: Path, options: Mapping[str, Any]) -> TrackingLevels:
    """The window and region levels a tracking run uses, from its flags (--surface_window,
    --surface_min_frames, --pixel_threshold, --threshold), the class's surface calibration and the model."""
    window, min_frames, stored = surface_plan(class_dir, options)
    if stored is None:
        high, low = shared.region_thresholds(engine, options.get("pixel_threshold"), options.get("threshold"))
        return TrackingLevels(window, min_frames, high, low, "command line" if levels_given(options) else "model")
    return TrackingLevels(window, min_frames, stored.threshold, stored.low_threshold, str(path_of(class_dir)),
                          stored.frame_threshold)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@shared.model_options
@click.option("--video_path", required=True, help="A defect-free recording of the line (any format OpenCV decodes).")
@click.option("--surface_window", type=click.IntRange(min=1), default=DEFAULT_WINDOW, show_default=True,
              help="Frames averaged per surface point (tracking's --surface_window; 1: each frame alone).")
@click.option("--surface_min_frames", type=click.IntRange(min=1), default=None,
              help="Pixels seen in fewer frames start no region [default: surface_window // 3].")
@click.option("--motion_method", type=click.Choice(METHODS), default="phase", show_default=True,
              help="Surface motion estimate (as tracking's --motion_method).")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True,
              help="First frame used: calibrate on the part of the training recording after the frames the dataset "
                   "took (video_to_dataset.py --end), one frame's length of belt travel later.")
@click.option("--max_frames", type=click.IntRange(min=1), default=None, help="Use at most this many frames.")
@click.option("--light", type=click.Choice(LIGHT_CHOICES), default="off", show_default=True,
              help="compensate: record the recording's light level and score every frame (here and in tracking) "
                   "scaled to it, for lines whose light drifts or flickers more than the +-20 % measured without "
                   "it (README, 'Light and vibration'); off: frames as they come.")
def main(video_path: str, surface_window: int, surface_min_frames: int | None, motion_method: str,
         start: int, max_frames: int | None, light: str, **options: Any) -> None:
    """Calibrate the thresholds of surface-averaged maps on a defect-free video."""
    try:
        window, min_frames = check_surface_window(surface_window, surface_min_frames)
    except TrackingError as err:
        raise SurfaceCalibrationError(f"--surface_min_frames: {err}") from None
    engine_cfg = shared.engine_config(options)
    class_dir = glass_model.resolve_class_dir(engine_cfg.model_path, engine_cfg.class_name)
    info = video_io.probe_video(video_path)
    shared.check_roi(engine_cfg, info)
    if start >= info.frame_count:  # before the model loads
        raise SurfaceCalibrationError(f"--start {start}: {video_path} has {info.frame_count} frames; start earlier")
    if light == "compensate":
        level = recording_light_level(video_path, engine_cfg.roi, start, max_frames)
        engine_cfg = replace(engine_cfg, light_level=max(level, 1.0))
    engine = InferenceEngine.from_config(engine_cfg)
    result = calibrate(engine, video_path, window, min_frames, motion_method, max_frames, start)
    path = write(class_dir, result)
    click.echo(f"averaged maps  {result.frames} frames of {video_path} from frame {start} (window {window}, "
               f"min frames {min_frames})")
    click.echo(f"peaks          mean {result.peak_mean:.4f}  std {result.peak_std:.4f}  max {result.peak_max:.4f}")
    click.echo(f"thresholds     region {result.threshold:.4f} ({RULE})  low {result.low_threshold:.4f} ({LOW_RULE})"
               f"  frame {result.frame_threshold:.4f} ({FRAME_RULE} of the frame scores)")
    click.echo(f"belt           {result.belt_views:.1f} frame lengths of surface seen")
    click.echo("light          " + (f"level {result.light_level:.1f} (frames compensated to it)"
                                     if result.light_level is not None else "not compensated (--light off)"))
    click.echo(f"written        {path}")
    warning = coverage_warning(result)
    if warning is not None:
        click.echo(f"warning        {warning}")


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    return shared.run_cli(main, argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(cli())
