"""The PRO score by the literal loop over thresholds and regions: the oracle for metrics.compute_pro.

Slow, obviously right, and no input checks (the tests and benchmarks/bench_pro.py pass valid stacks).
Not collected by pytest (no test_ prefix); tests import it as `tests.pro_reference`.
"""
from __future__ import annotations

import cv2
import numpy as np
from skimage import measure

from metrics import GLASS_PRO_DILATION, pro_auc, pro_thresholds


def compute_pro_reference(
    masks: np.ndarray,
    maps: np.ndarray,
    max_fpr: float = 0.3,
    num_thresholds: int = 200,
    dilation: int = GLASS_PRO_DILATION,
) -> float:
    """PRO of (N, H, W) masks and maps as compute_pro defines it, one threshold and region at a time."""
    maps = np.asarray(maps).astype(np.float32, copy=False)
    masks = np.asarray(masks).astype(bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (dilation, dilation))
    negatives = ~masks
    pro_curve, fpr_curve = [], []
    for threshold in pro_thresholds(maps, num_thresholds):
        predicted = maps > threshold
        overlaps = []
        for prediction, mask in zip(predicted, masks):
            grown = cv2.dilate(prediction.astype(np.uint8), kernel).astype(bool)
            for region in measure.regionprops(measure.label(mask, connectivity=2)):
                rows, cols = region.coords[:, 0], region.coords[:, 1]
                overlaps.append(grown[rows, cols].sum() / region.area)
        pro_curve.append(np.mean(overlaps))
        fpr_curve.append(np.logical_and(predicted, negatives).sum() / negatives.sum())
    return pro_auc(np.array(fpr_curve), np.array(pro_curve), max_fpr)
