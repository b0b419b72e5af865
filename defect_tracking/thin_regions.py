"""Regions narrower than the anomaly map resolves, measured on the frame itself.

The map is the model's evidence at patch cells (8 px at the training scale) blurred over them, so a defect
narrower than about one cell (a crack, a scratch, a cluster of pits) comes out of the map as wide as the blur,
whatever its real width: a 3 px line is cut 8-16 px wide (on the steel lines of README's "Thin regions measured on
the frame", cracks and scratches measured 1.6-2.5 times their area; -22 to -8 % measured here). Inside
such a region the frame shows where the defect is: it is darker (or brighter) than the surface around it,
and the map has already said it is there. So for each region whose half-width is at most one cell:

1. the frame's contrast: its grey level minus the median of a window about twice the region's width (the
   median of a window wider than a line is the surface without the line);
2. the defect's sign: darker or brighter, the sign of the mean contrast over the region;
3. the split: Otsu's threshold on the region's signed contrast (the level that best separates two classes
   of pixels, the defect's and the surface's, with no parameter of its own);
4. the defect: the region's pixels at or above that level, grown by up to one cell along connected pixels
   above it (the map cuts a line's ends and branches short; the frame still shows them).

A region whose frame shows no such pixels (fewer than its centre line's length) is left as the map cut it,
as is every region whose half-width exceeds a cell: the map resolves those, and a wide defect's own texture
would split under Otsu. What is measured is the part the frame sets apart from the surface: a defect whose
extent includes a faint fringe comes out as its core (the grass line's doubled edge crack, -40 %). Written with
OpenCV/SciPy/scikit-image pieces (median, distance transform, skeleton, Otsu); no library measures a defect's
extent inside a coarse detection map.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import skeletonize

# Regions are judged thin or wide, and wide ones measured, on the frame resized so that a cell is at most this
# many pixels, the training scale's: a 1280x720 frame's regions then cost what they cost at 455x256.
WORK_CELL_PX = 8.0
_EIGHT = np.ones((3, 3), bool)
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))  # grown one pixel per step, as ndimage's default


def refine_thin_regions(region_map: np.ndarray, frame: np.ndarray, cell_px: float,
                        view: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """`region_map` (an anomaly map zeroed outside its regions, at frame resolution) with every 8-connected
    region no wider than two `cell_px` measured on `frame` (BGR or grey, same height and width): its pixels
    kept where the frame shows the defect, grown along it by up to one cell inside `view` (x0, y0, x1, y1;
    None: the whole frame); pixels it gains get the region's lowest kept score."""
    if not cell_px > 0:  # NaN too
        raise ValueError(f"cell_px {cell_px}: the map's patch cell in frame pixels must be positive")
    inside = region_map > 0
    if not inside.any():
        return region_map
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else np.asarray(frame)
    if grey.dtype != np.uint8:
        grey = np.clip(grey, 0, 255).astype(np.uint8)
    allowed = np.zeros(inside.shape, bool)
    x0, y0, x1, y1 = view or (0, 0, inside.shape[1], inside.shape[0])
    allowed[y0:y1, x0:x1] = True
    grow = max(int(round(cell_px)), 1)
    margin = 4 * grow + 2  # room for the median window and the growth around the region
    count, labels, stats, _ = cv2.connectedComponentsWithStats(inside.astype(np.uint8), connectivity=8)
    result = region_map.copy()
    for label in range(1, count):
        x, y, w, h = (int(v) for v in stats[label, :4])
        top, left = max(y - margin, 0), max(x - margin, 0)
        window = (slice(top, min(y + h + margin, inside.shape[0])), slice(left, min(x + w + margin, inside.shape[1])))
        region = labels[window] == label
        defect = _defect_pixels(region, grey[window], cell_px, grow, allowed[window])
        if defect is None:
            continue
        scores = result[window]
        floor = scores[region & defect].min()
        scores[region & ~defect] = 0
        scores[defect & ~region & (scores == 0)] = floor
    return result


def thin_length(region: np.ndarray, cell_px: float) -> int | None:
    """The length in pixels of a region's centre line when the region is thin (no wider than two cells along
    most of it: the 90th percentile of its half-width there is at most `cell_px`); None for a wider region,
    which the map resolves, or a speck whose centre line is shorter than 3 px. Judged with the region resized
    so that a cell is at most WORK_CELL_PX (the skeleton of a large frame's region costs its area; every pixel
    the region touches is kept, so that a line narrower than the resizing step stays a line)."""
    scale = min(1.0, WORK_CELL_PX / cell_px)
    if scale < 1.0:
        region = cv2.resize(region.astype(np.float32), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) > 0
    centre_line = skeletonize(region)
    length = int(centre_line.sum())
    if length < 3:
        return None
    radius = cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return None if np.percentile(radius[centre_line], 90) > cell_px * scale else int(round(length / scale))


def _defect_pixels(region: np.ndarray, grey: np.ndarray, cell_px: float, grow: int,
                   allowed: np.ndarray) -> np.ndarray | None:
    """The pixels of a thin region (and its surroundings) where the frame shows the defect; None when the
    region is wider than the map resolves or its frame shows no defect."""
    length = thin_length(region, cell_px)
    if length is None:
        return None
    half_width = region.sum() / length / 2.0
    size = int(min(max(2 * round(2 * half_width) + 1, 5), 4 * grow + 1))
    contrast = grey.astype(np.float32) - cv2.medianBlur(np.ascontiguousarray(grey), size).astype(np.float32)
    if contrast[region].mean() < 0:
        contrast = -contrast
    values = contrast[region]
    if values.min() == values.max():
        return None  # a flat frame: nothing to split
    above = contrast >= threshold_otsu(values)
    kept = region & above
    reach = cv2.dilate(region.astype(np.uint8), _CROSS, iterations=grow).astype(bool) & above & allowed
    pieces, _ = ndimage.label(reach, structure=_EIGHT)
    touched = np.unique(pieces[kept])
    defect = np.isin(pieces, touched[touched > 0])
    return defect if defect.sum() >= length else None
