"""Method name -> its config and torch model; building, and loading any trained class model.

A checkpoint names its method (`"method"`; GLASS checkpoints written before other methods existed
have none and are GLASS), so a model directory alone says how to rebuild its model.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from methods.autoencoder import AutoencoderConfig, AutoencoderModel
from methods.base import AnomalyModel, CheckpointError
from methods.draem import DraemConfig, DraemModel
from methods.padim import PadimConfig, PadimModel
from methods.patchcore import PatchCoreConfig, PatchCoreModel
from model import GlassModel, NetConfig, final_checkpoint_path, load_checkpoint

DEFAULT_METHOD = "glass"


@dataclass(frozen=True)
class Method:
    """A method's config class and model class."""

    config: type
    model: type[AnomalyModel]


METHODS: dict[str, Method] = {
    "glass": Method(NetConfig, GlassModel),
    "patchcore": Method(PatchCoreConfig, PatchCoreModel),
    "padim": Method(PadimConfig, PadimModel),
    "draem": Method(DraemConfig, DraemModel),
    "ae": Method(AutoencoderConfig, AutoencoderModel),
}


def method_of(data: dict[str, Any], source: str = "checkpoint") -> str:
    """The method a checkpoint was written by (GLASS when it names none); unknown -> CheckpointError."""
    name = data.get("method", DEFAULT_METHOD)
    if name not in METHODS:
        raise CheckpointError(f"{source}: written by method {name!r}, which this toolkit does not know "
                              f"({', '.join(METHODS)}); update the toolkit")
    return name


def map_scale_of(method: str) -> str:
    """How a method squashed its map scores into [0, 1] (AnomalyModel.map_scale: "logit" or "distance")."""
    return METHODS[method].model.map_scale


def method_of_config(cfg: Any) -> str:
    """The method whose config class `cfg` is an instance of."""
    return next(name for name, method in METHODS.items() if isinstance(cfg, method.config))


def config_from_checkpoint(data: dict[str, Any], source: str = "checkpoint") -> Any:
    """The stored config of a loaded checkpoint, as its method's config class."""
    return METHODS[method_of(data, source)].config.from_dict(data["net"])


def build_model(cfg: Any, pretrained: bool = True) -> AnomalyModel:
    """The unfitted model of a config (backbone weights loaded)."""
    return METHODS[method_of_config(cfg)].model.build(cfg, pretrained=pretrained)


def load_trained_model(class_dir: str | os.PathLike, device: torch.device | str = "cpu",
                       pretrained_backbone: bool = True) -> tuple[AnomalyModel, dict[str, Any]]:
    """Loads the selected model of a class directory, whatever its method; returns (model in eval mode,
    checkpoint data)."""
    path = final_checkpoint_path(class_dir)
    if path is None:
        raise CheckpointError(f"{class_dir}: no ckpt_best_*.pth; train this class first (--test ckpt)")
    data = load_checkpoint(path)
    net = build_model(config_from_checkpoint(data, str(path)), pretrained=pretrained_backbone)
    net.load_weights(data["weights"], str(Path(path)))
    return net.to(device).eval(), data
