"""The torch model: folded inference head, checkpoint helpers."""
from __future__ import annotations

import pytest
import torch

import backbones
import copy

import torch.nn.functional as F

from model import CheckpointError, Discriminator, GlassModel, NetConfig, load_checkpoint, resolve_class_dir


def tiny_model(dsc_layers: int = 2, pre_proj: int = 1) -> GlassModel:
    """resnet18 with random weights and small dimensions."""
    cfg = NetConfig(backbone="resnet18", layers=("layer2", "layer3"), pretrain_embed_dimension=48,
                    target_embed_dimension=32, dsc_layers=dsc_layers, dsc_hidden=24, pre_proj=pre_proj,
                    imagesize=64, resize=64)
    return GlassModel(cfg, backbones.load("resnet18", cfg.layers, pretrained=False))


@pytest.mark.parametrize("dsc_layers,pre_proj", [(2, 1), (3, 2), (1, 1), (2, 0)])
def test_folded_eval_head_gives_the_literal_scores(dsc_layers, pre_proj):
    torch.manual_seed(0)
    model = tiny_model(dsc_layers, pre_proj)
    features = torch.randn(50, 32)
    model.train()
    model.score_features(features)  # batch-norm running statistics move away from their init
    model.eval()
    literal = model.discriminator(model.project(features))
    folded = model.score_features(features)
    assert folded.shape == (50, 1)
    assert torch.allclose(folded, literal, atol=1e-5)


def test_folded_head_follows_weight_changes():
    torch.manual_seed(1)
    model = tiny_model().eval()
    features = torch.randn(10, 32)
    before = model.score_features(features)
    model.train()
    with torch.no_grad():
        model.discriminator.tail[0].weight.mul_(-1)
    model.eval()
    after = model.score_features(features)
    assert torch.allclose(after, model.discriminator(model.project(features)), atol=1e-5)
    assert not torch.allclose(before, after)


def test_forward_gives_patch_score_grid_in_unit_interval():
    model = tiny_model().eval()
    with torch.no_grad():
        scores = model(torch.randn(2, 3, 64, 64))
    assert scores.shape == (2, 8, 8)
    assert float(scores.min()) >= 0 and float(scores.max()) <= 1
    image_scores, maps, patch = model.predict(torch.randn(2, 3, 64, 64))
    assert image_scores.shape == (2,) and maps.shape == (2, 64, 64) and patch.shape == (2, 8, 8)
    assert (image_scores == patch.reshape(2, -1).max(axis=1)).all()


def test_checkpoint_errors_are_one_line(tmp_path):
    corrupt = tmp_path / "ckpt_best_3.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(corrupt)
    assert str(corrupt) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")
    assert resolve_class_dir(tmp_path) == tmp_path  # a class directory itself
    with pytest.raises(CheckpointError, match="no trained model"):
        resolve_class_dir(tmp_path, "mvtec_nothing")


def test_checkpoint_without_configuration_or_weights_is_damaged(tmp_path):
    from model import CHECKPOINT_FORMAT

    for name, data in [("no_net", {"format": CHECKPOINT_FORMAT, "weights": {}}),
                       ("bad_net", {"format": CHECKPOINT_FORMAT, "net": "garbage", "weights": {}}),
                       ("no_weights", {"format": CHECKPOINT_FORMAT, "net": {}})]:
        path = tmp_path / f"{name}.pth"
        torch.save(data, path)
        with pytest.raises(CheckpointError, match="damaged") as err:
            load_checkpoint(path)
        assert str(path) in str(err.value)


@pytest.mark.parametrize("training", [True, False])
def test_anomaly_gradient_beside_is_autograds_gradient(training):
    torch.manual_seed(6)
    disc = Discriminator(10, n_layers=2, hidden=7).double().train(training)
    with torch.no_grad():  # non-trivial batch-norm parameters and statistics
        disc.body[0][1].weight.uniform_(0.5, 1.5)
        disc.body[0][1].bias.uniform_(-0.5, 0.5)
        disc.body[0][1].running_mean.uniform_(-1, 1)
        disc.body[0][1].running_var.uniform_(0.5, 2)
    companion_rows = torch.randn(9, 7, dtype=torch.float64)
    hidden = torch.randn(12, 7, dtype=torch.float64) * 3
    hidden[0] = 400.0  # a row scored ~1 and one scored ~0: the BCE's 1e-12 clamp takes part
    hidden[1] = -400.0
    literal = copy.deepcopy(disc)
    leaf = hidden.clone().requires_grad_(True)
    scores = literal.forward_from_first(torch.cat([companion_rows, leaf]))[len(companion_rows):]
    (expected,) = torch.autograd.grad(F.binary_cross_entropy(scores, torch.ones_like(scores)), [leaf])
    companion = (*torch.var_mean(companion_rows, dim=0, unbiased=False), len(companion_rows))
    got = disc.anomaly_gradient_beside(hidden, companion)
    assert torch.allclose(got, expected, rtol=1e-9, atol=1e-15)
    for name, buffer in literal.state_dict().items():  # the same running-statistics update
        assert torch.allclose(disc.state_dict()[name].double(), buffer.double(), atol=1e-12), name
