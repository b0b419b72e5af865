"""GLASS evaluation metrics: image and pixel AUROC/AP, and the per-region-overlap (PRO) score.

PRO follows the official GLASS evaluation, which differs from the MVTec AD paper's in ways
that change the number, so they are kept on purpose:

* thresholds: ``num_thresholds`` values ``min + k * (max - min) / num_thresholds``,
  ``k = 0 .. num_thresholds - 1`` over all maps; a pixel is predicted anomalous when its
  score is strictly greater than the threshold;
* overlap of a ground-truth region (8-connected component of a mask) is measured on the
  prediction dilated by a ``dilation`` x ``dilation`` square (5 in GLASS; 1 = no dilation,
  the MVTec AD definition); false positives use the undilated prediction;
* PRO at a threshold is the mean overlap over all regions of all images; FPR is false-positive
  pixels over all defect-free pixels;
* points with FPR strictly below ``max_fpr`` are kept, their FPR is min-max rescaled to
  [0, 1] (plus 1e-10 in the denominator) and the area under PRO(FPR) is taken by trapezoids.

Consequence of the rescaling: when every kept point has the same FPR (a constant map, or a
binary map whose positives never fire on defect-free pixels) the area is 0.0, as in GLASS.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage
from skimage import measure
from sklearn import metrics as skm

from errors import UserError

LOGGER = logging.getLogger(__name__)

GLASS_PRO_DILATION = 5  # side of the square the official code dilates predictions with
_FPR_RANGE_EPS = 1e-10  # added to the FPR range before rescaling, as in GLASS


class MetricInputError(UserError):
    """Scores, labels, maps or masks that a metric cannot be computed from."""


def image_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Return image-level AUROC and average precision of ``scores`` against 0/1 ``labels``."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = _binary(np.asarray(labels).ravel(), "image labels")
    if scores.shape != labels.shape:
        raise MetricInputError(f"image scores ({scores.size}) and labels ({labels.size}) differ in length")
    _require_finite(scores, "image scores")
    _require_both_classes(labels, "image labels")
    return {
        "auroc": float(skm.roc_auc_score(labels, scores)),
        "ap": float(skm.average_precision_score(labels, scores)),
    }


def pixel_metrics(maps: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """Return pixel-level AUROC and average precision of anomaly ``maps`` (N, H, W) against ``masks``."""
    maps, masks = _segmentation_inputs(maps, masks)
    # ravel() is a view for contiguous input; sklearn then sorts once per metric.
    flat_scores = maps.ravel()
    flat_truth = masks.ravel()
    _require_both_classes(flat_truth, "pixel masks")
    return {
        "auroc": float(skm.roc_auc_score(flat_truth, flat_scores)),
        "ap": float(skm.average_precision_score(flat_truth, flat_scores)),
    }


def compute_pro(
    masks: np.ndarray,
    maps: np.ndarray,
    max_fpr: float = 0.3,
    num_thresholds: int = 200,
    dilation: int = GLASS_PRO_DILATION,
) -> float:
    """Return the normalised area under the PRO curve up to ``max_fpr`` (GLASS definition)."""
    maps, masks = _segmentation_inputs(maps, masks)
    _check_pro_arguments(max_fpr, num_thresholds, dilation)
    _require_both_classes(masks.ravel(), "PRO masks")
    thresholds = pro_thresholds(maps, num_thresholds)

    # Each pixel is reduced to how many thresholds lie strictly below its score; a pixel
    # fires at threshold k exactly when k < that count. Histograms of the counts give the
    # firing pixels at every threshold at once (one pass per image, no loop over thresholds).
    negative_hist = np.zeros(num_thresholds + 1, dtype=np.int64)
    region_hists: list[np.ndarray] = []
    for anomaly_map, mask in zip(maps, masks):
        negative_hist += np.bincount(_thresholds_below(thresholds, anomaly_map[~mask]), minlength=num_thresholds + 1)
        if mask.any():
            region_hists.append(_region_histograms(anomaly_map, mask, thresholds, dilation))
    hists = np.concatenate(region_hists)  # (regions, num_thresholds + 1)

    areas = hists.sum(axis=1)
    overlaps = areas[:, None] - np.cumsum(hists, axis=1)[:, :num_thresholds]
    pro = (overlaps / areas[:, None]).mean(axis=0)
    false_positives = negative_hist.sum() - np.cumsum(negative_hist)[:num_thresholds]
    fpr = false_positives / negative_hist.sum()
    return pro_auc(fpr, pro, max_fpr)


def pro_thresholds(maps: np.ndarray, num_thresholds: int) -> np.ndarray:
    """Return ``num_thresholds`` evenly spaced float64 thresholds from the maps' minimum (inclusive) to maximum
    (exclusive)."""
    low, high = float(maps.min()), float(maps.max())
    return low + (high - low) / num_thresholds * np.arange(num_thresholds, dtype=np.float64)


def pro_auc(fpr: np.ndarray, pro: np.ndarray, max_fpr: float) -> float:
    """Return the area under PRO(FPR) (both in ascending-threshold order) for FPR < ``max_fpr``, FPR min-max
    rescaled."""
    keep = fpr < max_fpr
    fpr, pro = fpr[keep], pro[keep]
    if fpr.size < 2:
        LOGGER.warning("PRO: %d threshold(s) below max_fpr=%s; area is 0", fpr.size, max_fpr)
        return 0.0
    scaled = (fpr - fpr.min()) / (fpr.max() - fpr.min() + _FPR_RANGE_EPS)
    # Points come in threshold order, so FPR never increases; sklearn integrates along that
    # order (re-sorting by FPR would scramble runs of equal FPR and change the area).
    return float(skm.auc(scaled, pro))


def _thresholds_below(thresholds: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Return, per score, the number of thresholds strictly below it (exact float64 comparison)."""
    return np.searchsorted(thresholds, scores.astype(np.float64, copy=False), side="left")


def _region_histograms(anomaly_map: np.ndarray, mask: np.ndarray, thresholds: np.ndarray, dilation: int) -> np.ndarray:
    """Return, per 8-connected region of ``mask``, a histogram of its pixels' threshold counts."""
    regions, num_regions = measure.label(mask, connectivity=2, return_num=True)
    # Dilating the binary prediction by a square equals thresholding the map's maximum filter.
    grown = ndimage.maximum_filter(anomaly_map, size=dilation, mode="nearest") if dilation > 1 else anomaly_map
    bins = len(thresholds) + 1
    codes = (regions[mask] - 1) * bins + _thresholds_below(thresholds, grown[mask])
    return np.bincount(codes, minlength=num_regions * bins).reshape(num_regions, bins)


def _segmentation_inputs(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate (N, H, W) maps and masks; return float32 maps and boolean masks (views where possible)."""
    maps = _as_stack(np.asarray(maps), "anomaly maps")
    masks = _as_stack(np.asarray(masks), "masks")
    if maps.shape != masks.shape:
        raise MetricInputError(f"anomaly maps {maps.shape} and masks {masks.shape} differ in shape")
    maps = maps.astype(np.float32, copy=False)
    _require_finite(maps, "anomaly maps")
    return maps, _binary(masks, "masks")


def _as_stack(array: np.ndarray, what: str) -> np.ndarray:
    """Return ``array`` as (N, H, W), dropping a singleton channel axis of (N, 1, H, W)."""
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.size == 0:
        raise MetricInputError(f"{what} shape {array.shape}: expected a non-empty (N, H, W) stack")
    return array


def _binary(values: np.ndarray, what: str) -> np.ndarray:
    """Return ``values`` as booleans, refusing anything but 0/1."""
    if values.dtype == bool:
        return values
    if not np.all((values == 0) | (values == 1)):
        raise MetricInputError(f"{what} must contain only 0 and 1; binarise them first (e.g. mask > 0)")
    return values.astype(bool)


def _require_finite(values: np.ndarray, what: str) -> None:
    """Refuse NaN or infinite scores."""
    if not np.isfinite(values).all():
        raise MetricInputError(f"{what} contain NaN or infinite values")


def _require_both_classes(truth: np.ndarray, what: str) -> None:
    """Refuse ground truth that is all anomalous or all normal (the metrics are undefined)."""
    positives = int(np.count_nonzero(truth))
    if positives == 0:
        raise MetricInputError(f"{what} contain no anomalous sample; the metric needs at least one defect")
    if positives == truth.size:
        raise MetricInputError(f"{what} contain no normal sample; the metric needs at least one defect-free one")


def _check_pro_arguments(max_fpr: float, num_thresholds: int, dilation: int) -> None:
    """Refuse PRO settings that make no sense."""
    if not 0.0 < max_fpr <= 1.0:
        raise MetricInputError(f"PRO max_fpr={max_fpr}: must lie in (0, 1]")
    if num_thresholds < 2:
        raise MetricInputError(f"PRO num_thresholds={num_thresholds}: must be at least 2")
    if dilation < 1 or dilation % 2 == 0:
        raise MetricInputError(f"PRO dilation={dilation}: must be an odd size >= 1 (GLASS uses 5)")
