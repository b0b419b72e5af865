"""GAS pieces (truncated projection, literal vs hidden-space ascent) and --train_backbone semantics."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import backbones
from datasets.base import DatasetConfig, build_dataloader
from datasets.registry import build_dataset
from glass import (GLASS, GasGradient, TrainConfig, ascend_features, ascend_in_hidden_space, truncate_offsets,
                   truncation_vjp)
from model import CheckpointError, Discriminator, GlassModel, NetConfig, load_checkpoint
from tests.helpers import write_tiny_mvtec


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


# ---- the gradient the projection gets from GAS, as the reference's autograd graph gives it ----

def test_truncation_gradient_keeps_only_the_tangential_part_of_truncated_offsets():
    offset = torch.tensor([[3.0, 4.0, 0.0],    # norm 5 > high 4: truncated to 4
                           [0.6, 0.8, 0.0],    # norm 1 < low 2: pushed out to 2
                           [0.0, 3.0, 0.0]],   # norm 3 inside [2, 4]: untouched
                          dtype=torch.float64)
    radial = offset / offset.norm(dim=1, keepdim=True)
    tangent = torch.tensor([[-4.0, 3.0, 0.0], [-0.8, 0.6, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64) / \
        torch.tensor([[5.0], [1.0], [1.0]], dtype=torch.float64)
    along = truncation_vjp(offset, radial, 2.0, 4.0)
    across = truncation_vjp(offset, tangent, 2.0, 4.0)
    # truncated rows: the radial part is lost, the tangential part is scaled by (new norm / old norm)
    assert torch.allclose(along[:2], torch.zeros(2, 3, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(across[0], tangent[0] * 4 / 5) and torch.allclose(across[1], tangent[1] * 2 / 1)
    # inside the band the truncation is the identity
    assert torch.allclose(along[2], radial[2]) and torch.allclose(across[2], tangent[2])
    # and it is the vector-Jacobian product of truncate_offsets itself
    points = offset.clone().requires_grad_(True)
    truncate_offsets(points, torch.zeros_like(offset), 2.0, 4.0).backward(tangent + radial)
    assert torch.allclose(points.grad, across + along)


def _reference_style_gas_gradient(disc: Discriminator, true: torch.Tensor, noise: torch.Tensor, centre: torch.Tensor,
                                  low: torch.Tensor, high: torch.Tensor, steps: int) -> torch.Tensor:
    """d(sum of the final GAS features)/d(true) when the ascent updates one tensor in place under
    no_grad and truncates every 5 steps, the way the reference's loop is written."""
    true = true.clone().requires_grad_(True)
    gaus = true + noise
    for step in range(steps):
        scores = disc(torch.cat([true, gaus]))[len(true):]
        loss = F.binary_cross_entropy(scores, torch.ones_like(scores))
        (grad,) = torch.autograd.grad(loss, [gaus])
        with torch.no_grad():
            gaus.add_(0.001 * grad / (grad.norm(dim=1, keepdim=True) + 1e-10))
        if (step + 1) % 5 == 0:
            h = gaus - centre
            norm = h.norm(dim=1)
            gaus = centre + (torch.clamp(norm, low, high) / (norm + 1e-10)).view(-1, 1) * h
    gaus.sum().backward()
    return true.grad


@pytest.mark.parametrize("fast", [False, True])
def test_hypersphere_gas_gradient_flows_through_the_truncations(tmp_path, fast):
    torch.manual_seed(4)
    dim, n = 12, 40
    true = torch.randn(n, dim, dtype=torch.float64)
    noise = 0.05 * torch.randn(n, dim, dtype=torch.float64)
    centre = true.mean(0, keepdim=True).repeat(n, 1)
    r = (true - centre).norm(dim=1).quantile(0.75)
    disc = Discriminator(dim, n_layers=2, hidden=8).double().train()
    expected = _reference_style_gas_gradient(copy.deepcopy(disc), true, noise, centre, r, 2 * r, steps=10)

    trainer = _tiny_trainer(tmp_path, train_backbone=False, step=10)
    trainer.svd, trainer.hidden_space_ascent = 1, fast
    trainer.model.discriminator = copy.deepcopy(disc)
    leaf = true.clone().requires_grad_(True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "randn_like", lambda t: noise / trainer.cfg.noise)
        captured: list[torch.Tensor] = []
        patch.setattr(trainer.model.discriminator, "forward",
                      lambda x: captured.append(x) or Discriminator.forward(trainer.model.discriminator, x))
        trainer._global_synthesis(leaf, centre, r)
    final = captured[-1][n:]  # the GAS features the loss scores
    final.sum().backward()
    # a truncated row keeps only tangential gradient, so this is far from the identity
    assert not torch.allclose(expected, torch.ones_like(expected), atol=0.1)
    assert torch.allclose(leaf.grad, expected, atol=1e-8)


def test_manifold_gas_gradient_is_the_identity(tmp_path):
    # the reference truncates offsets from `true` itself, so d(gaus)/d(true) is the identity
    torch.manual_seed(5)
    trainer = _tiny_trainer(tmp_path, train_backbone=False, step=10)
    trainer.model.discriminator = trainer.model.discriminator.double()
    true = torch.randn(30, 64, dtype=torch.float64, requires_grad=True)
    captured: list[torch.Tensor] = []
    disc = trainer.model.discriminator
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(disc, "forward", lambda x: captured.append(x) or Discriminator.forward(disc, x))
        trainer._global_synthesis(true, true.detach().mean(0).repeat(30, 1), torch.tensor(1.0))
    captured[-1][30:].sum().backward()
    assert torch.allclose(true.grad, torch.ones_like(true))  # the GAS half moves one for one with true


# ---- --train_backbone: as the reference (train-mode batch norm, AdamW on the backbone, eval at test) ----

LITE0 = "efficientnet_lite0"


def _tiny_trainer(class_dir: Path, train_backbone: bool, **train: Any) -> GLASS:
    """A tiny efficientnet_lite0 GLASS on CPU (64 px, dims 64, hidden 32, 2 ascent steps)."""
    info = backbones.backbone_info(LITE0)
    cfg = NetConfig(backbone=LITE0, layers=info.default_layers, pretrain_embed_dimension=64,
                    target_embed_dimension=64, dsc_hidden=32, imagesize=64, resize=64,
                    mean=tuple(info.mean), std=tuple(info.std))
    torch.manual_seed(0)
    train = {"step": 2, **train}
    return GLASS(GlassModel.build(cfg), TrainConfig(train_backbone=train_backbone, **train), torch.device("cpu"),
                 class_dir, svd=0)


def _batch_norms(trainer: GLASS) -> list[nn.modules.batchnorm._BatchNorm]:
    """The backbone's batch-norm layers."""
    norms = [m for m in trainer.model.extractor.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms
    return norms


def _record_modes(trainer: GLASS) -> list[tuple[bool, bool]]:
    """(train mode, grad enabled) of the backbone's first batch norm at each backbone forward pass."""
    calls: list[tuple[bool, bool]] = []
    _batch_norms(trainer)[0].register_forward_pre_hook(
        lambda module, args: calls.append((module.training, torch.is_grad_enabled())))
    return calls


def _las_batch() -> dict[str, torch.Tensor]:
    """Two clean images, their LAS images and pooled masks (8x8 grid)."""
    generator = torch.Generator().manual_seed(0)
    mask = torch.zeros(2, 8, 8)
    mask[:, 2:5, 3:6] = 1
    return {"image": torch.randn(2, 3, 64, 64, generator=generator),
            "aug": torch.randn(2, 3, 64, 64, generator=generator), "mask_s": mask, "idx": torch.tensor([0, 1])}


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of a module's state dict."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_train_backbone_step_uses_batch_statistics_and_adamw_on_the_backbone(tmp_path):
    trainer = _tiny_trainer(tmp_path, train_backbone=True)
    norms = _batch_norms(trainer)
    before = _snapshot(trainer.model.extractor)
    modes = _record_modes(trainer)
    trainer.model.train()
    trainer._train_step(_las_batch(), None, torch.zeros(64, 64))

    # Two backbone passes (clean and LAS images), both in train mode with gradients, as the reference's
    # _embed(evaluation=False); each updates every batch norm's running statistics once.
    assert modes == [(True, True), (True, True)]
    for norm in norms:
        assert int(norm.num_batches_tracked) == 2
    stats = [name for name in before if name.endswith(("running_mean", "running_var"))]
    assert stats and all(not torch.equal(before[n], trainer.model.extractor.state_dict()[n]) for n in stats)

    # AdamW(backbone parameters, lr), default weight decay 0.01; its first step has the closed form
    # p <- p (1 - lr wd) - lr g / (|g| + eps).
    lr, stepped = trainer.cfg.lr, 0
    for name, param in trainer.model.extractor.named_parameters():
        assert param.grad is not None, name
        grad = param.grad
        expected = before[name] * (1 - lr * 0.01) - lr * grad / (grad.abs() + 1e-8)
        assert torch.allclose(param.detach(), expected, atol=2e-7, rtol=0), name
        stepped += int((grad.abs() > 1e-6).sum())
    assert stepped > 0.5 * sum(p.numel() for p in trainer.model.extractor.parameters())


def test_frozen_backbone_step_changes_nothing_in_the_backbone(tmp_path):
    trainer = _tiny_trainer(tmp_path, train_backbone=False)
    before = _snapshot(trainer.model.extractor)
    modes = _record_modes(trainer)
    trainer.model.train()
    trainer._train_step(_las_batch(), None, torch.zeros(64, 64))
    assert modes == [(False, False), (False, False)]
    after = trainer.model.extractor.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert all(not p.requires_grad and p.grad is None for p in trainer.model.extractor.parameters())
    assert "backbone" not in trainer.optimizers


def test_trained_backbone_scores_in_eval_mode(tmp_path):
    trainer = _tiny_trainer(tmp_path, train_backbone=True)
    trainer.model.train()
    trainer._train_step(_las_batch(), None, torch.zeros(64, 64))
    before = _snapshot(trainer.model.extractor)
    modes = _record_modes(trainer)
    images = _las_batch()["image"]
    scores, _, patches = trainer.model.predict(images)
    alone = trainer.model.predict(images[:1])[2]
    assert modes == [(False, False), (False, False)]
    # Running statistics, not batch statistics: an image scores the same alone or in a batch.
    assert np.allclose(alone[0], patches[0], atol=1e-6)
    after = trainer.model.extractor.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)


@pytest.mark.parametrize("train_backbone", [True, False])
def test_training_epoch_centre_and_discriminator_passes(tmp_path, train_backbone):
    data_path, aug_path = write_tiny_mvtec(tmp_path / "data")  # 6 training images
    cfg = DatasetConfig("mvtec", data_path, aug_path, ("toy",), batch_size=4, num_workers=0, resize=64,
                        imagesize=64, fg=0)
    trainer = _tiny_trainer(tmp_path / "model", train_backbone, meta_epochs=1)
    norm = trainer.model.cfg.mean, trainer.model.cfg.std
    train_set = build_dataset(cfg, "toy", "train", *norm, seed=0, las=True)
    clean_set = build_dataset(cfg, "toy", "train", *norm, seed=0, las=False)
    test_set = build_dataset(cfg, "toy", "test", *norm, seed=0, las=False)
    before = _snapshot(trainer.model.extractor)
    modes = _record_modes(trainer)
    trainer.train(build_dataloader(train_set, cfg, 0, shuffle=True), build_dataloader(clean_set, cfg, 0, shuffle=False),
                  build_dataloader(test_set, cfg, 0, shuffle=False), cache_features=True)  # no cache when it trains
    after = trainer.model.extractor.state_dict()
    if train_backbone:
        # The centre pass (2 batches, no gradients) and the discriminator pass (2 steps x clean + LAS images)
        # run the backbone in train mode; testing (6 images, 2 batches), the training-image scores
        # (2 batches) and the calibration (nothing held out: the 6 training images, 2 batches) in eval mode.
        assert modes[:6] == [(True, False)] * 2 + [(True, True)] * 4
        assert modes[6:] == [(False, False)] * 6
        assert all(int(n.num_batches_tracked) == 6 for n in _batch_norms(trainer))
        stored = load_checkpoint(tmp_path / "model" / "ckpt_best_0.pth")["weights"]["backbone"]
        assert all(torch.equal(stored[name], after[name]) for name in after)
        assert any(not torch.equal(before[name], after[name]) for name in before)
    else:
        # Cached clean features (1 pass over 2 batches), LAS images (2), testing (2), training scores: cached,
        # calibration on the 6 training images (2).
        assert modes == [(False, False)] * 8
        assert all(torch.equal(before[name], after[name]) for name in before)


def test_compiled_gas_gradient_gives_the_eager_ascent():
    # GasGradient("on") compiles Discriminator.anomaly_gradient_beside with torch.compile (seconds once)
    torch.manual_seed(7)
    disc = Discriminator(16, n_layers=2, hidden=16).train()
    true = torch.randn(96, 16)
    gaus = true + 0.3 * torch.randn(96, 16)
    eager_disc, compiled_disc = copy.deepcopy(disc), copy.deepcopy(disc)
    eager = ascend_in_hidden_space(eager_disc, true, gaus, true, 0.5, 1.0, steps=6, gradient=GasGradient("off"))
    compiled = ascend_in_hidden_space(compiled_disc, true, gaus, true, 0.5, 1.0, steps=6, gradient=GasGradient("on"))
    assert torch.allclose(compiled, eager, atol=1e-5)
    for name, buffer in eager_disc.state_dict().items():
        assert torch.allclose(compiled_disc.state_dict()[name].float(), buffer.float(), atol=1e-5), name


def test_gas_gradient_auto_compiles_large_cpu_batches_only(monkeypatch):
    calls: list[int] = []
    gradient = GasGradient("auto")
    monkeypatch.setattr(torch, "compile", lambda fn: lambda disc, hidden, comp: calls.append(hidden.numel()) or
                        fn(disc, hidden, comp))
    disc = Discriminator(8, n_layers=2, hidden=1024).train()
    companion = (torch.ones(1024), torch.zeros(1024), 4)
    gradient(disc, torch.randn(64, 1024), companion)       # 64 K elements: eager
    gradient(disc, torch.randn(1024, 1024), companion)     # 1 M elements: compiled
    assert calls == [1024 * 1024]
    on_gpu = torch.empty(1024, 1024, device="meta")  # a batch off the CPU (the device only matters here)
    assert not gradient.compiles(on_gpu) and GasGradient("on").compiles(on_gpu)
    assert not GasGradient("off").compiles(torch.empty(1024, 1024))
    with pytest.raises(ValueError, match="--compile"):
        GasGradient("sometimes")


def test_glass_numbers_are_unchanged_by_the_method_interface(tmp_path, monkeypatch):
    """Same seed, same machine, same numbers: a tiny GLASS run gives exactly what it gave before GLASS became
    one method among others (values recorded with commit 9c13983, the last before methods/, on this machine;
    its results.csv had no method column). The pixel threshold was re-recorded when maps came to be smoothed by
    OpenCV instead of scipy (float32 sums: 0.9212015153895747 -> 0.9212014564059329, the metrics unchanged), and
    again when they came to be upsampled by OpenCV instead of torch (-> 0.9212015418173567, the metrics unchanged).
    The threshold is compared to 1e-5, not 1e-12: OpenCV's float32 resize and blur take the CPU's SIMD path, and
    on a CPU with AVX-512 (2026-12-03) they gave 0.921208739545904 from the same weights, which stay exact.
    The run is kept on the CPU: on a CUDA machine (an H200, 2026-12-04) training runs there and the pixel AUROC
    came to 0.1990."""
    import csv

    import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the numbers were recorded on the CPU
    from model import final_checkpoint_path
    from tests.helpers import dataset_args, net_args

    data, aug = write_tiny_mvtec(tmp_path)
    results = tmp_path / "results"
    assert main.cli(["--results_path", str(results), *net_args(1), *dataset_args(data, aug)]) == 0
    with open(results / "results.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert (row["method"], row["class"], row["epoch"]) == ("glass", "mvtec_toy", "0")
    assert [row[name] for name in ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "pixel_pro")] == [
        "0.0000", "0.3833", "0.1989", "0.0136", "0.0519"]
    stored = load_checkpoint(final_checkpoint_path(results / "models" / "backbone_0" / "mvtec_toy"))
    assert stored["method"] == "glass"
    assert stored["calibration"]["pixel_threshold"] == pytest.approx(0.9212015418173567, abs=1e-5)
    assert float(stored["weights"]["discriminator"]["tail.0.weight"].sum()) == pytest.approx(-0.8442085981369019,
                                                                                             abs=1e-9)


def _glass_with_crop(class_dir: Path, crop: str | None, hflip: float | None = None) -> GLASS:
    """A tiny GLASS trainer whose checkpoint meta records --train_crop `crop` (None: a run from before it),
    and with `hflip` all of its dataset options (as main.py records them)."""
    cfg = NetConfig(backbone="efficientnet_lite0", layers=("blocks.2", "blocks.4"), pretrain_embed_dimension=16,
                    target_embed_dimension=16, dsc_hidden=8, imagesize=64, resize=64)
    meta = {} if crop is None else {"train_crop": crop}
    if hflip is not None:
        meta = {"dataset_options": {"batch_size": 8, "hflip": hflip, "train_crop": crop or "centre"}}
    return GLASS(GlassModel.build(cfg, pretrained=False), TrainConfig(), torch.device("cpu"), class_dir, svd=0,
                 meta=meta)


def test_resume_requires_the_same_train_crop(tmp_path: Path) -> None:
    latest = tmp_path / "ckpt.pth"
    _glass_with_crop(tmp_path, "random")._save_latest(latest, 1, None, torch.Generator(), finished=False)
    assert _glass_with_crop(tmp_path, "random")._resume(latest, torch.Generator())["epoch"] == 1
    with pytest.raises(CheckpointError, match="--train_crop random -> centre") as info:
        _glass_with_crop(tmp_path, "centre")._resume(latest, torch.Generator())
    assert "\n" not in str(info.value)
    # A checkpoint from before --train_crop was trained on centre crops.
    _glass_with_crop(tmp_path, None)._save_latest(latest, 1, None, torch.Generator(), finished=False)
    assert _glass_with_crop(tmp_path, "centre")._resume(latest, torch.Generator())["epoch"] == 1
    with pytest.raises(CheckpointError, match="--train_crop"):
        _glass_with_crop(tmp_path, "random")._resume(latest, torch.Generator())


def test_resume_requires_the_same_dataset_options(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    latest = tmp_path / "ckpt.pth"
    _glass_with_crop(tmp_path, "centre", hflip=0.0)._save_latest(latest, 1, None, torch.Generator(), finished=False)
    assert _glass_with_crop(tmp_path, "centre", hflip=0.0)._resume(latest, torch.Generator())["epoch"] == 1
    with pytest.raises(CheckpointError, match=r"--hflip 0\.0 -> 0\.5\)") as info:
        _glass_with_crop(tmp_path, "centre", hflip=0.5)._resume(latest, torch.Generator())
    assert "\n" not in str(info.value) and "delete" in str(info.value)
    with pytest.raises(CheckpointError, match=r"--hflip 0\.0 -> 0\.5, --train_crop centre -> random"):
        _glass_with_crop(tmp_path, "random", hflip=0.5)._resume(latest, torch.Generator())
    # Last version's checkpoints recorded --train_crop alone: only it is compared, the rest named in a warning.
    _glass_with_crop(tmp_path, "random")._save_latest(latest, 1, None, torch.Generator(), finished=False)
    with caplog.at_level("WARNING", logger="glass"):
        assert _glass_with_crop(tmp_path, "random", hflip=0.5)._resume(latest, torch.Generator())["epoch"] == 1
    warned = [r.getMessage() for r in caplog.records if "cannot be compared" in r.getMessage()]
    assert len(warned) == 1 and "--hflip" in warned[0] and "--train_crop" not in warned[0]
    # A finished run is tested, not trained again: its options are not compared.
    _glass_with_crop(tmp_path, "centre", hflip=0.0)._save_latest(latest, 2, None, torch.Generator(), finished=True)
    assert _glass_with_crop(tmp_path, "centre", hflip=0.5)._resume(latest, torch.Generator())["finished"]


def test_resume_names_the_changed_train_setting(tmp_path: Path) -> None:
    latest = tmp_path / "ckpt.pth"
    first = _glass_with_crop(tmp_path, "centre")
    first._save_latest(latest, 1, None, torch.Generator(), finished=False)
    other = GLASS(first.model, TrainConfig(lr=1e-3), torch.device("cpu"), tmp_path, svd=0, meta=first.meta)
    with pytest.raises(CheckpointError, match=r"different 'train' settings \(lr 0\.0001 -> 0\.001\); use the same"):
        other._resume(latest, torch.Generator())
