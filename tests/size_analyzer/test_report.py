"""size_analyzer.report: batch summary, per-frame JSON report and CSV rows, known answers."""
from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from size_analyzer import (
    CSV_COLUMNS,
    DefectSizeAnalyzer,
    SizeAnalysisError,
    csv_rows,
    csv_text,
    frame_report,
    summarize_batch,
)
from tests.helpers import rect_map


def test_batch_and_summary() -> None:
    frames = np.stack([
        np.zeros((40, 40), np.float32),
        rect_map((40, 40), [(5, 5, 15, 15)]),
        rect_map((40, 40), [(0, 0, 4, 4), (20, 20, 40, 35)]),
    ])
    analyzer = DefectSizeAnalyzer(pixel_size=0.1, min_defect_area=1)
    batch = [analyzer.analyze_defects(f, 0.5, False) for f in frames]
    summary = summarize_batch(batch)
    assert summary["frames_analysed"] == 3
    assert summary["frames_with_defects"] == 2
    assert summary["total_defects"] == 3
    assert summary["total_defect_area_pixels"] == 100 + 16 + 300
    assert summary["largest_defect_area_pixels"] == 300
    assert summary["largest_defect_area_physical"] == pytest.approx(3.0)
    assert summary["largest_defect_frame"] == 2
    assert summary["median_defect_area_physical"] == pytest.approx(1.0)
    assert summary["mean_defects_per_frame"] == pytest.approx(1.0)
    assert summary["severity_counts"] == {"low": 1, "medium": 2, "high": 0, "critical": 0}
    assert summary["physical_unit"] == "mm"
    json.dumps(summary, allow_nan=False)
    empty = summarize_batch([], analyzer.physical_unit)
    assert empty["frames_analysed"] == 0 and empty["total_defects"] == 0 and empty["physical_unit"] == "mm"
    assert empty["std_defect_area_physical"] == 0.0


def test_summary_rejects_mixed_units() -> None:
    one = DefectSizeAnalyzer(physical_unit="mm").analyze_defects(np.zeros((8, 8)))
    two = DefectSizeAnalyzer(physical_unit="cm").analyze_defects(np.zeros((8, 8)))
    with pytest.raises(SizeAnalysisError, match="units"):
        summarize_batch([one, two])


def test_frame_report_known_answers_and_layout() -> None:
    analyzer = DefectSizeAnalyzer(pixel_size=0.5, physical_unit="cm", min_defect_area=1)
    result = analyzer.analyze_defects(rect_map((10, 12), [(2, 3, 6, 5)], 0.8), use_morphology=False)
    diameter = math.sqrt(4 * 8 / math.pi)
    report = frame_report(result)
    assert report == {
        "num_defects": 1,
        "defect_areas_pixels": [8],
        "defect_areas_physical": [2.0],
        "bounding_boxes": [[2, 3, 6, 5]],
        "centroids": [[3.5, 3.5]],
        "equivalent_diameters_pixels": [pytest.approx(diameter)],
        "equivalent_diameters_physical": [pytest.approx(0.5 * diameter)],
        "max_scores": [pytest.approx(0.8)],
        "mean_scores": [pytest.approx(0.8)],
        "severities": ["critical"],  # 2 cm^2 = 200 mm^2
        "total_defect_area_pixels": 8,
        "total_defect_area_physical": 2.0,
        "mean_defect_area_physical": 2.0,
        "median_defect_area_physical": 2.0,
        "std_defect_area_physical": 0.0,
        "pixel_size": 0.5,
        "physical_unit": "cm",
        "threshold": 0.5,
        "image_shape": [10, 12],
        "severity_counts": {"low": 0, "medium": 0, "high": 0, "critical": 1},
    }
    assert list(report)[:3] == ["num_defects", "defect_areas_pixels", "defect_areas_physical"]  # the JSON's order
    json.dumps(report, allow_nan=False)


def test_csv_rows_known_answers() -> None:
    analyzer = DefectSizeAnalyzer(pixel_size=0.1, min_defect_area=1)
    batch = [analyzer.analyze_defects(m, use_morphology=False) for m in (
        rect_map((40, 40), [(1, 1, 9, 6), (20, 20, 30, 38)]),  # 40 px and 180 px
        np.zeros((40, 40), np.float32),
        rect_map((40, 40), [(0, 30, 5, 35)]),  # 25 px
    )]
    text = csv_text(batch, frame_indices=[10, 11, 12])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    assert [(r["frame_index"], r["defect_index"], r["area_pixels"], r["severity"]) for r in rows] == [
        ("10", "0", "180", "medium"), ("10", "1", "40", "low"), ("12", "0", "25", "low")]
    assert [float(r["area_physical"]) for r in rows] == pytest.approx([1.8, 0.4, 0.25])
    first = rows[0]
    assert (first["x1"], first["y1"], first["x2"], first["y2"]) == ("20", "20", "30", "38")
    assert first["physical_unit"] == "mm"
    assert (float(first["centroid_x"]), float(first["centroid_y"])) == (24.5, 28.5)
    assert float(first["equivalent_diameter_physical"]) == pytest.approx(0.1 * math.sqrt(4 * 180 / math.pi))
    assert csv_rows(batch[2], 12)[0]["area_pixels"] == 25
    assert csv_text(batch).splitlines()[3].startswith("2,0,25,")  # frames numbered 0, 1, 2 by default
    with pytest.raises(SizeAnalysisError, match="frame_indices"):
        csv_text(batch, frame_indices=[0])
