"""Shared building blocks: patch aggregation of backbone maps, anomaly maps, device choice."""
from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from errors import UserError

LOGGER = logging.getLogger(__name__)


class ConfigError(UserError):
    """A command-line value that cannot work (one-line message naming the flag and the fix)."""


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

#: Gaussian smoothing of the upsampled patch-score map (GLASS's RescaleSegmentor).
MAP_SIGMA = 4.0


def patchify(feature_map: torch.Tensor, patchsize: int) -> torch.Tensor:
    """Gathers each position's patchsize x patchsize neighbourhood: (B,C,H,W) -> (B,C*p*p,H,W)."""
    batch, _, height, width = feature_map.shape
    padding = (patchsize - 1) // 2
    patches = F.unfold(feature_map, kernel_size=patchsize, padding=padding, stride=1)
    return patches.reshape(batch, -1, height, width)


def _pool_vectors(vectors: torch.Tensor, dim: int) -> torch.Tensor:
    """Average-pools every row vector (N, L) to length dim (1-D adaptive average pooling)."""
    return F.adaptive_avg_pool1d(vectors.unsqueeze(1), dim).squeeze(1)


def aggregate_patch_features(
    maps: Sequence[torch.Tensor], patchsize: int, pretrain_dim: int, target_dim: int
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Turns backbone maps into one target_dim feature per position of the first map's grid.

    Returns (features of shape (B*H*W, target_dim), (H, W)).
    Each layer's neighbourhood vectors are pooled to pretrain_dim, the coarser layers are
    bilinearly resized to the first layer's grid, then the stacked layer vectors are pooled
    to target_dim. Pooling acts on the channel axis and resizing on the spatial axes; both
    are linear, so they commute: pooling before resizing gives the reference's numbers with
    a quarter of the work on a stride-16 layer.
    """
    batch = maps[0].shape[0]
    grid = (int(maps[0].shape[-2]), int(maps[0].shape[-1]))
    per_layer = []
    for feature_map in maps:
        patches = patchify(feature_map, patchsize)
        _, length, height, width = patches.shape
        rows = patches.permute(0, 2, 3, 1).reshape(-1, length)
        pooled = _pool_vectors(rows, pretrain_dim)
        if (height, width) != grid:
            pooled = pooled.reshape(batch, height, width, pretrain_dim).permute(0, 3, 1, 2)
            pooled = F.interpolate(pooled, size=grid, mode="bilinear", align_corners=False)
            pooled = pooled.permute(0, 2, 3, 1).reshape(-1, pretrain_dim)
        per_layer.append(pooled)
    stacked = torch.stack(per_layer, dim=1).reshape(batch * grid[0] * grid[1], -1)
    return _pool_vectors(stacked, target_dim), grid


def resize_maps_to(maps: Sequence[torch.Tensor], mode: str) -> torch.Tensor:
    """Backbone maps resized to the first map's grid ("bilinear" or "nearest") and concatenated along
    the channels: (B, sum C, H, W)."""
    grid = maps[0].shape[-2:]
    options = {"align_corners": False} if mode == "bilinear" else {}
    # Every later map is resized, even one already on the grid (an identity then): no branch on shapes, so
    # an ONNX trace holds for every input size.
    resized = [F.interpolate(m, size=grid, mode=mode, **options) for m in maps[1:]]
    return torch.cat([maps[0], *resized], dim=1)


def local_patch_features(maps: Sequence[torch.Tensor], patchsize: int) -> torch.Tensor:
    """PatchCore's locally aware features: every map averaged over each position's patchsize x patchsize
    neighbourhood (zero padding counted, as `patchify` + pooling to the channel count), the coarser
    maps bilinearly resized to the first map's grid, concatenated: (B, sum C, H, W)."""
    padding = (patchsize - 1) // 2
    pooled = [F.avg_pool2d(m, patchsize, stride=1, padding=padding, count_include_pad=True) for m in maps]
    return resize_maps_to(pooled, "bilinear")


def pool_channels(features: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, dim, H, W) by adaptive average pooling over the channels (a no-op when C <= dim)."""
    batch, channels, height, width = features.shape
    if channels <= dim:
        return features
    rows = features.permute(0, 2, 3, 1).reshape(-1, channels)
    return _pool_vectors(rows, dim).reshape(batch, height, width, dim).permute(0, 3, 1, 2)


def upsample_map(grid: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """A 2-D float32 score grid bilinearly resized to `size` (H, W) as torch's F.interpolate(mode="bilinear",
    align_corners=False) resizes it (half-pixel centres, edges clamped), computed by OpenCV."""
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    # OpenCV rather than torch: the same sampling (equal to 1e-6 enlarging, tested) without torch's thread pool,
    # which competed with ONNX Runtime's in the video pipeline (2.2 ms per 320x256 map there under cProfile,
    # 0.05 with OpenCV; with the in-place frame input, bench_video's score stage went 34 -> 30 ms per frame).
    return cv2.resize(np.ascontiguousarray(grid, np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def anomaly_maps(
    patch_scores: torch.Tensor | np.ndarray, size: int | tuple[int, int], sigma: float = MAP_SIGMA
) -> np.ndarray:
    """Patch-score grids (B,h,w) -> smoothed anomaly maps (B,H,W) as GLASS builds them (bilinear, Gaussian)."""
    scores = torch.as_tensor(patch_scores).detach().float().cpu().numpy()
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if not len(scores):
        return np.empty((0, height, width), np.float32)
    return np.stack([gaussian_smooth(upsample_map(grid, (height, width)), sigma) for grid in scores])


def gaussian_smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """A 2-D float32 map smoothed as the reference smooths maps: scipy.ndimage.gaussian_filter (mode "reflect",
    truncate 4), computed by OpenCV's separable filter (the same kernel and border, float32 sums)."""
    if sigma <= 0:
        return np.array(image, np.float32)
    side = 2 * int(4.0 * sigma + 0.5) + 1  # scipy's kernel: radius truncate * sigma, rounded
    return cv2.GaussianBlur(np.ascontiguousarray(image, np.float32), (side, side), sigmaX=sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_REFLECT)


def keep_freed_memory() -> None:
    """Makes glibc keep freed large blocks for reuse instead of returning them to the OS.

    PyTorch has no caching allocator on CPU; every large temporary (tens of MB here) is a fresh
    mmap whose pages fault in again, which doubled the cost of element-wise ops in training.
    No-op where glibc's mallopt is unavailable.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):
        LOGGER.debug("glibc mallopt not available; keeping the default allocator behaviour")


def select_device(gpu_ids: Sequence[int]) -> torch.device:
    """Picks the first requested CUDA device, or the CPU (said once) when CUDA is missing."""
    if gpu_ids and torch.cuda.is_available():
        index = int(gpu_ids[0])
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"--gpu {index}: only {torch.cuda.device_count()} CUDA device(s) present; pass --gpu 0"
            )
        return torch.device(f"cuda:{index}")
    if gpu_ids:
        LOGGER.info("CUDA is not available: running on CPU")
    return torch.device("cpu")
