"""Tests for metrics: image/pixel AUROC and AP (known answers, rank and step definitions), and the GLASS
PRO score (fast vs literal)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats
from skimage import draw

from metrics import (
    MetricInputError,
    compute_pro,
    image_metrics,
    pixel_metrics,
    pro_thresholds,
)
from tests.pro_reference import compute_pro_reference


def _defect_stack() -> np.ndarray:
    """Return six hand-made 48x48 masks: several regions, diagonal contacts, a border blob, one clean image."""
    size = 48
    masks = np.zeros((6, size, size), dtype=np.uint8)
    masks[0, 4:12, 5:20] = 1
    masks[0, 30:38, 30:34] = 1
    masks[0][draw.disk((20, 40), 5, shape=(size, size))] = 1
    masks[1, 10:14, 10:14] = 1  # two squares touching at a corner: one 8-connected region
    masks[1, 14:18, 14:18] = 1
    masks[2, 40:, 40:] = 1  # touches the border
    masks[3][draw.disk((24, 24), 12, shape=(size, size))] = 1
    masks[3, 24, 24] = 0  # a hole
    masks[4, 0, 0] = 1  # a single pixel
    # masks[5] has no defect
    return masks


def _score_stack(masks: np.ndarray, seed: int, contrast: float) -> np.ndarray:
    """Return smooth random float32 maps that are higher inside the defects by ``contrast``."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.random(masks.shape), sigma=(0, 2, 2))
    return (noise + contrast * ndimage.gaussian_filter(masks.astype(float), sigma=(0, 1.5, 1.5))).astype(np.float32)


# ---------------------------------------------------------------- image / pixel metrics


def _rank_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC as the Mann-Whitney statistic: the share of (anomalous, normal) pairs ranked right, ties half."""
    ranks = stats.rankdata(scores)  # average ranks for ties
    positives = labels.astype(bool)
    n, m = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n * (n + 1) / 2) / (n * m))


def _step_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision as the step sum over distinct thresholds t (descending): sum of
    (recall(t) - recall(previous t)) * precision(t), where score >= t is called anomalous."""
    labels = labels.astype(bool)
    total, previous_recall = 0.0, 0.0
    for threshold in np.unique(scores)[::-1]:
        called = scores >= threshold
        recall = (called & labels).sum() / labels.sum()
        total += (recall - previous_recall) * (called & labels).sum() / called.sum()
        previous_recall = recall
    return float(total)


def test_image_metrics_known_answers() -> None:
    # 3 anomalous, 2 normal images; one (anomalous, normal) pair of the 6 is swapped: AUROC 1 - 1/6.
    # Ranked: .9 A, .8 A, .5 N, .4 A, .1 N -> precision at each anomalous image 1, 1, 3/4: AP 11/12.
    labels = np.array([1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.4, 0.5, 0.1])
    result = image_metrics(scores, labels)
    assert result["auroc"] == pytest.approx(5 / 6, abs=1e-12)
    assert result["ap"] == pytest.approx(11 / 12, abs=1e-12)
    # all scores tied: chance AUROC; one threshold calls everything anomalous, AP = the anomalous share
    assert image_metrics(np.full(5, 0.4), labels) == pytest.approx({"auroc": 0.5, "ap": 3 / 5}, abs=1e-12)
    # 2 anomalous, 2 normal, ranked A N A N: pairs right 3 of 4; AP (1 + 2/3) / 2 = 5/6
    assert image_metrics(np.array([0.9, 0.7, 0.8, 0.1]), np.array([1, 1, 0, 0])) == pytest.approx(
        {"auroc": 3 / 4, "ap": 5 / 6}, abs=1e-12)


def test_image_metrics_match_the_rank_and_step_definitions() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    scores = np.round(rng.random(40) + 0.3 * labels, 1)  # rounded: ties between and within the classes
    result = image_metrics(scores, labels)
    assert result["auroc"] == pytest.approx(_rank_auroc(scores, labels), abs=1e-12)
    assert result["ap"] == pytest.approx(_step_ap(scores, labels), abs=1e-12)
    assert 0.5 < result["auroc"] < 1.0


def test_image_metrics_perfect_and_inverted() -> None:
    labels = np.array([0, 0, 1, 1, 0])
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.3])
    assert image_metrics(scores, labels) == {"auroc": 1.0, "ap": 1.0}
    assert image_metrics(-scores, labels)["auroc"] == 0.0


def test_pixel_metrics_are_the_rank_and_step_definitions_on_flattened_pixels() -> None:
    masks = _defect_stack()
    maps = _score_stack(masks, seed=1, contrast=0.3)
    result = pixel_metrics(maps, masks)
    assert result["auroc"] == pytest.approx(_rank_auroc(maps.ravel(), masks.ravel()), abs=1e-9)
    assert result["ap"] == pytest.approx(_step_ap(maps.ravel(), masks.ravel()), abs=1e-9)
    # A (N, 1, H, W) layout, boolean masks and float64 maps give the same numbers.
    assert pixel_metrics(maps[:, None].astype(np.float64), masks[:, None].astype(bool)) == result


def test_pixel_metrics_perfect_and_inverted() -> None:
    masks = _defect_stack()
    maps = masks.astype(np.float32)
    assert pixel_metrics(maps, masks) == {"auroc": 1.0, "ap": 1.0}
    assert pixel_metrics(1.0 - maps, masks)["auroc"] == 0.0


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        (np.array([0.1, 0.2]), np.array([1, 1]), "no normal"),
        (np.array([0.1, 0.2]), np.array([0, 0]), "no anomalous"),
        (np.array([0.1, 0.2, 0.3]), np.array([0, 1]), "differ in length"),
        (np.array([0.1, np.nan]), np.array([0, 1]), "NaN"),
        (np.array([0.1, 0.2]), np.array([0, 2]), "only 0 and 1"),
    ],
)
def test_image_metrics_reject_bad_input(scores: np.ndarray, labels: np.ndarray, message: str) -> None:
    with pytest.raises(MetricInputError, match=message):
        image_metrics(scores, labels)


@pytest.mark.parametrize(
    ("maps", "masks", "message"),
    [
        (np.zeros((2, 4, 4)), np.zeros((2, 4, 5)), "differ in shape"),
        (np.zeros((4, 4)), np.zeros((4, 4)), r"\(N, H, W\)"),
        (np.zeros((1, 4, 4)), np.full((1, 4, 4), 255), "only 0 and 1"),
        (np.full((1, 4, 4), np.inf), np.eye(4)[None], "NaN or infinite"),
        (np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), "no anomalous"),
    ],
)
def test_pixel_metrics_reject_bad_input(maps: np.ndarray, masks: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pixel_metrics(maps, masks)


# ---------------------------------------------------------------- PRO: known answers

# One 2x4 image with a single defect pixel (top-left, score 0.6) and 7 defect-free pixels
# scoring 1.0, 0.7, 0.3, 0.1, 0, 0, 0. With 4 thresholds {0, .25, .5, .75} (score > t fires):
#   t      0     .25   .5    .75
#   PRO    1     1     1     0
#   FPR    4/7   3/7   2/7   1/7
# max_fpr .3 keeps t=.5,.75: FPR rescaled to (1, 0), area 1/2.
# max_fpr .5 keeps three points: FPR (1, .5, 0), PRO (1, 1, 0): .25 + .5 = 3/4.
# max_fpr 1 keeps all: FPR (1, 2/3, 1/3, 0), PRO (1, 1, 1, 0): 1/6 + 2/3 = 5/6.
_FILTER_MASK = np.array([[[1, 0, 0, 0], [0, 0, 0, 0]]])
_FILTER_MAP = np.array([[[0.6, 1.0, 0.7, 0.3], [0.1, 0.0, 0.0, 0.0]]])

# One 2x4 image, one 2-pixel defect scoring 1.0 and 0.3; defect-free scores 0.6, 0.1, 0.1, 0, 0, 0.
#   t      0     .25   .5    .75
#   PRO    1     1     .5    .5
#   FPR    3/6   1/6   1/6   0      -> rescaled 1, 1/3, 1/3, 0
# The curve drops from PRO 1 to .5 at FPR 1/3, so the area is 2/3 * 1 + 1/3 * .5 = 5/6
# (joining the equal-FPR points in the wrong order would give 3/4).
_TIE_MASK = np.array([[[1, 1, 0, 0], [0, 0, 0, 0]]])
_TIE_MAP = np.array([[[1.0, 0.3, 0.6, 0.1], [0.1, 0.0, 0.0, 0.0]]])

# One 3x3 image whose defect is a corner pixel plus a 2-pixel bar touching it diagonally
# (one 8-connected region of area 3; 4-connectivity would see two). Scores: 1.0 on the
# corner, 0.5 on a defect-free pixel, 0 elsewhere. Thresholds {0, .5}:
#   no dilation: PRO (1/3, 1/3), FPR (1/6, 0) -> area 1/3 (4-connectivity would give 1/2);
#   5x5 dilation covers the whole image: PRO (1, 1) -> area 1.
_DIAGONAL_MASK = np.array([[[1, 0, 0], [0, 1, 1], [0, 0, 0]]])
_DIAGONAL_MAP = np.array([[[1.0, 0, 0], [0, 0, 0], [0, 0, 0.5]]])


@pytest.mark.parametrize(
    ("masks", "maps", "num_thresholds", "max_fpr", "dilation", "expected"),
    [
        (_FILTER_MASK, _FILTER_MAP, 4, 0.3, 1, 1 / 2),
        (_FILTER_MASK, _FILTER_MAP, 4, 0.5, 1, 3 / 4),
        (_FILTER_MASK, _FILTER_MAP, 4, 1.0, 1, 5 / 6),
        (_FILTER_MASK, _FILTER_MAP, 4, 3 / 7, 1, 1 / 2),  # FPR must be strictly below max_fpr
        (_TIE_MASK, _TIE_MAP, 4, 1.0, 1, 5 / 6),
        (_DIAGONAL_MASK, _DIAGONAL_MAP, 2, 0.3, 1, 1 / 3),
        (_DIAGONAL_MASK, _DIAGONAL_MAP, 2, 0.3, 5, 1.0),
    ],
)
def test_pro_known_answers(masks, maps, num_thresholds, max_fpr, dilation, expected) -> None:
    for pro in (compute_pro, compute_pro_reference):
        value = pro(masks, maps, max_fpr=max_fpr, num_thresholds=num_thresholds, dilation=dilation)
        assert value == pytest.approx(expected, abs=1e-8)


def test_pro_thresholds_are_evenly_spaced_from_min_excluding_max() -> None:
    assert pro_thresholds(np.array([[[2.0, 4.0]]]), 4).tolist() == [2.0, 2.5, 3.0, 3.5]


def test_pro_of_perfectly_separating_map_is_one() -> None:
    masks = _defect_stack()
    rng = np.random.default_rng(3)
    # Defect-free pixels spread over [0, 0.5), defects over [0.6, 1]: every FPR > 0 comes with PRO 1.
    maps = np.where(masks == 1, 0.6 + 0.4 * rng.random(masks.shape), 0.5 * rng.random(masks.shape))
    for dilation in (1, 5):
        assert compute_pro(masks, maps, dilation=dilation) == pytest.approx(1.0, abs=1e-6)


def test_pro_of_uninformative_maps_is_zero() -> None:
    masks = _defect_stack()
    # Constant maps never fire; binary maps equal to the masks never raise a false positive.
    # Either way all kept points share one FPR, the rescaled range collapses and GLASS's area is 0.
    assert compute_pro(masks, np.full(masks.shape, 0.5)) == 0.0
    assert compute_pro(masks, masks.astype(float)) == 0.0
    assert compute_pro_reference(masks, masks.astype(float)) == 0.0


# ---------------------------------------------------------------- PRO: fast vs literal


@pytest.mark.parametrize(("dilation", "max_fpr", "seed"), [(1, 0.3, 0), (5, 0.3, 1), (5, 1.0, 2), (3, 0.1, 3)])
def test_pro_matches_reference_on_random_maps(dilation: int, max_fpr: float, seed: int) -> None:
    masks = _defect_stack()
    maps = _score_stack(masks, seed=seed, contrast=0.2)
    fast = compute_pro(masks, maps, max_fpr=max_fpr, dilation=dilation)
    literal = compute_pro_reference(masks, maps, max_fpr=max_fpr, dilation=dilation)
    assert 0.1 < fast < 1.0
    assert fast == pytest.approx(literal, abs=1e-9)


def test_pro_is_invariant_to_positive_affine_rescaling_and_deterministic() -> None:
    masks = _defect_stack()
    maps = _score_stack(masks, seed=4, contrast=0.2).astype(np.float64)
    value = compute_pro(masks, maps)
    assert compute_pro(masks, maps) == value
    assert compute_pro(masks, 3.0 * maps - 1.0) == pytest.approx(value, abs=1e-3)


def test_pro_rewards_better_maps() -> None:
    masks = _defect_stack()
    weak = compute_pro(masks, _score_stack(masks, seed=5, contrast=0.05))
    strong = compute_pro(masks, _score_stack(masks, seed=5, contrast=0.5))
    assert weak < strong


def test_pro_rejects_masks_without_defects_or_without_background() -> None:
    maps = np.random.default_rng(0).random((2, 8, 8))
    with pytest.raises(MetricInputError, match="no anomalous"):
        compute_pro(np.zeros((2, 8, 8)), maps)
    with pytest.raises(MetricInputError, match="no normal"):
        compute_pro(np.ones((2, 8, 8)), maps)


@pytest.mark.parametrize(
    "kwargs", [{"max_fpr": 0.0}, {"max_fpr": 1.5}, {"num_thresholds": 1}, {"dilation": 4}, {"dilation": 0}]
)
def test_pro_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(MetricInputError, match="PRO"):
        compute_pro(_FILTER_MASK, _FILTER_MAP, **kwargs)
