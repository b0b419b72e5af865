"""methods.base: the score mapping, the image score at the patch peak, configs and fitted buffers in checkpoints."""
from __future__ import annotations

import pytest
import torch

from methods.base import CheckpointError, image_scores_at_peak, squash
from methods.patchcore import PatchCoreConfig, PatchCoreHead


def test_squash_maps_distances_to_d_over_d_plus_scale():
    distances = torch.tensor([0.0, 1.0, 3.0, 1e6])
    scores = squash(distances, torch.tensor(3.0))
    assert torch.allclose(scores, torch.tensor([0.0, 0.25, 0.5, 1e6 / (1e6 + 3)]))
    assert bool((scores[1:] > scores[:-1]).all()) and float(scores.max()) < 1.0


def test_image_score_is_the_image_grid_at_the_highest_patch_score():
    patch = torch.tensor([[[0.1, 0.9], [0.3, 0.2]], [[0.5, 0.1], [0.1, 0.7]]])
    image = torch.tensor([[[9.0, 1.0], [2.0, 3.0]], [[4.0, 5.0], [6.0, 7.0]]])
    assert image_scores_at_peak(patch, image).tolist() == [1.0, 7.0]
    assert image_scores_at_peak(patch, patch).tolist() == pytest.approx([0.9, 0.7])


def test_config_round_trips_through_plain_data_and_rejects_unknown_fields():
    cfg = PatchCoreConfig(backbone="efficientnet_lite0", layers=("blocks.2", "blocks.4"), coreset=0.25)
    data = cfg.to_dict()
    assert data["layers"] == ["blocks.2", "blocks.4"] and isinstance(data["mean"], list)
    assert PatchCoreConfig.from_dict(data) == cfg
    with pytest.raises(CheckpointError, match="unknown fields.*'later'"):
        PatchCoreConfig.from_dict({**data, "later": 1})


def test_fitted_buffers_load_with_their_checkpoint_shapes_and_missing_ones_name_the_source():
    head = PatchCoreHead(PatchCoreConfig())
    state = {"memory_bank": torch.randn(5, 3), "support": torch.zeros(5, 2, dtype=torch.long),
             "scale": torch.tensor(2.5)}
    head.load_weights(state, "ckpt.pth")
    assert torch.equal(head.weights()["memory_bank"], state["memory_bank"]) and float(head.scale) == 2.5
    with pytest.raises(CheckpointError, match=r"^ckpt\.pth: weights lack support, scale"):
        head.load_weights({"memory_bank": torch.randn(5, 3)}, "ckpt.pth")
