"""size_analyzer.draw: boxes outline the defects in their severity colour; bad images refused."""
from __future__ import annotations

import numpy as np
import pytest

from size_analyzer import SEVERITY_COLOURS_BGR, DefectSizeAnalyzer, SizeAnalysisError, draw_defects
from tests.helpers import rect_map


def test_drawn_boxes_outline_the_defects() -> None:
    result = DefectSizeAnalyzer(min_defect_area=1).analyze_defects(rect_map((64, 64), [(20, 20, 40, 40)]))
    image = np.full((64, 64, 3), 128, np.uint8)
    before = image.copy()
    drawn = draw_defects(image, result)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    np.testing.assert_array_equal(image, before)  # the input is left as it was
    red = SEVERITY_COLOURS_BGR["critical"]  # a 396 mm^2 region
    assert red == (0, 0, 255)
    # On the outline: first and last pixel column and row of the defect; off it: inside, right of and below it.
    for y, x in [(30, 20), (30, 39), (39, 30)]:
        assert tuple(drawn[y, x]) == red, (y, x)
    for y, x in [(30, 30), (25, 35), (30, 50), (55, 30)]:
        assert tuple(drawn[y, x]) == (128, 128, 128), (y, x)
    assert (drawn[:20, 20:40] == red).all(axis=2).any()  # the area label's tag sits above the box
    grey = draw_defects(np.zeros((64, 64), np.uint8), result, show_labels=False)
    assert grey.shape == (64, 64, 3) and tuple(grey[30, 20]) == red and not grey[:18].any()
    scaled = draw_defects(np.zeros((128, 128, 3), np.uint8), result, colour=(255, 0, 0), show_labels=False)
    assert tuple(scaled[60, 40]) == (255, 0, 0) and tuple(scaled[60, 79]) == (255, 0, 0)  # box scaled x2
    assert not scaled[60, 42:78].any()
    untouched = draw_defects(image, DefectSizeAnalyzer().analyze_defects(np.zeros((64, 64))))
    np.testing.assert_array_equal(untouched, image)


def test_bad_image_to_draw_on() -> None:
    result = DefectSizeAnalyzer().analyze_defects(np.zeros((8, 8)))
    with pytest.raises(SizeAnalysisError, match="uint8") as info:
        draw_defects(np.zeros((8, 8, 3), np.float32), result)
    assert "\n" not in str(info.value)
