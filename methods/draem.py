"""DRAEM (Zavrtanik et al., "DRAEM - A discriminatively trained reconstruction embedding for surface
anomaly detection", ICCV 2021).

Two networks trained together on synthetic anomalies:
- the reconstructive sub-network, an encoder-decoder without skip connections, learns to give back the
  defect-free image from one with a synthetic anomaly pasted in (loss: L2 + 1 - SSIM);
- the discriminative sub-network, a U-Net, reads the image beside its reconstruction and segments the
  anomaly (loss: focal loss on its softmax, `loss.FocalLoss`, gamma 2, against the anomaly's mask).

Synthetic anomalies are GLASS's local anomaly synthesis (LAS, `datasets.base.GlassDataset.synthesize`):
a Perlin-noise mask (`perlin.py`) filled with a texture image of the AUG_PATH folder (DTD), blended with
the image; with probability `anomaly_probability` per image (the paper: 1/2), else the clean image and
an empty mask.

Scores: the discriminative network's anomaly probability per pixel, averaged over GRID_STRIDE cells for
the patch grid (methods.pixel); the image score is the highest value of that map averaged over
`score_window` x `score_window` windows (the paper: 21), the "grid_max" rule.

Network widths: the paper's are 128 (reconstructive) and 64 (discriminative) base channels; the CPU demo
setting (shell/run-compare.sh) uses narrower networks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure

import loss as losses
from methods.base import ModelConfig
from methods.pixel import UNIT_MEAN, UNIT_STD, PixelConfigMixin, PixelModel, conv_block, pixel_grid

DISCRIMINATIVE_DEPTH = 5  # max-pool steps of the U-Net: inputs are multiples of 2 ** 5
SSIM_WINDOW = 11  # the paper's SSIM window (Gaussian, sigma 1.5)


@dataclass(frozen=True)
class DraemConfig(PixelConfigMixin, ModelConfig):
    """Everything needed to rebuild a trained DRAEM model (paper defaults)."""

    imagesize: int = 256
    resize: int = 256
    recon_width: int = 128
    disc_width: int = 64
    epochs: int = 700
    lr: float = 1e-4
    anomaly_probability: float = 0.5
    score_window: int = 21
    crop: int = 0  # train on random crops of this side (a multiple of 32); 0: the whole training view
    mean: tuple[float, float, float] = UNIT_MEAN
    std: tuple[float, float, float] = UNIT_STD

    @property
    def input_multiple(self) -> int:
        """The discriminative U-Net's downsampling: image sides are multiples of 32."""
        return 2 ** DISCRIMINATIVE_DEPTH


class ReconstructiveNet(nn.Module):
    """Encoder (4 max-pools) and decoder (4 upsamplings) without skip connections: image -> image."""

    def __init__(self, width: int) -> None:
        super().__init__()
        channels = (width, 2 * width, 4 * width, 8 * width, 8 * width)
        self.encoder = nn.ModuleList([conv_block(3, channels[0])] + [
            conv_block(channels[i], channels[i + 1]) for i in range(len(channels) - 1)])
        ups, blocks = [], []
        for i in range(len(channels) - 1, 0, -1):
            ups.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                                     nn.Conv2d(channels[i], channels[i], 3, padding=1),
                                     nn.BatchNorm2d(channels[i]), nn.ReLU(inplace=True)))
            blocks.append(conv_block(channels[i], channels[i - 1]))
        self.ups, self.blocks = nn.ModuleList(ups), nn.ModuleList(blocks)
        self.out = nn.Conv2d(channels[0], 3, 3, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) -> reconstruction (B,3,H,W); H, W multiples of 16."""
        x = images
        for i, block in enumerate(self.encoder):
            x = block(F.max_pool2d(x, 2) if i else x)
        for up, block in zip(self.ups, self.blocks):
            x = block(up(x))
        return self.out(x)


class DiscriminativeNet(nn.Module):
    """U-Net: (image, reconstruction) -> two-class logits per pixel (normal, anomalous)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        channels = (width, 2 * width, 4 * width, 8 * width, 8 * width, 8 * width)
        self.encoder = nn.ModuleList([conv_block(6, channels[0])] + [
            conv_block(channels[i], channels[i + 1]) for i in range(DISCRIMINATIVE_DEPTH)])
        ups, blocks = [], []
        for i in range(DISCRIMINATIVE_DEPTH, 0, -1):
            ups.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                                     nn.Conv2d(channels[i], channels[i - 1], 3, padding=1),
                                     nn.BatchNorm2d(channels[i - 1]), nn.ReLU(inplace=True)))
            blocks.append(conv_block(2 * channels[i - 1], channels[i - 1]))
        self.ups, self.blocks = nn.ModuleList(ups), nn.ModuleList(blocks)
        self.out = nn.Conv2d(channels[0], 2, 3, padding=1)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        """(B,6,H,W) -> logits (B,2,H,W); H, W multiples of 32."""
        skips, x = [], pair
        for i, block in enumerate(self.encoder):
            x = block(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        for up, block, skip in zip(self.ups, self.blocks, reversed(skips[:-1])):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.out(x)


def random_crop(tensors: tuple[torch.Tensor, ...], side: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """The same random side x side window of every tensor (..., H, W); all of them when side is 0 or too large."""
    height, width = tensors[0].shape[-2:]
    if not side or (side >= height and side >= width):
        return tensors
    side_h, side_w = min(side, height), min(side, width)
    top = int(torch.randint(height - side_h + 1, (1,), generator=generator, device=generator.device))
    left = int(torch.randint(width - side_w + 1, (1,), generator=generator, device=generator.device))
    return tuple(t[..., top:top + side_h, left:left + side_w] for t in tensors)


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DRAEM's reconstruction loss: mean squared error + (1 - SSIM), images in [0, 1]."""
    ssim = structural_similarity_index_measure(reconstruction, target, data_range=1.0, kernel_size=SSIM_WINDOW,
                                               sigma=1.5)
    return F.mse_loss(reconstruction, target) + (1 - ssim)


def segmentation_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Focal loss (gamma 2) of the per-pixel softmax (B,2,H,W) against a 0/1 mask (B,H,W)."""
    probabilities = logits.softmax(dim=1).permute(0, 2, 3, 1).reshape(-1, 2)
    return losses.FocalLoss(gamma=2.0)(probabilities, mask.reshape(-1).round().long())


class DraemModel(PixelModel):
    """Reconstructive + discriminative sub-networks; scores = the anomaly probability per pixel."""

    method: ClassVar[str] = "draem"
    image_score_rule: ClassVar[str] = "grid_max"
    synthesises_anomalies: ClassVar[bool] = True
    map_scale: ClassVar[str] = "logit"  # a softmax over two classes: a sigmoid of their difference

    def __init__(self, cfg: DraemConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.reconstructive = ReconstructiveNet(cfg.recon_width)
        self.discriminative = DiscriminativeNet(cfg.disc_width)

    @classmethod
    def build(cls, cfg: DraemConfig, pretrained: bool = True) -> DraemModel:
        """The untrained model (nothing pretrained: `pretrained` is accepted for the common interface)."""
        return cls(cfg)

    def anomaly_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction (B,3,H,W), segmentation logits (B,2,H,W)) of images in [0, 1]."""
        reconstruction = self.reconstructive(images)
        return reconstruction, self.discriminative(torch.cat([images, reconstruction], dim=1))

    def score_grids(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(patch scores, window-averaged image-score grid), each (B,H/4,W/4), in [0, 1]."""
        anomaly = self.anomaly_logits(images)[1].softmax(dim=1)[:, 1]
        window = self.cfg.score_window
        averaged = F.avg_pool2d(anomaly[:, None], window, stride=1, padding=window // 2)[:, 0]
        stride = self.strides[0]
        return pixel_grid(anomaly, stride), F.max_pool2d(averaged[:, None], stride)[:, 0]

    def training_loss(self, batch: dict[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Reconstruction (L2 + SSIM) and segmentation (focal) loss on a batch with LAS anomalies in about
        `anomaly_probability` of its images."""
        clean, aug, mask = random_crop((batch["image"], batch["aug"], batch["mask"]), self.cfg.crop, generator)
        chosen = torch.rand(len(clean), generator=generator, device=clean.device) < self.cfg.anomaly_probability
        pick = chosen[:, None, None, None]
        images = torch.where(pick, aug, clean)
        target_mask = torch.where(pick[:, 0], mask, torch.zeros_like(mask))
        reconstruction, logits = self.anomaly_logits(images)
        recon = reconstruction_loss(reconstruction, clean)
        segment = segmentation_loss(logits, target_mask)
        return recon + segment, {"reconstruction": float(recon.detach()), "segmentation": float(segment.detach())}
