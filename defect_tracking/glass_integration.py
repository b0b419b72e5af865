"""GLASS anomaly maps -> defect regions (size analyzer) -> tracks on the moving surface -> defects.

`GLASSDefectTracker.update(frame_index, frame, anomaly_map)` per frame: estimates the surface
motion from the frame, segments the map into measured defect regions with
`size_analyzer.DefectSizeAnalyzer`, joins regions closer than the merge gap, or cut at their
half height from one connected region, into one detection (`surface.group_regions`: the pieces of a
branching crack), uses each detection's maximum map
score as its confidence, updates `SurfaceByteTracker`, and keeps per track its life span, scores,
largest area, representative frame and its footprint on the surface (`surface.Footprint`).
`defects()` merges tracks whose footprints lie within the gap into one physical defect each (also
across a stretch in which the belt carried the defect out of view and back), measured on the
surface; `report()` is the JSON-ready result; `draw_tracks` annotates a frame.
"""
from __future__ import annotations

import colorsys
import logging
import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import numpy as np

import drawing
from defect_tracking import surface
from defect_tracking.motion_estimation import SurfaceMotionEstimator
from defect_tracking.surface_bytetrack import SurfaceByteTracker, TrackerConfig, TrackingError
from defect_tracking.thin_regions import refine_thin_regions
from defect_tracking.wide_regions import CORE_HEIGHT, refine_wide_regions

LOGGER = logging.getLogger(__name__)
REGION_HEIGHT = 0.5  # regions measured at half their height above the frame's background (surface.cut_at_height)
# The tracking CLI's --min_presence: a defect must be detected in at least a quarter of the frames that showed its
# place (one that catches the light in only part of the view still counts). Measured (README, "Flicker left out"):
# defects on the belt 0.955-1.0 on five lines (GLASS on four, PatchCore on one), GLASS's flicker 0.10-0.19.
MIN_PRESENCE = 0.25


class _SizeAnalyzer(Protocol):
    """What the tracker needs of `size_analyzer.DefectSizeAnalyzer`."""

    pixel_size: float
    physical_unit: str
    area_to_mm2: float

    def analyze_defects(self, anomaly_map: np.ndarray, threshold: float = 0.5,
                        use_morphology: bool = True, *, keep_label_map: bool = False) -> Any:
        """SizeAnalysis of one map (its defects, and the label map when asked)."""

    def classify_severity(self, area_physical: float) -> str:
        """Severity of one area in unit^2."""


@dataclass(frozen=True)
class FrameTrack:
    """A confirmed track's detection in one frame."""

    track_id: int
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels, x2/y2 exclusive
    score: float  # maximum anomaly-map score inside the region
    area_pixels: int
    area_physical: float  # unit^2


@dataclass(frozen=True)
class FrameTracks:
    """What tracking found in one frame."""

    frame_index: int
    tracks: list[FrameTrack]  # confirmed tracks detected in this frame, by track id
    motion: tuple[float, float]  # surface displacement (dx, dy) from the previous frame, px
    new_representative: set[int]  # tracks whose representative frame is now this one
    num_regions: int  # defect regions found in the map (tracked or not yet confirmed)
    metrics: Any = field(default=None, repr=False, compare=False)  # the frame's size_analyzer.SizeAnalysis
    # The map the regions were cut from: the frame's own, or its surface average when averaging.
    anomaly_map: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class TrackedDefectSummary:
    """Life cycle and measurements of one tracked defect."""

    track_id: int
    first_frame: int
    last_frame: int
    duration_frames: int
    duration_seconds: float
    hits: int  # frames in which the defect was detected (confirmation frames included)
    max_score: float
    mean_score: float
    max_area_pixels: int
    max_area_physical: float
    physical_unit: str
    bbox: tuple[int, int, int, int]  # at the largest area, x1 y1 x2 y2 (exclusive), frame px
    representative_frame: int  # box clear of the frame edges first, then largest area, then highest score

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data = asdict(self)
        data["bbox"] = list(self.bbox)
        return data


@dataclass(frozen=True)
class PhysicalDefect:
    """One defect on the surface (its tracks merged), measured on the surface.

    Surface coordinates are frame 0's pixels (a point's frame position minus the surface motion
    accumulated since frame 0). `along` is the centroid's distance along the motion (surface that
    enters the view later is further along), `across` the other axis, both from frame 0's origin;
    length/width are the footprint's extents along/across the motion; all in `physical_unit`.
    """

    defect_id: int
    track_ids: list[int]
    first_frame: int
    last_frame: int
    hits: int
    max_score: float
    representative_frame: int
    representative_track: int
    surface_box_px: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    surface_centroid_px: tuple[float, float]
    area_px: int
    area_physical: float
    area_mm2: float
    length: float
    width: float
    along: float
    across: float
    physical_unit: str
    severity: str
    presence: float = 1.0  # share of the frames showing its place, first detection to given up, that detected it

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data = asdict(self)
        data["surface_box_px"] = list(self.surface_box_px)
        data["surface_centroid_px"] = [round(v, 2) for v in self.surface_centroid_px]
        data["presence"] = round(self.presence, 3)
        return data


@dataclass(frozen=True)
class _Detections:
    """A frame's detections after joining nearby regions: per detection its box, score, areas, labels."""

    boxes: np.ndarray  # (N, 4) x1 y1 x2 y2, exclusive
    scores: np.ndarray
    areas_pixels: list[int]
    areas_physical: list[float]
    labels: list[list[int]]  # the label-map values of the regions joined in each detection


def _grouped_detections(metrics: Any, gap_px: float, connected: np.ndarray | None = None) -> _Detections:
    """The frame's regions with those closer than gap_px, or inside one area of `connected`, joined
    (union box, max score, summed areas)."""
    groups = surface.group_regions(metrics.label_map, len(metrics.defects), gap_px, connected)
    count = int(groups.max()) + 1 if groups.size else 0
    boxes = np.zeros((count, 4), np.float64)
    scores = np.full(count, -np.inf)
    areas_px, areas_phys = [0] * count, [0.0] * count
    labels: list[list[int]] = [[] for _ in range(count)]
    for index, (group, defect) in enumerate(zip(groups.tolist(), metrics.defects)):
        box = np.asarray(defect.box, np.float64)
        if labels[group]:
            boxes[group, :2] = np.minimum(boxes[group, :2], box[:2])
            boxes[group, 2:] = np.maximum(boxes[group, 2:], box[2:])
        else:
            boxes[group] = box
        scores[group] = max(scores[group], float(defect.max_score))
        areas_px[group] += int(defect.area_px)
        areas_phys[group] += float(defect.area_physical)
        labels[group].append(index + 1)
    return _Detections(boxes, scores, areas_px, areas_phys, labels)


@dataclass
class _TrackState:
    """Running statistics of one track."""

    first_frame: int
    last_frame: int
    hits: int = 0
    measured: int = 0  # detections with a region measured (from the confirmation frame on)
    score_sum: float = 0.0
    max_score: float = -math.inf
    max_area_pixels: int = -1
    max_area_physical: float = 0.0
    bbox: tuple[int, int, int, int] = (0, 0, 0, 0)
    representative_frame: int = -1
    representative_key: tuple[bool, int, float] = (False, -1, -math.inf)
    footprint: surface.Footprint = field(default_factory=surface.Footprint)

    def add(self, frame_index: int, detection: FrameTrack, inside: bool) -> bool:
        """Adds one detection (inside: its box is clear of the frame edges); True when this frame becomes
        the representative one."""
        self.last_frame = frame_index
        self.hits += 1
        self.measured += 1
        self.score_sum += detection.score
        if detection.area_pixels > self.max_area_pixels:
            self.max_area_pixels = detection.area_pixels
            self.max_area_physical = detection.area_physical
            self.bbox = detection.box
        self.max_score = max(self.max_score, detection.score)
        # The frame that shows the defect whole (box clear of the frame edges) and largest; ties -> higher score.
        key = (inside, detection.area_pixels, detection.score)
        better = key > self.representative_key
        if better:
            self.representative_frame = frame_index
            self.representative_key = key
        return better


class GLASSDefectTracker:
    """Tracks GLASS defect regions across the frames of one video."""

    def __init__(self, analyzer: _SizeAnalyzer, tracker_config: TrackerConfig | None = None, *,
                 threshold: float, motion_method: str | None = "phase", use_morphology: bool = True,
                 fps: float = 25.0, motion_downscale: int | None = None, min_hits: int = 1,
                 merge_gap_mm: float = 0.0, low_threshold: float | None = None,
                 region_height: float = REGION_HEIGHT, region_scale: str = "linear", min_presence: float = 0.0,
                 surface_window: int = 1,
                 surface_min_frames: int | None = None, surface_view: tuple[int, int, int, int] | None = None,
                 surface_margin: int = 0, thin_cell_px: float | None = None,
                 wide_cell_px: float | None = None) -> None:
        """tracker_config None: TrackerConfig.for_map_threshold(threshold); its frame_rate becomes fps.

        min_hits: defects detected in fewer frames are left out of summaries and reports (flicker
        of the map near the threshold, not a defect that crossed the view).
        merge_gap_mm: regions of one frame, and tracks on the surface, closer than this are one defect.
        low_threshold: regions extend down to this map level around pixels at or above `threshold`
        (surface.hysteresis_map); None: regions are cut at `threshold` alone.
        region_height: each region is then measured where the map is at least this fraction of the way
        from the frame's background to the region's peak (surface.cut_at_height; 0.5: full width at half
        maximum, 0: the whole region); region_scale: on the map itself ("linear") or on the model's evidence
        before it squashed its scores ("logit": GLASS's sigmoid; "distance"; surface.REGION_SCALES).
        min_presence: defects detected in less than this share of the frames that showed their place on the
        surface, from their first detection until the tracker gave them up, are left out of reports (map
        flicker, not a defect the surface carried through the view; 0: none left out; the CLI uses MIN_PRESENCE).
        surface_window: above 1, each frame's map is first averaged with the maps of the last
        surface_window - 1 frames at the same surface points (surface.SurfaceAverage), and the thresholds
        apply to that average (calibrate them on a defect-free recording: inference/calibrate_surface.py);
        surface_min_frames (default surface_window // 3): pixels seen in fewer frames start no region;
        surface_view, surface_margin: the scored part of the frame (where the surface motion is measured, too)
        and the band at its ends along the motion whose pixels are not averaged (surface.SurfaceAverage;
        InferenceEngine.edge_band gives both).
        thin_cell_px: the map's patch cell in frame pixels; regions no wider than two cells are then measured
        on the frame itself (thin_regions.refine_thin_regions: the map does not resolve their width); None:
        every region as the map cuts it.
        wide_cell_px: likewise; the regions wider than that are then measured where the frame shows their edge
        (wide_regions.refine_wide_regions); None: as the map cuts them.
        These defaults know no model: inference.tracking_run.model_settings(engine, frame_shape) gives the
        region_scale, thin_cell_px, wide_cell_px, surface_view and surface_margin the tracking command uses.
        """
        if isinstance(min_hits, bool) or not isinstance(min_hits, int) or min_hits < 1:
            raise TrackingError(f"min_hits must be an integer >= 1, got {min_hits!r}")
        if isinstance(merge_gap_mm, bool) or not isinstance(merge_gap_mm, (int, float)) \
                or not math.isfinite(merge_gap_mm) or merge_gap_mm < 0:
            raise TrackingError(f"merge_gap_mm must be a number >= 0, got {merge_gap_mm!r}")
        if isinstance(region_height, bool) or not isinstance(region_height, (int, float)) \
                or not 0.0 <= region_height < 1.0:
            raise TrackingError(f"region_height must be a number in [0, 1), got {region_height!r}")
        self.region_height = float(region_height)
        if region_scale not in surface.REGION_SCALES:
            raise TrackingError(f"region_scale must be one of {', '.join(surface.REGION_SCALES)}, got {region_scale!r}")
        self.region_scale = region_scale
        self.surface_view = None if surface_view is None else tuple(int(v) for v in surface_view)
        self.surface_window, self.surface_min_frames = check_surface_window(surface_window, surface_min_frames)
        self.average = (surface.SurfaceAverage(self.surface_window, self.surface_min_frames, surface_view,
                                               int(surface_margin))
                        if self.surface_window > 1 else None)
        self.thin_cell_px = _cell_px("thin_cell_px", thin_cell_px)
        self.wide_cell_px = _cell_px("wide_cell_px", wide_cell_px)
        self.min_hits = min_hits
        if isinstance(min_presence, bool) or not isinstance(min_presence, (int, float)) \
                or not 0.0 <= min_presence <= 1.0:
            raise TrackingError(f"min_presence must be a number in [0, 1], got {min_presence!r}")
        self.min_presence = float(min_presence)
        self.merge_gap_mm = float(merge_gap_mm)
        mm_per_pixel = analyzer.pixel_size * math.sqrt(analyzer.area_to_mm2)
        self.merge_gap_px = self.merge_gap_mm / mm_per_pixel
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise TrackingError(f"threshold must be a finite number, got {threshold!r}")
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
            raise TrackingError(f"fps must be a positive number, got {fps!r}")
        self.analyzer = analyzer
        self.threshold = float(threshold)
        if low_threshold is not None and (isinstance(low_threshold, bool) or not isinstance(low_threshold, (int, float))
                                          or not math.isfinite(low_threshold)):
            raise TrackingError(f"low_threshold must be a finite number or None, got {low_threshold!r}")
        self.low_threshold = self.threshold if low_threshold is None else min(float(low_threshold), self.threshold)
        # Every region the analysis keeps may start a track: its peak is at least the level it was cut at.
        config = tracker_config if tracker_config is not None else TrackerConfig.for_map_threshold(
            min(max(self.low_threshold, 0.0), 1.0))
        # One source of truth for the video rate: the tracker's lost-track buffer scales with it.
        self.config = replace(config, frame_rate=float(fps))
        self.use_morphology = bool(use_morphology)
        self.fps = float(fps)
        self.motion_method = motion_method
        self.estimator = (SurfaceMotionEstimator(motion_method, motion_downscale, view=surface_view)
                          if motion_method is not None else None)
        self.tracker = SurfaceByteTracker(self.config)
        self.stage_seconds = {"motion": 0.0, "average": 0.0, "analysis": 0.0, "tracking": 0.0}
        self._states: dict[int, _TrackState] = {}
        # (frames seen, defects then, defects left out as flicker then)
        self._defects: tuple[int, list[PhysicalDefect], list[PhysicalDefect]] | None = None
        self._last_index: int | None = None
        self._views = surface.ViewHistory()  # every frame's view of the surface, for merging across a belt's stop
        # The library gives a track its id on its k-th consecutive detection (k = max(minimum_consecutive_frames,
        # 2), checked in tests): the defect was already detected in the k - 1 updates before, kept here.
        self._recent: deque[int] = deque(maxlen=max(int(self.config.minimum_consecutive_frames), 2) - 1)

    @property
    def num_tracks(self) -> int:
        """Confirmed tracks so far with at least min_hits detections."""
        return sum(state.hits >= self.min_hits for state in self._states.values())

    @property
    def num_defects(self) -> int:
        """Physical defects so far (tracks merged on the surface) with at least min_hits detections and
        min_presence."""
        return len(self.defects())

    @property
    def num_flicker(self) -> int:
        """Merged tracks left out of defects() as flicker (see flicker())."""
        return len(self.flicker())

    def flicker(self) -> list[PhysicalDefect]:
        """Merged tracks left out of defects() because they were detected in less than min_presence of the
        frames that showed their place, measured as defects are (numbered 1.. among themselves)."""
        self.defects()
        return list(self._defects[2])

    @property
    def frames_seen(self) -> int:
        """Frames passed to update() since the start (or the last reset)."""
        return self.tracker.frame_count

    def reset(self) -> None:
        """Forgets tracks, motion and statistics (call between videos)."""
        if self.estimator is not None:
            self.estimator.reset()
        self.tracker.reset()
        if self.average is not None:
            self.average.reset()
        self.stage_seconds = dict.fromkeys(self.stage_seconds, 0.0)
        self._states.clear()
        self._last_index = None
        self._views.clear()
        self._recent.clear()
        self._defects = None

    def update(self, frame_index: int, frame: np.ndarray, anomaly_map: np.ndarray) -> FrameTracks:
        """Tracks the defect regions of one frame's anomaly map (H,W at frame resolution)."""
        self._check_frame(frame_index, frame, anomaly_map)
        full_map = np.asarray(anomaly_map, np.float32)
        motion = None
        if self.average is not None:
            # The average follows the surface, so the motion comes first (checked: the map is finite).
            if not np.isfinite(full_map).all():
                raise TrackingError(f"frame {frame_index}: the anomaly map has NaN or infinite values")
            motion = self._motion(frame)
            averaging = time.perf_counter()
            full_map = self.average.update(full_map, motion)
            self.stage_seconds["average"] += time.perf_counter() - averaging
        # Otherwise the map is analysed first: a map the analyzer rejects leaves the motion state untouched.
        started = time.perf_counter()
        uncut, _, anomaly_map = self.region_maps(frame, full_map)
        metrics = self.analyzer.analyze_defects(anomaly_map, self.low_threshold, self.use_morphology,
                                                keep_label_map=True)
        grouped = _grouped_detections(metrics, self.merge_gap_px, uncut > 0)
        analysed = time.perf_counter()
        if motion is None:
            motion = self._motion(frame)
        measured = time.perf_counter()
        tracked = self.tracker.update(grouped.boxes, grouped.scores, motion)
        self._views.add(frame_index, self.tracker.offset, self.surface_view or (0, 0, frame.shape[1], frame.shape[0]))
        detections = sorted(
            (FrameTrack(item.track_id, tuple(int(v) for v in grouped.boxes[item.detection_index]),
                        item.score, int(grouped.areas_pixels[item.detection_index]),
                        float(grouped.areas_physical[item.detection_index]))
             for item in tracked),
            key=lambda item: item.track_id)
        group_of = {item.track_id: item.detection_index for item in tracked}
        new_representative = set()
        for detection in detections:
            state = self._states.get(detection.track_id)
            if state is None:
                LOGGER.debug("frame %d: new defect track %d at %s", frame_index, detection.track_id, detection.box)
                first = self._recent[0] if len(self._recent) == self._recent.maxlen else frame_index
                state = self._states[detection.track_id] = _TrackState(first, frame_index,
                                                                       hits=len(self._recent))
            if state.add(frame_index, detection, _clear_of_edges(detection.box, frame.shape[:2])):
                new_representative.add(detection.track_id)
            x1, y1, x2, y2 = detection.box
            mask = np.isin(metrics.label_map[y1:y2, x1:x2], grouped.labels[group_of[detection.track_id]])
            state.footprint.add(frame_index, mask, (x1, y1), self.tracker.offset, frame.shape[:2])
        self._last_index = frame_index
        self._recent.append(frame_index)
        finished = time.perf_counter()
        self.stage_seconds["analysis"] += analysed - started
        self.stage_seconds["tracking"] += finished - measured
        return FrameTracks(frame_index, detections, (float(motion[0]), float(motion[1])),
                           new_representative, len(metrics.defects), metrics, full_map)

    def region_maps(self, frame: np.ndarray, anomaly_map: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One frame's regions (the map zeroed outside them): as the thresholds find them, cut at their height
        (region_height, region_scale), and as measured (on the frame: thin ones when thin_cell_px is set, wide
        ones when wide_cell_px is)."""
        # Seeded at the pixel threshold alone: a frame's image score is its verdict, not a region (the peak of a
        # frame it flagged while the map stayed below the pixel threshold was kept as a region until 2026-12-05: on
        # ten lines it found no defect, made the 896x320 steel line's second false track and shrank a grass crack
        # by 10 points; README, "A frame's verdict makes no region").
        regions = anomaly_map
        if self.low_threshold < self.threshold:
            regions = surface.hysteresis_map(anomaly_map, self.threshold, self.low_threshold)
        uncut = np.where(regions >= self.low_threshold, regions, 0)
        # Cut and measured inside the box around every region (and the room the refinements look around a region
        # in): the same regions as over the whole frame (tested), at the cost of the regions, not of the frame.
        window = _around(uncut > 0, self._region_margin)
        if window is None:
            return uncut, uncut, uncut
        top, left = window[0].start, window[1].start
        view = None if self.surface_view is None else _shifted_view(self.surface_view, left, top)
        background = surface.map_background(anomaly_map, self.surface_view)
        part_map, part_uncut, part_frame = anomaly_map[window], uncut[window], frame[window]
        part_cut = surface.cut_at_height(part_uncut, part_map, self.region_height, view, self.region_scale, background)
        part_measured = part_cut
        if self.thin_cell_px is not None:
            part_measured = refine_thin_regions(part_measured, part_frame, self.thin_cell_px, view)
        if self.wide_cell_px is not None:  # after the thin ones: a wide region the frame shows as pits stays wide
            core = surface.cut_at_height(part_cut, part_map, CORE_HEIGHT, view, self.region_scale, background) > 0
            part_measured = refine_wide_regions(part_measured, part_uncut, core, part_frame, self.wide_cell_px)
        cut, measured = np.zeros_like(uncut), np.zeros_like(uncut)
        cut[window], measured[window] = part_cut, part_measured
        return uncut, cut, measured

    @property
    def _region_margin(self) -> int:
        """The room (pixels) the thin and wide refinements look around a region in (their windows and growth)."""
        cell = max(self.thin_cell_px or 0.0, self.wide_cell_px or 0.0)
        return 4 * int(np.ceil(cell)) + 2 if cell > 0 else 0

    @property
    def surface_offset(self) -> tuple[float, float]:
        """The surface's accumulated motion (x, y) in frame pixels since the first frame."""
        return self.tracker.offset

    def _motion(self, frame: np.ndarray) -> tuple[float, float]:
        """The surface motion since the previous frame (0, 0 without an estimator), timed."""
        started = time.perf_counter()
        motion = self.estimator.estimate(frame) if self.estimator is not None else (0.0, 0.0)
        self.stage_seconds["motion"] += time.perf_counter() - started
        return motion

    def summaries(self) -> list[TrackedDefectSummary]:
        """One summary per track seen so far with at least min_hits detections, by track id."""
        unit = self.analyzer.physical_unit
        result = []
        for track_id in sorted(self._states):
            state = self._states[track_id]
            if state.hits < self.min_hits:
                continue
            duration = state.last_frame - state.first_frame + 1
            result.append(TrackedDefectSummary(
                track_id=track_id, first_frame=state.first_frame, last_frame=state.last_frame,
                duration_frames=duration, duration_seconds=duration / self.fps, hits=state.hits,
                max_score=state.max_score, mean_score=state.score_sum / state.measured,
                max_area_pixels=state.max_area_pixels, max_area_physical=state.max_area_physical,
                physical_unit=unit, bbox=state.bbox, representative_frame=state.representative_frame))
        return result

    def defects(self) -> list[PhysicalDefect]:
        """One entry per physical defect: tracks whose surface footprints lie within the merge gap (and
        whose frame spans meet within the lost-track budget, or whose place was in view for no longer than
        that budget between them) merged, measured on the surface. Computed
        once per frame seen (the report, the defect frames and the summary all ask at the end)."""
        if self._defects is None or self._defects[0] != self.tracker.frame_count:
            defects = self._merged_defects()
            kept = [defect for defect in defects if defect.presence >= self.min_presence]
            flicker = [defect for defect in defects if defect.presence < self.min_presence]
            self._defects = (self.tracker.frame_count, _numbered(kept), _numbered(flicker))
        return list(self._defects[1])

    def _merged_defects(self) -> list[PhysicalDefect]:
        """defects() before min_presence leaves flicker out."""
        states = {track_id: state for track_id, state in self._states.items() if state.footprint.views}
        groups = surface.merge_groups({k: v.footprint for k, v in states.items()},
                                      {k: (v.first_frame, v.last_frame) for k, v in states.items()},
                                      self.merge_gap_px, self.tracker.max_missed_frames, self._views)
        direction = self._motion_direction()
        result = []
        for members in groups:
            parts = [states[track_id] for track_id in members]
            if sum(part.hits for part in parts) < self.min_hits:
                continue
            footprint = parts[0].footprint
            for part in parts[1:]:
                footprint = footprint.merged(part.footprint)
            shape = surface.measure(footprint)
            if shape is None:  # no surface pixel won its vote: flicker, not a defect
                continue
            best = max(parts, key=lambda part: part.representative_key)
            result.append(self._physical_defect(len(result) + 1, members, parts, best, shape, direction))
        return result

    def _presence(self, parts: list[_TrackState], box: tuple[int, int, int, int]) -> float:
        """Share of the frames that showed the surface box, from the parts' first detection until the tracker
        gave them up (their last detection + its lost-track budget, or the last frame seen), in which they
        detected it (at most 1: pieces of one defect may be tracked in one frame). The budget bounds the wait:
        in a scene that does not move, a part taken away after its defect was seen is not flicker."""
        first = min(part.first_frame for part in parts)
        given_up = min(max(part.last_frame for part in parts) + self.tracker.max_missed_frames, self._last_index)
        showing = self._views.frames_showing(box, first - 1, given_up + 1)
        return min(1.0, sum(part.hits for part in parts) / showing) if showing else 1.0

    def _motion_direction(self) -> tuple[float, float]:
        """Unit vector of the mean surface motion ((-1, 0), right to left, when it is too small to tell)."""
        dx, dy = self.tracker.offset
        norm = math.hypot(dx, dy)
        return (dx / norm, dy / norm) if norm > 1e-6 else (-1.0, 0.0)

    def _physical_defect(self, defect_id: int, members: list[int], parts: list[_TrackState], best: _TrackState,
                         shape: surface.SurfaceShape, direction: tuple[float, float]) -> PhysicalDefect:
        """A merged defect's record, in surface pixels and the analyzer's unit."""
        size = self.analyzer.pixel_size
        x0, y0, x1, y1 = shape.box
        horizontal = abs(direction[0]) >= abs(direction[1])
        # Along the motion: surface that enters the view later lies further along (positive).
        if horizontal:
            along, across = -math.copysign(1.0, direction[0]) * shape.centroid[0], shape.centroid[1]
            length, width = x1 - x0, y1 - y0
        else:
            along, across = -math.copysign(1.0, direction[1]) * shape.centroid[1], shape.centroid[0]
            length, width = y1 - y0, x1 - x0
        area_physical = shape.area_px * size ** 2
        return PhysicalDefect(
            defect_id=defect_id, track_ids=list(members),
            first_frame=min(part.first_frame for part in parts), last_frame=max(part.last_frame for part in parts),
            hits=sum(part.hits for part in parts), max_score=max(part.max_score for part in parts),
            representative_frame=best.representative_frame, representative_track=members[parts.index(best)],
            surface_box_px=shape.box, surface_centroid_px=shape.centroid, area_px=shape.area_px,
            area_physical=area_physical, area_mm2=area_physical * self.analyzer.area_to_mm2,
            length=length * size, width=width * size, along=along * size, across=across * size,
            physical_unit=self.analyzer.physical_unit,
            severity=self.analyzer.classify_severity(area_physical), presence=self._presence(parts, shape.box))

    def report(self, fabric_speed: float | None = None) -> dict[str, Any]:
        """JSON-ready tracks and totals; fabric_speed (as the user gave it) is echoed in the totals."""
        if fabric_speed is not None and (isinstance(fabric_speed, bool) or not isinstance(fabric_speed, (int, float))
                                         or not math.isfinite(fabric_speed) or fabric_speed < 0):
            raise TrackingError(f"fabric_speed must be a number >= 0, got {fabric_speed!r}")
        # The first frame has no predecessor: the mean is over the frame pairs.
        # The tracker's accumulated offset is the summed motion; the first frame has no predecessor.
        pairs = self.tracker.frame_count - 1
        mean_dx, mean_dy = (np.asarray(self.tracker.offset) / pairs).tolist() if pairs > 0 else (0.0, 0.0)
        speed_px = math.hypot(mean_dx, mean_dy)
        defects = self.defects()
        totals: dict[str, Any] = {
            "num_defects": len(defects),
            "num_tracks": self.num_tracks,
            "flicker_left_out": self.num_flicker,
            "short_tracks_left_out": len(self._states) - self.num_tracks,
            "total_frames": self.tracker.frame_count,
            "fps": self.fps,
            "mean_motion_px_per_frame": [mean_dx, mean_dy],
            "mean_speed_px_per_frame": speed_px,
            "mean_speed_per_second": speed_px * self.analyzer.pixel_size * self.fps,
            "speed_unit": f"{self.analyzer.physical_unit}/s",
        }
        if fabric_speed is not None:
            totals["fabric_speed"] = float(fabric_speed)
        defect_of = {track_id: defect.defect_id for defect in defects for track_id in defect.track_ids}
        flicker_of = {track_id: item.defect_id for item in self.flicker() for track_id in item.track_ids}
        tracks = [{**summary.to_dict(), "defect_id": defect_of.get(summary.track_id),
                   "flicker_id": flicker_of.get(summary.track_id)} for summary in self.summaries()]
        return {"defects": [defect.to_dict() for defect in defects], "tracks": tracks, "totals": totals,
                "flicker": [defect.to_dict() for defect in self.flicker()]}

    def settings(self) -> dict[str, Any]:
        """JSON-ready tracking settings, for a run report."""
        return {"threshold": self.threshold, "low_threshold": self.low_threshold, "region_height": self.region_height,
                "region_scale": self.region_scale, "thin_cell_px": self.thin_cell_px,
                "wide_cell_px": self.wide_cell_px,
                "use_morphology": self.use_morphology, "min_hits": self.min_hits, "min_presence": self.min_presence,
                "merge_gap_mm": self.merge_gap_mm, "merge_gap_px": self.merge_gap_px,
                "motion_method": self.motion_method, "fps": self.fps,
                "surface_window": self.surface_window, "surface_min_frames": self.surface_min_frames,
                "pixel_size": self.analyzer.pixel_size, "physical_unit": self.analyzer.physical_unit,
                "tracker": asdict(self.config)}

    def _check_frame(self, frame_index: int, frame: np.ndarray, anomaly_map: np.ndarray) -> None:
        """One-line TrackingError for a bad frame index, frame or map."""
        if isinstance(frame_index, bool) or not isinstance(frame_index, (int, np.integer)):
            raise TrackingError(f"frame_index must be an integer, got {frame_index!r}")
        if self._last_index is not None and frame_index <= self._last_index:
            raise TrackingError(
                f"frame_index {frame_index} does not follow {self._last_index}: pass frames in order or reset()")
        if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
            raise TrackingError("frame must be a non-empty (H,W,3) BGR or (H,W) gray numpy array")
        map_shape = np.shape(anomaly_map)
        if map_shape != frame.shape[:2]:
            raise TrackingError(
                f"anomaly map shape {map_shape} differs from the frame's {frame.shape[:2]}: "
                "pass the map at frame resolution")


def _cell_px(name: str, value: object) -> float | None:
    """A patch cell in frame pixels (a positive number) or None, checked."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise TrackingError(f"{name} must be a positive number or None, got {value!r}")
    return float(value)


def check_surface_window(window: Any, min_frames: Any) -> tuple[int, int]:
    """(window, min_frames) checked; min_frames None becomes max(1, window // 3). One-line TrackingError."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise TrackingError(f"surface_window must be an integer >= 1 (1: no averaging), got {window!r}")
    if min_frames is None:
        min_frames = max(1, int(window) // 3)
    if isinstance(min_frames, bool) or not isinstance(min_frames, (int, np.integer)) or not 1 <= min_frames <= window:
        raise TrackingError(f"surface_min_frames must be an integer from 1 to surface_window ({window}), "
                            f"got {min_frames!r}")
    return int(window), int(min_frames)


def _numbered(defects: list[PhysicalDefect]) -> list[PhysicalDefect]:
    """The defects with ids 1, 2, ... in their order."""
    return [replace(defect, defect_id=number) for number, defect in enumerate(defects, 1)]


def _clear_of_edges(box: tuple[int, int, int, int], shape: tuple[int, int]) -> bool:
    """True when a box (x2/y2 exclusive) touches none of the frame's edges."""
    x1, y1, x2, y2 = box
    height, width = shape
    return x1 > 0 and y1 > 0 and x2 < width and y2 < height


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A distinct, stable BGR colour per track id (golden-ratio hue steps)."""
    hue = (track_id * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(blue * 255), int(green * 255), int(red * 255)


def _around(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The box (row and column slices) around a mask's pixels grown by `margin` within its bounds; None when it
    is empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return (slice(max(int(rows[0]) - margin, 0), min(int(rows[-1]) + 1 + margin, mask.shape[0])),
            slice(max(int(cols[0]) - margin, 0), min(int(cols[-1]) + 1 + margin, mask.shape[1])))


def _shifted_view(view: tuple[int, int, int, int], left: int, top: int) -> tuple[int, int, int, int]:
    """A frame's view (x0, y0, x1, y1) in the coordinates of a part of it starting at (left, top)."""
    x0, y0, x1, y1 = view
    return max(x0 - left, 0), max(y0 - top, 0), max(x1 - left, 0), max(y1 - top, 0)


def draw_tracks(frame: np.ndarray, frame_tracks: FrameTracks, unit: str) -> np.ndarray:
    """Copy of the frame with each track's box and 'ID n, score, area unit^2' label."""
    canvas = drawing.as_bgr(frame)
    font_scale = max(0.35, min(canvas.shape[:2]) / 700.0)
    thickness = max(1, int(round(font_scale * 2)))
    tracks = frame_tracks.tracks
    return drawing.draw_boxes(
        canvas, [track.box for track in tracks], [track_colour(track.track_id) for track in tracks],
        [f"ID {track.track_id} {track.score:.2f} {track.area_physical:.1f} {unit}^2" for track in tracks],
        thickness=thickness, text_scale=font_scale, text_thickness=thickness)
