"""datasets.mvtec: the reference's forced resize of wood and toothbrush."""
from __future__ import annotations

import pytest

from datasets.base import forced_resize


@pytest.mark.parametrize("dataset,classname,imagesize,expected", [
    ("mvtec", "wood", 288, 329),  # the reference's 329 px for its 288 px crop
    ("mvtec", "toothbrush", 288, 329),
    ("mvtec", "wood", 256, 292),  # 292.44
    ("mvtec", "toothbrush", 320, 366),  # 365.56
    ("mvtec", "wood", 64, 73),  # 73.11
    ("mvtec", "wood", 144, 164),  # 164.5: Python's round, halves to even, as the reference
    ("mvtec", "bottle", 288, None),
    ("mvtec", "carpet", 288, None),
    ("mpdd", "wood", 288, None),  # MVTec AD only
    ("visa", "toothbrush", 288, None),
    ("custom", "wood", 288, None),
])
def test_forced_resize_mirrors_the_reference(dataset: str, classname: str, imagesize: int,
                                             expected: int | None) -> None:
    assert forced_resize(dataset, classname, imagesize) == expected
