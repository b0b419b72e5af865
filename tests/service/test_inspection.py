"""Form fields of an inspection, regions as the API gives them, the map's 8-bit levels."""
from __future__ import annotations

import numpy as np
import pytest

from service.http_errors import ApiError
from service.inspection import InspectParams, map_levels, parse_float, parse_int, region
from size_analyzer import DefectSizeAnalyzer


def test_form_fields_parse_with_empty_meaning_not_given():
    assert InspectParams.from_form(None, None, None) == InspectParams(None, 1.0, "px")
    assert InspectParams.from_form("", " ", "") == InspectParams(None, 1.0, "px")
    assert InspectParams.from_form("0.25", "0.1", " MM ") == InspectParams(0.25, 0.1, "mm")
    assert InspectParams.from_form(None, "2", "in").shown_unit == "inch"
    assert parse_int("max_frames", "12", 1) == 12 and parse_int("max_frames", "", 1) is None


@pytest.mark.parametrize("fields, needle", [
    (("abc", None, None), "threshold 'abc': not a number"),
    (("nan", None, None), "threshold 'nan': must be a finite number"),
    (("-0.1", None, None), "threshold -0.1: scores lie in [0, 1]"),
    ((None, "0", "mm"), "pixel_size 0: must be > 0"),
    ((None, "inf", "mm"), "pixel_size 'inf'"),
    ((None, None, "furlong"), "unit 'furlong': use one of px, mm, cm, inch, in"),
    ((None, "0.1", "px"), "pixel_size 0.1 with unit px"),
])
def test_bad_fields_are_400_naming_the_field(fields, needle):
    with pytest.raises(ApiError) as error:
        InspectParams.from_form(*fields)
    assert error.value.status == 400 and needle in str(error.value)
    with pytest.raises(ApiError):
        parse_float("x", "1e999")
    with pytest.raises(ApiError):
        parse_int("max_frames", "2.5", 1)


def test_regions_give_box_sizes_in_the_requests_unit():
    amap = np.zeros((50, 60), np.float32)
    amap[10:20, 5:35] = 0.9  # 30 wide, 10 high (the analyzer's morphology takes the 4 corner pixels)
    params = InspectParams(None, 0.5, "mm")
    defect = params.analyzer().analyze_defects(amap, 0.5).defects[0]
    assert region(1, defect, params) == {
        "id": 1, "x": 5, "y": 10, "w": 30, "h": 10, "area_px": 296, "area": pytest.approx(74.0), "length": 15.0,
        "width": 5.0, "unit": "mm", "severity": "high", "max_score": pytest.approx(0.9)}
    pixels = InspectParams()
    in_px = region(2, pixels.analyzer().analyze_defects(amap, 0.5).defects[0], pixels)
    assert (in_px["area"], in_px["length"], in_px["width"], in_px["unit"]) == (296.0, 30.0, 10.0, "px")
    assert in_px["severity"] == DefectSizeAnalyzer(1.0, "mm").classify_severity(296.0)


def test_map_levels_round_and_clip():
    levels = map_levels(np.array([[0.0, 0.5, 1.0], [-0.2, 1.3, 0.002]], np.float32))
    assert levels.dtype == np.uint8 and levels.tolist() == [[0, 128, 255], [0, 255, 1]]
