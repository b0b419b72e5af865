"""size_analyzer.measure: known-answer geometry, windowing, units, severity, bad input."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from size_analyzer import (
    MM_PER_UNIT,
    Defect,
    DefectSizeAnalyzer,
    SeverityThresholds,
    SizeAnalysis,
    SizeAnalysisError,
    frame_report,
)
from size_analyzer.measure import _foreground_windows
from tests.helpers import rect_map


def disc_mask(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    """Boolean disc: pixels whose centre lies within radius of centre (x, y)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2


def areas(result: SizeAnalysis) -> list[int]:
    """Pixel areas of the defects, in result order."""
    return [d.area_px for d in result.defects]


def boxes_of(result: SizeAnalysis) -> list[tuple[int, int, int, int]]:
    """Boxes of the defects, in result order."""
    return [d.box for d in result.defects]


def test_rectangle_known_answers_without_morphology() -> None:
    analyzer = DefectSizeAnalyzer(pixel_size=0.5, physical_unit="mm", min_defect_area=1)
    result = analyzer.analyze_defects(rect_map((60, 80), [(10, 20, 40, 30)]), threshold=0.5, use_morphology=False)
    diameter = math.sqrt(4 * 300 / math.pi)
    assert result.defects == [Defect(
        area_px=300, area_physical=75.0, box=(10, 20, 40, 30), centroid=(24.5, 24.5),
        equivalent_diameter_px=pytest.approx(diameter), equivalent_diameter_physical=pytest.approx(0.5 * diameter),
        max_score=1.0, mean_score=1.0, severity="high")]
    assert result.total_area_px == 300
    assert result.total_area_physical == pytest.approx(75.0)
    assert frame_report(result)["std_defect_area_physical"] == 0.0
    assert result.image_shape == (60, 80)
    assert result.physical_unit == "mm" and result.pixel_size == 0.5


def test_disc_with_morphology_keeps_area_centroid_and_diameter() -> None:
    radius = 12
    disc = disc_mask((100, 100), (40, 55), radius)
    anomaly_map = disc.astype(np.float32)
    analyzer = DefectSizeAnalyzer(pixel_size=1.0, min_defect_area=10)
    plain = analyzer.analyze_defects(anomaly_map, use_morphology=False)
    assert areas(plain) == [int(disc.sum())]
    [smoothed] = analyzer.analyze_defects(anomaly_map, use_morphology=True).defects
    assert smoothed.area_px == pytest.approx(disc.sum(), rel=0.03)
    assert smoothed.centroid == pytest.approx((40.0, 55.0), abs=0.05)
    assert smoothed.equivalent_diameter_px == pytest.approx(2 * radius, rel=0.03)
    assert smoothed.box == (40 - radius, 55 - radius, 40 + radius + 1, 55 + radius + 1)


def test_rectangle_with_morphology_loses_only_corners() -> None:
    analyzer = DefectSizeAnalyzer(min_defect_area=1)
    result = analyzer.analyze_defects(rect_map((50, 50), [(5, 5, 35, 15)]))
    # The 3x3 elliptical (cross) kernel's opening removes the 4 corner pixels of a rectangle.
    assert areas(result) == [300 - 4]
    assert boxes_of(result) == [(5, 5, 35, 15)]


def test_several_defects_ordered_by_descending_area() -> None:
    boxes = [(2, 2, 6, 6), (20, 30, 40, 40), (50, 5, 60, 20)]  # areas 16, 200, 150
    result = DefectSizeAnalyzer(min_defect_area=1).analyze_defects(rect_map((64, 64), boxes), use_morphology=False)
    assert areas(result) == [200, 150, 16]
    assert boxes_of(result) == [boxes[1], boxes[2], boxes[0]]
    report = frame_report(result)
    assert report["num_defects"] == 3
    assert report["median_defect_area_physical"] == 150.0
    assert report["mean_defect_area_physical"] == pytest.approx(366 / 3)
    assert report["std_defect_area_physical"] == pytest.approx(np.std([200, 150, 16]))


def test_eight_connectivity_joins_diagonal_neighbours() -> None:
    anomaly_map = np.zeros((20, 20), np.float32)
    anomaly_map[5:10, 5:10] = 1.0
    anomaly_map[10:15, 10:15] = 1.0  # touches the first square at one corner only
    result = DefectSizeAnalyzer(min_defect_area=1).analyze_defects(anomaly_map, use_morphology=False)
    assert areas(result) == [50]


def test_min_defect_area_filters_small_regions_boundary_included() -> None:
    anomaly_map = rect_map((40, 40), [(2, 2, 5, 5), (20, 20, 30, 30)])  # 9 px and 100 px
    kept = DefectSizeAnalyzer(min_defect_area=9).analyze_defects(anomaly_map, use_morphology=False)
    assert areas(kept) == [100, 9]
    dropped = DefectSizeAnalyzer(min_defect_area=10).analyze_defects(anomaly_map, use_morphology=False)
    assert areas(dropped) == [100]
    none = DefectSizeAnalyzer(min_defect_area=101).analyze_defects(anomaly_map, use_morphology=False)
    assert none.defects == []


def test_threshold_is_inclusive_and_scores_are_per_region() -> None:
    anomaly_map = np.zeros((30, 30), np.float32)
    anomaly_map[5:10, 5:15] = np.linspace(0.5, 0.9, 10, dtype=np.float32)[None, :]
    anomaly_map[20:25, 20:25] = 0.49
    result = DefectSizeAnalyzer(min_defect_area=1).analyze_defects(anomaly_map, threshold=0.5, use_morphology=False)
    [defect] = result.defects
    assert defect.max_score == pytest.approx(0.9)
    assert defect.mean_score == pytest.approx(0.7)
    assert result.threshold == 0.5


def test_morphology_removes_specks_and_fills_pinholes() -> None:
    anomaly_map = rect_map((60, 60), [(10, 10, 40, 40)])
    anomaly_map[25, 25] = 0.0  # pinhole
    specks = [(50, 50), (5, 50), (55, 5)]
    for x, y in specks:
        anomaly_map[y, x] = 1.0
    raw = DefectSizeAnalyzer(min_defect_area=0).analyze_defects(anomaly_map, use_morphology=False)
    assert areas(raw) == [899, 1, 1, 1]
    clean = DefectSizeAnalyzer(min_defect_area=0).analyze_defects(anomaly_map, use_morphology=True)
    assert areas(clean) == [900 - 4]


def test_cropped_processing_equals_whole_map_reference() -> None:
    rng = np.random.default_rng(3)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    analyzer = DefectSizeAnalyzer(min_defect_area=0)
    for _ in range(5):
        anomaly_map = cv2.GaussianBlur(rng.random((70, 90)).astype(np.float32), (0, 0), 2)
        anomaly_map = (anomaly_map - anomaly_map.min()) / (anomaly_map.max() - anomaly_map.min())
        for threshold in (0.55, 0.8):
            mask = (anomaly_map >= threshold).astype(np.uint8)
            expected = cv2.morphologyEx(cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel), cv2.MORPH_CLOSE, kernel)
            result = analyzer.analyze_defects(anomaly_map, threshold, keep_label_map=True)
            assert result.total_area_px == int(expected.sum())
            np.testing.assert_array_equal(result.label_map > 0, expected > 0)
            for i, defect in enumerate(result.defects):
                region = result.label_map == i + 1
                assert int(region.sum()) == defect.area_px
                ys, xs = np.nonzero(region)
                assert defect.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
                assert defect.centroid == pytest.approx((xs.mean(), ys.mean()))
                assert defect.max_score == pytest.approx(float(anomaly_map[region].max()))
                assert defect.mean_score == pytest.approx(float(anomaly_map[region].mean()), rel=1e-6)


def reference_areas(anomaly_map: np.ndarray, threshold: float, use_morphology: bool, kernel_size: int = 3) -> list:
    """Sorted region areas computed on the whole map with plain OpenCV calls."""
    mask = (anomaly_map >= threshold).astype(np.uint8)
    if use_morphology:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))
        mask = cv2.morphologyEx(cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel), cv2.MORPH_CLOSE, kernel)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return sorted(stats[1:, cv2.CC_STAT_AREA].tolist(), reverse=True)


@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("use_morphology", [True, False])
def test_windowing_matches_whole_map_for_every_gap(kernel_size: int, use_morphology: bool) -> None:
    analyzer = DefectSizeAnalyzer(min_defect_area=0, morphology_kernel_size=kernel_size)
    for gap in range(0, 2 * kernel_size + 3):
        # squares side by side, one above another, and one touching the image corner
        boxes = [(0, 0, 8, 8), (20, 20, 30, 30), (30 + gap, 20, 40 + gap, 30), (20, 30 + gap, 30, 40 + gap)]
        anomaly_map = rect_map((64, 64), boxes)
        anomaly_map[22, 32 + gap] = 0.0  # a pinhole that closing fills
        result = analyzer.analyze_defects(anomaly_map, 0.5, use_morphology, keep_label_map=True)
        assert areas(result) == reference_areas(anomaly_map, 0.5, use_morphology, kernel_size), gap
        assert [int((result.label_map == i + 1).sum()) for i in range(len(result.defects))] == areas(result)


def test_many_clusters_fall_back_to_one_window() -> None:
    anomaly_map = np.zeros((200, 200), np.float32)
    anomaly_map[5:200:10, 5:200:10] = 1.0  # 400 isolated pixels
    anomaly_map[55:58, 55:58] = 1.0  # grows one of them to 9 px
    assert len(_foreground_windows(anomaly_map.astype(np.uint8), 0)) == 1
    result = DefectSizeAnalyzer(min_defect_area=1).analyze_defects(anomaly_map, use_morphology=False)
    assert len(result.defects) == 400
    assert result.defects[0].area_px == 9
    assert areas(result) == reference_areas(anomaly_map, 0.5, False)
    assert result.defects[1].box == (5, 5, 6, 6)  # equal areas: top then left first
    assert result.defects[2].box == (15, 5, 16, 6)


def test_no_defects_gives_zero_statistics_and_strict_json() -> None:
    result = DefectSizeAnalyzer().analyze_defects(np.zeros((32, 32), np.float32))
    assert result.defects == [] and result.total_area_px == 0 and result.total_area_physical == 0.0
    report = frame_report(result)
    assert report["num_defects"] == 0
    assert report["defect_areas_physical"] == [] and report["severities"] == []
    assert report["mean_defect_area_physical"] == 0.0
    assert report["median_defect_area_physical"] == 0.0
    assert report["std_defect_area_physical"] == 0.0
    json.dumps(report, allow_nan=False)


@pytest.mark.parametrize(
    ("unit", "pixel_size", "to_mm"),
    [("mm", 0.1, 1.0), ("cm", 0.01, 10.0), ("inch", 0.1 / 25.4, 25.4), ("in", 0.1 / 25.4, 25.4)],
)
def test_units_give_same_physical_defect(unit: str, pixel_size: float, to_mm: float) -> None:
    anomaly_map = rect_map((64, 64), [(10, 10, 30, 40)])  # 600 px = 6 mm^2 at 0.1 mm/px
    result = DefectSizeAnalyzer(pixel_size, unit).analyze_defects(anomaly_map, use_morphology=False)
    assert result.physical_unit == ("inch" if unit == "in" else unit)
    [defect] = result.defects
    assert defect.area_physical * to_mm**2 == pytest.approx(6.0)
    assert defect.equivalent_diameter_physical * to_mm == pytest.approx(0.1 * math.sqrt(4 * 600 / math.pi))
    assert defect.severity == "medium"


def test_unit_conversion_factors() -> None:
    assert MM_PER_UNIT == {"mm": 1.0, "cm": 10.0, "inch": 25.4}
    assert DefectSizeAnalyzer(physical_unit="inch").area_to_mm2 == pytest.approx(645.16)
    assert DefectSizeAnalyzer(physical_unit=" CM ").physical_unit == "cm"


def test_px_unit_measures_in_pixels_and_reads_them_as_mm_for_severity() -> None:
    """unit px: sizes in pixels, labelled px; severity as if a pixel were a millimetre; only pixel size 1."""
    anomaly_map = rect_map((64, 64), [(10, 10, 30, 40)])  # 600 px: read as 600 mm^2, critical (>= 100)
    result = DefectSizeAnalyzer(1.0, "pixels").analyze_defects(anomaly_map, use_morphology=False)
    [defect] = result.defects
    assert result.physical_unit == "px" and defect.area_physical == 600.0 and defect.severity == "critical"
    assert DefectSizeAnalyzer(1.0, "px").area_to_mm2 == 1.0
    with pytest.raises(SizeAnalysisError, match="pixel_size 0.1 with physical_unit px"):
        DefectSizeAnalyzer(0.1, "px")


@pytest.mark.parametrize(
    ("pixels", "expected"), [(99, "low"), (100, "medium"), (999, "medium"), (1000, "high"), (10000, "critical")]
)
@pytest.mark.parametrize(("unit", "pixel_size"), [("mm", 0.1), ("cm", 0.01), ("inch", 0.1 / 25.4)])
def test_severity_boundaries_in_every_unit(pixels: int, expected: str, unit: str, pixel_size: float) -> None:
    anomaly_map = np.zeros((100, 100), np.float32)
    anomaly_map.ravel()[:pixels] = 1.0  # whole rows then a partial row: one 8-connected region
    result = DefectSizeAnalyzer(pixel_size, unit, min_defect_area=1).analyze_defects(anomaly_map, use_morphology=False)
    assert [(d.area_px, d.severity) for d in result.defects] == [(pixels, expected)]


@pytest.mark.parametrize(
    ("unit", "pixel_size", "pixels", "area_mm2"), [("mm", 0.7, 100, 49.0), ("cm", 0.06, 575, 207.0)]
)
def test_severity_boundary_survives_float_round_off(unit: str, pixel_size: float, pixels: int, area_mm2: float) -> None:
    # pixels * pixel_size**2 in float lands just below the exact boundary (e.g. 48.99999999999999).
    anomaly_map = np.zeros((100, 100), np.float32)
    anomaly_map.ravel()[:pixels] = 1.0
    analyzer = DefectSizeAnalyzer(pixel_size, unit, min_defect_area=1, severity_thresholds_mm2=(1.0, area_mm2, 1000.0))
    [defect] = analyzer.analyze_defects(anomaly_map, use_morphology=False).defects
    assert defect.area_physical * analyzer.area_to_mm2 < area_mm2  # the round-off really happens
    assert defect.severity == "high"


def test_default_and_custom_severity_thresholds() -> None:
    defaults = SeverityThresholds()
    assert [defaults.classify(a) for a in (0.0, 0.999, 1.0, 9.99, 10.0, 99.9, 100.0, 1e6)] == [
        "low", "low", "medium", "medium", "high", "high", "critical", "critical"]
    analyzer = DefectSizeAnalyzer(severity_thresholds_mm2=(5.0, 50.0, 500.0))
    assert [analyzer.classify_severity(a) for a in (4.9, 5.0, 60.0, 500.0)] == ["low", "medium", "high", "critical"]
    in_cm = DefectSizeAnalyzer(physical_unit="cm", severity_thresholds_mm2=SeverityThresholds(5.0, 50.0, 500.0))
    assert in_cm.classify_severity(0.05) == "medium"  # 0.05 cm^2 = 5 mm^2
    counts = DefectSizeAnalyzer(min_defect_area=1).analyze_defects(
        rect_map((64, 64), [(0, 0, 1, 1), (10, 10, 13, 13), (30, 30, 60, 60)]), use_morphology=False).severity_counts
    assert counts == {"low": 0, "medium": 2, "high": 0, "critical": 1}


def test_guide_usage_snippet() -> None:
    analyzer = DefectSizeAnalyzer(pixel_size=0.1, physical_unit="mm", min_defect_area=10)
    result = analyzer.analyze_defects(rect_map((64, 64), [(5, 5, 25, 25)]), threshold=0.5, use_morphology=True)
    text = (f"{len(result.defects)} {result.total_area_physical:.2f} {result.physical_unit} "
            f"{[round(d.area_physical, 2) for d in result.defects]} {result.severity_counts}")
    assert text == "1 3.96 mm [3.96] {'low': 0, 'medium': 1, 'high': 0, 'critical': 0}"


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"pixel_size": 0}, "pixel_size"),
        ({"pixel_size": -0.1}, "pixel_size"),
        ({"pixel_size": float("nan")}, "pixel_size"),
        ({"pixel_size": "0.1"}, "pixel_size"),
        ({"pixel_size": True}, "pixel_size"),
        ({"physical_unit": "m"}, "physical_unit"),
        ({"physical_unit": None}, "physical_unit"),
        ({"min_defect_area": -1}, "min_defect_area"),
        ({"min_defect_area": 2.5}, "min_defect_area"),
        ({"severity_thresholds_mm2": (10.0, 1.0, 100.0)}, "severity_thresholds_mm2"),
        ({"severity_thresholds_mm2": (1.0, 10.0)}, "severity_thresholds_mm2"),
        ({"morphology_kernel_size": 0}, "morphology_kernel_size"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict, argument: str) -> None:
    with pytest.raises(SizeAnalysisError) as info:
        DefectSizeAnalyzer(**kwargs)
    message = str(info.value)
    assert argument in message and "\n" not in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("anomaly_map", "threshold", "needle"),
    [
        (np.zeros((2, 8, 8)), 0.5, "2-D"),
        (np.zeros(8), 0.5, "2-D"),
        (np.zeros((0, 8)), 0.5, "2-D"),
        (np.array([[0.1, np.nan], [0.2, 0.3]]), 0.5, "NaN"),
        (np.array([[0.1, np.inf], [0.2, 0.3]]), 0.5, "NaN"),
        (np.array([["a", "b"]]), 0.5, "dtype"),
        (np.zeros((8, 8)), float("nan"), "threshold"),
        (np.zeros((8, 8)), "0.5", "threshold"),
    ],
)
def test_bad_maps_and_thresholds(anomaly_map: np.ndarray, threshold, needle: str) -> None:
    with pytest.raises(SizeAnalysisError, match=needle) as info:
        DefectSizeAnalyzer().analyze_defects(anomaly_map, threshold)
    assert "\n" not in str(info.value)


def test_integer_and_boolean_maps_are_accepted() -> None:
    as_int = np.zeros((20, 20), np.uint8)
    as_int[5:10, 5:10] = 1
    result = DefectSizeAnalyzer(min_defect_area=1).analyze_defects(as_int, use_morphology=False)
    assert areas(result) == [25]
    assert DefectSizeAnalyzer(min_defect_area=1).analyze_defects(as_int.astype(bool), use_morphology=False) == result
