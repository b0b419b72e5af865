"""What the pixel methods (DRAEM, the convolutional autoencoder) share: a network trained for epochs on the
images themselves (no pretrained backbone), a per-pixel anomaly map averaged into grid cells of
GRID_STRIDE pixels (the engine's grids; the anomaly map is then upsampled and smoothed like every
method's), and the training loop.

Their configs read images in [0, 1] (mean 0, std 1: the pipeline's normalisation leaves pixels as they
are), as both papers' networks do.
"""
from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
import tqdm
from torch import nn

import utils
from methods.base import AnomalyModel, CheckpointError

LOGGER = logging.getLogger(__name__)

GRID_STRIDE = 4  # pixels per score-grid cell: the pixel map is averaged over 4 x 4 cells
PIXEL_BACKBONE = "none"  # what ModelInfo and results show as the backbone of a pixel method
UNIT_MEAN = (0.0, 0.0, 0.0)  # images reach the networks in [0, 1]
UNIT_STD = (1.0, 1.0, 1.0)


def pixel_grid(pixel_map: torch.Tensor, stride: int = GRID_STRIDE) -> torch.Tensor:
    """A per-pixel map (B,H,W) averaged over stride x stride cells (B,H/stride,W/stride); H, W multiples."""
    return F.avg_pool2d(pixel_map[:, None], stride)[:, 0]


def conv_block(channels_in: int, channels_out: int) -> nn.Sequential:
    """Two 3x3 convolutions, each with batch norm and ReLU (the U-Net block both DRAEM networks use)."""
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True),
        nn.Conv2d(channels_out, channels_out, 3, padding=1), nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True),
    )


class PixelModel(AnomalyModel):
    """A method whose network scores pixels directly: grids at GRID_STRIDE, inputs padded to `pad_multiple`."""

    extractor = None

    @property
    def strides(self) -> tuple[int, ...]:
        """(pixels per grid cell, the multiple inputs are padded to: the config's input_multiple)."""
        return (GRID_STRIDE, self.cfg.input_multiple)

    def training_loss(self, batch: dict[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one training batch and its named parts (floats, for the log)."""
        raise NotImplementedError

    def export_head(self) -> nn.Module:
        """Normalised images -> score grids: the whole model (there is no backbone to export apart)."""
        return ScoreGrids(self)

    def weights(self) -> dict[str, Any]:
        """Every parameter and buffer, on CPU."""
        return {name: value.detach().cpu().clone() for name, value in self.state_dict().items()}

    def load_weights(self, state: dict[str, Any], source: str) -> None:
        """Loads a state written by weights(); a different architecture raises CheckpointError."""
        try:
            self.load_state_dict(state)
        except (RuntimeError, KeyError) as err:
            raise CheckpointError(f"{source}: weights do not fit this {self.method} model "
                                  f"({str(err).splitlines()[0]}); delete the folder and train again") from None

    def fit_loader(self, loader: torch.utils.data.DataLoader, seed: int, resume: dict[str, Any] | None = None,
                   on_epoch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Trains for cfg.epochs over the loader (Adam, lr cfg.lr; the learning rate drops to a fifth at 80 %
        and again at 90 % of the epochs, as DRAEM's schedule); returns the loss per epoch. `on_epoch(state)`
        gets the training state after every epoch; given back as `resume`, training goes on from there to the
        same numbers as an uninterrupted run."""
        epochs = self.cfg.epochs
        device = next(self.parameters()).device
        optimizer = torch.optim.Adam(self.parameters(), lr=self.cfg.lr)
        milestones = sorted({int(epochs * 0.8), int(epochs * 0.9)} - {0})
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.2)
        generator = torch.Generator(device=device).manual_seed(seed)
        loader_generator = getattr(loader, "generator", None)
        curve: list[float] = []
        if resume is not None:
            self.load_weights(resume["weights"], "the training state")
            optimizer.load_state_dict(resume["optimizer"])
            schedule.load_state_dict(resume["schedule"])
            generator.set_state(resume["generator"])
            utils.restore_rng_state(resume["rng"], loader_generator)
            curve = list(resume["loss"])
            LOGGER.info("%s: resuming after epoch %d", self.method, len(curve))
        self.train()
        started = time.perf_counter()
        progress = tqdm.trange(len(curve), epochs, initial=len(curve), total=epochs, desc=f"{self.method} epochs",
                               unit="epoch", leave=False)
        for epoch in progress:
            set_epoch = getattr(getattr(loader, "dataset", None), "set_epoch", None)
            if set_epoch is not None:  # the dataset's LAS draws of this epoch
                set_epoch(epoch)
            total, count = 0.0, 0
            for batch in loader:
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                loss, parts = self.training_loss(batch, generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, count = total + float(loss.detach()) * len(batch["image"]), count + len(batch["image"])
            schedule.step()
            curve.append(total / max(count, 1))
            progress.set_postfix(loss=f"{curve[-1]:.4f}")
            LOGGER.debug("%s epoch %d: loss %.5f (%s)", self.method, epoch + 1, curve[-1],
                         ", ".join(f"{k} {v:.4f}" for k, v in parts.items()))
            if on_epoch is not None:
                on_epoch({"epoch": epoch + 1, "loss": list(curve), "weights": self.weights(),
                          # copies: the optimiser's live moment tensors change in the next epoch
                          "optimizer": copy.deepcopy(optimizer.state_dict()), "schedule": schedule.state_dict(),
                          "generator": generator.get_state(), "rng": utils.capture_rng_state(loader_generator)})
        self.eval()
        LOGGER.info("%s: %d epochs in %.1f s, loss %.4f -> %.4f", self.method, epochs, time.perf_counter() - started,
                    curve[0] if curve else float("nan"), curve[-1] if curve else float("nan"))
        return {"epochs": epochs, "loss": curve}


class ScoreGrids(nn.Module):
    """A pixel model as an exportable module: images -> patch scores [, image-score grid]."""

    def __init__(self, model: PixelModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B,3,H,W) normalised images -> grids (one tensor when the model's grids are the same)."""
        patch, image_grid = self.model.score_grids(images)
        return patch if image_grid is patch else (patch, image_grid)


class PixelConfigMixin:
    """Shared read-only facts of a pixel method's config."""

    backbone: ClassVar[str] = PIXEL_BACKBONE

    @property
    def input_multiple(self) -> int:
        """Image sides must be multiples of this (the network's total downsampling)."""
        raise NotImplementedError
