"""The GLASS torch model: frozen backbone -> patch features -> projection -> discriminator.

Also the checkpoint format, so that a model directory alone is enough to load a model.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

import backbones
import common
from errors import first_line
from methods.base import AnomalyModel, CheckpointError, ModelConfig

CHECKPOINT_FORMAT = "glass-toolkit/1"
FINAL_PATTERN = "ckpt_best_*.pth"
LATEST_NAME = "ckpt.pth"


__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "Discriminator", "GlassModel", "NetConfig", "Projection",
           "final_checkpoint_path", "load_checkpoint", "resolve_class_dir"]


@dataclass(frozen=True)
class NetConfig(ModelConfig):
    """Everything needed to rebuild a trained model's forward pass."""

    backbone: str = "wideresnet50"
    layers: tuple[str, ...] = ("layer2", "layer3")
    pretrain_embed_dimension: int = 1024
    target_embed_dimension: int = 1024
    patchsize: int = 3
    dsc_layers: int = 2
    dsc_hidden: int = 1024
    pre_proj: int = 1
    imagesize: int = 288
    resize: int = 288
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


def init_weight(module: nn.Module) -> None:
    """Xavier-normal init for linear layers (as GLASS)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_normal_(module.weight)


class Projection(nn.Module):
    """Stack of linear layers adapting pretrained features to the target domain."""

    def __init__(self, dim: int, n_layers: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential()
        for i in range(n_layers):
            self.layers.add_module(f"{i}fc", nn.Linear(dim, dim))
        self.apply(init_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projects (N, dim) features."""
        return self.layers(x)


class Discriminator(nn.Module):
    """Patch discriminator: [Linear-BN-LeakyReLU] x (n_layers-1), Linear(no bias), Sigmoid; 1 = anomalous."""

    def __init__(self, dim: int, n_layers: int = 2, hidden: int = 1024) -> None:
        super().__init__()
        self.body = nn.Sequential()
        width = dim
        for i in range(n_layers - 1):
            self.body.add_module(
                f"block{i + 1}",
                nn.Sequential(nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2)),
            )
            width = hidden
        self.tail = nn.Sequential(nn.Linear(width, 1, bias=False), nn.Sigmoid())
        self.apply(init_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores (N, dim) features -> (N, 1) in [0, 1]."""
        return self.tail(self.body(x))

    @property
    def first_linear(self) -> nn.Linear | None:
        """The input layer, when there is a hidden block (used to reuse its output during GAS)."""
        return self.body[0][0] if len(self.body) else None

    def anomaly_gradient_beside(self, hidden: torch.Tensor,
                                companion: tuple[torch.Tensor, torch.Tensor, int]) -> torch.Tensor:
        """Gradient, w.r.t. `hidden` (first-layer outputs), of the mean BCE of these rows' scores against 1
        (anomalous), scoring them as if [companion rows; these rows] formed one training-mode batch (same
        batch-norm statistics and running-statistics update), knowing only the companion rows' (variance,
        mean, count). Needs exactly one hidden block.

        Written out by hand rather than by autograd: this is the inner loop of GAS, and a closed form
        without autograd.grad can be compiled whole by torch.compile (glass.GasGradient), which fuses its
        element-wise passes over the (N, H) activations (benchmarks/bench_gas.py). Its factors follow
        torch's own backward formulas (BCE's 1e-12 clamp included), so it agrees with autograd to
        round-off (tests/test_model.py).
        """
        norm, act = self.body[0][1], self.body[0][2]
        slope = float(act.negative_slope)
        count = len(hidden)
        batch_mean, batch_var, total = self.beside_statistics(hidden, companion, norm)
        inv_std = torch.rsqrt(batch_var + norm.eps)
        gain = norm.weight * inv_std
        pre = torch.addcmul(norm.bias - batch_mean * gain, hidden, gain)  # batch-norm output
        positive = pre > 0
        tail = self.tail[0].weight[0]
        scores = torch.sigmoid(F.leaky_relu_(pre, slope) @ tail)
        spread = scores * (1 - scores)
        d_logit = (scores - 1) / spread.clamp_min(1e-12) * spread / count  # BCE, then sigmoid backward
        d_pre = torch.where(positive, tail, tail * slope).mul_(d_logit[:, None])
        if not norm.training:  # running statistics: batch norm is affine per column
            return d_pre.mul_(gain)
        # Batch statistics over all `total` rows (the companion rows' upstream gradient is zero):
        # d/dh = gain * (d_pre - sum(d_pre) / total - xhat * sum(d_pre * xhat) / total), xhat = (h - mean) / std.
        col_sum = d_pre.sum(dim=0)
        col_dot = torch.linalg.vecdot(d_pre, hidden, dim=0)
        xhat_dot = inv_std * (col_dot - batch_mean * col_sum)
        per_row = -gain * inv_std * xhat_dot / total
        constant = gain * (inv_std * xhat_dot * batch_mean - col_sum) / total
        return torch.addcmul(constant, hidden, per_row).addcmul_(d_pre, gain)

    def beside_statistics(self, hidden: torch.Tensor, companion: tuple[torch.Tensor, torch.Tensor, int],
                           norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(mean, variance, row count) of [companion rows; hidden] in training mode, updating the
        running statistics as one forward pass of that batch would; the running ones in eval mode."""
        if not norm.training:
            return norm.running_mean, norm.running_var, len(hidden)
        comp_var, comp_mean, comp_count = companion
        var, mean = torch.var_mean(hidden, dim=0, unbiased=False)
        count = comp_count + len(hidden)
        w_comp, w_own = comp_count / count, len(hidden) / count
        batch_mean = w_comp * comp_mean + w_own * mean
        batch_var = w_comp * comp_var + w_own * var + w_comp * w_own * (comp_mean - mean) ** 2
        if norm.track_running_stats:
            with torch.no_grad():
                norm.num_batches_tracked += 1
                momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
                norm.running_mean.lerp_(batch_mean.detach(), momentum)
                norm.running_var.lerp_(batch_var.detach() * count / (count - 1), momentum)
        return batch_mean, batch_var, count

    def forward_from_first(self, first_out: torch.Tensor) -> torch.Tensor:
        """Finishes the forward pass from the first linear layer's output."""
        x = first_out
        for i, block in enumerate(self.body):
            x = block[1:](x) if i == 0 else block(x)
        return self.tail(x)


class GlassModel(AnomalyModel):
    """Backbone features -> aggregated patch features -> projection -> discriminator."""

    method: ClassVar[str] = "glass"
    map_scale: ClassVar[str] = "logit"  # the discriminator's sigmoid

    def __init__(self, cfg: NetConfig, extractor: backbones.FeatureExtractor) -> None:
        super().__init__()
        self.cfg = cfg
        self.extractor = extractor
        dim = cfg.target_embed_dimension
        self.pre_projection = Projection(dim, cfg.pre_proj) if cfg.pre_proj > 0 else None
        self.discriminator = Discriminator(dim, cfg.dsc_layers, cfg.dsc_hidden)
        self._folded: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def build(cls, cfg: NetConfig, pretrained: bool = True) -> GlassModel:
        """Creates the model with the backbone's (pretrained) weights."""
        return cls(cfg, backbones.load(cfg.backbone, cfg.layers, pretrained=pretrained))

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Aggregated (not yet projected) patch features (B*h*w, dim) and the grid (h, w)."""
        maps = self.extractor(images)
        return common.aggregate_patch_features(
            maps, self.cfg.patchsize, self.cfg.pretrain_embed_dimension, self.cfg.target_embed_dimension
        )

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Applies the projection (identity when pre_proj is 0)."""
        return features if self.pre_projection is None else self.pre_projection(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Patch-score grids (B, h, w) in [0, 1] for normalised images (B, 3, S, S)."""
        features, grid = self.embed(images)
        scores = self.score_features(features)
        return scores.reshape(images.shape[0], *grid)

    def score_grids(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(patch scores, the same tensor as image-score grid): the image score is the highest patch score."""
        scores = self(images)
        return scores, scores

    def score_features(self, features: torch.Tensor) -> torch.Tensor:
        """Discriminator scores (N, 1) of aggregated features; in eval mode through the folded head."""
        if self.training:
            return self.discriminator(self.project(features))
        if self._folded is None:
            self._folded = self.fold_affine_head()
        x = F.linear(features, *self._folded)
        body = self.discriminator.body
        if not len(body):
            return torch.sigmoid(x)
        x = body[0][2](x)
        for block in body[1:]:
            x = block(x)
        return self.discriminator.tail(x)

    @torch.no_grad()
    def fold_affine_head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The eval-mode affine part of the head, projection -> first discriminator linear -> batch norm
        (or the tail's linear without hidden layers), as one (weight, bias): the scores are the same, the
        work 1536x1024 instead of 1536x1536 + 1536x1024 per patch. Eval mode and the ONNX export use it."""
        dim = self.cfg.target_embed_dimension
        weight = torch.eye(dim, device=self.discriminator.tail[0].weight.device)
        bias = torch.zeros(dim, device=weight.device)
        for layer in self.pre_projection.layers if self.pre_projection is not None else ():
            weight, bias = layer.weight @ weight, layer.weight @ bias + layer.bias
        body = self.discriminator.body
        if not len(body):
            tail = self.discriminator.tail[0].weight
            return tail @ weight, tail @ bias
        linear, norm = body[0][0], body[0][1]
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        weight, bias = linear.weight @ weight, linear.weight @ bias + linear.bias
        return scale[:, None] * weight, scale * (bias - norm.running_mean) + norm.bias

    def train(self, mode: bool = True) -> GlassModel:
        """Switches mode; entering training drops the folded head (the weights will change)."""
        if mode:
            self._folded = None
        return super().train(mode)

    def head_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """The trained parts' weights, on CPU."""
        state = {"discriminator": _cpu_state(self.discriminator)}
        if self.pre_projection is not None:
            state["pre_projection"] = _cpu_state(self.pre_projection)
        return state

    def load_head_state(self, state: dict[str, Any], source: str) -> None:
        """Loads trained weights; a shape or key mismatch names the source file."""
        self._folded = None
        try:
            self.discriminator.load_state_dict(state["discriminator"])
            if self.pre_projection is not None:
                self.pre_projection.load_state_dict(state["pre_projection"])
            if "backbone" in state:
                self.extractor.load_state_dict(state["backbone"])
        except (KeyError, RuntimeError) as err:
            first = first_line(err)
            raise CheckpointError(f"{source}: weights do not fit the stored configuration ({first})") from None

    def weights(self) -> dict[str, Any]:
        """The trained parts' weights (the method interface's name for head_state)."""
        return self.head_state()

    def load_weights(self, state: dict[str, Any], source: str) -> None:
        """Loads trained weights (the method interface's name for load_head_state)."""
        self.load_head_state(state, source)


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state dict."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a checkpoint safely (weights_only) and checks its format."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; train the class first (--test ckpt)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files; all mean "unreadable"
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}); "
                              "delete it and retrain") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not a {CHECKPOINT_FORMAT} checkpoint (official GLASS checkpoints lack the model "
            "configuration); retrain with this toolkit"
        )
    missing = [key for key in ("net", "weights") if not isinstance(data.get(key), dict)]
    if missing:
        raise CheckpointError(f"{path}: checkpoint is damaged (no {', '.join(missing)}); delete it and retrain")
    return data


def final_checkpoint_path(class_dir: str | os.PathLike) -> Path | None:
    """The selected model file ckpt_best_<epoch>.pth of a class directory, if any."""
    found = sorted(glob.glob(os.path.join(os.fspath(class_dir), FINAL_PATTERN)), key=_epoch_of)
    return Path(found[-1]) if found else None


def _epoch_of(path: str) -> int:
    """Epoch number in a ckpt_best_<epoch>.pth file name."""
    match = re.search(r"ckpt_best_(\d+)\.pth$", path)
    return int(match.group(1)) if match else -1


def resolve_class_dir(model_path: str | os.PathLike, class_name: str | None = None) -> Path:
    """Finds a class model directory from a backbone folder + class name, or the class folder itself."""
    root = Path(model_path)
    candidate = root / class_name if class_name else root
    if final_checkpoint_path(candidate) is not None:
        return candidate
    if not root.is_dir():
        raise CheckpointError(f"{root}: model directory not found; pass --model_path results/models/backbone_0/")
    classes = sorted(p.name for p in root.iterdir() if final_checkpoint_path(p) is not None)
    if class_name:
        raise CheckpointError(
            f"{candidate}: no trained model (ckpt_best_*.pth) for class '{class_name}'; "
            f"trained classes here: {', '.join(classes) or 'none'}"
        )
    raise CheckpointError(f"{root}: no ckpt_best_*.pth here; pass --class_name, one of: {', '.join(classes) or 'none'}")
