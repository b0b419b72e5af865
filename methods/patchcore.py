"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

Fitting: locally aware patch features of every defect-free training image (each backbone map averaged
over the 3x3 neighbourhood of each position, coarser maps bilinearly resized to the finest, concatenated;
optionally reduced by adaptive average pooling over the channels) -> a coreset of them chosen by greedy
k-centre selection on random projections -> the memory bank. For each bank patch the indices of its
`neighbours` nearest bank patches (itself first) are stored for the image-score reweighting.

Scoring: a patch's score is its distance to the nearest bank patch m*. The image score is the paper's
reweighted score (eq. 7) of the patch with the largest distance s*: s = (1 - softmax(||m_test - m||)
over m in N_b(m*) taken at m*) * s*, i.e. (1 - exp(s*) / sum exp(||m_test - m||)) * s*: the distance counts
less when m*'s neighbourhood in the bank is close to the test patch too. N_b(m*) holds m* itself, so the
weight lies in [1 - 1/b, 1); with b = 1 (or a bank of one patch) eq. 7 would give 0, so there is no
reweighting then (image score = highest patch score, as anomalib's num_neighbors=1). Both are mapped to
[0, 1] by d / (d + scale) (`methods.base.squash`), with `scale` the largest distance between a bank patch
and its nearest other bank patch (`fitting.fit_class` then sets it from held-out images:
`set_distance_scale`).

Memory: the bank holds coreset * h * w patches of `dim` float32 per training image (h, w: the first
layer's grid), e.g. 0.1 * 32 * 32 * 152 * 4 B = 62 KB for efficientnet_lite0 blocks.2 + blocks.4 at
256 px; fitting holds all h * w * dim features of every training image once (0.6 MB per image there).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import tqdm
from sklearn.random_projection import GaussianRandomProjection
from torch import nn

import backbones
import common
from methods.base import FittedHead, HeadModel, ModelConfig, squash

LOGGER = logging.getLogger(__name__)

DISTANCE_CHUNK = 4096  # rows per block of the patch x bank distance matrix (bounds memory)


@dataclass(frozen=True)
class PatchCoreConfig(ModelConfig):
    """Everything needed to rebuild a fitted PatchCore model."""

    backbone: str = "wideresnet50"
    layers: tuple[str, ...] = ("layer2", "layer3")
    patchsize: int = 3
    target_embed_dimension: int = 0  # 0: every channel of the layers (no reduction)
    coreset: float = 0.1
    projection_dim: int = 128
    neighbours: int = 9
    imagesize: int = 288
    resize: int = 288
    mean: tuple[float, float, float] = backbones.IMAGENET_MEAN
    std: tuple[float, float, float] = backbones.IMAGENET_STD


def squared_distances(rows: torch.Tensor, bank: torch.Tensor, bank_norms: torch.Tensor) -> torch.Tensor:
    """||rows_i - bank_j||^2 for all pairs (N, M), through one matrix product, clamped at 0."""
    rows_norms = rows.pow(2).sum(dim=1, keepdim=True)
    return (rows_norms - 2 * rows @ bank.T + bank_norms).clamp_min_(0)


def _squared_distances_to(points: torch.Tensor, norms: torch.Tensor, index: int) -> torch.Tensor:
    """||points - points[index]||^2 (N,), clamped at 0: one fused matrix-vector pass (addmv), 2.5x faster per
    coreset step than separate products and sums (measured at 30720 x 128)."""
    return torch.addmv(norms, points, points[index], alpha=-2).add_(norms[index]).clamp_min_(0)


def greedy_coreset(features: torch.Tensor, count: int, projection_dim: int, seed: int) -> torch.Tensor:
    """Indices of `count` rows chosen by greedy k-centre selection (each next row the one farthest from
    those chosen) on a Gaussian random projection of the rows to `projection_dim` dimensions.

    Written by hand: scikit-learn and scipy have no k-centre selection; one pass per chosen row keeps
    only the (N,) distances to the chosen set in memory.
    """
    total = len(features)
    if count >= total:
        return torch.arange(total)
    points = features
    if projection_dim and features.shape[1] > projection_dim:
        projector = GaussianRandomProjection(n_components=projection_dim, random_state=seed)
        points = torch.from_numpy(projector.fit_transform(features.numpy()).astype(np.float32))
    norms = points.pow(2).sum(dim=1)
    start = int(torch.randint(total, (1,), generator=torch.Generator().manual_seed(seed)))
    chosen = torch.empty(count, dtype=torch.long)
    chosen[0] = start
    nearest = _squared_distances_to(points, norms, start)
    for i in tqdm.trange(1, count, desc="coreset", unit="patch", leave=False, mininterval=1.0):
        index = int(nearest.argmax())
        chosen[i] = index
        torch.minimum(nearest, _squared_distances_to(points, norms, index), out=nearest)
    return chosen


def support_table(bank: torch.Tensor, neighbours: int) -> tuple[torch.Tensor, float]:
    """(indices (M, k) of each bank patch's k nearest bank patches, itself first; the largest distance
    from a bank patch to its nearest other one)."""
    count = len(bank)
    k = max(1, min(neighbours, count))
    norms = bank.pow(2).sum(dim=1)
    table = torch.empty(count, k, dtype=torch.long)
    widest = 0.0
    for start in range(0, count, DISTANCE_CHUNK):
        rows = torch.arange(start, min(start + DISTANCE_CHUNK, count))
        distances = squared_distances(bank[rows], bank, norms)
        distances[torch.arange(len(rows)), rows] = float("inf")  # itself goes first, by hand
        if count > 1:
            nearest = distances.topk(min(k, count) - 1 or 1, dim=1, largest=False)
            widest = max(widest, float(nearest.values[:, 0].max().sqrt()))
            table[rows, 1:] = nearest.indices[:, :k - 1]
        table[rows, 0] = rows
    return table, widest


class PatchCoreHead(FittedHead):
    """Backbone maps -> (patch scores, reweighted image-score grid); holds the memory bank."""

    state_buffers: ClassVar[tuple[str, ...]] = ("memory_bank", "support", "scale")

    def __init__(self, cfg: PatchCoreConfig, chunk: int | None = DISTANCE_CHUNK) -> None:
        super().__init__()
        self.cfg = cfg
        self.chunk = chunk  # None: one block (export: the traced graph must not depend on the input size)
        self.register_buffer("memory_bank", torch.zeros(0, 1))
        self.register_buffer("support", torch.zeros(0, 1, dtype=torch.long))
        self.register_buffer("scale", torch.ones(()))

    def features_from_maps(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Locally aware patch features (B, dim, h, w) of backbone maps."""
        features = common.local_patch_features(maps, self.cfg.patchsize)
        if self.cfg.target_embed_dimension:
            features = common.pool_channels(features, self.cfg.target_embed_dimension)
        return features

    def score_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(patch scores, image-score candidates) of patch features (N, dim)."""
        bank = self.memory_bank
        distances = squared_distances(rows, bank, bank.pow(2).sum(dim=1))
        nearest_sq, index = distances.min(dim=1)
        nearest = nearest_sq.sqrt()
        support = bank[self.support[index]]  # (N, k, dim): m* and its nearest bank patches
        to_support = (rows[:, None, :] - support).pow(2).sum(dim=2).sqrt()
        weight = 1 - torch.softmax(to_support, dim=1)[:, 0]  # >= 1 - 1/k: m* is the nearest of them
        # k = 1 (no neighbourhood) gives exactly 0: no reweighting then. No Python branch on a shape, which
        # the ONNX trace would freeze with a warning.
        weight = torch.where(weight > 0, weight, torch.ones_like(weight))
        return squash(nearest, self.scale), squash(weight * nearest, self.scale)

    def forward(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,h,w) patch scores and image-score grid."""
        features = self.features_from_maps(maps)
        batch, dim, height, width = features.shape
        rows = features.permute(0, 2, 3, 1).reshape(-1, dim)
        if self.chunk is None or len(rows) <= self.chunk:
            patch, image = self.score_rows(rows)
        else:
            parts = [self.score_rows(rows[start:start + self.chunk]) for start in range(0, len(rows), self.chunk)]
            patch, image = torch.cat([p for p, _ in parts]), torch.cat([i for _, i in parts])
        return patch.reshape(batch, height, width), image.reshape(batch, height, width)


class PatchCoreModel(HeadModel):
    """Frozen backbone -> locally aware patch features -> nearest-neighbour distance to the memory bank."""

    method: ClassVar[str] = "patchcore"

    def __init__(self, cfg: PatchCoreConfig, extractor: backbones.FeatureExtractor) -> None:
        super().__init__()
        self.cfg = cfg
        self.extractor = extractor
        self.head = PatchCoreHead(cfg)

    @classmethod
    def build(cls, cfg: PatchCoreConfig, pretrained: bool = True) -> PatchCoreModel:
        """The unfitted model with the backbone's (pretrained) weights."""
        return cls(cfg, backbones.load(cfg.backbone, cfg.layers, pretrained=pretrained))

    def score_grids(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(patch scores, image-score grid), each (B,h,w)."""
        return self.head(self.extractor(images))

    def export_head(self) -> nn.Module:
        """The head without chunking (one matrix product, any input size)."""
        return self.head.shared_copy(chunk=None)

    @torch.no_grad()
    def fit(self, batches: Iterable[torch.Tensor], seed: int) -> dict[str, Any]:
        """Builds the memory bank from batches of normalised defect-free images; returns fit facts."""
        self.eval()
        head = self.head
        device = head.scale.device
        chunks = []
        for images in tqdm.tqdm(batches, desc="patch features", unit="batch", leave=False):
            features = head.features_from_maps(self.extractor(images.to(device)))
            chunks.append(features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]).float().cpu())
        features = torch.cat(chunks)
        count = max(1, round(self.cfg.coreset * len(features)))
        chosen = greedy_coreset(features, count, self.cfg.projection_dim, seed)
        bank = features[chosen].contiguous()
        support, widest = support_table(bank, self.cfg.neighbours)
        head.memory_bank = bank.to(device)
        head.support = support.to(device)
        head.scale = torch.tensor(widest if widest > 0 else 1.0, device=device)
        LOGGER.info("patchcore: memory bank %d of %d patches (%d dims), scale %.4g", len(bank), len(features),
                    bank.shape[1], float(head.scale))
        return {"patches": len(features), "bank": len(bank), "dim": int(bank.shape[1])}
