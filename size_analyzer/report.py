"""Size analyses as JSON-ready dicts, CSV text (one row per defect) and batch summaries.

The layouts are what the video size mode writes (`<stem>_sizes.json`, `<stem>_defects.csv`):
`frame_report` keeps the per-frame lists (``defect_areas_pixels``, ``bounding_boxes``, ...) and
statistics, `csv_text` has the columns `CSV_COLUMNS`. Statistics are population (ddof=0) and
0.0 when there is no defect.
"""
from __future__ import annotations

import csv
import io
from typing import Any
from collections.abc import Sequence

import numpy as np

from size_analyzer.measure import SEVERITY_LEVELS, SizeAnalysis, SizeAnalysisError

CSV_COLUMNS = (
    "frame_index", "defect_index", "area_pixels", "area_physical", "physical_unit",
    "x1", "y1", "x2", "y2", "centroid_x", "centroid_y",
    "equivalent_diameter_pixels", "equivalent_diameter_physical",
    "max_score", "mean_score", "severity",
)


def _area_statistics(areas: np.ndarray) -> tuple[float, float, float]:
    """Mean, median and standard deviation of physical areas (0.0 each without defects)."""
    if not areas.size:
        return 0.0, 0.0, 0.0
    return float(areas.mean()), float(np.median(areas)), float(areas.std())


def frame_report(result: SizeAnalysis) -> dict[str, Any]:
    """JSON-ready dict of one analysis: per-defect lists (largest first), totals, statistics, settings."""
    defects = result.defects
    mean, median, std = _area_statistics(result.areas_physical())
    return {
        "num_defects": len(defects),
        "defect_areas_pixels": [d.area_px for d in defects],
        "defect_areas_physical": [d.area_physical for d in defects],
        "bounding_boxes": [list(d.box) for d in defects],
        "centroids": [list(d.centroid) for d in defects],
        "equivalent_diameters_pixels": [d.equivalent_diameter_px for d in defects],
        "equivalent_diameters_physical": [d.equivalent_diameter_physical for d in defects],
        "max_scores": [d.max_score for d in defects],
        "mean_scores": [d.mean_score for d in defects],
        "severities": [d.severity for d in defects],
        "total_defect_area_pixels": result.total_area_px,
        "total_defect_area_physical": result.total_area_physical,
        "mean_defect_area_physical": mean,
        "median_defect_area_physical": median,
        "std_defect_area_physical": std,
        "pixel_size": result.pixel_size,
        "physical_unit": result.physical_unit,
        "threshold": result.threshold,
        "image_shape": list(result.image_shape),
        "severity_counts": result.severity_counts,
    }


def csv_rows(result: SizeAnalysis, frame_index: int = 0) -> list[dict[str, Any]]:
    """One flat dict per defect, keyed by `CSV_COLUMNS`."""
    return [
        {
            "frame_index": frame_index, "defect_index": index,
            "area_pixels": d.area_px, "area_physical": d.area_physical, "physical_unit": result.physical_unit,
            "x1": d.box[0], "y1": d.box[1], "x2": d.box[2], "y2": d.box[3],
            "centroid_x": d.centroid[0], "centroid_y": d.centroid[1],
            "equivalent_diameter_pixels": d.equivalent_diameter_px,
            "equivalent_diameter_physical": d.equivalent_diameter_physical,
            "max_score": d.max_score, "mean_score": d.mean_score, "severity": d.severity,
        }
        for index, d in enumerate(result.defects)
    ]


def csv_text(results: Sequence[SizeAnalysis], frame_indices: Sequence[int] | None = None) -> str:
    """CSV with one row per defect of every frame (columns `CSV_COLUMNS`); frame i is results[i] unless given."""
    indices = list(range(len(results))) if frame_indices is None else list(frame_indices)
    if len(indices) != len(results):
        raise SizeAnalysisError(
            f"frame_indices has {len(indices)} entries for {len(results)} analyses; pass one index per frame or none"
        )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for index, result in zip(indices, results):
        writer.writerows(csv_rows(result, index))
    return buffer.getvalue()


def summarize_batch(results: Sequence[SizeAnalysis], physical_unit: str | None = None) -> dict[str, Any]:
    """Totals over frames: counts, areas (largest, mean/median/std over all defects), severities.

    physical_unit: the unit reported when there are no results (None by default).
    """
    units = {result.physical_unit for result in results}
    if len(units) > 1:
        raise SizeAnalysisError(
            f"analyses use different units {sorted(units)}; analyse every frame with the same DefectSizeAnalyzer"
        )
    areas = np.array([d.area_physical for result in results for d in result.defects], dtype=np.float64)
    largest_frame, largest = None, None
    for index, result in enumerate(results):
        if result.defects and result.defects[0].area_physical > (largest.area_physical if largest else 0.0):
            largest_frame, largest = index, result.defects[0]
    total = sum(len(result.defects) for result in results)
    mean, median, std = _area_statistics(areas)
    return {
        "frames_analysed": len(results),
        "frames_with_defects": sum(1 for result in results if result.defects),
        "total_defects": total,
        "mean_defects_per_frame": total / len(results) if results else 0.0,
        "total_defect_area_pixels": sum(result.total_area_px for result in results),
        "total_defect_area_physical": float(areas.sum()) if areas.size else 0.0,
        "largest_defect_area_pixels": largest.area_px if largest else 0,
        "largest_defect_area_physical": largest.area_physical if largest else 0.0,
        "largest_defect_frame": largest_frame,
        "mean_defect_area_physical": mean,
        "median_defect_area_physical": median,
        "std_defect_area_physical": std,
        "severity_counts": {
            level: sum(result.severity_counts[level] for result in results) for level in SEVERITY_LEVELS
        },
        "physical_unit": units.pop() if units else physical_unit,
    }
