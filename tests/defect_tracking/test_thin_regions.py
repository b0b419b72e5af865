"""Thin regions measured on the frame: known lines on textured frames, against the map's blurred regions."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage
from skimage import data

from defect_tracking.thin_regions import refine_thin_regions, thin_length

CELL = 8.0


def textured_frame(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A busy grey surface: a real photo's texture (scikit-image's gravel) plus camera noise, BGR uint8."""
    gravel = cv2.resize(data.gravel(), (shape[1], shape[0]), interpolation=cv2.INTER_AREA).astype(np.float32)
    surface = 128.0 + 0.25 * (gravel - gravel.mean())  # its texture at a quarter of its contrast
    surface += np.random.default_rng(seed).normal(0.0, 2.0, shape)
    return cv2.cvtColor(np.clip(surface, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def paint_line(frame: np.ndarray, points: np.ndarray, width: int, shade: float) -> np.ndarray:
    """The line's mask (coverage >= 0.5, drawn anti-aliased at 4x), painted onto frame by `shade` grey levels."""
    canvas = np.zeros((frame.shape[0] * 4, frame.shape[1] * 4), np.uint8)
    cv2.polylines(canvas, [np.round(points * 4).astype(np.int32).reshape(-1, 1, 2)], False, 255, width * 4,
                  cv2.LINE_AA)
    coverage = cv2.resize(canvas, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_AREA) / 255.0
    painted = frame.astype(np.float32) + coverage[..., None] * shade
    frame[:] = np.clip(painted, 0, 255).astype(np.uint8)
    return coverage >= 0.5


def map_region(mask: np.ndarray, half_width: int, score: float = 0.9) -> np.ndarray:
    """What the map cuts around a defect: its mask grown by half_width pixels (the blur), at `score`."""
    grown = ndimage.binary_dilation(mask, iterations=half_width)
    return np.where(grown, score, 0.0).astype(np.float32)


def wavy_line(x0: float, x1: float, y: float) -> np.ndarray:
    """A gently curved polyline from x0 to x1 around row y."""
    xs = np.linspace(x0, x1, 40)
    return np.stack([xs, y + 6.0 * np.sin((xs - x0) / 25.0)], axis=1)


@pytest.mark.parametrize("shade", [-60.0, 55.0], ids=["dark crack", "bright scratch"])
def test_a_thin_line_is_measured_on_the_frame_not_as_wide_as_the_map(shade):
    """A 3 px line on a busy texture, cut by the map 13 px wide (over 3x its area): measured within 25 %,
    and nearly every kept pixel lies on the line."""
    frame = textured_frame((160, 320))
    line = paint_line(frame, wavy_line(60, 260, 80), 3, shade)
    region = map_region(line, 5)
    assert region.astype(bool).sum() > 3 * line.sum()
    refined = refine_thin_regions(region, frame, CELL) > 0
    assert refined.sum() == pytest.approx(line.sum(), rel=0.25)
    assert (refined & line).sum() >= 0.8 * refined.sum()


def test_the_line_beyond_the_maps_region_is_followed_by_up_to_one_cell():
    """The map cut the line's last 40 px off: the refined region follows it, by one cell (8 px) at most; the
    pixels it gains get the region's lowest kept score."""
    frame = textured_frame((160, 320), seed=1)
    line = paint_line(frame, np.array([[40.0, 80.0], [280.0, 80.0]]), 3, -60.0)
    region = map_region(line, 5)
    region[:, 240:] = 0  # the map's region ends 40 px before the line does
    refined = refine_thin_regions(region, frame, CELL)
    columns = np.flatnonzero(((refined > 0) & line).any(axis=0))
    assert 240 + CELL - 2 <= columns.max() <= 240 + CELL
    assert refined[:, 240:].max() == pytest.approx(0.9)


def test_wide_regions_and_regions_the_frame_does_not_explain_stay_as_the_map_cut_them():
    """A blob 50 px across is resolved by the map; a thin region over a flat frame has nothing to split."""
    frame = textured_frame((160, 320), seed=2)
    blob = np.zeros(frame.shape[:2], bool)
    cv2.circle(blob.view(np.uint8), (100, 80), 25, 1, -1)
    region = map_region(blob, 4)
    np.testing.assert_array_equal(refine_thin_regions(region, frame, CELL), region)
    flat = np.full((160, 320, 3), 120, np.uint8)
    thin = map_region(np.pad(np.ones((3, 150), bool), ((78, 79), (80, 90))), 5)
    np.testing.assert_array_equal(refine_thin_regions(thin, flat, CELL), thin)


def test_grey_and_colour_frames_give_the_same_regions_and_the_view_bounds_the_growth():
    """The refinement reads the grey level: a grey frame and its BGR copy agree; growth stays inside the
    scored view."""
    frame = textured_frame((160, 320), seed=3)
    line = paint_line(frame, np.array([[40.0, 80.0], [280.0, 80.0]]), 3, -60.0)
    region = map_region(line, 5)
    region[:, 240:] = 0
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(refine_thin_regions(region, grey, CELL), refine_thin_regions(region, frame, CELL))
    bounded = refine_thin_regions(region, frame, CELL, view=(0, 0, 243, 160))
    assert not bounded[:, 243:].any()


def test_same_input_same_regions_and_bad_cell_size_is_refused():
    frame = textured_frame((96, 200), seed=4)
    line = paint_line(frame, wavy_line(20, 180, 48), 3, -50.0)
    region = map_region(line, 5)
    np.testing.assert_array_equal(refine_thin_regions(region, frame, CELL), refine_thin_regions(region, frame, CELL))
    empty = np.zeros_like(region)
    assert refine_thin_regions(empty, frame, CELL) is empty
    for bad in (0.0, -8.0, float("nan")):
        with pytest.raises(ValueError, match="cell_px"):
            refine_thin_regions(region, frame, bad)


def test_thin_or_wide_is_judged_alike_on_a_frame_three_times_larger():
    """thin_length on a large frame's region (judged at the training scale): a 3 px line three times larger
    (9 px, cell 24) is thin with three times the length, as is a 1 px line there (narrower than the resizing
    step: kept a line); a disc stays wide."""
    line = np.zeros((90, 300), bool)
    line[44:47, 30:270] = True
    small = thin_length(line, CELL)
    big_line = cv2.resize(line.astype(np.uint8), None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST).astype(bool)
    assert thin_length(big_line, 3 * CELL) == pytest.approx(3 * small, rel=0.1)
    hair = np.zeros((270, 900), bool)
    hair[135, 90:810] = True
    assert thin_length(hair, 3 * CELL) == pytest.approx(720, rel=0.1)
    disc = np.zeros((300, 300), np.uint8)
    cv2.circle(disc, (150, 150), 90, 1, -1)
    assert thin_length(disc.astype(bool), 3 * CELL) is None
