"""PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework", ICPR 2021).

Fitting: the backbone maps of every defect-free training image, coarser maps resized to the finest grid
(nearest neighbour, as the paper's implementation), concatenated; a random subset of `features`
channels (drawn from the seed) is kept; at every grid position a Gaussian: the mean and the covariance,
either regularised (sample covariance + epsilon * I, the paper's, epsilon 0.01) or Ledoit-Wolf shrunk
(scikit-learn), stored as its inverse.

Scoring: a patch's score is the Mahalanobis distance of its feature to its position's Gaussian, mapped to
[0, 1] by d / (d + scale) (`methods.base.squash`) with `scale` the largest distance of a training patch
(`fitting.fit_class` then sets it from held-out images: `set_distance_scale`). The image score is the
highest value of the anomaly map (upsampled, Gaussian-smoothed), as the paper's.

The Gaussians belong to the positions of the training view (imagesize x imagesize). An input of another
size (a whole frame at the training scale) gets the statistics resized to its grid (nearest neighbour):
position (i, j) of an h x w grid uses the Gaussian at (floor(i * H0 / h), floor(j * W0 / w)); on
inputs of the training size this is the identity.

Memory: the inverse covariances take h * w * features^2 float32 (h, w: the first layer's grid), e.g.
64 * 64 * 100^2 * 4 B = 164 MB at 256 px with a stride-4 first layer; fitting holds the selected
features of every training image (h * w * features * 4 B each, 1.6 MB there).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
import tqdm
from sklearn.covariance import ledoit_wolf
from torch import nn

import backbones
import common
from methods.base import CheckpointError, FittedHead, HeadModel, ModelConfig, squash

LOGGER = logging.getLogger(__name__)

COVARIANCES = ("regularised", "ledoit-wolf")
PAPER_STRIDES = (4, 8, 16)  # layer1..layer3 of the paper's ResNets
POSITION_CHUNK = 256  # grid positions per block when fitting (bounds memory)


def default_layers(backbone: str) -> tuple[str, ...]:
    """The backbone's stages at strides 4, 8 and 16 (the paper's layer1-layer3)."""
    names = backbones.layer_names(backbone)
    strides = backbones.layer_strides(backbone, names)
    return tuple(next(name for name, s in zip(names, strides) if s == stride) for stride in PAPER_STRIDES)


@dataclass(frozen=True)
class PadimConfig(ModelConfig):
    """Everything needed to rebuild a fitted PaDiM model."""

    backbone: str = "resnet18"
    layers: tuple[str, ...] = ("layer1", "layer2", "layer3")
    features: int = 100
    covariance: str = "regularised"
    epsilon: float = 0.01
    imagesize: int = 288
    resize: int = 288
    mean: tuple[float, float, float] = backbones.IMAGENET_MEAN
    std: tuple[float, float, float] = backbones.IMAGENET_STD


def position_statistics(features: torch.Tensor, covariance: str, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position Gaussians of features (N, d, P): (means (d, P), inverse covariances (P, d, d))."""
    count, dim, positions = features.shape
    mean = features.mean(dim=0)
    inverse = torch.empty(positions, dim, dim)
    identity = torch.eye(dim)
    for start in range(0, positions, POSITION_CHUNK):
        block = features[:, :, start:start + POSITION_CHUNK].permute(2, 0, 1)  # (p, N, d)
        if covariance == "ledoit-wolf":
            cov = torch.from_numpy(np.stack([ledoit_wolf(x.double().numpy())[0] for x in block])).float()
        else:
            centred = block - block.mean(dim=1, keepdim=True)
            cov = centred.transpose(1, 2) @ centred / max(count - 1, 1) + epsilon * identity
        inv = torch.linalg.inv(cov.double())
        # Exactly symmetric (inversion leaves last-bit asymmetry): checkpoints store the upper triangle only.
        inverse[start:start + len(block)] = ((inv + inv.transpose(1, 2)) / 2).float()
    return mean, inverse


def mahalanobis(features: torch.Tensor, mean: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Mahalanobis distances (B, h, w) of features (B, d, h, w) to Gaussians with means (d, h, w) and
    inverse covariances (h, w, d, d) of the same grid."""
    delta = (features - mean).permute(0, 2, 3, 1)  # (B, h, w, d)
    squared = torch.einsum("bhwi,hwij,bhwj->bhw", delta, inverse, delta)
    return squared.clamp_min(0).sqrt()


class PadimHead(FittedHead):
    """Backbone maps -> patch scores (Mahalanobis distances to the position Gaussians, squashed)."""

    state_buffers: ClassVar[tuple[str, ...]] = ("channels", "mean_map", "inverse_map", "scale")

    def __init__(self, cfg: PadimConfig, always_resize: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        # Export: the traced graph must resize the statistics for every input size (an identity at the
        # training size), not only for the size it was traced at.
        self.always_resize = always_resize
        self.register_buffer("channels", torch.zeros(0, dtype=torch.long))
        self.register_buffer("mean_map", torch.zeros(0, 1, 1))
        self.register_buffer("inverse_map", torch.zeros(1, 1, 0, 0))
        self.register_buffer("scale", torch.ones(()))

    def weights(self) -> dict[str, Any]:
        """The fitted buffers, the symmetric inverse covariances as their upper triangles (h, w, d(d+1)/2):
        about half the checkpoint."""
        state = super().weights()
        inverse = state.pop("inverse_map")
        rows, cols = torch.triu_indices(inverse.shape[-1], inverse.shape[-1])
        state["inverse_triangle"] = inverse[..., rows, cols].clone()
        return state

    def load_weights(self, state: dict[str, Any], source: str) -> None:
        """Loads weights() (upper triangles, or the whole matrices of checkpoints written before)."""
        triangle = state.get("inverse_triangle")
        if isinstance(triangle, torch.Tensor) and "inverse_map" not in state:
            dim = int(round((math.sqrt(8 * triangle.shape[-1] + 1) - 1) / 2))
            if dim * (dim + 1) // 2 != triangle.shape[-1]:
                raise CheckpointError(f"{source}: inverse_triangle of {triangle.shape[-1]} values is no triangle; "
                                      "delete the folder and fit again")
            rows, cols = torch.triu_indices(dim, dim)
            inverse = triangle.new_zeros(*triangle.shape[:-1], dim, dim)
            inverse[..., rows, cols] = triangle
            inverse[..., cols, rows] = triangle
            state = {**state, "inverse_map": inverse}
        super().load_weights(state, source)

    def features_from_maps(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """The selected channels (B, d, h, w) of the concatenated maps."""
        return common.resize_maps_to(maps, "nearest").index_select(1, self.channels)

    def statistics_for(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(means (d, h, w), inverse covariances (h, w, d, d)) for a grid of this size (nearest neighbour)."""
        mean, inverse = self.mean_map, self.inverse_map
        if not self.always_resize and (height, width) == tuple(mean.shape[-2:]):
            return mean, inverse
        mean = F.interpolate(mean[None], size=(height, width), mode="nearest")[0]
        dim = inverse.shape[-1]
        flat = inverse.permute(2, 3, 0, 1).reshape(1, dim * dim, inverse.shape[0], inverse.shape[1])
        inverse = F.interpolate(flat, size=(height, width), mode="nearest")[0]
        return mean, inverse.reshape(dim, dim, height, width).permute(2, 3, 0, 1)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """(B,h,w) patch scores."""
        features = self.features_from_maps(maps)
        mean, inverse = self.statistics_for(*features.shape[-2:])
        return squash(mahalanobis(features, mean, inverse), self.scale)


class PadimModel(HeadModel):
    """Frozen backbone -> random channel subset -> per-position Mahalanobis distance."""

    method: ClassVar[str] = "padim"
    image_score_rule: ClassVar[str] = "map_max"

    def __init__(self, cfg: PadimConfig, extractor: backbones.FeatureExtractor) -> None:
        super().__init__()
        self.cfg = cfg
        self.extractor = extractor
        self.head = PadimHead(cfg)

    @classmethod
    def build(cls, cfg: PadimConfig, pretrained: bool = True) -> PadimModel:
        """The unfitted model with the backbone's (pretrained) weights."""
        return cls(cfg, backbones.load(cfg.backbone, cfg.layers, pretrained=pretrained))

    def score_grids(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(patch scores, the same tensor as image-score grid), each (B,h,w)."""
        patch = self.head(self.extractor(images))
        return patch, patch

    def export_head(self) -> nn.Module:
        """Maps -> patch scores, resizing the statistics to any grid."""
        return self.head.shared_copy(always_resize=True)

    @torch.no_grad()
    def fit(self, batches: Iterable[torch.Tensor], seed: int, channels: torch.Tensor | None = None) -> dict[str, Any]:
        """Fits the position Gaussians on batches of normalised defect-free images; returns fit facts.
        `channels`: these channel indices instead of a random subset drawn from the seed (cross-checks)."""
        self.eval()
        head = self.head
        device = head.scale.device
        total = sum(self.extractor.channels)
        if self.cfg.features > total:
            raise ValueError(f"features {self.cfg.features} > {total} channels of the layers")
        if channels is None:
            channels = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:self.cfg.features]
        head.channels = channels.sort().values.to(device)
        chunks = []
        for images in tqdm.tqdm(batches, desc="padim features", unit="batch", leave=False):
            chunks.append(head.features_from_maps(self.extractor(images.to(device))).float().cpu())
        features = torch.cat(chunks)  # (N, d, h, w)
        count, dim, height, width = features.shape
        mean, inverse = position_statistics(features.reshape(count, dim, height * width), self.cfg.covariance,
                                            self.cfg.epsilon)
        head.mean_map = mean.reshape(dim, height, width).to(device)
        head.inverse_map = inverse.reshape(height, width, dim, dim).to(device)
        distances = torch.cat([mahalanobis(chunk.to(device), head.mean_map, head.inverse_map).cpu()
                               for chunk in features.split(8)])
        widest = float(distances.max())
        head.scale = torch.tensor(widest if widest > 0 else 1.0, device=device)
        LOGGER.info("padim: %d images, %d of %d channels, %dx%d positions, scale %.4g", count, dim, total,
                    height, width, widest)
        return {"images": count, "features": dim, "grid": [height, width]}
