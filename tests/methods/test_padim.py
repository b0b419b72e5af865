"""methods.padim: the position Gaussians, the Mahalanobis distance, statistics at other grid sizes, fitting."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis
from sklearn.covariance import LedoitWolf

from methods import padim
from methods.padim import PadimConfig, PadimHead, PadimModel, default_layers, mahalanobis, position_statistics

TINY = PadimConfig(backbone="efficientnet_lite0", layers=("blocks.1", "blocks.2"), features=20, imagesize=64,
                   resize=64, mean=(0.5,) * 3, std=(0.5,) * 3)


def random_features(count: int, dim: int, positions: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(dim, dim))  # correlated channels: a covariance far from diagonal
    rows = rng.normal(size=(count, positions, dim)) @ mixing + rng.normal(size=(positions, dim)) * 3
    return torch.from_numpy(rows.transpose(0, 2, 1).astype(np.float32))  # (N, d, P)


@pytest.mark.parametrize("chunk", [padim.POSITION_CHUNK, 2])
def test_regularised_statistics_equal_numpys_covariance_plus_epsilon_inverted(monkeypatch, chunk):
    monkeypatch.setattr(padim, "POSITION_CHUNK", chunk)
    features = random_features(12, 4, 5, seed=0)
    mean, inverse = position_statistics(features, "regularised", 0.01)
    assert mean.shape == (4, 5) and inverse.shape == (5, 4, 4)
    x = features.double().numpy()
    for p in range(5):
        assert mean[:, p].numpy() == pytest.approx(x[:, :, p].mean(axis=0), abs=1e-5)
        expected = np.linalg.inv(np.cov(x[:, :, p], rowvar=False) + 0.01 * np.eye(4))
        np.testing.assert_allclose(inverse[p].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_regularisation_makes_too_few_samples_invertible():
    features = random_features(3, 6, 2, seed=1)  # 3 samples in 6 dimensions: a singular sample covariance
    _, inverse = position_statistics(features, "regularised", 0.5)
    x = features.double().numpy()
    expected = np.linalg.inv(np.cov(x[:, :, 1], rowvar=False) + 0.5 * np.eye(6))
    np.testing.assert_allclose(inverse[1].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_ledoit_wolf_statistics_equal_scikit_learns_shrunk_covariance_inverted():
    features = random_features(10, 5, 3, seed=2)
    _, inverse = position_statistics(features, "ledoit-wolf", 0.01)  # epsilon is the regularised rule's only
    x = features.double().numpy()
    for p in range(3):
        expected = np.linalg.inv(LedoitWolf().fit(x[:, :, p]).covariance_)
        np.testing.assert_allclose(inverse[p].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_mahalanobis_equals_scipy_at_every_position():
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(2, 3, 4, 5, generator=generator)
    mean = torch.randn(3, 4, 5, generator=generator)
    factors = torch.randn(4, 5, 3, 3, generator=generator)
    inverse = factors @ factors.transpose(-1, -2) + 0.1 * torch.eye(3)  # symmetric positive definite
    got = mahalanobis(features, mean, inverse)
    assert got.shape == (2, 4, 5)
    for b in range(2):
        for i in range(4):
            for j in range(5):
                expected = scipy_mahalanobis(features[b, :, i, j].double().numpy(), mean[:, i, j].double().numpy(),
                                             inverse[i, j].double().numpy())
                assert float(got[b, i, j]) == pytest.approx(expected, rel=1e-5)


def coded_head(height: int, width: int, always_resize: bool = False) -> PadimHead:
    """A head whose statistics say where they come from: mean (i, j) and inverse diag(i, j) at position (i, j)."""
    head = PadimHead(PadimConfig(), always_resize=always_resize)
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                                indexing="ij")
    head.mean_map = torch.stack([rows, cols])
    head.inverse_map = torch.diag_embed(torch.stack([rows, cols], dim=-1))
    return head


def test_statistics_at_the_training_grid_are_the_stored_ones():
    head = coded_head(8, 6)
    mean, inverse = head.statistics_for(8, 6)
    assert mean is head.mean_map and inverse is head.inverse_map
    mean, inverse = coded_head(8, 6, always_resize=True).statistics_for(8, 6)  # the export's path: same values
    assert torch.equal(mean, head.mean_map) and torch.equal(inverse, head.inverse_map)


@pytest.mark.parametrize("size", [(12, 20), (16, 6), (5, 3), (7, 13), (24, 9)])
def test_statistics_at_another_size_come_from_floor_of_the_scaled_position(size):
    height, width = size
    head = coded_head(8, 6)
    mean, inverse = head.statistics_for(height, width)
    assert mean.shape == (2, height, width) and inverse.shape == (height, width, 2, 2)
    for i in range(height):
        for j in range(width):
            source = (i * 8 // height, j * 6 // width)
            assert tuple(mean[:, i, j].tolist()) == source, (i, j)
            assert torch.equal(inverse[i, j], torch.diag(torch.tensor(source, dtype=torch.float32)))


def test_default_layers_are_the_stride_4_8_16_stages():
    assert default_layers("resnet18") == ("layer1", "layer2", "layer3")
    assert default_layers("efficientnet_lite0") == ("blocks.1", "blocks.2", "blocks.4")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))


def test_channels_drawn_from_the_seed_are_reproducible_same_seed_same_machine_same_numbers(images):
    first, second = PadimModel.build(TINY), PadimModel.build(TINY)
    facts = first.fit([images[:2], images[2:]], seed=0)
    second.fit([images[:2], images[2:]], seed=0)
    assert facts == {"images": 4, "features": 20, "grid": [16, 16]}
    channels = first.head.channels.tolist()
    assert channels == sorted(set(channels)) and len(channels) == 20 and 0 <= channels[0] and channels[-1] < 24 + 40
    for name, value in first.weights().items():
        assert torch.equal(value, second.weights()[name]), name
    assert first.head.mean_map.shape == (20, 16, 16) and first.head.inverse_map.shape == (16, 16, 20, 20)
    second.fit([images[:2], images[2:]], seed=1)
    assert second.head.channels.tolist() != channels


def test_fitted_scale_is_the_largest_training_distance(images):
    net = PadimModel.build(TINY)
    net.fit([images], seed=0)
    with torch.no_grad():
        patch, image = net.score_grids(images)
    assert patch is image
    assert float(patch.max()) == pytest.approx(0.5, abs=1e-5)  # the training images' worst patch: d / (d + d)
    assert float(patch.min()) >= 0


def test_more_features_than_the_layers_have_is_an_error(images):
    net = PadimModel.build(dataclasses.replace(TINY, features=65))  # blocks.1 + blocks.2: 24 + 40 channels
    with pytest.raises(ValueError, match="features 65 > 64 channels"):
        net.fit([images], seed=0)


def test_checkpoints_store_the_symmetric_inverses_as_triangles_and_load_them_exactly(images):
    """The fitted inverse covariances are exactly symmetric; weights() keeps their upper triangles (d(d+1)/2 of
    d^2 values) and loading them rebuilds the same matrices bit for bit (and the same scores); weights of the
    earlier form (whole matrices) still load; a triangle of a wrong length is one line."""
    net = PadimModel.build(TINY)
    net.fit([images], seed=0)
    inverse = net.head.inverse_map.clone()
    assert torch.equal(inverse, inverse.transpose(-1, -2))
    state = net.weights()
    assert "inverse_map" not in state and state["inverse_triangle"].shape == (16, 16, 20 * 21 // 2)
    with torch.no_grad():
        expected = net.score_grids(images)[0]
    for stored in (state, {**{k: v for k, v in state.items() if k != "inverse_triangle"}, "inverse_map": inverse}):
        loaded = PadimModel.build(TINY)
        loaded.load_weights(stored, "ckpt.pth")
        assert torch.equal(loaded.head.inverse_map, inverse)
        with torch.no_grad():
            assert torch.equal(loaded.score_grids(images)[0], expected)
    broken = {**state, "inverse_triangle": state["inverse_triangle"][..., :-1]}
    with pytest.raises(padim.CheckpointError, match="ckpt.pth: inverse_triangle of 209 values is no triangle"):
        PadimModel.build(TINY).load_weights(broken, "ckpt.pth")
