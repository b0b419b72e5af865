"""What every method's torch model provides, so that evaluation, the engine, ONNX export and the video
tools treat all methods alike.

- `score_grids(images)`: (patch scores (B,h,w), image-score grid (B,h,w)), both in [0, 1]. The patch
  scores make the anomaly map (bilinear + Gaussian, `common.anomaly_maps`). The image score follows the
  model's `image_score_rule`: "peak" (GLASS, PatchCore), the image-score grid at the patch with the
  highest patch score (`image_scores_at_peak`; GLASS's grids are one tensor: the highest patch score;
  PatchCore's image grid holds the paper's reweighted distance of each patch), "map_max" (PaDiM and the
  autoencoder), the highest value of the smoothed anomaly map, or "grid_max" (DRAEM), the highest value of
  the image-score grid (DRAEM's: its pixel map averaged over 21 x 21 windows, as its paper).
- `strides`: (pixels per grid cell, the multiple inputs are padded to): the backbone's layer strides, or a
  pixel method's own (`PixelModel`).
- `export_head()`: the part after the backbone as a module maps -> grids (one output when the grids
  are the same), for ONNX export.
- `weights()` / `load_weights(state, source)`: the fitted state for checkpoints.
- `fit_loader(loader, seed)`: fits on a class's training loader (`fitting.fit_class`); the one-pass methods
  read its images once, the trained pixel methods (DRAEM, autoencoder) run their epochs over it. Methods
  with `synthesises_anomalies` get a loader whose items carry LAS images and masks (`aug`, `mask`).

Scores in [0, 1]: distance methods map a distance d to d / (d + scale), with `scale` fixed when the
model is fitted (from the defect-free training data). The mapping is strictly increasing, so every
ranking metric (AUROC, AP, PRO) is the distance's own, and thresholds, heatmap colours and the video
tools work on one scale for every method.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

import backbones
import common
from errors import UserError


class CheckpointError(UserError):
    """A model directory or checkpoint file that cannot be used (one-line message)."""


class ModelConfig:
    """Mixin for a method's frozen config dataclass: plain-data form for checkpoints and back."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for checkpoints (lists instead of tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Inverse of to_dict; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise CheckpointError(f"checkpoint config has unknown fields {sorted(unknown)}: "
                                  "written by a newer toolkit?")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


IMAGE_SCORE_RULES = ("peak", "map_max", "grid_max")


def image_scores_at_peak(patch: torch.Tensor, image_grid: torch.Tensor) -> torch.Tensor:
    """Per image (B,h,w grids), the image-score grid's value at the highest patch score (B,)."""
    peak = patch.flatten(1).argmax(dim=1, keepdim=True)
    return image_grid.flatten(1).gather(1, peak)[:, 0]


def squash(distance: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Distances >= 0 -> scores in [0, 1): d / (d + scale), strictly increasing."""
    return distance / (distance + scale)


class AnomalyModel(nn.Module):
    """Base of every method's torch model: frozen backbone `extractor`, config `cfg`, grids in [0, 1]."""

    method: ClassVar[str] = ""
    image_score_rule: ClassVar[str] = "peak"  # or "map_max", "grid_max" (see the module docstring)
    synthesises_anomalies: ClassVar[bool] = False  # trains on LAS images (DRAEM)
    # How its scores were squashed into [0, 1] (defect_tracking.surface.REGION_SCALES): "logit" for a sigmoid,
    # "distance" for squash(); tracking measures regions on the evidence before it (surface.cut_at_height).
    map_scale: ClassVar[str] = "distance"
    cfg: Any
    extractor: backbones.FeatureExtractor | None

    @property
    def strides(self) -> tuple[int, ...]:
        """Pixels per cell of the score grids first; inputs are padded to a multiple of the largest."""
        return tuple(self.extractor.strides)

    def score_grids(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(patch scores, image-score grid), each (B,h,w), for normalised images (B,3,H,W)."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Patch-score grids (B,h,w) in [0, 1]."""
        return self.score_grids(images)[0]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image scores (B,), anomaly maps (B,H,W), patch scores (B,h,w)) in eval mode."""
        self.eval()
        patch, image_grid = self.score_grids(images)
        maps = common.anomaly_maps(patch, images.shape[-2:])
        if self.image_score_rule == "map_max":
            image_scores = maps.reshape(len(maps), -1).max(axis=1)
        elif self.image_score_rule == "grid_max":
            image_scores = image_grid.flatten(1).amax(dim=1).cpu().numpy()
        else:
            image_scores = image_scores_at_peak(patch, image_grid).cpu().numpy()
        return image_scores, maps, patch.cpu().numpy()

    def fit(self, batches: Any, seed: int) -> dict[str, Any]:
        """Fits on batches of normalised defect-free images; returns facts for the checkpoint."""
        raise NotImplementedError

    def fit_loader(self, loader: torch.utils.data.DataLoader, seed: int, resume: dict[str, Any] | None = None,
                   on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Fits on a class's training loader (one pass over its images); returns fit facts. `resume` and
        `on_epoch` (a training state between epochs, for methods trained for epochs) are not used by one pass."""
        return self.fit((batch["image"] for batch in loader), seed=seed)

    def weights(self) -> dict[str, Any]:
        """The fitted state, on CPU."""
        raise NotImplementedError

    def load_weights(self, state: dict[str, Any], source: str) -> None:
        """Loads a fitted state; a mismatch raises CheckpointError naming `source`."""
        raise NotImplementedError

    def export_head(self) -> nn.Module:
        """Backbone maps -> patch scores, or (patch scores, image-score grid): the exportable head."""
        raise NotImplementedError


class FittedHead(nn.Module):
    """Base of a head whose fitted state is a set of named buffers (PatchCore, PaDiM): the model's
    `head`, after the frozen backbone."""

    state_buffers: ClassVar[tuple[str, ...]] = ()

    def weights(self) -> dict[str, Any]:
        """The fitted buffers, detached on CPU."""
        return {name: getattr(self, name).detach().cpu().clone() for name in self.state_buffers}

    def load_weights(self, state: dict[str, Any], source: str) -> None:
        """Replaces the fitted buffers (their shapes come from the checkpoint)."""
        missing = [name for name in self.state_buffers if not isinstance(state.get(name), torch.Tensor)]
        if missing:
            raise CheckpointError(f"{source}: weights lack {', '.join(missing)}; delete the folder and fit again")
        for name in self.state_buffers:
            current = getattr(self, name)
            setattr(self, name, state[name].to(device=current.device, dtype=current.dtype))

    def shared_copy(self, **changes: Any) -> FittedHead:
        """A head of the same config sharing these buffers, with some attributes changed (export)."""
        clone = type(self)(self.cfg)
        for name in self.state_buffers:
            setattr(clone, name, getattr(self, name))
        for name, value in changes.items():
            setattr(clone, name, value)
        return clone.to(getattr(self, self.state_buffers[0]).device)


class HeadModel(AnomalyModel):
    """A method model made of a frozen backbone and a fitted head (maps -> score grids)."""

    head: FittedHead

    def weights(self) -> dict[str, Any]:
        """The head's fitted state, on CPU."""
        return self.head.weights()

    def load_weights(self, state: dict[str, Any], source: str) -> None:
        """Loads the head's fitted state."""
        self.head.load_weights(state, source)
