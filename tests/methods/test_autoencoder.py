"""The convolutional autoencoder: shapes, tiles, per-pixel errors, training, save/load."""
from __future__ import annotations

import pytest
import torch

from methods.autoencoder import AutoencoderConfig, AutoencoderModel, ConvAutoencoder, pixel_error


def tiny(**changes) -> AutoencoderModel:
    """A narrow autoencoder at 64 px, seeded."""
    torch.manual_seed(0)
    settings = {"imagesize": 64, "resize": 64, "width": 4, "latent": 16, **changes}
    return AutoencoderModel(AutoencoderConfig(**settings)).eval()


def test_the_bottleneck_holds_latent_numbers_per_tile():
    network = ConvAutoencoder(AutoencoderConfig(imagesize=64, width=4, latent=16, tile=32))
    images = torch.rand(2, 3, 64, 96)
    code = network.bottleneck(network.encoder(images))
    assert code.shape == (2, 16, 2, 3)  # one 16-number vector per 32 px tile
    with torch.no_grad():
        reconstruction = network(images)
    assert reconstruction.shape == images.shape
    assert 0 <= float(reconstruction.min()) and float(reconstruction.max()) <= 1  # sigmoid output


def test_pixel_errors_against_hand_computed_values():
    images = torch.zeros(1, 3, 16, 16)
    reconstruction = images.clone()
    reconstruction[0, 0, 2, 3] = 0.6  # one channel of one pixel off by 0.6: (0.36 + 0 + 0) / 3
    error = pixel_error(reconstruction, images, "mse")
    assert error.shape == (1, 16, 16) and float(error[0, 2, 3]) == pytest.approx(0.12)
    assert float(error.sum()) == pytest.approx(0.12)
    same = torch.rand(1, 3, 16, 16)
    assert float(pixel_error(same, same, "ssim").abs().max()) < 1e-5  # 1 - SSIM of an image with itself


def test_scores_are_squashed_errors_on_the_stride_4_grid():
    model = tiny()
    model.head.scale = torch.tensor(0.01)
    images = torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        patch, image_grid = model.score_grids(images)
        error = pixel_error(model.network(images), images, "mse")
    assert patch.shape == (2, 16, 32) and image_grid is patch
    cell = float(error[0, :4, :4].mean())
    assert float(patch[0, 0, 0]) == pytest.approx(cell / (cell + 0.01), rel=1e-5)
    assert model.strides == (4, 64) and model.image_score_rule == "map_max"


def test_a_tiny_training_run_lowers_the_loss_and_repeats_with_the_same_seed():
    images = 0.5 + 0.2 * torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    runs = []
    for _ in range(2):
        model = tiny(epochs=5, lr=1e-2)
        runs.append((model.fit_loader([{"image": images}], seed=0)["loss"], model.weights()))
    assert len(runs[0][0]) == 5 and runs[0][0][-1] < runs[0][0][0]
    assert runs[0][0] == runs[1][0]  # same seed, same machine: same numbers
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_weights_round_trip_including_the_score_scale():
    from methods.base import CheckpointError

    model = tiny()
    model.head.scale = torch.tensor(0.25)
    other = tiny(latent=16)
    other.load_weights(model.weights(), "ckpt.pth")
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.score_grids(images)[0], other.eval().score_grids(images)[0])
    assert float(other.head.scale) == 0.25
    with pytest.raises(CheckpointError, match="ckpt.pth: weights do not fit this ae model"):
        tiny(latent=32).load_weights(model.weights(), "ckpt.pth")
