"""Focal loss on class probabilities with label smoothing, as GLASS applies it to LAS features.

GLASS feeds the discriminator's anomaly score ``s`` as the two-class probability
vector ``[1 - s, s]`` (no nonlinearity is applied here) and the patch label (0 normal,
1 anomalous). With ``C`` classes and smoothing ``eps`` the per-sample loss is::

    q  = clamp(one_hot(target), eps / (C - 1), 1 - eps)
    pt = sum_c q_c * p_c + eps
    loss = -alpha[target] * (1 - pt) ** gamma * log(pt)

torch has no focal loss on probabilities with this smoothing, hence the hand-written module.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

REDUCTIONS = ("mean", "sum", "none")


class FocalLossInputError(ValueError):
    """Bad constructor argument or tensor shape for FocalLoss."""


class FocalLoss(nn.Module):
    """Focal loss on (N, C) class probabilities with smoothed one-hot targets (GLASS defaults)."""

    alpha: torch.Tensor | None

    def __init__(
        self,
        gamma: float = 2.0,
        smooth: float = 1e-5,
        alpha: Sequence[float] | torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise FocalLossInputError(f"FocalLoss gamma={gamma}: must be >= 0")
        if not 0.0 <= smooth < 1.0:
            raise FocalLossInputError(f"FocalLoss smooth={smooth}: must lie in [0, 1)")
        if reduction not in REDUCTIONS:
            raise FocalLossInputError(f"FocalLoss reduction={reduction!r}: use one of {', '.join(REDUCTIONS)}")
        self.gamma = float(gamma)
        self.smooth = float(smooth)
        self.reduction = reduction
        weights = None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32).flatten()
        if weights is not None and (weights.numel() < 2 or bool((weights < 0).any())):
            raise FocalLossInputError("FocalLoss alpha: give one non-negative weight per class (at least 2)")
        # A buffer follows .to(device) and is saved with the module's state.
        self.register_buffer("alpha", weights, persistent=False)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the focal loss of probabilities ``output`` (N, C) against labels ``target`` (N,) or (N, 1)."""
        labels = self._checked_labels(output, target)
        num_classes = output.shape[1]
        one_hot = nn.functional.one_hot(labels, num_classes).to(output.dtype)
        if self.smooth > 0:
            one_hot = one_hot.clamp(self.smooth / (num_classes - 1), 1.0 - self.smooth)
        pt = (one_hot * output).sum(dim=1) + self.smooth
        # (1 - pt) can dip a rounding error below 0 when p_target == 1; a negative base would
        # turn a fractional gamma into NaN.
        loss = -(1.0 - pt).clamp(min=0.0).pow(self.gamma) * pt.log()
        if self.alpha is not None:
            loss = loss * self.alpha.to(loss.dtype)[labels]
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def _checked_labels(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Validate shapes and return the labels as a flat long tensor."""
        if output.dim() != 2 or output.shape[1] < 2:
            raise FocalLossInputError(
                f"FocalLoss output shape {tuple(output.shape)}: expected (N, C>=2) class probabilities"
            )
        if target.dim() == 2 and target.shape[1] == 1:
            target = target[:, 0]
        if target.dim() != 1 or target.shape[0] != output.shape[0]:
            raise FocalLossInputError(
                f"FocalLoss target shape {tuple(target.shape)}: expected ({output.shape[0]},) or ({output.shape[0]}, 1)"
            )
        if self.alpha is not None and self.alpha.numel() != output.shape[1]:
            raise FocalLossInputError(
                f"FocalLoss alpha has {self.alpha.numel()} weights but output has {output.shape[1]} classes"
            )
        labels = target.long()
        invalid = (labels != target) | (labels < 0) | (labels >= output.shape[1])
        if bool(invalid.any()):  # one host sync per call
            raise FocalLossInputError(f"FocalLoss target: labels must be integers in [0, {output.shape[1] - 1}]")
        return labels
