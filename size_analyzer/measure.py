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

The result is a `SizeAnalysis` with one `Defect` per region, ordered by descending pixel area
(ties: the box's top, then left edge). Severity (`SeverityThresholds`) classifies the area in mm^2.
``pixel_size`` is the side length of one pixel in ``physical_unit``, so physical areas are
``pixels * pixel_size**2`` in unit^2 and physical lengths ``pixels * pixel_size`` in unit. The unit "px"
(pixel size 1) measures in pixels without a physical scale: sizes are labelled px, and wherever a millimetre
figure is needed (severity classes, a merge gap in mm) a pixel is read as a millimetre.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Sequence

import cv2
import numpy as np

from errors import UserError

#: Millimetres per unit (the canonical names; UNIT_ALIASES maps every accepted spelling to one).
MM_PER_UNIT = {"mm": 1.0, "cm": 10.0, "inch": 25.4}
#: Sizes in pixels, no physical scale (pixel_size 1); read as mm where mm are needed (see the module docstring).
PIXEL_UNIT = "px"
UNITS = (*MM_PER_UNIT, PIXEL_UNIT)
UNIT_ALIASES = {"mm": "mm", "cm": "cm", "inch": "inch", "in": "inch", "inches": "inch",
                "px": PIXEL_UNIT, "pixel": PIXEL_UNIT, "pixels": PIXEL_UNIT}
SEVERITY_LEVELS = ("low", "medium", "high", "critical")
#: Relative tolerance at severity boundaries: unit round-off (0.1 cm vs 1 mm) must not flip a class.
_BOUNDARY_RTOL = 1e-9
#: Above this many foreground clusters a map is processed as one window (per-window overhead).
_MAX_WINDOWS = 16


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


@dataclass(frozen=True)
class Defect:
    """One defect region of an anomaly map, measured."""

    area_px: int
    area_physical: float  # unit^2
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in map pixels, x2/y2 exclusive
    centroid: tuple[float, float]  # x, y in map pixels
    equivalent_diameter_px: float  # diameter of the circle with the same area
    equivalent_diameter_physical: float  # unit
    max_score: float  # over the region's pixels
    mean_score: float
    severity: str  # one of SEVERITY_LEVELS


@dataclass(frozen=True)
class SizeAnalysis:
    """The defects found in one anomaly map (largest first) and how they were measured."""

    defects: list[Defect]
    pixel_size: float  # one pixel's side in physical_unit
    physical_unit: str
    threshold: float
    image_shape: tuple[int, int]  # (H, W) of the analysed map
    #: Label image (0 background, i + 1 for defects[i]) when asked for with keep_label_map.
    label_map: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def total_area_px(self) -> int:
        """Pixels over all defects."""
        return sum(defect.area_px for defect in self.defects)

    @property
    def total_area_physical(self) -> float:
        """Area over all defects in unit^2 (0.0 without defects)."""
        return float(np.sum(self.areas_physical())) if self.defects else 0.0

    @property
    def severity_counts(self) -> dict[str, int]:
        """Number of defects per severity level (every level present, possibly 0)."""
        severities = [defect.severity for defect in self.defects]
        return {level: severities.count(level) for level in SEVERITY_LEVELS}

    def areas_physical(self) -> np.ndarray:
        """Float64 array of the defects' areas in unit^2, in defect order."""
        return np.array([defect.area_physical for defect in self.defects], dtype=np.float64)


def _is_real(value: Any) -> bool:
    """True for int/float (numpy included), False for bool and anything else."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _is_count(value: Any, minimum: int) -> bool:
    """True for an integer (numpy included, bool excluded) >= minimum."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum


def _normalise_unit(physical_unit: str) -> str:
    """Canonical unit name (mm, cm, inch, px) of an accepted spelling."""
    key = physical_unit.strip().lower() if isinstance(physical_unit, str) else None
    if key not in UNIT_ALIASES:
        raise SizeAnalysisError(
            f"physical_unit must be one of mm, cm, inch (or in), px, got {physical_unit!r}; "
            "pass e.g. physical_unit='mm'"
        )
    return UNIT_ALIASES[key]


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
            "pass one map per call"
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
    """Measures defect regions of anomaly maps in pixels and in a physical unit (mm, cm or inch; or px)."""

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
        self.physical_unit = _normalise_unit(physical_unit)
        if self.physical_unit == PIXEL_UNIT and self.pixel_size != 1.0:
            raise SizeAnalysisError(
                f"pixel_size {pixel_size!r} with physical_unit px: a pixel is 1 px; give the unit the pixel size "
                "is in (mm, cm or inch), e.g. pixel_size=0.1, physical_unit='mm'"
            )
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
        """Factor from this analyzer's unit^2 to mm^2 (px^2 read as mm^2)."""
        return MM_PER_UNIT.get(self.physical_unit, 1.0) ** 2

    def classify_severity(self, area_physical: float) -> str:
        """Severity of one area given in this analyzer's unit^2."""
        return self.severity_thresholds.classify(area_physical * self.area_to_mm2)

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
    ) -> SizeAnalysis:
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
        defects = []
        if parts:
            areas = np.concatenate([part.areas for part in parts])
            boxes = np.concatenate([part.boxes for part in parts])
            order = np.lexsort((boxes[:, 0], boxes[:, 1], -areas))  # largest first, ties: top, then left
            defects = self._defects(
                areas[order], boxes[order],
                np.concatenate([part.centroids for part in parts])[order],
                np.concatenate([part.max_scores for part in parts])[order],
                np.concatenate([part.mean_scores for part in parts])[order],
            )
            if label_map is not None:
                _fill_label_map(label_map, parts, order)
        return SizeAnalysis(defects, self.pixel_size, self.physical_unit, threshold, shape, label_map)

    def _defects(
        self, areas_px: np.ndarray, boxes: np.ndarray, centroids: np.ndarray, maxima: np.ndarray, means: np.ndarray
    ) -> list[Defect]:
        """Defects from per-region arrays already in output order."""
        areas_phys = areas_px * self.pixel_size ** 2
        diam_px = np.sqrt(4.0 * areas_px / np.pi)
        columns = zip(
            areas_px.tolist(), areas_phys.tolist(), boxes.tolist(), centroids.tolist(), diam_px.tolist(),
            (diam_px * self.pixel_size).tolist(), maxima.tolist(), means.tolist(),
            self.severity_thresholds.classify_many(areas_phys * self.area_to_mm2),
        )
        return [
            Defect(area, area_phys, tuple(box), tuple(centroid), diameter, diameter_phys, peak, mean, severity)
            for area, area_phys, box, centroid, diameter, diameter_phys, peak, mean, severity in columns
        ]


def _check_threshold(threshold: Any) -> float:
    """Validated finite float threshold."""
    if not _is_real(threshold) or not math.isfinite(threshold):
        raise SizeAnalysisError(f"threshold must be a finite number, got {threshold!r}; pass e.g. threshold=0.5")
    return float(threshold)
