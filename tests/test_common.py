"""Patch extraction, aggregation and anomaly maps."""
import numpy as np
import pytest
import scipy.ndimage as ndimage
import torch
import torch.nn.functional as F

import common


def test_patchify_gathers_3x3_neighbourhoods_with_zero_padding():
    fmap = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    patches = common.patchify(fmap, 3)
    assert patches.shape == (2, 3 * 9, 4, 5)
    # Channel c, offset (di, dj) of position (y, x) is fmap[c, y+di-1, x+dj-1] (0 outside).
    grid = patches.reshape(2, 3, 3, 3, 4, 5)
    assert grid[1, 2, 1, 1, 2, 3] == fmap[1, 2, 2, 3]
    assert grid[0, 1, 0, 0, 1, 1] == fmap[0, 1, 0, 0]
    assert grid[0, 0, 0, 0, 0, 0] == 0


def _reference_aggregate(maps, patchsize, pretrain_dim, target_dim):
    """Literal order of the reference: unfold, resize every unfold channel, then pool."""
    grid = maps[0].shape[-2:]
    layers = []
    for fmap in maps:
        patches = common.patchify(fmap, patchsize)
        if patches.shape[-2:] != grid:
            patches = F.interpolate(patches, size=grid, mode="bilinear", align_corners=False)
        rows = patches.permute(0, 2, 3, 1).reshape(-1, 1, patches.shape[1])
        layers.append(F.adaptive_avg_pool1d(rows, pretrain_dim).squeeze(1))
    stacked = torch.stack(layers, 1).reshape(len(layers[0]), 1, -1)
    return F.adaptive_avg_pool1d(stacked, target_dim).squeeze(1)


@pytest.mark.parametrize("pretrain_dim,target_dim", [(96, 64), (256, 200)])
def test_aggregation_matches_reference_order_and_shapes(pretrain_dim, target_dim):
    torch.manual_seed(0)
    maps = [torch.randn(2, 16, 8, 8), torch.randn(2, 24, 4, 4)]
    features, grid = common.aggregate_patch_features(maps, 3, pretrain_dim, target_dim)
    assert grid == (8, 8)
    assert features.shape == (2 * 8 * 8, target_dim)
    expected = _reference_aggregate(maps, 3, pretrain_dim, target_dim)
    assert torch.allclose(features, expected, atol=1e-5)


def test_anomaly_maps_are_bilinear_then_gaussian_sigma4():
    scores = torch.rand(2, 4, 4)
    maps = common.anomaly_maps(scores, 32)
    assert maps.shape == (2, 32, 32) and maps.dtype == np.float32
    up = F.interpolate(scores[:, None], size=32, mode="bilinear", align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(maps[1], ndimage.gaussian_filter(up[1], sigma=4), atol=1e-6)
    assert maps.min() >= scores.min() - 1e-6 and maps.max() <= scores.max() + 1e-6


@pytest.mark.parametrize("grid, size, atol", [((1, 1), (8, 8), 1e-6), ((1, 7), (8, 56), 1e-6),
                                              ((32, 38), (256, 304), 1e-6), ((5, 3), (37, 61), 1e-6),
                                              ((16, 16), (256, 256), 1e-6), ((40, 30), (17, 23), 1e-5)])
def test_upsample_map_is_torchs_bilinear(grid, size, atol):
    """OpenCV's resize (the fast path) against F.interpolate(bilinear, align_corners=False): odd ratios and 1-cell
    grids to 1e-6; a shrink (maps never shrink) to 1e-5."""
    scores = np.random.default_rng(0).random(grid, dtype=np.float32)
    expected = F.interpolate(torch.from_numpy(scores)[None, None], size=size, mode="bilinear",
                             align_corners=False)[0, 0].numpy()
    resized = common.upsample_map(scores, size)
    assert resized.dtype == np.float32 and resized.shape == size
    np.testing.assert_allclose(resized, expected, rtol=0, atol=atol)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (3, 50), (33, 1), (64, 80), (256, 320)])
@pytest.mark.parametrize("sigma", [0.5, 1.5, 4.0, 6.3])
def test_gaussian_smooth_is_scipys_gaussian_filter(shape, sigma):
    """OpenCV's filter (the fast path) against scipy's (the reference's smoothing), maps smaller than the kernel too."""
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    smoothed = common.gaussian_smooth(image, sigma)
    assert smoothed.dtype == np.float32 and smoothed.shape == shape
    np.testing.assert_allclose(smoothed, ndimage.gaussian_filter(image, sigma=sigma), atol=1e-6)
    assert np.array_equal(common.gaussian_smooth(image, 0.0), image)


def test_select_device_without_cuda_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert common.select_device([0]) == torch.device("cpu")
