"""Tests for loss.FocalLoss (GLASS two-class focal loss on probabilities with label smoothing)."""

from __future__ import annotations

import math

import pytest
import torch

from loss import FocalLoss, FocalLossInputError

EPS = 1e-5
# (anomaly score s, label) for four patches; the loss sees probabilities [1 - s, s].
SAMPLES = [(0.9, 1), (0.2, 0), (0.6, 0), (0.05, 1)]
# pt = sum(clamped one-hot * p) + eps, one-hot clamped to [eps, 1 - eps] for two classes.
PT = [
    EPS * (1 - 0.9) + (1 - EPS) * 0.9 + EPS,  # label 1, s = 0.9
    (1 - EPS) * (1 - 0.2) + EPS * 0.2 + EPS,  # label 0, s = 0.2
    (1 - EPS) * (1 - 0.6) + EPS * 0.6 + EPS,  # label 0, s = 0.6
    EPS * (1 - 0.05) + (1 - EPS) * 0.05 + EPS,  # label 1, s = 0.05
]
EXPECTED = [-((1 - pt) ** 2) * math.log(pt) for pt in PT]


def _inputs(samples=SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    """Return GLASS-style (N, 2) probabilities and (N, 1) float labels in float64."""
    scores = torch.tensor([[s] for s, _ in samples], dtype=torch.float64)
    labels = torch.tensor([[float(y)] for _, y in samples], dtype=torch.float64)
    return torch.cat([1 - scores, scores], dim=1), labels


def test_hand_computed_values_for_each_reduction() -> None:
    output, target = _inputs()
    per_sample = FocalLoss(reduction="none")(output, target)
    assert per_sample.shape == (4,)
    assert per_sample.tolist() == pytest.approx(EXPECTED, rel=1e-12)
    # Literal numbers, so a slip shared by the formula above and the module cannot hide.
    assert per_sample.tolist() == pytest.approx([1.05354079e-3, 8.92518503e-3, 0.329840670, 2.70319736], rel=1e-8)
    assert FocalLoss()(output, target).item() == pytest.approx(sum(EXPECTED) / 4, rel=1e-12)
    assert FocalLoss(reduction="sum")(output, target).item() == pytest.approx(sum(EXPECTED), rel=1e-12)


def test_target_layouts_agree() -> None:
    output, target = _inputs()
    reference = FocalLoss()(output, target)
    assert torch.equal(FocalLoss()(output, target[:, 0]), reference)
    assert torch.equal(FocalLoss()(output, target[:, 0].long()), reference)


def test_gamma_zero_without_smoothing_is_cross_entropy() -> None:
    output, target = _inputs()
    loss = FocalLoss(gamma=0.0, smooth=0.0)(output, target)
    expected = torch.nn.functional.nll_loss(output.log(), target[:, 0].long())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)


def test_gamma_zero_is_smoothed_cross_entropy() -> None:
    output, target = _inputs()
    loss = FocalLoss(gamma=0.0, reduction="none")(output, target)
    assert loss.tolist() == pytest.approx([-math.log(pt) for pt in PT], rel=1e-12)


def test_focal_term_down_weights_confident_samples() -> None:
    output, target = _inputs()
    focal = FocalLoss(reduction="none")(output, target)
    plain = FocalLoss(gamma=0.0, reduction="none")(output, target)
    assert torch.allclose(focal / plain, torch.tensor([(1 - pt) ** 2 for pt in PT], dtype=torch.float64))
    assert bool((focal < plain).all())


def test_alpha_weights_each_sample_by_its_class() -> None:
    output, target = _inputs()
    weighted = FocalLoss(alpha=[0.25, 0.75], reduction="none")(output, target)
    weights = [0.75, 0.25, 0.25, 0.75]
    assert weighted.tolist() == pytest.approx([w * e for w, e in zip(weights, EXPECTED)], rel=1e-12)


def test_confident_correct_prediction_costs_nothing_and_stays_finite() -> None:
    output, target = _inputs([(1.0, 1), (0.0, 0)])
    for gamma in (2.0, 1.5):
        loss = FocalLoss(gamma=gamma, reduction="none")(output, target)
        assert torch.isfinite(loss).all()
        assert loss.abs().max().item() < 1e-9


def test_gradient_flows_to_scores_in_the_right_direction() -> None:
    logits = torch.tensor([[2.0], [-1.0], [0.5], [-3.0]], requires_grad=True)
    scores = torch.sigmoid(logits)
    labels = torch.tensor([[1.0], [0.0], [0.0], [1.0]])
    loss = FocalLoss()(torch.cat([1 - scores, scores], dim=1), labels)
    loss.backward()
    grad = logits.grad[:, 0]
    assert torch.isfinite(grad).all() and bool((grad != 0).all())
    # Raising the score of an anomalous patch lowers the loss; raising a normal one raises it.
    assert bool((grad[[0, 3]] < 0).all()) and bool((grad[[1, 2]] > 0).all())


def test_float32_glass_usage() -> None:
    torch.manual_seed(0)
    scores = torch.rand(64, 1)
    mask = (torch.rand(64, 1) > 0.5).float()
    loss = FocalLoss()(torch.cat([1 - scores, scores], dim=1), mask)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert 0.0 < loss.item() < -math.log(2 * EPS)


@pytest.mark.parametrize(
    ("output", "target"),
    [
        (torch.rand(4), torch.zeros(4)),  # output not (N, C)
        (torch.rand(4, 1), torch.zeros(4)),  # a single class
        (torch.rand(4, 2, 3), torch.zeros(4)),  # extra axis
        (torch.rand(4, 2), torch.zeros(3)),  # length mismatch
        (torch.rand(4, 2), torch.zeros(4, 2)),  # target not (N,) or (N, 1)
        (torch.rand(4, 2), torch.tensor([0.0, 1.0, 2.0, 0.0])),  # label out of range
        (torch.rand(4, 2), torch.tensor([0.0, 1.0, 0.5, 0.0])),  # fractional label
        (torch.rand(4, 2), torch.tensor([0, -1, 0, 1])),  # negative label
    ],
)
def test_bad_inputs_raise_value_error(output: torch.Tensor, target: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="FocalLoss"):
        FocalLoss()(output, target)


@pytest.mark.parametrize(
    "kwargs",
    [{"gamma": -1.0}, {"smooth": 1.0}, {"smooth": -0.1}, {"reduction": "avg"}, {"alpha": [1.0]},
     {"alpha": [1.0, -1.0]}],
)
def test_bad_arguments_raise_value_error(kwargs: dict) -> None:
    with pytest.raises(FocalLossInputError):
        FocalLoss(**kwargs)


def test_alpha_must_match_number_of_classes() -> None:
    output, target = _inputs()
    with pytest.raises(FocalLossInputError, match="alpha"):
        FocalLoss(alpha=[1.0, 1.0, 1.0])(output, target)
