"""Regions wider than the map's cells, their edge found on the frame where it shows one.

A wide region cut at half its height on the model's evidence (surface.cut_at_height) has the map's shape,
not the defect's: the map is the model's evidence over patch cells blurred by a Gaussian, and where the
defect is convex or answered unevenly the half-height contour lies inside it (README, "Wide regions
measured on the frame": a dent lit from one side came out 35 % small, its contour pulled toward the
bright side the model answers most; an oil stain 21 % small). The frame itself shows such a defect's
edge. So for each region wider than the map resolves (not thin: thin_regions.thin_length):

1. markers: the region's core (where the evidence is at least CORE_HEIGHT of the way from the frame's
   background to the region's peak: surely the defect), with the region's pixels whose colour lies, in some
   channel, FAR_CONTRAST standard deviations of the surface from its mean (surely not the surface), and the surface
   around it (every pixel outside the region as the thresholds found it before it was cut at its height:
   surely not the defect). Such far pixels that the cut left out join the region they touch, or are pieces
   of their own (a cluster's fainter pits, cut away at the height its strongest pits set); and where a region
   has far pixels, its core seeds only where the frame sets it apart from the surface (MIN_CONTRAST), so that
   the surface between a cluster's pits, which the map's blur puts in the core, is left to the surface;
2. the edge: a marker-controlled watershed (scikit-image) on the frame's colour gradient, smoothed at a
   quarter of a cell so that the surface's fine texture does not make edges of its own: the line where the
   two floods meet lies on the strongest edge between core and surface, which is the defect's edge when the
   frame shows one;
3. the check: a region with far pixels is shown plainly by the frame and kept as found; any other only when
   the frame sets it apart from the surface around it, its mean grey level at least MIN_CONTRAST standard
   deviations of that surface from the surface's mean; else (a faint stain on a busy texture, whose strongest
   edge is the texture's) the region stays as the map cut it.

The region found lies inside the region the thresholds found (the surface marker holds everything else),
so the map bounds it from outside and says it is there. Holes inside it are filled (a defect's extent).
Written with OpenCV/SciPy/scikit-image pieces (Gaussian, Sobel, watershed); no library measures a defect's
extent inside a coarse detection map.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from skimage.filters import sobel
from skimage.segmentation import watershed

from defect_tracking.thin_regions import WORK_CELL_PX, thin_length

# Markers and check, measured on six conveyor lines (README, "Wide regions measured on the frame"): the found
# defects of steel's dents, stains, pits, spatter and chips stood 2.8-9.6 standard deviations of the surface apart
# from it, the faint rust and faint stains whose watershed lines followed the texture 0.1-0.7.
CORE_HEIGHT = 0.75
MIN_CONTRAST = 1.0
# Pixels of a region this many standard deviations of the surface from its mean (in some channel) seed the defect
# too (beyond the surface's own variation); measured per frame: the 896x320 steel line's dent 71 -> 88 % of its mask,
# its pit cluster (below 5 mm^2) 101 -> 120 %, the other steel defects within 8 points, the busy lines' within 2 but
# a hole's (+5); later the same seeds cut away measured as pieces (README, "A fourth steel line").
FAR_CONTRAST = 4.0


def refine_wide_regions(region_map: np.ndarray, uncut: np.ndarray, core: np.ndarray, frame: np.ndarray,
                        cell_px: float) -> np.ndarray:
    """`region_map` (an anomaly map zeroed outside its regions, cut at their height; frame resolution) with
    every 8-connected region wider than the map resolves measured on `frame` (BGR or grey, same height and
    width) where the frame shows its edge: the pixels a watershed from its `core` pixels (bool) and its pixels
    far apart from the surface (FAR_CONTRAST) reaches before the surface outside `uncut` (the regions before they
    were cut, zero elsewhere) does, when the frame shows them plainly (far pixels) or their grey level stands apart
    from that surface (MIN_CONTRAST). Pixels it gains get the region's lowest score; pieces far apart from the
    surface that the cut left out and that touch no region are measured too, with the map's scores."""
    if not cell_px > 0:  # NaN too
        raise ValueError(f"cell_px {cell_px}: the map's patch cell in frame pixels must be positive")
    inside = region_map > 0
    if not inside.any():
        return region_map
    colour = frame if frame.ndim == 3 else frame[..., None]
    _, labels = cv2.connectedComponents(inside.astype(np.uint8), connectivity=8)
    _, areas = cv2.connectedComponents((uncut > 0).astype(np.uint8), connectivity=8)
    margin = 2 * int(np.ceil(cell_px))
    result = region_map.copy()
    for area, window in enumerate(ndimage.find_objects(areas), 1):
        if window is None:
            continue
        window = tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(window, inside.shape))
        within = areas[window] == area
        regions = np.where(within, labels[window], 0)
        wide = [label for label in np.unique(regions) if label > 0 and thin_length(regions == label, cell_px) is None]
        for label, defect in _frame_defects(colour[window], regions, core[window] & within, within, wide,
                                            cell_px).items():
            scores, region = result[window], regions == label
            if not region.any():  # a piece the cut left out: the map's own scores there
                scores[defect] = np.maximum(scores[defect], uncut[window][defect])
                continue
            floor = scores[region & defect].min() if (region & defect).any() else scores[region].min()
            scores[region & ~defect] = 0
            scores[defect & ~region] = floor
    return result


def _frame_defects(colour: np.ndarray, regions: np.ndarray, core: np.ndarray, within: np.ndarray, wide: list[int],
                   cell_px: float) -> dict[int, np.ndarray]:
    """For each `wide` label of `regions` (one area of a frame window: `within`), the defect the frame shows
    (a mask of the window) when it stands apart from the surface around the area."""
    height, width = within.shape
    scale = min(1.0, WORK_CELL_PX / cell_px)  # the watershed at the training scale; the defect resized back
    size = (max(round(width * scale), 1), max(round(height * scale), 1))
    if scale < 1.0:
        colour = cv2.resize(colour.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        core = cv2.resize(core.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0  # no core lost
        regions = cv2.resize(regions.astype(np.float32), size, interpolation=cv2.INTER_NEAREST).astype(np.int32)
        within = cv2.resize(within.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    smooth = cv2.GaussianBlur(colour.astype(np.float32), (0, 0), cell_px * scale / 4.0)
    smooth = smooth if smooth.ndim == 3 else smooth[..., None]
    surface = ~within
    if np.count_nonzero(surface) < 2:
        return {}
    # In the channel that sets the pixel furthest apart (a coloured speck)
    apart = np.abs(_distance_from(smooth, surface)).max(axis=2)
    far = apart >= FAR_CONTRAST
    grey = _distance_from(smooth.mean(axis=2, keepdims=True), surface)[..., 0]
    regions, wide = _with_pieces(regions, far & within, wide)
    if not wide:  # thin regions only, and no piece: nothing to measure here
        return {}
    # Seeds: the core, and the region's pixels the frame sets far apart from the surface (the bright crescent of
    # a dent whose dark body the model answered most: the edge between the two would stop a flood from the core).
    # Where a region has such pixels, the frame shows it plainly: its core seeds only where the frame sets it apart
    # from the surface too (MIN_CONTRAST), so that the surface between a cluster's pits is left to the surface.
    # Any other region is measured on the frame only when its grey level stands apart (the check; a faint stain's
    # tint can stand apart in a channel while its flood follows the texture).
    plain = np.unique(regions[far & (regions > 0)])
    surface_like = np.isin(regions, plain) & (apart < MIN_CONTRAST)
    seeds = ((core & ~surface_like) | far) & within & (regions > 0)
    found = _watershed(regions, seeds, surface, smooth)
    defects = {}
    for label in wide:
        defect = ndimage.binary_fill_holes(found == label)
        if not defect.any() or (label not in plain and abs(float(grey[defect].mean())) < MIN_CONTRAST):
            continue
        if scale < 1.0:
            defect = cv2.resize(defect.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) >= 0.5
        defects[label] = defect
    return defects


def _with_pieces(regions: np.ndarray, far: np.ndarray, wide: list[int]) -> tuple[np.ndarray, list[int]]:
    """`regions` with the `far` pixels (bool) the cut left out: each 8-connected piece of them joins the region it
    touches, or becomes a wide region of its own (a cluster's fainter pits, cut away at the height its strongest
    pits set: grouping joins it to its neighbours); and `wide` with the new labels."""
    count, pieces = cv2.connectedComponents((far & (regions == 0)).astype(np.uint8), connectivity=8)
    if count < 2:
        return regions, wide
    touched = ndimage.maximum(ndimage.grey_dilation(regions, size=(3, 3)), pieces, np.arange(1, count))
    touched = np.asarray(touched, np.int64)
    new = int(regions.max()) + np.cumsum(touched == 0)
    label_of = np.concatenate([[0], np.where(touched > 0, touched, new)])
    return np.where(pieces > 0, label_of[pieces], regions), [*wide, *new[touched == 0].tolist()]


def _watershed(regions: np.ndarray, core: np.ndarray, surface: np.ndarray, smooth: np.ndarray) -> np.ndarray:
    """Each pixel's region label (0: the surface) as floods from the regions' cores and from the surface meet on
    the colour gradient of the smoothed frame (h, w, channels)."""
    markers = np.where(core, regions, 0).astype(np.int32)
    surface_label = int(regions.max()) + 1
    markers[surface] = surface_label
    gradient = np.max([sobel(smooth[..., channel]) for channel in range(smooth.shape[2])], axis=0)
    flooded = watershed(gradient, markers)
    flooded[flooded == surface_label] = 0
    return flooded


def _distance_from(colour: np.ndarray, surface: np.ndarray) -> np.ndarray:
    """Each pixel's colour (h, w, channels) as signed distances from the mean of the `surface` pixels, channel by
    channel, in their standard deviations."""
    values = colour[surface]
    return (colour - values.mean(axis=0)) / np.maximum(values.std(axis=0), 1e-6)
