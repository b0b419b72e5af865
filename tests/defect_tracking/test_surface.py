"""Defects on the surface: region grouping, footprint votes, track merging, on ground-truth maps."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy import ndimage
from skimage import data

from defect_tracking import GLASSDefectTracker, TrackingError
from defect_tracking import surface
from defect_tracking.surface import (
    Footprint,
    SurfaceAverage,
    ViewHistory,
    group_regions,
    measure,
    merge_groups,
    shifted,
)
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


def test_regions_cut_from_one_connected_area_are_one_group():
    labels = np.zeros((40, 60), np.int32)
    labels[5:10, 5:10] = 1
    labels[5:10, 30:35] = 2  # 20 px from region 1: no gap bridges it
    labels[30:35, 50:55] = 3
    connected = np.zeros((40, 60), bool)
    connected[6:9, 5:35] = True  # regions 1 and 2 lie in one area before the cut
    connected[30:35, 50:55] = True
    assert group_regions(labels, 3, 0).tolist() == [0, 1, 2]
    grouped = group_regions(labels, 3, 0, connected).tolist()
    assert grouped[0] == grouped[1] != grouped[2]
    assert group_regions(labels, 3, 4, connected).tolist() == grouped


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


def test_the_view_history_counts_the_frames_that_showed_a_place():
    """Frames 0-9 at rest (the view over surface x 0..64), 10-19 with the surface 50 px on (frame = surface - 50:
    the view over surface x 50..114): a box at surface x 0..10 is shown by frames 0-9 only, one at 100..110 by
    10-19 only; counts are of frames strictly between the bounds."""
    history = ViewHistory()
    for index in range(20):
        history.add(index, (0.0, 0.0) if index < 10 else (-50.0, 0.0), (0, 0, 64, HEIGHT))
    assert history.frames_showing((0, 0, 10, 10), -1, 20) == 10
    assert history.frames_showing((0, 0, 10, 10), 2, 5) == 2
    assert history.frames_showing((100, 0, 110, 10), -1, 20) == 10
    assert history.frames_showing((100, 0, 110, 10), 5, 12) == 2
    assert history.frames_showing((200, 0, 210, 10), -1, 20) == 0
    history.clear()
    assert history.frames_showing((0, 0, 10, 10), -1, 20) == 0
    history.add(0, (0.0, 0.0), (20, 0, 64, HEIGHT))  # a region of interest: the box left of it is not shown
    assert history.frames_showing((0, 0, 10, 10), -1, 1) == 0 and history.frames_showing((30, 0, 40, 10), -1, 1) == 1


def test_tracks_at_one_place_merge_across_a_gap_only_while_the_place_was_out_of_view():
    """Two tracks at one surface place 100 frames apart (budget 30): with the view history they are one defect
    when the belt carried the place out of view in between, two when it stayed in view (the tracker lost it)."""
    first, second = Footprint(), Footprint()
    first.add(0, _square_mask(10), (10, 10), (0.0, 0.0), (HEIGHT, WIDTH))
    second.add(100, _square_mask(10), (10, 10), (0.0, 0.0), (HEIGHT, WIDTH))
    footprints, spans = {1: first, 2: second}, {1: (0, 0), 2: (100, 100)}
    away, staying = ViewHistory(), ViewHistory()
    for index in range(101):
        away.add(index, (0.0, 0.0) if index in (0, 100) else (-500.0, 0.0), (0, 0, WIDTH, HEIGHT))
        staying.add(index, (0.0, 0.0), (0, 0, WIDTH, HEIGHT))
    assert merge_groups(footprints, spans, gap_px=3, max_frame_gap=30, history=away) == [[1, 2]]
    assert merge_groups(footprints, spans, gap_px=3, max_frame_gap=30, history=staying) == [[1], [2]]
    assert merge_groups(footprints, spans, gap_px=3, max_frame_gap=30) == [[1], [2]]


def test_the_view_history_measures_how_far_the_surface_carried_a_place():
    """Known answers: at rest for frames 0-9, then 50 px on for 10-19 (the view's surface origin moves by 50)."""
    history = ViewHistory()
    for index in range(20):
        history.add(index, (0.0, 0.0) if index < 10 else (-50.0, 0.0), (0, 0, 64, HEIGHT))
    assert history.travel(0, 9) == 0 and history.travel(12, 19) == 0
    assert history.travel(0, 19) == 50 and history.travel(5, 10) == 50
    assert history.travel(30, 40) == 0  # no frames recorded there


def test_tracks_lost_and_found_at_one_place_while_the_belt_carried_it_through_the_view_merge():
    """Two tracks at one surface place 100 frames apart (budget 30) with the place in view all along: one defect
    when the belt carried it 2 px a frame across the view (a faint defect found, lost, found again), two when the
    surface stood still (a still scene: nothing carried them, as in the test above)."""
    first, second = Footprint(), Footprint()
    first.add(0, _square_mask(10), (10, 10), (0.0, 0.0), (HEIGHT, WIDTH))
    second.add(100, _square_mask(10), (10, 10), (0.0, 0.0), (HEIGHT, WIDTH))
    footprints, spans = {1: first, 2: second}, {1: (0, 0), 2: (100, 100)}
    moving = ViewHistory()
    for index in range(101):
        moving.add(index, (2.0 * index, 0.0), (0, 0, 400, HEIGHT))  # the view's surface origin moves 2 px a frame
    assert moving.frames_showing((10, 10, 20, 20), 0, 100) == 99  # the place stayed in view
    assert merge_groups(footprints, spans, gap_px=3, max_frame_gap=30, history=moving) == [[1, 2]]
    short = ViewHistory()
    for index in range(101):
        short.add(index, (0.02 * index, 0.0) if index < 100 else (2.0, 0.0), (0, 0, 400, HEIGHT))
    assert short.travel(0, 100) == 2  # carried 2 px: less than the place's own size, so not known to be the surface's
    assert merge_groups(footprints, spans, gap_px=3, max_frame_gap=30, history=short) == [[1], [2]]


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
    """Areas above `low` survive only when they hold a pixel above `high`."""
    from defect_tracking.surface import hysteresis_map

    amap = np.zeros((20, 40), np.float32)
    amap[2:8, 2:8] = 0.6
    amap[4, 4] = 0.9  # a seed: its whole 0.6 area stays
    amap[12:16, 20:30] = 0.65  # above low, no seed: dropped
    amap[2:5, 30:34] = 0.55  # below low: dropped
    kept = hysteresis_map(amap, high=0.8, low=0.5)
    assert (kept[2:8, 2:8] == amap[2:8, 2:8]).all()
    assert not kept[12:16, 20:30].any() and not kept[2:5, 30:34].any()
    assert not hysteresis_map(amap, high=0.95, low=0.5).any()  # no pixel reaches high: no region, not even the peak's
    assert (hysteresis_map(amap, high=0.5, low=0.5) == amap).all()  # low == high: plain threshold, untouched


def test_hysteresis_keeps_the_8_connected_areas_a_literal_labelling_keeps():
    """On smoothed random maps (many areas, some touching only at a corner) the areas kept are those that
    ndimage's 8-connected labelling keeps."""
    from scipy import ndimage

    from defect_tracking.surface import hysteresis_map

    def literal(amap: np.ndarray, high: float, low: float) -> np.ndarray:
        labels, count = ndimage.label(amap >= low, structure=np.ones((3, 3), bool))
        seeds = set(labels[amap >= high].tolist())
        keep = np.isin(labels, [label for label in seeds if label > 0])
        return np.where(keep, amap, 0).astype(amap.dtype)

    corner = np.zeros((6, 6), np.float32)
    corner[1:3, 1:3], corner[3:5, 3:5], corner[1, 1] = 0.6, 0.6, 0.9  # two squares meeting at a corner
    assert (hysteresis_map(corner, 0.8, 0.5)[3:5, 3:5] > 0).all()
    for seed in range(5):
        noise = np.random.default_rng(seed).random((64, 96)).astype(np.float32)
        amap = cv2.GaussianBlur(noise, (0, 0), 2.0)
        amap = (amap - amap.min()) / (amap.max() - amap.min())
        np.testing.assert_array_equal(hysteresis_map(amap, 0.8, 0.55), literal(amap, 0.8, 0.55))


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


@pytest.mark.parametrize("scale", ["logit", "distance"])
def test_cut_on_the_evidence_measures_a_squashed_disk_at_its_edge(scale):
    """A strong blurred disk squashed into [0, 1] as the model squashes its evidence (a sigmoid; d / (1 + d)): cut
    at half height on that evidence its area is the disk's within 6 %; cut on the map itself (linear), the
    flattened top puts the contour outside the edge and the area comes out over 15 % too large."""
    from defect_tracking.surface import cut_at_height, from_evidence

    radius = 25.0
    evidence = blurred_disk(radius, 6.0 if scale == "logit" else 20.0, -0.2 if scale == "logit" else 0.8)
    amap = from_evidence(evidence, scale).astype(np.float32)
    region = np.where(amap >= 0.6, amap, 0)
    on_evidence = (cut_at_height(region, amap, 0.5, scale=scale) > 0).sum() / (math.pi * radius ** 2)
    on_map = (cut_at_height(region, amap, 0.5) > 0).sum() / (math.pi * radius ** 2)
    assert abs(on_evidence - 1) < 0.06
    assert on_map > 1.15


def test_evidence_round_trips_and_refuses_an_unknown_scale():
    from defect_tracking.surface import REGION_SCALES, cut_at_height, from_evidence, to_evidence

    scores = np.array([0.01, 0.3, 0.5, 0.9, 0.999])
    for scale in REGION_SCALES:
        assert np.allclose(from_evidence(to_evidence(scores, scale), scale), scores)
        assert (np.diff(to_evidence(scores, scale)) > 0).all()  # order kept
    assert np.isfinite(to_evidence(np.array([0.0, 1.0]), "logit")).all()  # the map's ends are clipped
    assert to_evidence(np.array([0.5]), "distance")[0] == pytest.approx(1.0)  # d / (d + scale) = 1/2 at d = scale
    with pytest.raises(ValueError, match="scale 'log'"):
        cut_at_height(np.ones((4, 4)), np.ones((4, 4)), 0.5, scale="log")
    with pytest.raises(TrackingError, match="region_scale"):
        GLASSDefectTracker(analyzer(), threshold=0.5, region_scale="log")


def test_cut_at_height_takes_the_background_inside_the_view():
    """The blurred disk as the scored quarter of a frame zero elsewhere (an ROI): with the view its area as
    alone; without, the zeros make the background 0 and the half-height cut takes in the blur's tail."""
    from defect_tracking.surface import cut_at_height

    radius = 25.0
    frame = np.zeros((640, 160), np.float32)
    frame[:160] = blurred_disk(radius, 0.5)
    region = np.where(frame >= 0.5, frame, 0)
    with_view = cut_at_height(region, frame, 0.5, view=(0, 0, 160, 160))
    assert abs((with_view > 0).sum() / (math.pi * radius ** 2) - 1) < 0.06
    assert (cut_at_height(region, frame, 0.5) > 0).sum() > 1.3 * (with_view > 0).sum()


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


# ---- averaging on the surface ---------------------------------------------------------------------

def test_shifted_moves_content_and_zeroes_the_uncovered_pixels():
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert shifted(values, 1, 0).tolist() == [[0, 0, 1, 2], [0, 4, 5, 6], [0, 8, 9, 10]]
    assert shifted(values, -1, 1).tolist() == [[0, 0, 0, 0], [1, 2, 3, 0], [5, 6, 7, 0]]
    assert shifted(values, 0, 0).tolist() == values.tolist()
    assert not shifted(values, 4, 0).any() and not shifted(values, 0, -3).any()


def moving_maps(speed: float, frames: int, noise: float, seed: int = 0, bump: float = 0.1, bump_x: float = 150.0,
                size: tuple[int, int] = (40, 120), smooth: float = 0.0) -> tuple[list[np.ndarray], list[float]]:
    """Maps of a surface moving left by `speed` px per frame: level 0.5, a persistent Gaussian bump of
    height `bump` at surface x = bump_x, y = 20 (sigma 3), and fresh noise of standard deviation `noise`
    in every frame (Gaussian-blurred by `smooth` px first, as maps are); and each bump's x in its frame."""
    rng = np.random.default_rng(seed)
    height, width = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    maps, centres = [], []
    for t in range(frames):
        centre = bump_x - speed * t  # surface x bump_x seen in frame t
        signal = 0.5 + bump * np.exp(-((xs - centre) ** 2 + (ys - 20) ** 2) / (2 * 3.0 ** 2))
        draw = rng.normal(0.0, 1.0, size)
        if smooth:
            draw = ndimage.gaussian_filter(draw, smooth)
        maps.append((signal + noise * draw / draw.std()).astype(np.float32))
        centres.append(centre)
    return maps, centres


def test_average_of_a_still_constant_map_is_that_map_and_new_pixels_show_the_background():
    average = SurfaceAverage(window=4, min_frames=2)
    flat = np.full((10, 20), 0.3, np.float32)
    first = average.update(flat, (0.0, 0.0))
    assert np.allclose(first, 0.3)  # seen once: below min_frames, so the background (0.3 here too)
    moved = flat.copy()
    moved[:, 15:] = 0.9  # the right edge changes
    second = average.update(moved, (-5.0, 0.0))  # surface moves left by 5: the last 5 columns are new
    assert np.allclose(second[:, :15], 0.3)  # seen twice (0.3 both times)
    assert np.allclose(second[:, 15:], 0.3)  # just entered: the frame's background (median 0.3), not 0.9


def test_average_keeps_a_persistent_bump_where_it_is_under_sub_pixel_motion():
    maps, centres = moving_maps(speed=2.3, frames=30, noise=0.0, bump_x=110.0)
    average = SurfaceAverage(window=16, min_frames=5)
    for amap in maps:
        averaged = average.update(amap, (-2.3, 0.0))
    y, x = np.unravel_index(np.argmax(averaged), averaged.shape)
    assert abs(x - centres[-1]) <= 1.0 and y == 20  # the whole-pixel moves carry the sub-pixel rest
    assert averaged[y, x] > 0.5 + 0.9 * 0.1  # and the bump keeps its height (no blur from resampling)


def test_average_damps_frame_noise_by_the_square_root_of_the_window():
    window, noise = 16, 0.05
    maps, _ = moving_maps(speed=2.0, frames=60, noise=noise, bump=0.0)
    average = SurfaceAverage(window=window, min_frames=5)
    for amap in maps:
        averaged = average.update(amap, (-2.0, 0.0))
    # columns 0-80 of the last frame entered the view at least (119 - 80) / 2 = 19.5 frames ago: full window
    settled = averaged[:, :80]
    # each new map enters with weight 1/window (an exponential average): variance noise^2 / (2 window - 1)
    expected = noise / math.sqrt(2 * window - 1)
    assert settled.std() == pytest.approx(expected, rel=0.25)
    assert maps[-1].std() > 4 * settled.std()


def test_average_without_motion_is_the_running_mean_of_the_last_window_frames():
    rng = np.random.default_rng(1)
    maps = [rng.random((6, 8)).astype(np.float32) for _ in range(7)]
    average = SurfaceAverage(window=3, min_frames=1)
    for t, amap in enumerate(maps):
        out = average.update(amap, (0.0, 0.0))
        if t == 0:
            assert np.allclose(out, maps[0])
        if t == 1:
            assert np.allclose(out, (maps[0] + maps[1]) / 2, atol=1e-6)
    # window 3: each new map gets weight 1/3 once the count is full (an exponential tail of older ones)
    expected = (maps[0] + maps[1]) / 2
    for amap in maps[2:]:
        expected = (expected * 2 + amap) / 3
    assert np.allclose(out, expected, atol=1e-5)


def test_average_leaves_out_the_edge_band_along_the_motion_and_keeps_the_edges_across_it():
    """With a margin, a frame's pixels within it of the view's ends along the motion are not averaged: a hot
    band at the frame's left and right edges (the network's border) never reaches the average, at any speed,
    while a hot row at the top edge (across the motion: always the same surface points) is averaged."""
    height, width, margin = 12, 60, 4
    hot = np.full((height, width), 0.2, np.float32)
    hot[:, :margin] = hot[:, -margin:] = 0.9  # left/right edge bands
    hot[0, margin:-margin] = 0.7  # the top row
    for speed in (1.0, 4.0):  # slow enough that a surface point sits in the entering band for 4 frames
        average = SurfaceAverage(window=8, min_frames=3, view=(0, 0, width, height), margin=margin)
        for _ in range(12):
            out = average.update(hot, (-speed, 0.0))
        assert out[1:, :].max() == pytest.approx(0.2, abs=1e-6), speed  # no trace of the side bands
        assert out[0, margin:width // 2].min() == pytest.approx(0.7, abs=1e-6)  # the top edge averaged as it is
    plain = SurfaceAverage(window=8, min_frames=3)
    for _ in range(12):
        out = plain.update(hot, (-1.0, 0.0))
    assert out[1:, :].max() > 0.5  # without the margin the band's samples enter the average
    vertical = SurfaceAverage(window=8, min_frames=3, margin=margin)
    for _ in range(12):  # moving down: the band is at the top and bottom, the side edges are averaged
        out = vertical.update(hot.T.copy(), (0.0, 2.0))
    assert out[margin:-margin, 1:].max() == pytest.approx(0.2, abs=1e-6)
    assert out[width // 2:-margin, 0].min() == pytest.approx(0.7, abs=1e-6)  # entered at the top: settled below
    roi = SurfaceAverage(window=8, min_frames=1, view=(10, 0, 50, height), margin=margin)
    assert roi.counted((height, width))[:, [9, 13, 14, 45, 46]].any(axis=0).tolist() == [False, False, True,
                                                                                         True, False]


def test_average_reset_and_bad_settings():
    average = SurfaceAverage(window=3, min_frames=1)
    average.update(np.zeros((4, 4), np.float32), (0.0, 0.0))
    average.reset()
    assert np.allclose(average.update(np.ones((4, 4), np.float32), (1.0, 0.0)), 1.0)
    with pytest.raises(ValueError, match="min_frames"):
        SurfaceAverage(window=3, min_frames=4)


def test_tracker_with_a_surface_window_finds_a_faint_persistent_defect():
    """A bump 0.04 above the level under map noise of 0.03 never stands out in one frame, but does in
    the average over 20 frames (noise ~0.03 / sqrt(39)); frame-specific spikes later in the video do not."""
    maps, _ = moving_maps(speed=3.0, frames=50, noise=0.03, bump=0.04, size=(HEIGHT, WIDTH), smooth=2.0)
    rng = np.random.default_rng(5)
    texture = data.gravel()[:HEIGHT]
    frames = [cv2.cvtColor(np.ascontiguousarray(texture[:, 3 * t:3 * t + WIDTH]), cv2.COLOR_GRAY2BGR)
              for t in range(len(maps))]
    for t in range(20, len(maps), 7):  # single-frame spikes 0.15 above the level, away from the bump
        y, x = int(rng.integers(60, 90)), int(rng.integers(20, 140))
        maps[t][y - 3:y + 3, x - 3:x + 3] = 0.65

    def defects(window: int, threshold: float) -> list:
        tracker = GLASSDefectTracker(DefectSizeAnalyzer(PIXEL_SIZE, "mm", 4), threshold=threshold,
                                     min_hits=3, surface_window=window,
                                     surface_min_frames=15 if window > 1 else None)
        for t, (frame, amap) in enumerate(zip(frames, maps)):
            tracker.update(t, frame, amap)
        return tracker.defects()

    near_bump = [d for d in defects(1, 0.6) if abs(d.surface_centroid_px[1] - 20) < 8]
    assert near_bump == []  # single frames at a threshold that their noise stays under (0.5 + 3.3 sigma)
    averaged = defects(20, 0.53)
    assert len(averaged) == 1
    assert averaged[0].surface_centroid_px[1] == pytest.approx(20.0, abs=3.0)
    assert averaged[0].surface_centroid_px[0] == pytest.approx(150.0, abs=4.0)  # the bump's surface x


def test_tracker_rejects_a_bad_surface_window():
    analyzer = DefectSizeAnalyzer(PIXEL_SIZE, "mm", 4)
    for window, min_frames in ((0, None), (2.5, None), (True, None), (4, 5), (4, 0)):
        with pytest.raises(TrackingError, match="surface_window|surface_min_frames"):
            GLASSDefectTracker(analyzer, threshold=0.5, surface_window=window, surface_min_frames=min_frames)
    tracker = GLASSDefectTracker(analyzer, threshold=0.5, surface_window=30)
    assert (tracker.surface_window, tracker.surface_min_frames) == (30, 10)
    assert tracker.settings()["surface_window"] == 30
    bad = np.full((HEIGHT, WIDTH), np.nan, np.float32)
    with pytest.raises(TrackingError, match="NaN"):
        tracker.update(0, np.zeros((HEIGHT, WIDTH, 3), np.uint8), bad)


def test_frame_tracks_carry_the_map_the_regions_were_cut_from():
    """Each frame's own map without averaging; with it, the surface average (on the first frame every
    pixel has been seen once, fewer than min_frames, so the average is the frame's background)."""
    rng = np.random.default_rng(2)
    frame = cv2.cvtColor(np.ascontiguousarray(data.gravel()[:HEIGHT, :WIDTH]), cv2.COLOR_GRAY2BGR)
    amap = (0.5 + 0.05 * rng.random((HEIGHT, WIDTH))).astype(np.float32)
    plain = GLASSDefectTracker(DefectSizeAnalyzer(PIXEL_SIZE, "mm", 4), threshold=0.9)
    assert np.array_equal(plain.update(0, frame, amap).anomaly_map, amap)
    averaging = GLASSDefectTracker(DefectSizeAnalyzer(PIXEL_SIZE, "mm", 4), threshold=0.9, surface_window=4,
                                   surface_min_frames=2)
    shown = averaging.update(0, frame, amap).anomaly_map
    assert shown.shape == amap.shape and np.allclose(shown, surface.map_background(amap))


@pytest.mark.parametrize("scale", ["linear", "logit", "distance"])
def test_cut_at_height_per_region_box_matches_the_whole_frame_literal_cut(scale):
    """The cut works in each region's box; a literal version over the whole frame (every region labelled, its
    peak, its level, each pixel compared with its region's level) gives the same map, on random maps with many
    regions of every shape, inside and outside a view."""
    rng = np.random.default_rng(7)
    for trial in range(4):
        amap = cv2.GaussianBlur(rng.random((96, 160)).astype(np.float32), (0, 0), 3.0)
        amap = (amap - amap.min()) / (amap.max() - amap.min())
        region = np.where(amap >= 0.55, amap, 0).astype(np.float32)
        view = None if trial % 2 else (10, 5, 150, 90)
        labels, count = ndimage.label(region > 0, structure=np.ones((3, 3), bool))
        assert count >= 3
        background = surface.to_evidence(np.float64(surface.map_background(amap, view)), scale)
        literal = np.zeros_like(region)
        for label in range(1, count + 1):
            inside = labels == label
            peak = surface.to_evidence(np.float64(region[inside].max()), scale)
            level = surface.from_evidence(background + 0.5 * max(float(peak - background), 0.0), scale)
            keep = inside & (region >= level)
            literal[keep] = region[keep]
        np.testing.assert_array_equal(surface.cut_at_height(region, amap, 0.5, view, scale), literal)
