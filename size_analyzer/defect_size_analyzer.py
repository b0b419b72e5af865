"""Defect size analysis: anomaly map -> connected defect regions measured in pixels and physical units.

Pipeline of `DefectSizeAnalyzer.analyze_defects`:

1. binary mask = anomaly_map >= threshold;
2. optional morphology (``use_morphology``): opening then closing with an elliptical
   kernel of ``morphology_kernel_size`` px (default 3, i.e. OpenCV's 3x3 ellipse, a cross).
   It removes isolated specks and 1-px lines and fills pinholes; on a clean blob it changes
   the area by at most a few outline pixels (digital discs of radius >= 4 px keep their area
   exactly, a rectangle loses its 4 corner pixels);
3. connected components with 8-connectivity (OpenCV ``connectedComponentsWithStats``);
4. regions smaller than ``min_defect_area`` pixels (after morphology) are dropped;
5. per region: area, bounding box (x1, y1, x2, y2 with x2/y2 exclusive), centroid (x, y),
   equivalent diameter (diameter of the circle with the same area), max and mean map score
   over the region's pixels, severity.

Defects are ordered by descending pixel area; ties by the box's top, then left edge.
``pixel_size`` is the side length of one pixel in ``physical_unit``, so physical areas are
``pixels * pixel_size**2`` in unit^2 and physical lengths ``pixels * pixel_size`` in unit.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from errors import UserError
from utils import atomic_write_text

LOGGER = logging.getLogger(__name__)

#: Millimetres per unit, for every accepted spelling of a unit (keys are lower case).
MM_PER_UNIT = {"mm": 1.0, "cm": 10.0, "inch": 25.4}
UNIT_ALIASES = {"mm": "mm", "cm": "cm", "inch": "inch", "in": "inch", "inches": "inch"}
SEVERITY_LEVELS = ("low", "medium", "high", "critical")
#: Relative tolerance at severity boundaries: unit round-off (0.1 cm vs 1 mm) must not flip a class.
_BOUNDARY_RTOL = 1e-9
#: Above this many foreground clusters a map is processed as one window (per-window overhead).
_MAX_WINDOWS = 16
#: BGR colour of each severity in annotated images.
SEVERITY_COLOURS_BGR = {
    "low": (0, 200, 0),
    "medium": (0, 220, 255),
    "high": (0, 140, 255),
    "critical": (0, 0, 255),
}
CSV_COLUMNS = (
    "frame_index", "defect_index", "area_pixels", "area_physical", "physical_unit",
    "x1", "y1", "x2", "y2", "centroid_x", "centroid_y",
    "equivalent_diameter_pixels", "equivalent_diameter_physical",
    "max_score", "mean_score", "severity",
)


class SizeAnalysisError(UserError):
    """Bad input to the size analyzer (one-line message naming the argument and the fix)."""


@dataclass(frozen=True)
class SeverityThresholds:
    """Area limits in mm^2: < low_below -> low, < medium_below -> medium, < high_below -> high, else critical.

    An area equal to a limit (within a relative 1e-9) belongs to the higher class.
    """

    low_below: float = 1.0
    medium_below: float = 10.0
    high_below: float = 100.0

    def __post_init__(self) -> None:
        """Checks the limits are finite, positive and strictly increasing."""
        limits = (self.low_below, self.medium_below, self.high_below)
        if not all(_is_real(v) and math.isfinite(v) and v > 0 for v in limits) or not (
            limits[0] < limits[1] < limits[2]
        ):
            raise SizeAnalysisError(
                f"severity_thresholds_mm2 must be three finite positive increasing areas in mm^2, "
                f"got {limits}; pass e.g. severity_thresholds_mm2=(1.0, 10.0, 100.0)"
            )

    def classify(self, area_mm2: float) -> str:
        """Severity class of one area given in mm^2."""
        return self.classify_many(np.array([area_mm2], dtype=np.float64))[0]

    def classify_many(self, areas_mm2: np.ndarray) -> list[str]:
        """Severity classes of an array of areas given in mm^2."""
        limits = np.array([self.low_below, self.medium_below, self.high_below]) * (1.0 - _BOUNDARY_RTOL)
        return [SEVERITY_LEVELS[i] for i in np.searchsorted(limits, areas_mm2, side="right").tolist()]


@dataclass
class DefectMetrics:
    """Measurements of the defects found in one anomaly map (lists are per defect, largest first)."""

    num_defects: int
    defect_areas_pixels: list[int]
    defect_areas_physical: list[float]
    bounding_boxes: list[tuple[int, int, int, int]]
    centroids: list[tuple[float, float]]
    equivalent_diameters_pixels: list[float]
    equivalent_diameters_physical: list[float]
    max_scores: list[float]
    mean_scores: list[float]
    severities: list[str]
    total_defect_area_pixels: int
    total_defect_area_physical: float
    mean_defect_area_physical: float
    median_defect_area_physical: float
    std_defect_area_physical: float
    pixel_size: float
    physical_unit: str
    threshold: float
    image_shape: tuple[int, int]
    #: Label image (0 background, i + 1 for defect i) when asked for with keep_label_map; not exported.
    label_map: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def largest_defect_area_physical(self) -> float:
        """Physical area of the largest defect (0.0 without defects)."""
        return self.defect_areas_physical[0] if self.num_defects else 0.0

    @property
    def severity_counts(self) -> dict[str, int]:
        """Number of defects per severity level (every level present, possibly 0)."""
        return {level: self.severities.count(level) for level in SEVERITY_LEVELS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of every field except the label map (tuples become lists)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "label_map"}
        data["bounding_boxes"] = [list(box) for box in self.bounding_boxes]
        data["centroids"] = [list(c) for c in self.centroids]
        data["image_shape"] = list(self.image_shape)
        data["severity_counts"] = self.severity_counts
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DefectMetrics":
        """Rebuilds metrics from `to_dict` output (e.g. read back from JSON)."""
        names = {f.name for f in fields(cls)} - {"label_map"}
        missing = names - data.keys()
        if missing:
            raise SizeAnalysisError(
                f"defect metrics dict lacks {sorted(missing)}; pass a dict written by DefectMetrics.to_dict"
            )
        kwargs = {name: data[name] for name in names}
        kwargs["bounding_boxes"] = [tuple(int(v) for v in box) for box in data["bounding_boxes"]]
        kwargs["centroids"] = [tuple(float(v) for v in c) for c in data["centroids"]]
        kwargs["image_shape"] = tuple(int(v) for v in data["image_shape"])
        return cls(**kwargs)

    def defect_rows(self, frame_index: int = 0) -> list[dict[str, Any]]:
        """One flat dict per defect (the CSV row layout of `CSV_COLUMNS`)."""
        rows = []
        for i in range(self.num_defects):
            x1, y1, x2, y2 = self.bounding_boxes[i]
            rows.append({
                "frame_index": frame_index, "defect_index": i,
                "area_pixels": self.defect_areas_pixels[i], "area_physical": self.defect_areas_physical[i],
                "physical_unit": self.physical_unit, "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                "centroid_x": self.centroids[i][0], "centroid_y": self.centroids[i][1],
                "equivalent_diameter_pixels": self.equivalent_diameters_pixels[i],
                "equivalent_diameter_physical": self.equivalent_diameters_physical[i],
                "max_score": self.max_scores[i], "mean_score": self.mean_scores[i],
                "severity": self.severities[i],
            })
        return rows


def _is_real(value: Any) -> bool:
    """True for int/float (numpy included), False for bool and anything else."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _is_count(value: Any, minimum: int) -> bool:
    """True for an integer (numpy included, bool excluded) >= minimum."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum


def normalise_unit(physical_unit: str) -> str:
    """Canonical unit name (mm, cm, inch) of an accepted spelling."""
    key = physical_unit.strip().lower() if isinstance(physical_unit, str) else None
    if key not in UNIT_ALIASES:
        raise SizeAnalysisError(
            f"physical_unit must be one of mm, cm, inch (or in), got {physical_unit!r}; pass e.g. physical_unit='mm'"
        )
    return UNIT_ALIASES[key]


def to_mm2(area: float, physical_unit: str) -> float:
    """Converts an area in physical_unit^2 to mm^2."""
    return float(area) * MM_PER_UNIT[normalise_unit(physical_unit)] ** 2


def _thresholds_from(value: SeverityThresholds | Sequence[float] | None) -> SeverityThresholds:
    """SeverityThresholds from a dataclass, a (low, medium, high) sequence or None (defaults)."""
    if value is None:
        return SeverityThresholds()
    if isinstance(value, SeverityThresholds):
        return value
    try:
        low, medium, high = value
    except (TypeError, ValueError):
        raise SizeAnalysisError(
            f"severity_thresholds_mm2 must be three increasing areas in mm^2, got {value!r}; "
            "pass e.g. severity_thresholds_mm2=(1.0, 10.0, 100.0)"
        ) from None
    return SeverityThresholds(low, medium, high)


def _check_map(anomaly_map: Any) -> np.ndarray:
    """Validated 2-D finite float view of an anomaly map."""
    arr = np.asarray(anomaly_map)
    if arr.ndim != 2 or arr.size == 0:
        raise SizeAnalysisError(
            f"anomaly_map must be a non-empty 2-D (H, W) array, got shape {arr.shape}; "
            "pass one map per call (analyze_batch for several)"
        )
    if arr.dtype.kind == "b" or arr.dtype.kind in "iu":
        arr = arr.astype(np.float32)
    elif arr.dtype.kind != "f":
        raise SizeAnalysisError(f"anomaly_map must hold real numbers, got dtype {arr.dtype}; pass a float array")
    if not np.isfinite(arr).all():
        raise SizeAnalysisError(
            "anomaly_map contains NaN or infinite values; replace them (e.g. np.nan_to_num) before analysis"
        )
    return arr


def _empty_metrics(
    pixel_size: float, unit: str, threshold: float, shape: tuple[int, int], label_map: np.ndarray | None = None
) -> DefectMetrics:
    """Metrics of a map without defects (all statistics 0.0)."""
    return DefectMetrics(
        num_defects=0, defect_areas_pixels=[], defect_areas_physical=[], bounding_boxes=[], centroids=[],
        equivalent_diameters_pixels=[], equivalent_diameters_physical=[], max_scores=[], mean_scores=[],
        severities=[], total_defect_area_pixels=0, total_defect_area_physical=0.0,
        mean_defect_area_physical=0.0, median_defect_area_physical=0.0, std_defect_area_physical=0.0,
        pixel_size=pixel_size, physical_unit=unit, threshold=threshold, image_shape=shape, label_map=label_map,
    )


def _region_scores(labels: np.ndarray, scores: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-label max and mean score over the foreground pixels (index 0 = background, unused)."""
    flat_labels = labels.ravel()
    foreground = np.flatnonzero(flat_labels)
    region = flat_labels[foreground]
    values = scores.ravel()[foreground].astype(np.float64)
    maxima = np.full(count, -np.inf)
    np.maximum.at(maxima, region, values)
    sums = np.bincount(region, weights=values, minlength=count)
    sizes = np.bincount(region, minlength=count)
    return maxima, sums / np.maximum(sizes, 1)


def _runs(flags: np.ndarray, gap: int) -> list[tuple[int, int]]:
    """[start, stop) runs of True entries, merging runs separated by at most `gap` False entries."""
    index = np.flatnonzero(flags)
    if index.size == 0:
        return []
    breaks = np.flatnonzero(index[1:] - index[:-1] > gap + 1)
    starts = [int(index[0])] + index[breaks + 1].tolist()
    stops = index[breaks].tolist() + [int(index[-1])]
    return [(start, stop + 1) for start, stop in zip(starts, stops)]


def _foreground_windows(mask: np.ndarray, margin: int) -> list[tuple[int, int, int, int]]:
    """Independent (y0, y1, x0, x1) windows around foreground clusters, padded by margin (see _masked_windows)."""
    height, width = mask.shape
    windows = []
    for r0, r1 in _runs(mask.any(axis=1), 2 * margin):
        windows += [(r0, r1, c0, c1) for c0, c1 in _runs(mask[r0:r1].any(axis=0), 2 * margin)]
    if len(windows) > _MAX_WINDOWS:
        windows = [(min(w[0] for w in windows), max(w[1] for w in windows),
                    min(w[2] for w in windows), max(w[3] for w in windows))]
    return [
        (max(y0 - margin, 0), min(y1 + margin, height), max(x0 - margin, 0), min(x1 + margin, width))
        for y0, y1, x0, x1 in windows
    ]


@dataclass
class _WindowRegions:
    """Kept regions of one window: OpenCV labels plus per-region arrays in full-map coordinates."""

    labels: np.ndarray
    origin: tuple[int, int]
    keep: np.ndarray
    areas: np.ndarray
    boxes: np.ndarray
    centroids: np.ndarray
    max_scores: np.ndarray
    mean_scores: np.ndarray


def _measure_window(mask: np.ndarray, scores: np.ndarray, origin: tuple[int, int], min_area: int) -> _WindowRegions:
    """8-connected regions of one mask window with at least min_area pixels, measured (vectorised)."""
    y0, x0 = origin
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    keep = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_area)
    keep = keep[keep > 0]  # label 0 is the background
    if keep.size == 0:
        empty = np.empty(0)
        return _WindowRegions(labels, origin, keep, empty, empty.reshape(0, 4), empty.reshape(0, 2), empty, empty)
    maxima, means = _region_scores(labels, scores[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]], count)
    kept = stats[keep].astype(np.int64)
    left = kept[:, cv2.CC_STAT_LEFT] + x0
    top = kept[:, cv2.CC_STAT_TOP] + y0
    boxes = np.stack([left, top, left + kept[:, cv2.CC_STAT_WIDTH], top + kept[:, cv2.CC_STAT_HEIGHT]], axis=1)
    return _WindowRegions(
        labels, origin, keep, kept[:, cv2.CC_STAT_AREA], boxes,
        centroids[keep] + (x0, y0), maxima[keep], means[keep],
    )


def _fill_label_map(label_map: np.ndarray, parts: list[_WindowRegions], order: np.ndarray) -> None:
    """Writes each kept region as (its output index + 1) into label_map."""
    rank = np.empty(order.size, np.int32)
    rank[order] = np.arange(1, order.size + 1, dtype=np.int32)
    offset = 0
    for part in parts:
        relabel = np.zeros(part.labels.max() + 1, np.int32)
        relabel[part.keep] = rank[offset:offset + part.keep.size]
        offset += part.keep.size
        y0, x0 = part.origin
        window = label_map[y0:y0 + part.labels.shape[0], x0:x0 + part.labels.shape[1]]
        np.copyto(window, relabel[part.labels], where=part.labels > 0)


class DefectSizeAnalyzer:
    """Measures defect regions of anomaly maps in pixels and in a physical unit (mm, cm or inch)."""

    def __init__(
        self,
        pixel_size: float = 1.0,
        physical_unit: str = "mm",
        min_defect_area: int = 10,
        *,
        severity_thresholds_mm2: SeverityThresholds | Sequence[float] | None = None,
        morphology_kernel_size: int = 3,
    ) -> None:
        """Validates the calibration once: pixel_size is one pixel's side length in physical_unit."""
        if not _is_real(pixel_size) or not math.isfinite(pixel_size) or pixel_size <= 0:
            raise SizeAnalysisError(
                f"pixel_size must be a positive finite number (one pixel's side in physical_unit), "
                f"got {pixel_size!r}; pass e.g. pixel_size=0.1"
            )
        if not _is_count(min_defect_area, minimum=0):
            raise SizeAnalysisError(
                f"min_defect_area must be an integer number of pixels >= 0, got {min_defect_area!r}; "
                "pass e.g. min_defect_area=10"
            )
        if not _is_count(morphology_kernel_size, minimum=1):
            raise SizeAnalysisError(
                f"morphology_kernel_size must be an integer >= 1, got {morphology_kernel_size!r}; "
                "pass e.g. morphology_kernel_size=3"
            )
        self.pixel_size = float(pixel_size)
        self.physical_unit = normalise_unit(physical_unit)
        self.min_defect_area = int(min_defect_area)
        self.severity_thresholds = _thresholds_from(severity_thresholds_mm2)
        self.morphology_kernel_size = int(morphology_kernel_size)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.morphology_kernel_size,) * 2)

    def __repr__(self) -> str:
        """Calibration summary."""
        return (f"DefectSizeAnalyzer(pixel_size={self.pixel_size}, physical_unit={self.physical_unit!r}, "
                f"min_defect_area={self.min_defect_area}, severity_thresholds_mm2={self.severity_thresholds})")

    @property
    def area_to_mm2(self) -> float:
        """Factor from this analyzer's unit^2 to mm^2."""
        return MM_PER_UNIT[self.physical_unit] ** 2

    def classify_severity(self, area_physical: float) -> str:
        """Severity of one area given in this analyzer's unit^2."""
        return self.severity_thresholds.classify(area_physical * self.area_to_mm2)

    def defect_mask(self, anomaly_map: np.ndarray, threshold: float = 0.5, use_morphology: bool = True) -> np.ndarray:
        """Binary uint8 mask (0/1) of defect pixels before component filtering."""
        scores = _check_map(anomaly_map)
        full = np.zeros(scores.shape, np.uint8)
        for mask, (y0, x0) in self._masked_windows(scores, _check_threshold(threshold), use_morphology):
            full[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]] = mask
        return full

    def _masked_windows(
        self, scores: np.ndarray, threshold: float, use_morphology: bool
    ) -> list[tuple[np.ndarray, tuple[int, int]]]:
        """Thresholded (optionally opened then closed) mask, cut into independent windows with their (y0, x0).

        Foreground clusters separated by more than 2 * k empty rows (then columns) are processed
        in separate windows, each padded by k = kernel size; neither morphology (closing reaches
        at most 2 * (k // 2) px beyond the foreground) nor 8-connectivity can cross such a gap, so
        the result equals working on the whole map while full-resolution frames with a few small
        defects stay cheap. More than `_MAX_WINDOWS` clusters: one window around all foreground.
        """
        mask = (scores >= threshold).view(np.uint8)
        margin = self.morphology_kernel_size if use_morphology else 0
        windows = _foreground_windows(mask, margin)
        out = []
        for y0, y1, x0, x1 in windows:
            window = mask[y0:y1, x0:x1]
            if use_morphology:
                window = cv2.morphologyEx(window, cv2.MORPH_OPEN, self._kernel)
                window = cv2.morphologyEx(window, cv2.MORPH_CLOSE, self._kernel)
            out.append((np.ascontiguousarray(window), (y0, x0)))
        return out

    def analyze_defects(
        self,
        anomaly_map: np.ndarray,
        threshold: float = 0.5,
        use_morphology: bool = True,
        *,
        keep_label_map: bool = False,
    ) -> DefectMetrics:
        """Finds, measures and classifies the defect regions of one (H, W) anomaly map."""
        scores = _check_map(anomaly_map)
        threshold = _check_threshold(threshold)
        shape = (int(scores.shape[0]), int(scores.shape[1]))
        parts = [
            _measure_window(mask, scores, origin, max(self.min_defect_area, 1))
            for mask, origin in self._masked_windows(scores, threshold, use_morphology)
        ]
        parts = [part for part in parts if part.keep.size]
        label_map = np.zeros(shape, np.int32) if keep_label_map else None
        if not parts:
            return _empty_metrics(self.pixel_size, self.physical_unit, threshold, shape, label_map)
        areas = np.concatenate([part.areas for part in parts])
        boxes = np.concatenate([part.boxes for part in parts])
        order = np.lexsort((boxes[:, 0], boxes[:, 1], -areas))  # largest first, ties: top, then left
        metrics = self._build(
            areas[order], boxes[order],
            np.concatenate([part.centroids for part in parts])[order],
            np.concatenate([part.max_scores for part in parts])[order],
            np.concatenate([part.mean_scores for part in parts])[order],
            threshold, shape,
        )
        if label_map is not None:
            _fill_label_map(label_map, parts, order)
            metrics.label_map = label_map
        return metrics

    def _build(
        self, areas_px: np.ndarray, boxes: np.ndarray, centroids: np.ndarray, maxima: np.ndarray,
        means: np.ndarray, threshold: float, shape: tuple[int, int],
    ) -> DefectMetrics:
        """DefectMetrics from per-defect arrays already in output order."""
        areas_phys = areas_px * self.pixel_size ** 2
        diam_px = np.sqrt(4.0 * areas_px / np.pi)
        return DefectMetrics(
            num_defects=int(areas_px.size),
            defect_areas_pixels=areas_px.tolist(),
            defect_areas_physical=areas_phys.tolist(),
            bounding_boxes=list(map(tuple, boxes.tolist())),
            centroids=list(map(tuple, centroids.tolist())),
            equivalent_diameters_pixels=diam_px.tolist(),
            equivalent_diameters_physical=(diam_px * self.pixel_size).tolist(),
            max_scores=maxima.tolist(),
            mean_scores=means.tolist(),
            severities=self.severity_thresholds.classify_many(areas_phys * self.area_to_mm2),
            total_defect_area_pixels=int(areas_px.sum()),
            total_defect_area_physical=float(areas_phys.sum()),
            mean_defect_area_physical=float(areas_phys.mean()),
            median_defect_area_physical=float(np.median(areas_phys)),
            std_defect_area_physical=float(areas_phys.std()),
            pixel_size=self.pixel_size,
            physical_unit=self.physical_unit,
            threshold=threshold,
            image_shape=shape,
        )

    def analyze_batch(
        self, anomaly_maps: Iterable[np.ndarray], threshold: float = 0.5, use_morphology: bool = True
    ) -> list[DefectMetrics]:
        """Analyses maps one by one (a (N, H, W) array or any iterable of (H, W) maps)."""
        if isinstance(anomaly_maps, np.ndarray) and anomaly_maps.ndim != 3:
            raise SizeAnalysisError(
                f"anomaly_maps must be an (N, H, W) array or a list of (H, W) maps, got shape {anomaly_maps.shape}; "
                "use analyze_defects for a single map"
            )
        return [self.analyze_defects(m, threshold, use_morphology) for m in anomaly_maps]

    def summarize_batch(self, metrics_list: Sequence[DefectMetrics]) -> dict[str, Any]:
        """Batch summary (see module function `summarize_batch`), in this analyzer's unit when empty."""
        summary = summarize_batch(metrics_list)
        if summary["physical_unit"] is None:
            summary["physical_unit"] = self.physical_unit
        return summary

    def annotate_image(self, image: np.ndarray, metrics: DefectMetrics, **kwargs: Any) -> np.ndarray:
        """Annotated copy of a frame (see module function `annotate_image`)."""
        return annotate_image(image, metrics, **kwargs)

    def export_json(self, metrics: DefectMetrics | Sequence[DefectMetrics], path: str | os.PathLike) -> None:
        """Writes metrics as JSON (see module function `export_json`)."""
        export_json(metrics, path)

    def export_csv(self, metrics_list: DefectMetrics | Sequence[DefectMetrics], path: str | os.PathLike,
                   frame_indices: Sequence[int] | None = None) -> None:
        """Writes one CSV row per defect (see module function `export_csv`)."""
        export_csv(metrics_list, path, frame_indices)


def _check_threshold(threshold: Any) -> float:
    """Validated finite float threshold."""
    if not _is_real(threshold) or not math.isfinite(threshold):
        raise SizeAnalysisError(f"threshold must be a finite number, got {threshold!r}; pass e.g. threshold=0.5")
    return float(threshold)


def _as_list(metrics: DefectMetrics | Sequence[DefectMetrics]) -> list[DefectMetrics]:
    """A list of metrics from one metrics object or a sequence of them."""
    items = [metrics] if isinstance(metrics, DefectMetrics) else list(metrics)
    if not all(isinstance(m, DefectMetrics) for m in items):
        raise SizeAnalysisError(
            "metrics must be DefectMetrics or a list of them; pass the output of analyze_defects/analyze_batch"
        )
    return items


def summarize_batch(metrics_list: Sequence[DefectMetrics]) -> dict[str, Any]:
    """Totals over frames: counts, areas (largest, mean/median/std over all defects), severities.

    Standard deviations are population (ddof=0); statistics are 0.0 when no defect was found.
    """
    items = _as_list(metrics_list)
    units = {m.physical_unit for m in items}
    if len(units) > 1:
        raise SizeAnalysisError(
            f"metrics use different units {sorted(units)}; analyse every frame with the same DefectSizeAnalyzer"
        )
    areas = np.array([a for m in items for a in m.defect_areas_physical], dtype=np.float64)
    largest_frame = None
    largest_px = 0
    largest_phys = 0.0
    for index, m in enumerate(items):
        if m.num_defects and m.defect_areas_physical[0] > largest_phys:
            largest_frame, largest_phys, largest_px = index, m.defect_areas_physical[0], m.defect_areas_pixels[0]
    total = int(sum(m.num_defects for m in items))
    return {
        "frames_analysed": len(items),
        "frames_with_defects": int(sum(1 for m in items if m.num_defects)),
        "total_defects": total,
        "mean_defects_per_frame": total / len(items) if items else 0.0,
        "total_defect_area_pixels": int(sum(m.total_defect_area_pixels for m in items)),
        "total_defect_area_physical": float(areas.sum()) if areas.size else 0.0,
        "largest_defect_area_pixels": int(largest_px),
        "largest_defect_area_physical": float(largest_phys),
        "largest_defect_frame": largest_frame,
        "mean_defect_area_physical": float(areas.mean()) if areas.size else 0.0,
        "median_defect_area_physical": float(np.median(areas)) if areas.size else 0.0,
        "std_defect_area_physical": float(areas.std()) if areas.size else 0.0,
        "severity_counts": {lvl: int(sum(m.severities.count(lvl) for m in items)) for lvl in SEVERITY_LEVELS},
        "physical_unit": units.pop() if units else None,
    }


def annotate_image(
    image: np.ndarray,
    metrics: DefectMetrics,
    *,
    colour: tuple[int, int, int] | None = None,
    thickness: int = 2,
    show_labels: bool = True,
    font_scale: float = 0.45,
) -> np.ndarray:
    """Copy of a BGR uint8 image with each defect's box and area label drawn (input untouched).

    Boxes are coloured by severity unless ``colour`` is given. When the image size differs
    from the analysed map's, boxes are scaled to the image.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or not (
        image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))
    ):
        shape = getattr(image, "shape", None)
        raise SizeAnalysisError(
            f"image must be a uint8 BGR (H, W, 3) or grey (H, W) array, got {type(image).__name__} {shape}; "
            "pass a decoded frame"
        )
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 or image.shape[2] == 1 else image.copy()
    sy = canvas.shape[0] / metrics.image_shape[0]
    sx = canvas.shape[1] / metrics.image_shape[1]
    for i, (x1, y1, x2, y2) in enumerate(metrics.bounding_boxes):
        box_colour = colour or SEVERITY_COLOURS_BGR[metrics.severities[i]]
        top_left = (int(round(x1 * sx)), int(round(y1 * sy)))
        bottom_right = (max(int(round(x2 * sx)) - 1, top_left[0]), max(int(round(y2 * sy)) - 1, top_left[1]))
        cv2.rectangle(canvas, top_left, bottom_right, box_colour, thickness)
        if show_labels:
            text = f"#{i + 1} {metrics.defect_areas_physical[i]:.2f} {metrics.physical_unit}^2"
            origin = (top_left[0], top_left[1] - 4 if top_left[1] >= 14 else bottom_right[1] + 14)
            cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, box_colour, 1, cv2.LINE_AA)
    return canvas


def export_json(metrics: DefectMetrics | Sequence[DefectMetrics], path: str | os.PathLike) -> None:
    """Writes one metrics dict, or {"summary", "frames": [{"frame_index", ...}]} for a list, atomically."""
    if isinstance(metrics, DefectMetrics):
        payload: dict[str, Any] = metrics.to_dict()
    else:
        items = _as_list(metrics)
        payload = {
            "summary": summarize_batch(items),
            "frames": [{"frame_index": i, **m.to_dict()} for i, m in enumerate(items)],
        }
    atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    LOGGER.info("wrote defect metrics JSON %s", path)


def export_csv(
    metrics_list: DefectMetrics | Sequence[DefectMetrics],
    path: str | os.PathLike,
    frame_indices: Sequence[int] | None = None,
) -> None:
    """Writes one row per defect (columns `CSV_COLUMNS`) atomically; frames without defects add no row."""
    atomic_write_text(path, csv_text(metrics_list, frame_indices))
    LOGGER.info("wrote defect metrics CSV %s", path)


def csv_text(metrics_list: DefectMetrics | Sequence[DefectMetrics], frame_indices: Sequence[int] | None = None) -> str:
    """The CSV of `export_csv` as text (one row per defect, columns `CSV_COLUMNS`)."""
    items = _as_list(metrics_list)
    indices = list(range(len(items))) if frame_indices is None else list(frame_indices)
    if len(indices) != len(items):
        raise SizeAnalysisError(
            f"frame_indices has {len(indices)} entries for {len(items)} metrics; pass one index per frame or none"
        )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for index, m in zip(indices, items):
        writer.writerows(m.defect_rows(index))
    return buffer.getvalue()


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads a CSV written by `export_csv` back into typed rows."""
    ints = {"frame_index", "defect_index", "area_pixels", "x1", "y1", "x2", "y2"}
    texts = {"physical_unit", "severity"}
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {k: (v if k in texts else int(v) if k in ints else float(v)) for k, v in row.items()}
        for row in rows
    ]
