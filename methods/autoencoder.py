"""Convolutional autoencoder: trained to reconstruct defect-free images; what it cannot reconstruct is
anomalous.

Network: an encoder of four blocks (4 x 4 convolution with stride 2, batch norm, leaky ReLU; `width`,
2, 4 and 8 times `width` channels), a dense bottleneck of `latent` numbers per tile, and the mirrored
decoder (transposed convolutions, batch norm, ReLU; a sigmoid gives the image in [0, 1]). The bottleneck
is a convolution whose kernel and stride are one tile (`tile` pixels, 0: the training view): a training
view is encoded into one latent vector per tile, and a larger frame into a grid of them (the convolutions
before and after the bottleneck see a little across tile borders), so frames of any shape whose sides are
whole tiles (the engine pads them) are scored as the training views are.

Training: mean squared error on the training images (Adam, `epochs`, `lr`).

Scores: the per-pixel error, squared difference averaged over the colour channels (`error` "mse") or
1 - SSIM (`error` "ssim", 11 x 11 Gaussian window), averaged over GRID_STRIDE cells and mapped to [0, 1]
by d / (d + scale) (`methods.base.squash`; `scale` from the held-out images, `fitting.set_distance_scale`).
The image score is the highest value of the smoothed anomaly map ("map_max").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure

from methods.base import ModelConfig, squash
from methods.pixel import UNIT_MEAN, UNIT_STD, PixelConfigMixin, PixelModel, pixel_grid

ENCODER_BLOCKS = 4  # stride-2 blocks: the bottleneck sees the image at 1/16
ERRORS = ("mse", "ssim")


@dataclass(frozen=True)
class AutoencoderConfig(PixelConfigMixin, ModelConfig):
    """Everything needed to rebuild a trained autoencoder."""

    imagesize: int = 256
    resize: int = 256
    width: int = 8
    latent: int = 512
    tile: int = 0  # pixels per side of the tile one latent vector encodes; 0: imagesize
    error: str = "mse"
    epochs: int = 100
    lr: float = 1e-3
    mean: tuple[float, float, float] = UNIT_MEAN
    std: tuple[float, float, float] = UNIT_STD

    @property
    def tile_size(self) -> int:
        """The tile side in pixels (a multiple of 16)."""
        return self.tile or self.imagesize

    @property
    def input_multiple(self) -> int:
        """Image sides are whole tiles."""
        return self.tile_size


def encoder_block(channels_in: int, channels_out: int) -> nn.Sequential:
    """4 x 4 convolution, stride 2, batch norm, leaky ReLU: half the size."""
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 4, stride=2, padding=1),
                         nn.BatchNorm2d(channels_out), nn.LeakyReLU(0.2, inplace=True))


def decoder_block(channels_in: int, channels_out: int) -> nn.Sequential:
    """4 x 4 transposed convolution, stride 2, batch norm, ReLU: twice the size."""
    return nn.Sequential(nn.ConvTranspose2d(channels_in, channels_out, 4, stride=2, padding=1),
                         nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True))


class ConvAutoencoder(nn.Module):
    """Four encoder blocks, a dense per-tile bottleneck, four mirrored decoder blocks."""

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        channels = [3] + [cfg.width * 2 ** i for i in range(ENCODER_BLOCKS)]
        cells = cfg.tile_size // 2 ** ENCODER_BLOCKS  # bottleneck kernel: one tile of the 1/16 map
        self.encoder = nn.Sequential(*[encoder_block(channels[i], channels[i + 1]) for i in range(ENCODER_BLOCKS)])
        self.bottleneck = nn.Conv2d(channels[-1], cfg.latent, cells, stride=cells)
        self.expand = nn.Sequential(nn.ConvTranspose2d(cfg.latent, channels[-1], cells, stride=cells),
                                    nn.BatchNorm2d(channels[-1]), nn.ReLU(inplace=True))
        blocks = [decoder_block(channels[i], channels[i - 1]) for i in range(ENCODER_BLOCKS, 1, -1)]
        self.decoder = nn.Sequential(*blocks, nn.ConvTranspose2d(channels[1], 3, 4, stride=2, padding=1), nn.Sigmoid())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) in [0, 1], H and W multiples of the tile -> reconstruction (B,3,H,W)."""
        return self.decoder(self.expand(self.bottleneck(self.encoder(images))))


def pixel_error(reconstruction: torch.Tensor, images: torch.Tensor, error: str) -> torch.Tensor:
    """Per-pixel reconstruction error (B,H,W): squared difference or 1 - SSIM, averaged over channels."""
    if error == "ssim":
        _, full = structural_similarity_index_measure(reconstruction, images, data_range=1.0, kernel_size=11,
                                                      sigma=1.5, reduction="none", return_full_image=True)
        return (1 - full).mean(dim=1)
    return (reconstruction - images).pow(2).mean(dim=1)


class ErrorHead(nn.Module):
    """Per-pixel errors -> grid scores in [0, 1] (the fitted part: the score scale)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(()))

    def forward(self, errors: torch.Tensor) -> torch.Tensor:
        """(B,H,W) errors -> (B,H/4,W/4) scores."""
        return squash(pixel_grid(errors), self.scale)


class AutoencoderModel(PixelModel):
    """Convolutional autoencoder; scores = squashed per-pixel reconstruction error."""

    method: ClassVar[str] = "ae"
    image_score_rule: ClassVar[str] = "map_max"

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.network = ConvAutoencoder(cfg)
        self.head = ErrorHead()

    @classmethod
    def build(cls, cfg: AutoencoderConfig, pretrained: bool = True) -> AutoencoderModel:
        """The untrained model (nothing pretrained: `pretrained` is accepted for the common interface)."""
        return cls(cfg)

    def score_grids(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(patch scores, the same tensor as image-score grid), each (B,H/4,W/4), in [0, 1]."""
        patch = self.head(pixel_error(self.network(images), images, self.cfg.error))
        return patch, patch

    def training_loss(self, batch: dict[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean squared reconstruction error of a batch of defect-free images."""
        images = batch["image"]
        value = F.mse_loss(self.network(images), images)
        return value, {"mse": float(value.detach())}
