"""DRAEM: network shapes, the losses against hand-computed values, synthetic-anomaly selection, scores."""
from __future__ import annotations

import math

import pytest
import torch

from methods.draem import DraemConfig, DraemModel, DiscriminativeNet, ReconstructiveNet, reconstruction_loss, \
    segmentation_loss


def tiny(**changes) -> DraemModel:
    """A 4-channel DRAEM at 64 px, seeded."""
    torch.manual_seed(0)
    return DraemModel(DraemConfig(imagesize=64, resize=64, recon_width=4, disc_width=4, **changes)).eval()


def test_networks_keep_the_image_size_of_any_multiple_of_32():
    images = torch.rand(2, 3, 64, 96)
    assert ReconstructiveNet(4)(images).shape == (2, 3, 64, 96)
    assert DiscriminativeNet(4)(torch.cat([images, images], dim=1)).shape == (2, 2, 64, 96)


def test_score_grids_are_probabilities_on_the_stride_4_grid():
    model = tiny()
    with torch.no_grad():
        patch, image_grid = model.score_grids(torch.rand(2, 3, 64, 96))
    assert patch.shape == image_grid.shape == (2, 16, 24)
    assert float(patch.min()) >= 0 and float(patch.max()) <= 1
    assert model.strides == (4, 32) and model.image_score_rule == "grid_max"


def test_image_score_is_the_highest_window_average_of_the_pixel_map(monkeypatch):
    model = tiny(score_window=3)
    logits = torch.zeros(1, 2, 32, 32)
    logits[0, 1, 10, 10] = 50.0  # one pixel certain (probability 1), the rest 0.5
    monkeypatch.setattr(model, "anomaly_logits", lambda images: (images, logits))
    scores, maps, patch = model.predict(torch.zeros(1, 3, 32, 32))
    # 3x3 average around the pixel (zero padding counted, as avg_pool2d's default): (8 * 0.5 + 1) / 9
    assert scores[0] == pytest.approx((8 * 0.5 + 1) / 9, abs=1e-6)
    assert patch[0, 2, 2] == pytest.approx((15 * 0.5 + 1) / 16, abs=1e-6)  # the 4x4 cell's mean
    assert maps.shape == (1, 32, 32)


def test_reconstruction_loss_against_hand_computed_values():
    image = torch.full((1, 3, 32, 32), 0.5)
    assert float(reconstruction_loss(image, image)) == pytest.approx(0.0, abs=1e-6)
    # Constant images 0.5 and 0.6: MSE 0.01; SSIM = (2 * 0.5 * 0.6 + C1) / (0.25 + 0.36 + C1), C1 = 0.01^2
    # (no variance: the contrast term is C2 / C2 = 1).
    ssim = (2 * 0.5 * 0.6 + 1e-4) / (0.25 + 0.36 + 1e-4)
    assert float(reconstruction_loss(torch.full_like(image, 0.6), image)) == pytest.approx(0.01 + 1 - ssim, abs=1e-5)


def test_segmentation_loss_against_hand_computed_values():
    # Zero logits: probability 0.5 for both classes; focal loss -(1 - pt)^2 log(pt), pt = 0.5 (+ smoothing 1e-5).
    pt = 0.5 + 1e-5
    expected = -((1 - pt) ** 2) * math.log(pt)
    mask = torch.zeros(2, 8, 8)
    mask[:, :4] = 1
    assert float(segmentation_loss(torch.zeros(2, 2, 8, 8), mask)) == pytest.approx(expected, rel=1e-4)
    confident = torch.stack([1 - mask, mask], dim=1) * 40 - 20  # right and sure: almost no loss
    assert float(segmentation_loss(confident, mask)) < 1e-6


@pytest.mark.parametrize("probability", [0.0, 1.0])
def test_training_uses_the_las_image_and_mask_with_the_anomaly_probability(monkeypatch, probability):
    model = tiny(anomaly_probability=probability)
    seen = {}

    def record(images):
        seen["images"] = images.clone()
        return images, torch.zeros(len(images), 2, *images.shape[-2:])

    monkeypatch.setattr(model, "anomaly_logits", record)
    import methods.draem as draem

    monkeypatch.setattr(draem, "segmentation_loss", lambda logits, mask: seen.setdefault("mask", mask).sum() * 0)
    batch = {"image": torch.zeros(3, 3, 32, 32), "aug": torch.ones(3, 3, 32, 32), "mask": torch.ones(3, 32, 32)}
    model.training_loss(batch, torch.Generator().manual_seed(0))
    assert float(seen["images"].mean()) == probability  # all LAS images, or all clean ones
    assert float(seen["mask"].mean()) == probability


def test_a_tiny_training_run_lowers_the_loss_and_repeats_with_the_same_seed():
    def batches(seed: int):
        rng = torch.Generator().manual_seed(seed)
        images = 0.5 + 0.1 * torch.rand(4, 3, 32, 32, generator=rng)
        mask = torch.zeros(4, 32, 32)
        mask[:, 8:16, 8:20] = 1
        aug = torch.where(mask[:, None] > 0, torch.ones_like(images), images)
        return [{"image": images, "aug": aug, "mask": mask}]

    runs = []
    for _ in range(2):
        model = tiny(epochs=6, lr=1e-2)
        facts = model.fit_loader(batches(0), seed=0)
        runs.append((facts["loss"], model.weights()))
    curve = runs[0][0]
    assert len(curve) == 6 and curve[-1] < curve[0]
    assert runs[0][0] == runs[1][0]  # same seed, same machine: same numbers
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_weights_round_trip_and_a_mismatched_checkpoint_is_one_line():
    from methods.base import CheckpointError

    model, images = tiny(), torch.rand(1, 3, 64, 64)
    other = tiny()
    torch.nn.init.constant_(other.discriminative.out.bias, 3.0)
    other.load_weights(model.weights(), "ckpt.pth")
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model.score_grids(images), other.eval().score_grids(images)))
    wider = DraemModel(DraemConfig(imagesize=64, resize=64, recon_width=8, disc_width=4))
    with pytest.raises(CheckpointError, match="ckpt.pth: weights do not fit this draem model"):
        wider.load_weights(model.weights(), "ckpt.pth")


def test_random_crop_takes_the_same_window_of_image_aug_and_mask():
    from methods.draem import random_crop

    image = torch.arange(64 * 96, dtype=torch.float32).reshape(1, 1, 64, 96).expand(2, 3, 64, 96)
    mask = image[:, 0]
    a, m = random_crop((image, mask), 32, torch.Generator().manual_seed(3))
    assert a.shape == (2, 3, 32, 32) and m.shape == (2, 32, 32)
    assert torch.equal(a[:, 0], m)  # the same window
    top, left = divmod(int(a[0, 0, 0, 0]), 96)
    assert 0 <= top <= 32 and 0 <= left <= 64 and torch.equal(a, image[..., top:top + 32, left:left + 32])
    assert random_crop((image, mask), 0, torch.Generator())[0] is image  # 0: the whole view
