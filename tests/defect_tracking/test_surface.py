"""Defects on the surface: region grouping, footprint votes, track merging, on ground-truth maps."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy import ndimage
from skimage import data

from defect_tracking import GLASSDefectTracker, TrackingError
from defect_tracking.surface import Footprint, group_regions, measure, merge_groups
from size_analyzer import DefectSizeAnalyzer

HEIGHT, WIDTH = 96, 160  # a wide frame
PIXEL_SIZE = 0.25  # mm per pixel


def test_regions_closer_than_the_gap_are_one_group():
    labels = np.zeros((40, 60), np.int32)
    labels[5:10, 5:10] = 1
    labels[5:10, 13:18] = 2  # 3 px from region 1
    labels[5:10, 21:26] = 3  # 3 px from region 2: joined through it
    labels[30:35, 50:55] = 4  # far away
    assert group_regions(labels, 4, 0).tolist() == [0, 1, 2, 3]
    assert group_regions(labels, 4, 2).tolist() == [0, 1, 2, 3]  # a 2 px gap does not bridge 3 px
    grouped = group_regions(labels, 4, 4).tolist()
    assert grouped[0] == grouped[1] == grouped[2] != grouped[3]
    assert group_regions(labels, 0, 4).size == 0


def _square_mask(size: int) -> np.ndarray:
    return np.ones((size, size), bool)


def test_footprint_of_a_moving_square_has_its_true_area_and_place():
    """A 10x10 square moving 4 px/frame to the left: surface position fixed, area exact."""
    footprint = Footprint()
    for frame in range(8):
        offset = (-4.0 * frame, 0.0)  # frame = surface + offset
        corner = (70 - 4 * frame, 30)
        footprint.add(frame, _square_mask(10), corner, offset, (HEIGHT, WIDTH))
    shape = measure(footprint)
    assert shape.area_px == 100 and shape.box == (70, 30, 80, 40)
    assert shape.centroid == pytest.approx((74.5, 34.5))


def test_a_defect_longer_than_the_view_is_assembled_from_its_parts():
    """A 300 px bar seen through a 160 px wide frame: every frame shows a part; the area is the whole bar."""
    bar_x0, bar_len, bar_y, bar_h, speed = 100, 300, 40, 6, 12
    footprint = Footprint()
    for frame in range(40):
        shift = speed * frame
        visible_x0, visible_x1 = max(bar_x0 - shift, 0), min(bar_x0 + bar_len - shift, WIDTH)
        if visible_x0 >= visible_x1:
            continue
        footprint.add(frame, np.ones((bar_h, visible_x1 - visible_x0), bool), (visible_x0, bar_y),
                      (-float(shift), 0.0), (HEIGHT, WIDTH))
    shape = measure(footprint)
    assert shape.area_px == bar_len * bar_h and shape.box == (bar_x0, bar_y, bar_x0 + bar_len, bar_y + bar_h)


def test_a_pixel_marked_in_one_frame_of_five_is_outvoted():
    footprint = Footprint()
    for frame in range(5):
        mask = _square_mask(8)
        if frame == 2:  # the threshold cut one more row in one frame
            mask = np.ones((9, 8), bool)
        footprint.add(frame, mask, (20, 20), (0.0, 0.0), (HEIGHT, WIDTH))
    assert measure(footprint).area_px == 64


def test_tracks_whose_footprints_touch_merge_others_stay_apart():
    near, apart, far_later = Footprint(), Footprint(), Footprint()
    base = Footprint()
    base.add(0, _square_mask(10), (10, 10), (0.0, 0.0), (HEIGHT, WIDTH))
    near.add(1, _square_mask(10), (22, 10), (0.0, 0.0), (HEIGHT, WIDTH))  # 2 px gap
    apart.add(2, _square_mask(10), (60, 60), (0.0, 0.0), (HEIGHT, WIDTH))
    far_later.add(500, _square_mask(10), (10, 10), (0.0, 0.0), (HEIGHT, WIDTH))  # same place, much later
    footprints = {1: base, 2: near, 3: apart, 4: far_later}
    spans = {1: (0, 0), 2: (1, 1), 3: (2, 2), 4: (500, 500)}
    assert merge_groups(footprints, spans, gap_px=3, max_frame_gap=30) == [[1, 2], [3], [4]]
    assert merge_groups(footprints, spans, gap_px=1, max_frame_gap=30) == [[1], [2], [3], [4]]
    assert merge_groups(footprints, spans, gap_px=3, max_frame_gap=1000) == [[1, 2, 4], [3]]


# ----------------------------------------------------------------------------------------- tracker level
def branching_crack(height: int = 40, length: int = 60) -> np.ndarray:
    """A crack with two side branches, drawn 2 px wide (bool, length x height box)."""
    mask = np.zeros((height, length), np.uint8)
    cv2.line(mask, (2, height // 2), (length - 3, height // 2 - 6), 1, 2)
    cv2.line(mask, (length // 3, height // 2 - 1), (length // 2, 3), 1, 2)
    cv2.line(mask, (length // 2, height // 2 - 3), (length - 10, height - 4), 1, 2)
    return mask.astype(bool)


def broken_map(mask: np.ndarray, gaps_every: int = 11, gap: int = 3) -> np.ndarray:
    """The crack as a map cuts it: pieces separated by `gap`-px breaks (columns removed)."""
    cut = mask.copy()
    for x in range(gaps_every, mask.shape[1], gaps_every):
        cut[:, x:x + gap] = False
    return cut


def conveyor(defects: list[tuple[np.ndarray, np.ndarray, int, int]], speed: int, frames: int, seed: int = 0):
    """Frames of gravel moving -speed px/frame with painted defects, and ground-truth-like maps.

    defects: (painted mask, mask the 'map' marks, strip x, strip y)."""
    photo = data.gravel()[:HEIGHT]
    length = speed * frames + WIDTH + 10
    tiles = length // photo.shape[1] + 2
    strip = np.concatenate([photo if i % 2 == 0 else photo[:, ::-1] for i in range(tiles)], axis=1)[:, :length].copy()
    marked = np.zeros(strip.shape, np.float32)
    for painted, seen, x, y in defects:
        strip[y:y + painted.shape[0], x:x + painted.shape[1]][painted] = 30
        marked[y:y + seen.shape[0], x:x + seen.shape[1]][seen] = 1.0
    rng = np.random.default_rng(seed)
    video, maps = [], []
    for t in range(frames):
        left = speed * t
        gray = strip[:, left:left + WIDTH].astype(np.float64) + rng.normal(0.0, 2.0, (HEIGHT, WIDTH))
        video.append(cv2.cvtColor(np.clip(gray, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR))
        maps.append(marked[:, left:left + WIDTH].copy())
    return video, maps


def analyzer() -> DefectSizeAnalyzer:
    return DefectSizeAnalyzer(pixel_size=PIXEL_SIZE, physical_unit="mm", min_defect_area=4)


def frame_area(amap: np.ndarray) -> int:
    """What the size analyzer measures of a map in one frame (its morphology rounds corners)."""
    return analyzer().analyze_defects(amap, 0.5).total_area_px


def track(video, maps, merge_gap_mm: float) -> GLASSDefectTracker:
    tracker = GLASSDefectTracker(analyzer(), threshold=0.5, motion_method="phase", fps=25.0,
                                 merge_gap_mm=merge_gap_mm, min_hits=3)
    for index, (frame, amap) in enumerate(zip(video, maps)):
        tracker.update(index, frame, amap)
    return tracker


def test_a_branching_crack_cut_into_pieces_is_one_defect_with_its_area():
    crack = branching_crack()
    pieces = broken_map(crack)
    assert ndimage.label(pieces, structure=np.ones((3, 3)))[1] >= 4  # the map shows it in pieces
    video, maps = conveyor([(crack, pieces, 200, 30)], speed=6, frames=60)
    merged = track(video, maps, merge_gap_mm=1.5)  # 6 px at 0.25 mm/px bridges the 3 px breaks
    defects = merged.defects()
    assert len(defects) == 1
    defect = defects[0]
    # the surface area is what one frame showing the whole crack measures (not a per-frame box)
    assert defect.area_px == pytest.approx(frame_area(maps[25]), rel=0.03)
    assert defect.area_px < 0.5 * (crack.shape[0] * crack.shape[1])
    x0, y0, x1, y1 = defect.surface_box_px
    # surface coordinates are frame 0's pixels: the crack was painted at strip x 200 (frame 0 shows x 0..160)
    boxes = np.array([d.box for d in analyzer().analyze_defects(maps[25], 0.5).defects])  # frame 25: x 150..310
    expected = (boxes[:, 0].min() + 150, boxes[:, 1].min(), boxes[:, 2].max() + 150, boxes[:, 3].max())
    assert np.abs(np.subtract(defect.surface_box_px, expected)).max() <= 2
    assert defect.area_mm2 == pytest.approx(defect.area_px * PIXEL_SIZE ** 2)
    assert defect.length == pytest.approx((x1 - x0) * PIXEL_SIZE)
    assert defect.width == pytest.approx((y1 - y0) * PIXEL_SIZE)
    assert defect.along == pytest.approx(defect.surface_centroid_px[0] * PIXEL_SIZE)  # right-to-left motion
    assert defect.across == pytest.approx(defect.surface_centroid_px[1] * PIXEL_SIZE)
    unmerged = track(video, maps, merge_gap_mm=0.0)
    assert len(unmerged.defects()) >= 4  # without the gap every piece is a defect of its own


def test_two_defects_in_view_at_once_stay_two():
    square = np.ones((12, 12), bool)
    video, maps = conveyor([(square, square, 180, 10), (square, square, 190, 70)], speed=5, frames=50)
    defects = track(video, maps, merge_gap_mm=2.0).defects()
    assert len(defects) == 2
    assert sorted(d.area_px for d in defects) == [frame_area(maps[20]) // 2] * 2
    assert sorted(round(d.surface_centroid_px[1]) for d in defects) == [16, 76]


def test_a_defect_at_the_frame_edge_is_measured():
    half = np.ones((10, 14), bool)  # touches the bottom edge of the frame
    video, maps = conveyor([(half, half, 170, HEIGHT - 10)], speed=4, frames=60)
    defects = track(video, maps, merge_gap_mm=2.0).defects()
    assert len(defects) == 1 and defects[0].area_px == frame_area(maps[20])


def test_bad_merge_gap_is_refused():
    with pytest.raises(TrackingError, match="merge_gap_mm"):
        GLASSDefectTracker(analyzer(), threshold=0.5, merge_gap_mm=-1.0)


def test_hysteresis_keeps_low_areas_only_around_seeds():
    """Areas above `low` survive only when they hold a pixel above `high` (or the peak, when asked)."""
    from defect_tracking.surface import hysteresis_map

    amap = np.zeros((20, 40), np.float32)
    amap[2:8, 2:8] = 0.6
    amap[4, 4] = 0.9  # a seed: its whole 0.6 area stays
    amap[12:16, 20:30] = 0.65  # above low, no seed: dropped
    amap[2:5, 30:34] = 0.55  # below low: dropped
    kept = hysteresis_map(amap, high=0.8, low=0.5)
    assert (kept[2:8, 2:8] == amap[2:8, 2:8]).all()
    assert not kept[12:16, 20:30].any() and not kept[2:5, 30:34].any()
    peak = hysteresis_map(amap, high=0.95, low=0.5, seed_peak=True)  # no pixel reaches high: the peak's area
    assert (peak[2:8, 2:8] > 0).all() and not peak[12:16, 20:30].any()
    assert (hysteresis_map(amap, high=0.5, low=0.5) == amap).all()  # low == high: plain threshold, untouched


def test_tracker_with_hysteresis_measures_the_whole_area_of_a_faint_defect():
    """A defect whose core alone passes `threshold` is measured down to `low_threshold`."""
    square = np.ones((16, 16), bool)
    video, maps = conveyor([(square, square, 180, 30)], speed=5, frames=50)
    for amap in maps:
        amap *= 0.6  # the defect's map level ...
        ys, xs = np.nonzero(amap)
        if ys.size:
            amap[ys.min() + 6:ys.min() + 10, xs.min() + 6:xs.min() + 10] = 0.9  # ... with a strong core
    low = GLASSDefectTracker(analyzer(), threshold=0.8, low_threshold=0.5, motion_method="phase", fps=25.0,
                             merge_gap_mm=1.0, min_hits=3)
    core_only = GLASSDefectTracker(analyzer(), threshold=0.8, motion_method="phase", fps=25.0,
                                   merge_gap_mm=1.0, min_hits=3)
    for index, (frame, amap) in enumerate(zip(video, maps)):
        low.update(index, frame, amap)
        core_only.update(index, frame, amap)
    assert [d.area_px for d in low.defects()] == [frame_area((maps[20] > 0).astype(np.float32))]
    assert core_only.defects()[0].area_px < 20


def test_defects_are_computed_once_per_frame_and_forgotten_on_reset():
    square = np.ones((12, 12), bool)
    video, maps = conveyor([(square, square, 180, 10)], speed=5, frames=30)
    tracker = track(video[:20], maps[:20], merge_gap_mm=2.0)
    first = tracker.defects()
    assert first == tracker.defects() and first is not tracker.defects()  # same answer, callers get copies
    for index in range(20, 30):
        tracker.update(index, video[index], maps[index])
    assert tracker.defects()[0].last_frame > first[0].last_frame  # a new frame: computed again
    tracker.reset()
    assert tracker.defects() == []


def blurred_disk(radius: float, amplitude: float, background: float = 0.45, sigma: float = 6.0) -> np.ndarray:
    """A map: a disk of `radius` px at `amplitude` above `background`, blurred as a patch model blurs it."""
    ys, xs = np.mgrid[0:160, 0:160]
    disk = ((xs - 80) ** 2 + (ys - 80) ** 2 <= radius ** 2).astype(np.float64)
    return (background + amplitude * ndimage.gaussian_filter(disk, sigma)).astype(np.float32)


@pytest.mark.parametrize("amplitude", [0.2, 0.5])
def test_cut_at_half_height_measures_a_blurred_disk_at_its_edge_whatever_its_strength(amplitude):
    """Half height above the background lies on a blurred disk's edge: its area within 6 % for a weak
    and a strong disk, where one fixed level measures them over 20 % apart."""
    from defect_tracking.surface import cut_at_height

    radius = 25.0
    amap = blurred_disk(radius, amplitude)
    region = np.where(amap >= 0.5, amap, 0)  # the regions a fixed level of 0.5 cuts
    cut = cut_at_height(region, amap, 0.5)
    assert abs((cut > 0).sum() / (math.pi * radius ** 2) - 1) < 0.06
    assert cut.max() == amap.max()  # the peak stays
    weak, strong = blurred_disk(radius, 0.2), blurred_disk(radius, 0.5)
    assert (strong >= 0.5).sum() > 1.2 * (weak >= 0.5).sum()  # what a fixed level does instead


def test_cut_at_height_cuts_each_region_at_its_own_peak_and_only_shrinks():
    from defect_tracking.surface import cut_at_height

    amap = np.full((40, 80), 0.2, np.float32)
    amap[5:15, 5:15] = 0.6
    amap[8:12, 8:12] = 1.0  # strong core: level 0.2 + 0.5 * 0.8 = 0.6 keeps the 0.6 ring
    amap[20:30, 40:60] = 0.5
    amap[24:26, 48:52] = 0.9  # level 0.55: the 0.5 ring goes, the 0.9 core stays
    region = np.where(amap >= 0.5, amap, 0)
    cut = cut_at_height(region, amap, 0.5)
    assert (cut[5:15, 5:15] > 0).all()
    assert (cut[20:30, 40:60] > 0).sum() == 8 and (cut[24:26, 48:52] == 0.9).all()
    assert ((cut > 0) <= (region > 0)).all()
    assert cut_at_height(region, amap, 0.0) is region  # 0: untouched
    empty = np.zeros_like(amap)
    assert not cut_at_height(empty, amap, 0.5).any()


def test_bad_region_height_is_refused():
    for bad in (-0.1, 1.0, True, float("nan")):
        with pytest.raises(TrackingError, match="region_height"):
            GLASSDefectTracker(analyzer(), threshold=0.5, region_height=bad)
