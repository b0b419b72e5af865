"""GAS pieces: truncated projection and the gradient ascent (literal vs hidden-space form)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from glass import ascend_features, ascend_in_hidden_space, truncate_offsets
from model import Discriminator


def test_truncated_projection_manifold_keeps_offsets_from_true_in_half_to_one():
    torch.manual_seed(0)
    true = torch.randn(200, 16)
    gaus = true + torch.randn(200, 16) * torch.logspace(-2, 1, 200)[:, None]
    projected = truncate_offsets(gaus, true, 0.5, 1.0)
    norms = (projected - true).norm(dim=1)
    assert norms.min() >= 0.5 - 1e-5 and norms.max() <= 1.0 + 1e-5
    # directions are kept, offsets already inside the band are untouched
    cosine = F.cosine_similarity(projected - true, gaus - true, dim=1)
    assert torch.allclose(cosine, torch.ones_like(cosine), atol=1e-5)
    inside = ((gaus - true).norm(dim=1) >= 0.5) & ((gaus - true).norm(dim=1) <= 1.0)
    assert inside.any() and torch.allclose(projected[inside], gaus[inside])


def test_truncated_projection_hypersphere_keeps_distance_to_centre_in_r_to_2r():
    torch.manual_seed(1)
    centre = torch.randn(1, 16).repeat(300, 1)
    points = centre + torch.randn(300, 16) * torch.logspace(-1, 1, 300)[:, None]
    r = torch.tensor(2.5)
    for low, high in ((r, 2 * r), (2 * r, 4 * r)):  # GAS band and the LAS band
        norms = (truncate_offsets(points, centre, low, high) - centre).norm(dim=1)
        assert norms.min() >= low - 1e-4 and norms.max() <= high + 1e-4


@pytest.mark.parametrize("svd,layers", [(0, 2), (1, 2), (0, 3), (1, 3)])
def test_hidden_space_ascent_equals_literal_ascent(svd, layers):
    torch.manual_seed(2)
    dim, hidden, n = 24, 16, 64
    disc = Discriminator(dim, n_layers=layers, hidden=hidden).double().train()
    true = torch.randn(n, dim, dtype=torch.float64)
    gaus = true + 0.3 * torch.randn(n, dim, dtype=torch.float64)
    centre = true.mean(0, keepdim=True).repeat(n, 1)
    if svd:
        r = (true - centre).norm(dim=1).quantile(0.75)
        anchor, low, high = centre, r, 2 * r
    else:
        anchor, low, high = true, 0.5, 1.0
    literal_disc, fast_disc = copy.deepcopy(disc), copy.deepcopy(disc)
    literal = ascend_features(literal_disc, true, gaus, anchor, low, high, steps=20)
    fast = ascend_in_hidden_space(fast_disc, true, gaus, anchor, low, high, steps=20)
    assert torch.allclose(fast, literal, atol=1e-9)
    assert not torch.allclose(literal, gaus)  # the ascent did move the features
    for name, buffer in literal_disc.state_dict().items():  # batch-norm running statistics too
        assert torch.allclose(fast_disc.state_dict()[name].double(), buffer.double(), atol=1e-9), name


def test_ascent_makes_synthetic_anomalies_harder():
    torch.manual_seed(3)
    dim = 32
    disc = Discriminator(dim, n_layers=2, hidden=32).train()
    true = torch.randn(128, dim)
    gaus = true + 0.05 * torch.randn(128, dim)
    moved = ascend_in_hidden_space(disc, true, gaus, true, 0.0, 10.0, steps=4)

    def anomaly_loss(points: torch.Tensor) -> float:
        with torch.no_grad():
            scores = copy.deepcopy(disc)(torch.cat([true, points]))[len(true):]
        return float(F.binary_cross_entropy(scores, torch.ones_like(scores)))

    assert anomaly_loss(moved) > anomaly_loss(gaus)
    steps = (moved - gaus).norm(dim=1)
    assert torch.allclose(steps, torch.full_like(steps, 4 * 0.001), rtol=0.05)
