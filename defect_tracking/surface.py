"""Defects on the moving surface: regions that belong together, and each defect's footprint.

A physical defect often reaches the tracker in pieces: a branching crack or a faint stain is cut
by the map threshold into several nearby regions, and a piece that flickers across the threshold
starts a new track. Two steps make one defect of them, both in the coordinates of the surface
(frame pixels minus the accumulated surface motion, so a point keeps its position while it moves
through the view; frame 0's pixels are the origin):

- `group_regions`: in each frame, regions closer than a gap (in pixels), or cut from one connected
  area above the low threshold, become one detection;
- `Footprint`: a defect's mask accumulated on the surface, as votes: a surface pixel belongs to
  the defect when the map marked it in at least half of the frames that showed it while the
  defect was tracked. Its area is the defect's area on the surface (a defect longer than the
  view is assembled from the frames that each show a part), robust to a frame where the
  threshold cut a little more or less. Tracks whose footprints lie within the gap of each
  other are merged (`merge_groups`): when their frame spans meet within the tracker's lost-track
  budget, or when the place was in view for no more than that budget between them (`ViewHistory`:
  a belt that stopped, ran back and forth or jogged carried the defect out of view and back).

Written with NumPy/OpenCV/SciPy rather than taken from a library: no tracking library keeps
masks in moving surface coordinates.
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage

VOTE = 0.5  # share of the frames showing a surface pixel in which the map must mark it
# Where cut_at_height measures a region's height: the map as it is, or the model's evidence before it squashed
# it into [0, 1] (a sigmoid: GLASS, DRAEM; a distance d -> d / (d + scale): PatchCore, PaDiM, autoencoder).
REGION_SCALES = ("linear", "logit", "distance")
_EDGE = 1e-6  # map scores are clipped to [_EDGE, 1 - _EDGE] before logit or distance


def hysteresis_map(anomaly_map: np.ndarray, high: float, low: float) -> np.ndarray:
    """The map with every pixel zeroed that is not in an 8-connected area at or above `low` holding a
    pixel at or above `high` (hysteresis, as in Canny's edge linking). Cutting the result at `low` gives the
    regions."""
    if low >= high:
        return anomaly_map
    above = anomaly_map >= low
    # OpenCV labels the same 8-connected areas as ndimage.label (hysteresis 7.3 -> 5.0 ms at 2048x512)
    count, labels = cv2.connectedComponents(above.astype(np.uint8), connectivity=8)
    count -= 1  # label 0: below `low`
    if count == 0:
        return np.zeros_like(anomaly_map)
    seeds = labels[anomaly_map >= high]
    keep = np.zeros(count + 1, bool)
    keep[seeds] = True
    keep[0] = False
    return np.where(keep[labels], anomaly_map, 0).astype(anomaly_map.dtype, copy=False)


def to_evidence(scores: np.ndarray, scale: str) -> np.ndarray:
    """Map scores in [0, 1] as the model's evidence before squashing: logit(p), the distance p / (1 - p) in
    units of the squash scale, or (linear) as they are."""
    if scale == "linear":
        return np.asarray(scores, np.float64)
    p = np.clip(np.asarray(scores, np.float64), _EDGE, 1.0 - _EDGE)
    return np.log(p / (1.0 - p)) if scale == "logit" else p / (1.0 - p)


def from_evidence(evidence: np.ndarray, scale: str) -> np.ndarray:
    """The map score of an evidence value (the inverse of to_evidence)."""
    evidence = np.asarray(evidence, np.float64)
    if scale == "linear":
        return evidence
    if scale == "logit":
        return 1.0 / (1.0 + np.exp(-evidence))
    return evidence / (1.0 + evidence)


def cut_at_height(region_map: np.ndarray, anomaly_map: np.ndarray, fraction: float,
                  view: tuple[int, int, int, int] | None = None, scale: str = "linear",
                  background: float | None = None) -> np.ndarray:
    """`region_map` (an anomaly map zeroed outside its regions) with each 8-connected region cut where
    `anomaly_map` falls below `fraction` of the way from the frame's background (the map's median over the
    scored `view`) up to the region's peak, the way measured on `scale` (REGION_SCALES: the map itself, or the
    model's evidence before its squashing, to_evidence); 0 leaves it as it is, 0.5 measures each region at
    its full width at half maximum. `background`: that level when already known (a part of a frame is cut: the
    level is the whole frame's), else the map_background of `anomaly_map` over `view`.

    Why: the map is the defect blurred at the model's patch scale (8 px cells, Gaussian sigma 4), so a
    fixed cutting level measures a strong defect as large as the blur's tail above that level and a
    weak one too small; for a blurred step the half-height contour lies on the step's edge whatever its
    strength. But the blur acts on the model's evidence, and the squashing into [0, 1] flattens a strong
    defect's top, which moves the half-height contour of the map itself outside the edge (a saturated
    defect looks wider than it is); measured on the evidence, the contour is back on the edge.
    Regions only shrink (the level is at least the region's own), their peaks stay."""
    if fraction <= 0.0 or not region_map.any():
        return region_map
    if scale not in REGION_SCALES:
        raise ValueError(f"scale {scale!r}: use one of {', '.join(REGION_SCALES)}")
    count, labels, boxes, _ = cv2.connectedComponentsWithStats((region_map > 0).astype(np.uint8), connectivity=8)
    background = to_evidence(np.float64(map_background(anomaly_map, view) if background is None else background),
                             scale)
    result = region_map.copy()
    for label in range(1, count):  # each region in its own box: the cost is the regions', not the frame's
        x, y, width, height = (int(v) for v in boxes[label, :4])
        window = (slice(y, y + height), slice(x, x + width))
        region, values = labels[window] == label, region_map[window]
        peak = to_evidence(np.float64(values[region].max()), scale)
        level = from_evidence(background + fraction * max(float(peak) - float(background), 0.0), scale)
        result[window][region & (values < level)] = 0
    return result


def group_regions(label_map: np.ndarray, count: int, gap_px: float,
                  connected: np.ndarray | None = None) -> np.ndarray:
    """Group index (0..G-1) of each of the `count` labelled regions (labels 1..count): regions whose
    pixels lie within `gap_px` of each other share a group (transitively), and so do regions inside one
    8-connected area of `connected` (a bool mask: the regions before they were cut at their height, so
    the pieces of one crack whose middle dips below half its peak stay one defect)."""
    if count == 0:
        return np.zeros(0, np.int64)
    radius = int(math.ceil(gap_px / 2.0))
    if radius <= 0 and connected is None:
        return np.arange(count)
    grown = (label_map > 0).astype(np.uint8)
    if radius > 0:
        grown = cv2.dilate(grown, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    if connected is not None:
        grown |= np.asarray(connected, bool).astype(np.uint8)
    _, components = cv2.connectedComponents(grown, connectivity=8)
    groups = np.empty(count, np.int64)
    for index, window in enumerate(ndimage.find_objects(label_map, max_label=count)):
        if window is None:  # a label without pixels: its own group
            groups[index] = -1 - index
            continue
        inside = label_map[window] == index + 1
        groups[index] = components[window][inside][0]
    _, dense = np.unique(groups, return_inverse=True)
    return dense.reshape(-1)


def on_surface(box: tuple[int, int, int, int], offset: tuple[float, float]) -> tuple[int, int, int, int]:
    """A frame box (x0, y0, x1, y1) in surface pixels, for a frame whose surface offset is `offset` (frame =
    surface + offset, rounded to whole pixels)."""
    shift_x, shift_y = int(round(offset[0])), int(round(offset[1]))
    return box[0] - shift_x, box[1] - shift_y, box[2] - shift_x, box[3] - shift_y


@dataclass
class Footprint:
    """One defect's mask votes in surface coordinates (x right, y down; frame 0's pixels)."""

    origin: tuple[int, int] = (0, 0)  # surface (x, y) of hits[0, 0]
    hits: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int32))
    views: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)  # frame -> visible x0,y0,x1,y1

    def add(self, frame_index: int, mask: np.ndarray, corner: tuple[int, int], offset: tuple[float, float],
            frame_shape: tuple[int, int]) -> None:
        """Votes for the pixels of `mask` (bool, its top-left at frame pixel `corner` = (x, y)) seen in a
        frame whose surface offset is `offset` (frame = surface + offset) and size `frame_shape` (h, w)."""
        x0, y0, _, _ = on_surface((corner[0], corner[1], 0, 0), offset)
        self._cover(x0, y0, x0 + mask.shape[1], y0 + mask.shape[0])
        ox, oy = self.origin
        self.hits[y0 - oy:y0 - oy + mask.shape[0], x0 - ox:x0 - ox + mask.shape[1]] += mask
        height, width = frame_shape
        self.views[frame_index] = on_surface((0, 0, width, height), offset)

    def _cover(self, x0: int, y0: int, x1: int, y1: int) -> None:
        """Grows the vote canvas to include the surface box [x0, x1) x [y0, y1)."""
        if self.hits.size == 0:
            self.origin, self.hits = (x0, y0), np.zeros((y1 - y0, x1 - x0), np.int32)
            return
        ox, oy = self.origin
        height, width = self.hits.shape
        nx0, ny0 = min(ox, x0), min(oy, y0)
        nx1, ny1 = max(ox + width, x1), max(oy + height, y1)
        if (nx0, ny0, nx1, ny1) == (ox, oy, ox + width, oy + height):
            return
        grown = np.zeros((ny1 - ny0, nx1 - nx0), np.int32)
        grown[oy - ny0:oy - ny0 + height, ox - nx0:ox - nx0 + width] = self.hits
        self.origin, self.hits = (nx0, ny0), grown

    def seen(self) -> np.ndarray:
        """Per canvas pixel, the number of voting frames whose view contained it."""
        ox, oy = self.origin
        height, width = self.hits.shape
        counts = np.zeros((height + 1, width + 1), np.int32)  # 2-D difference array of the view boxes
        for x0, y0, x1, y1 in self.views.values():
            cx0, cy0 = min(max(x0 - ox, 0), width), min(max(y0 - oy, 0), height)
            cx1, cy1 = min(max(x1 - ox, 0), width), min(max(y1 - oy, 0), height)
            if cx0 < cx1 and cy0 < cy1:
                counts[cy0, cx0] += 1
                counts[cy0, cx1] -= 1
                counts[cy1, cx0] -= 1
                counts[cy1, cx1] += 1
        return counts.cumsum(axis=0).cumsum(axis=1)[:height, :width]

    def mask(self) -> np.ndarray:
        """The defect's pixels on the canvas: marked in at least VOTE of the frames that showed them."""
        seen = self.seen()
        return (self.hits > 0) & (self.hits >= VOTE * np.maximum(seen, 1))

    def merged(self, other: Footprint) -> Footprint:
        """One footprint of two (votes added; a frame seen by both counts once)."""
        result = Footprint()
        for part in (self, other):
            if part.hits.size:
                ox, oy = part.origin
                result._cover(ox, oy, ox + part.hits.shape[1], oy + part.hits.shape[0])
        for part in (self, other):
            if part.hits.size:
                ox, oy = part.origin
                rx, ry = result.origin
                result.hits[oy - ry:oy - ry + part.hits.shape[0], ox - rx:ox - rx + part.hits.shape[1]] += part.hits
        result.views = {**self.views, **other.views}
        return result


@dataclass(frozen=True)
class SurfaceShape:
    """Measurements of a footprint on the surface, in surface pixels."""

    area_px: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    centroid: tuple[float, float]  # x, y


def measure(footprint: Footprint) -> SurfaceShape | None:
    """Area, box and centroid of a footprint's voted mask (None when no pixel won its vote)."""
    mask = footprint.mask()
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    ox, oy = footprint.origin
    box = (int(xs.min()) + ox, int(ys.min()) + oy, int(xs.max()) + 1 + ox, int(ys.max()) + 1 + oy)
    return SurfaceShape(int(mask.sum()), box, (float(xs.mean()) + ox, float(ys.mean()) + oy))


def voted_crop(footprint: Footprint) -> tuple[np.ndarray, tuple[int, int]] | None:
    """(voted mask cut to its box, surface (x, y) of the box's corner), or None when empty."""
    shape = measure(footprint)
    if shape is None:
        return None
    x0, y0, x1, y1 = shape.box
    ox, oy = footprint.origin
    return footprint.mask()[y0 - oy:y1 - oy, x0 - ox:x1 - ox], (x0, y0)


def footprints_touch(a: Footprint, b: Footprint, gap_px: float) -> bool:
    """True when two footprints' voted masks come within gap_px of each other (or overlap)."""
    crops = [voted_crop(a), voted_crop(b)]
    if crops[0] is None or crops[1] is None:
        return False
    margin = max(int(math.ceil(gap_px)), 0) + 1
    (mask_a, (ax, ay)), (mask_b, (bx, by)) = crops
    ax1, ay1, bx1, by1 = ax + mask_a.shape[1], ay + mask_a.shape[0], bx + mask_b.shape[1], by + mask_b.shape[0]
    if ax - margin >= bx1 or bx - margin >= ax1 or ay - margin >= by1 or by - margin >= ay1:
        return False
    x0, y0 = min(ax, bx) - margin, min(ay, by) - margin
    x1, y1 = max(ax1, bx1) + margin, max(ay1, by1) + margin
    canvases = []
    for mask, (cx, cy) in crops:
        canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
        canvas[cy - y0:cy - y0 + mask.shape[0], cx - x0:cx - x0 + mask.shape[1]] = mask
        canvases.append(canvas)
    radius = max(int(math.ceil(gap_px)), 0)
    if radius:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        canvases[0] = cv2.dilate(canvases[0], kernel)
    return bool((canvases[0] & canvases[1]).any())


class ViewHistory:
    """Each frame's view of the surface (surface pixels x0, y0, x1, y1, exclusive), in frame order; 40 bytes a
    frame (an hour at 25 FPS: 3.6 MB)."""

    def __init__(self) -> None:
        self._columns = tuple(array("q") for _ in range(5))  # frame index, x0, y0, x1, y1

    def add(self, frame_index: int, offset: tuple[float, float], view: tuple[int, int, int, int]) -> None:
        """Records the view of a frame whose surface offset is `offset` (frame = surface + offset): `view` is the
        part of the frame scored (x0, y0, x1, y1 in frame pixels: the whole frame, or its region of interest).
        Frames come in increasing order."""
        for column, value in zip(self._columns, (frame_index, *on_surface(view, offset))):
            column.append(int(value))

    def frames_showing(self, box: tuple[int, int, int, int], after: int, before: int) -> int:
        """How many recorded frames with index strictly between `after` and `before` showed any of the surface
        box (x0, y0, x1, y1, exclusive)."""
        frames = np.frombuffer(self._columns[0], np.int64) if len(self._columns[0]) else np.zeros(0, np.int64)
        start, stop = np.searchsorted(frames, after, side="right"), np.searchsorted(frames, before, side="left")
        if stop <= start:
            return 0
        x0, y0, x1, y1 = (np.frombuffer(column, np.int64)[start:stop] for column in self._columns[1:])
        bx0, by0, bx1, by1 = box
        return int(np.count_nonzero((x0 < bx1) & (bx0 < x1) & (y0 < by1) & (by0 < y1)))

    def travel(self, after: int, before: int) -> int:
        """How far (surface pixels, the larger of x and y) the view moved over the surface from the first recorded
        frame at or after `after` to any later one up to `before`: how far the surface carried a place meanwhile."""
        frames = np.frombuffer(self._columns[0], np.int64) if len(self._columns[0]) else np.zeros(0, np.int64)
        start, stop = np.searchsorted(frames, after, side="left"), np.searchsorted(frames, before, side="right")
        if stop - start < 2:
            return 0
        x0, y0 = (np.frombuffer(column, np.int64)[start:stop] for column in self._columns[1:3])
        return int(max(np.abs(x0 - x0[0]).max(), np.abs(y0 - y0[0]).max()))

    def clear(self) -> None:
        """Forgets every frame."""
        for column in self._columns:
            del column[:]


def canvas_box(footprint: Footprint) -> tuple[int, int, int, int]:
    """The surface box (x0, y0, x1, y1, exclusive) of a footprint's vote canvas (its voted mask lies inside)."""
    ox, oy = footprint.origin
    return ox, oy, ox + footprint.hits.shape[1], oy + footprint.hits.shape[0]


def boxes_within(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap_px: float) -> bool:
    """True when two surface boxes overlap or lie within gap_px of each other along both axes."""
    return a[0] - gap_px < b[2] and b[0] - gap_px < a[2] and a[1] - gap_px < b[3] and b[1] - gap_px < a[3]


def merge_groups(footprints: dict[int, Footprint], spans: dict[int, tuple[int, int]], gap_px: float,
                 max_frame_gap: int, history: ViewHistory | None = None) -> list[list[int]]:
    """Track ids grouped into physical defects: tracks whose footprints touch (within gap_px) and whose
    frame spans overlap or lie within max_frame_gap frames are one defect (transitively). With the `history` of
    the views, tracks further apart in time are one defect too when, between them, the surface carried their
    place: out of view and back (a stop, a run backwards: in view in at most max_frame_gap frames), or along the
    view by at least the place's own size (a faint defect the tracker lost and found again while the belt carried
    it through the view: one spot of the surface, seen at other places of the frame). Tracks at one place of a
    surface that did not move in between (a still scene: nothing carried them) stay apart."""
    ids = sorted(footprints)
    parent = {track_id: track_id for track_id in ids}
    boxes = {track_id: canvas_box(footprints[track_id]) for track_id in ids}

    def root(track_id: int) -> int:
        while parent[track_id] != track_id:
            parent[track_id] = parent[parent[track_id]]
            track_id = parent[track_id]
        return track_id

    def one_passage(first: int, second: int) -> bool:
        """Their spans meet within the lost-track budget, or their place was hardly in view in between."""
        (f0, f1), (s0, s1) = sorted((spans[first], spans[second]))
        if s0 <= f1 + max_frame_gap:
            return True
        if history is None or not boxes_within(boxes[first], boxes[second], gap_px):
            return False
        a, b = boxes[first], boxes[second]
        place = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
        size = max(place[2] - place[0], place[3] - place[1])
        return history.frames_showing(place, f1, s0) <= max_frame_gap or history.travel(f1, s0) >= size

    for i, first in enumerate(ids):
        for second in ids[i + 1:]:
            if root(first) == root(second) or not one_passage(first, second):
                continue
            if footprints_touch(footprints[first], footprints[second], gap_px):
                parent[root(second)] = root(first)
    groups: dict[int, list[int]] = {}
    for track_id in ids:
        groups.setdefault(root(track_id), []).append(track_id)
    return sorted(groups.values())


def in_view(values: np.ndarray, view: tuple[int, int, int, int] | None) -> np.ndarray:
    """The part of a frame-sized array inside `view` (x0, y0, x1, y1; None: all of it)."""
    if view is None:
        return values
    x0, y0, x1, y1 = view
    return values[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)]


def map_background(anomaly_map: np.ndarray, view: tuple[int, int, int, int] | None = None) -> float:
    """The level of a frame's defect-free surface: the median of a map smooth at the patch scale (every
    4th pixel suffices; ndimage's median of the whole frame costs 30 ms at 640x256), over the scored `view`
    only (outside an ROI the map is 0: with the belt on a quarter of the frame the median was 0, the half-height
    cut fell to half the peak and areas came out twice too large)."""
    return float(np.median(in_view(anomaly_map, view)[::4, ::4]))


def shifted(values: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """`values` moved by whole pixels (content at (x, y) goes to (x + dx, y + dy)); uncovered pixels are 0."""
    height, width = values.shape
    result = np.zeros_like(values)
    if abs(dx) >= width or abs(dy) >= height:
        return result
    src_x, dst_x = _overlap(dx, width)
    src_y, dst_y = _overlap(dy, height)
    result[dst_y, dst_x] = values[src_y, src_x]
    return result


def _overlap(shift: int, size: int) -> tuple[slice, slice]:
    """(source, destination) slices of an axis of `size` moved by `shift` pixels."""
    return (slice(0, size - shift), slice(shift, size)) if shift >= 0 else (slice(-shift, size), slice(0, size + shift))


@dataclass
class SurfaceAverage:
    """Motion-compensated running mean of anomaly maps: each pixel the mean of the maps of the last
    `window` frames at the same point of the moving surface.

    Why: most of a defect-free map's peaks are frame-specific (where the view's edge meets the texture,
    the sub-pixel phase of a busy surface) while a defect stays at its surface point in every frame
    that shows it. Averaging in surface coordinates keeps the defect and damps the rest: on bench_line's
    gravel line the defect-free peaks fell from 0.72 (single frames) to 0.56 while a faint scratch that
    no single frame showed above the map threshold kept 0.58 (docs/calibration.md, "Averaging on the
    surface"). A pixel seen in fewer than `min_frames` frames (just entered the view, or the video's
    start) is set to the frame's background so that it starts no region; it counts once it has.

    The previous mean is moved by whole pixels; the sub-pixel rest of the motion is carried to the next
    frame, so the alignment error stays under half a pixel and the mean is not blurred by resampling.
    Hand-written: OpenCV's accumulateWeighted averages in frame coordinates only.

    `view` (x0, y0, x1, y1: the scored part of the frame, default all of it) and `margin`: a frame's pixels
    within `margin` of the view's two ends along the motion are not averaged (the mean there stays as it
    was). Why: the network's own border shows in a band about one backbone stride wide at every frame edge
    (bench_line's brick line: the 95th percentile of the column maxima 0.60-0.64 in the outer 4 px, 0.46
    beyond 16 px), and a surface point crosses the entering band in margin / speed frames: at 4 px/frame
    it reached min_frames while still near it and started a false defect that 9 px/frame did not. Across
    the motion the edges hold the same surface points all along, so they are averaged as they are.
    """

    window: int
    min_frames: int
    view: tuple[int, int, int, int] | None = None
    margin: int = 0
    _mean: np.ndarray | None = field(default=None, repr=False)
    _count: np.ndarray | None = field(default=None, repr=False)
    _rest: tuple[float, float] = (0.0, 0.0)
    _travel: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if not 1 <= self.min_frames <= self.window:
            raise ValueError(f"need 1 <= min_frames <= window, got min_frames {self.min_frames}, window {self.window}")

    def reset(self) -> None:
        """Forgets the averaged maps (call between videos)."""
        self._mean, self._count, self._rest, self._travel = None, None, (0.0, 0.0), (0.0, 0.0)

    def counted(self, shape: tuple[int, int]) -> np.ndarray | None:
        """Which pixels of a frame of this shape are averaged (None: all): the view less the margin at its
        ends along the motion so far (at all four ends while there was none)."""
        if self.view is None and self.margin <= 0:
            return None
        x0, y0, x1, y1 = self.view if self.view is not None else (0, 0, shape[1], shape[0])
        along_x, along_y = abs(self._travel[0]), abs(self._travel[1])
        if along_y >= along_x:
            y0, y1 = y0 + self.margin, y1 - self.margin
        if along_x >= along_y:
            x0, x1 = x0 + self.margin, x1 - self.margin
        mask = np.zeros(shape, bool)
        mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
        return mask

    def update(self, anomaly_map: np.ndarray, motion: tuple[float, float]) -> np.ndarray:
        """The averaged map of this frame, given its map and the surface motion (dx, dy) since the last
        frame (content at x in the previous frame is at x + dx in this one)."""
        current = np.asarray(anomaly_map, np.float32)
        if self._mean is None or self._mean.shape != current.shape:
            self._mean, self._rest, self._travel = current.copy(), (0.0, 0.0), (0.0, 0.0)
            counted = self.counted(current.shape)
            self._count = np.ones_like(current) if counted is None else counted.astype(np.float32)
        else:
            self._travel = (self._travel[0] + motion[0], self._travel[1] + motion[1])
            want_x, want_y = self._rest[0] + motion[0], self._rest[1] + motion[1]
            dx, dy = int(round(want_x)), int(round(want_y))
            self._rest = (want_x - dx, want_y - dy)
            mean, count = shifted(self._mean, dx, dy), shifted(self._count, dx, dy)
            weight = np.minimum(count, self.window - 1)
            self._mean = (mean * weight + current) / (weight + 1.0)
            self._count = np.minimum(count + 1.0, float(self.window))
            counted = self.counted(current.shape)
            if counted is not None:
                self._mean = np.where(counted, self._mean, mean)
                self._count = np.where(counted, self._count, count)
        return np.where(self._count >= self.min_frames, self._mean,
                        map_background(current, self.view)).astype(np.float32)
