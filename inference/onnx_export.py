"""ONNX export of a trained class model: exact exportable GLASS head forms, the export pipeline (any
method: GLASS, PatchCore, PaDiM), the JSON sidecar beside every file and the freshness cache the engine
exports through.

Other methods than GLASS export their own head (`AnomalyModel.export_head`: backbone maps -> grids);
PatchCore's graph has a second output, `image_grid`, the reweighted image-score grid (methods.base).

The exported graph computes exactly `GlassModel.forward` in eval mode: normalised images
(B,3,H,W) -> patch scores (B,h,w) in [0, 1]; height and width are dynamic (any multiple of the
backbone's largest stride, as the engine pads frames), so whole frames of any shape are scored.
Between the backbone maps and the discriminator's first nonlinearity everything is linear (3x3
neighbourhood gather, adaptive channel pooling, bilinear resize, stacked-layer pooling, projection,
first discriminator layer, eval batch norm), so the head can be written in one of two exact forms:

- "pool": the model's own sequence; a layer's 3x3 neighbourhood gather + adaptive pooling is one
  grouped convolution (groups = gcd(channels, dim): no pooling window crosses a group), the
  stacked-layer pooling a reshape+mean where the length divides (ONNX has no adaptive pooling;
  a dense averaging matrix would cost dim*L multiply-adds per position, the grouped form 1/groups);
- "fold": per backbone layer ONE 3x3 convolution straight to the discriminator's hidden width
  (weights = folded head @ stacked-pool block @ layer-pool matrix), run at the layer's own
  resolution; resizing commutes with per-position linear maps, so the coarser layers' outputs
  are resized, summed and given the folded bias.

Which form `--form auto` exports (`choose_form`): the one with fewer multiply-adds in the head
(`form_macs`, counted from shapes alone: the layers' channels and map sizes, patch size, dims), fold
on a tie. The forms differ only up to the discriminator's first nonlinearity, and there both are
convolutions plus a little memory-bound work of the same order in either form (pool: a resize,
a concatenation and a mean of dim-wide maps; fold: a resize and a sum of hidden-wide maps, a few
million elements against hundreds of millions of multiply-adds), so the multiply-add count orders
them wherever they differ clearly, and where it does not, they take the same time. No constant is
tuned to a machine. Measured with `benchmarks/bench_onnx.py --both_forms --threads 2` on the 2-core
development CPU while other jobs ran (load average 3-12), minimum ms per image, batch 1 / batch 4
(lite0 demo: a second run, batch 1 / batch 8, 15 runs):

  model, dims (pretrain/target/hidden)      head M multiply-adds fold             pool            auto
  efficientnet_lite0 256 px 1536/1536/1024  fold 642, pool 1706  41.9 / 49.8      105.3 / 85.3    fold
  wideresnet50 288 px 1024/1024/1024        fold 9173, pool 1374 1459.6 / 1294.5  1064.8 / 892.9  pool
  efficientnet_lite0 256 px 512/512/512     fold 321, pool 300   66.0 / 53.8      61.6 / 44.0     pool (a tie)

Every export is checked against the PyTorch model (and the written graph against it in onnxruntime)
first. The sidecar `<file>.json` holds the `ModelInfo` a runtime needs and the export facts; it
records the SHA-256 of the checkpoint it was made from, which `cached_export` compares to decide
whether a class folder's glass.onnx must be exported again.
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

import model as glass_model
import utils
from inference.model_info import EngineError, ModelInfo
from methods.base import AnomalyModel
from methods.registry import load_trained_model
from paths import make_writable_folder, sidecar_path

LOGGER = logging.getLogger(__name__)

ONNX_FILE_NAME = "glass.onnx"  # a class folder's export (cached_export)
FORMS = ("auto", "fold", "pool")
# /2: height and width are dynamic; /3: pixel thresholds (calibration); /4: any method, image_grid output
EXPORT_FORMAT = "glass-onnx/4"
READABLE_FORMATS = ("glass-onnx/3", EXPORT_FORMAT)  # /3 files are GLASS exports with one output
INPUT_NAME = "images"
OUTPUT_NAME = "patch_scores"
IMAGE_OUTPUT_NAME = "image_grid"  # PatchCore only: the image-score grid (methods.base)
MIN_OPSET = 13
MAX_OPSET = 20  # the TorchScript exporter's limit (torch.onnx.export(..., dynamo=False))
# Largest |export module - GlassModel| accepted before writing a file; the two forms only
# reorder float32 sums, which moves scores by ~1e-6.
EXPORT_TOLERANCE = 1e-4
VERIFY_SEED = 0
VERIFY_BATCH = 2


class OnnxModelError(EngineError):
    """A missing, corrupt or inconsistent ONNX model or export request (one-line message with the fix)."""


# ----------------------------------------------------------------------------------------
# Exact, export-friendly pieces of the GLASS head.
# ----------------------------------------------------------------------------------------

def pool_windows(length: int, size: int) -> list[tuple[int, int]]:
    """[start, end) of each output of 1-D adaptive average pooling from `length` to `size` (PyTorch's rule)."""
    return [((i * length) // size, -(-((i + 1) * length) // size)) for i in range(size)]


def pool_matrix(length: int, size: int) -> np.ndarray:
    """Adaptive average pooling as a (size, length) float64 averaging matrix."""
    matrix = np.zeros((size, length))
    for row, (start, end) in enumerate(pool_windows(length, size)):
        matrix[row, start:end] = 1.0 / (end - start)
    return matrix


def pool_groups(length: int, size: int, patch_area: int = 1) -> int:
    """Groups of the pooling conv: gcd(channels, size). A group boundary at channel k*C/g is element
    k*L/g, which adaptive pooling maps exactly onto output k*size/g, so no window crosses it."""
    return math.gcd(length // patch_area, size)


def pooling_conv(channels: int, patchsize: int, size: int) -> nn.Conv2d:
    """Adaptive average pooling of every position's zero-padded (c, ki, kj) neighbourhood vector
    (F.unfold order) to `size` values, as ONE grouped convolution (patchsize 1: plain channel pooling).

    Hand-written because ONNX has no adaptive 1-D pooling; a dense (size, L) averaging matrix would
    cost size*L multiply-adds per position, the grouped form size*L/groups.
    """
    area = patchsize ** 2
    length = channels * area
    groups = pool_groups(length, size, area)
    per_group, outputs = length // groups, size // groups
    weight = torch.zeros(size, per_group, dtype=torch.float64)
    for row, (start, end) in enumerate(pool_windows(length, size)):
        offset = (row // outputs) * per_group
        if start < offset or end > offset + per_group:
            raise AssertionError(f"pooling window {start}:{end} crosses group {row // outputs}")
        weight[row, start - offset:end - offset] = 1.0 / (end - start)
    conv = nn.Conv2d(channels, size, patchsize, padding=(patchsize - 1) // 2, groups=groups, bias=False)
    with torch.no_grad():
        conv.weight.copy_(weight.reshape(size, channels // groups, patchsize, patchsize))
    return conv


class MeanPool(nn.Module):
    """Adaptive average pooling of the channel axis when the length divides: reshape + mean."""

    def __init__(self, length: int, size: int) -> None:
        super().__init__()
        self.size, self.window = size, length // size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,L,H,W) -> (B,size,H,W)."""
        height, width = x.shape[-2:]
        return x.reshape(-1, self.size, self.window, height, width).mean(dim=2)


def channel_pool(length: int, size: int) -> nn.Module:
    """Exact, exportable adaptive average pooling of the channel axis of (B,L,H,W) maps to `size`."""
    return MeanPool(length, size) if length % size == 0 else pooling_conv(length, 1, size)


def channel_pool_macs(length: int, size: int) -> int:
    """Multiply-adds per position of `channel_pool` (a mean has none)."""
    return 0 if length % size == 0 else size * length // pool_groups(length, size)


def _conv1x1(linear: nn.Linear) -> nn.Conv2d:
    """A Linear layer as the equal 1x1 convolution on (B,C,H,W) maps."""
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1, bias=linear.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.reshape(*linear.weight.shape, 1, 1))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv


def _batchnorm2d(norm: nn.BatchNorm1d) -> nn.BatchNorm2d:
    """An eval BatchNorm1d as the equal BatchNorm2d on (B,C,H,W) maps."""
    out = nn.BatchNorm2d(norm.num_features, eps=norm.eps, affine=norm.affine)
    out.load_state_dict(norm.state_dict())
    return out.eval()


class DiscriminatorTail(nn.Module):
    """The discriminator after its folded affine head, on (B,hidden,h,w) maps -> (B,h,w) scores."""

    def __init__(self, discriminator: glass_model.Discriminator) -> None:
        super().__init__()
        body = discriminator.body
        layers: list[nn.Module] = []
        if len(body):
            layers.append(body[0][2])
            for block in body[1:]:
                layers += [_conv1x1(block[0]), _batchnorm2d(block[1]), block[2]]
            layers.append(_conv1x1(discriminator.tail[0]))
        # Without a hidden block the folded head already ends in the tail's linear layer.
        layers.append(nn.Sigmoid())
        self.layers = nn.Sequential(*layers)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of folded-head outputs."""
        return self.layers(hidden)[:, 0]


@dataclass(frozen=True)
class HeadGeometry:
    """Shapes the head forms depend on: per-layer channels and map sizes, grid, dims."""

    channels: tuple[int, ...]
    sizes: tuple[tuple[int, int], ...]
    patchsize: int
    pretrain_dim: int
    target_dim: int
    head_width: int  # outputs of the folded affine head: dsc_hidden, or 1 without hidden layers

    @property
    def grid(self) -> tuple[int, int]:
        """The patch-score grid: the first layer's map size."""
        return self.sizes[0]


def form_macs(geometry: HeadGeometry) -> dict[str, int]:
    """Multiply-adds per image of each head form up to the first nonlinearity (the backbone and the
    rest of the discriminator are the same in both)."""
    grid = geometry.grid[0] * geometry.grid[1]
    area = geometry.patchsize ** 2
    width, dim = geometry.head_width, geometry.pretrain_dim
    pool = fold = 0
    for channels, (height, wide) in zip(geometry.channels, geometry.sizes):
        positions, length = height * wide, channels * area
        pool += positions * dim * length // pool_groups(length, dim, area)
        fold += positions * length * width
    stack_pool = channel_pool_macs(len(geometry.channels) * dim, geometry.target_dim)
    pool += grid * (stack_pool + geometry.target_dim * width)
    return {"pool": pool, "fold": fold}


class PoolHead(nn.Module):
    """Form "pool": the model's own order of operations; neighbourhood gather + adaptive pooling of
    each layer is one grouped convolution, the stacked-layer pooling a mean (or grouped 1x1 conv)."""

    def __init__(self, geometry: HeadGeometry, folded: tuple[torch.Tensor, torch.Tensor],
                 discriminator: glass_model.Discriminator) -> None:
        super().__init__()
        self.geometry = geometry
        self.layer_pools = nn.ModuleList(
            pooling_conv(channels, geometry.patchsize, geometry.pretrain_dim) for channels in geometry.channels)
        self.stack_pool = channel_pool(len(geometry.channels) * geometry.pretrain_dim, geometry.target_dim)
        weight, bias = folded
        self.affine = nn.Conv2d(geometry.target_dim, geometry.head_width, 1)
        with torch.no_grad():
            self.affine.weight.copy_(weight.reshape(*weight.shape, 1, 1))
            self.affine.bias.copy_(bias)
        self.tail = DiscriminatorTail(discriminator)

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Backbone maps -> patch scores (B,h,w); the grid is the first map's, whatever the input size."""
        pooled = []
        for feature_map, pool, size in zip(maps, self.layer_pools, self.geometry.sizes):
            layer = pool(feature_map)
            if size != self.geometry.grid:
                layer = F.interpolate(layer, size=maps[0].shape[-2:], mode="bilinear", align_corners=False)
            pooled.append(layer)
        features = self.stack_pool(torch.cat(pooled, dim=1))
        return self.tail(self.affine(features))


class FoldHead(nn.Module):
    """Form "fold": one 3x3 convolution per layer to the hidden width, resized and summed."""

    def __init__(self, geometry: HeadGeometry, folded: tuple[torch.Tensor, torch.Tensor],
                 discriminator: glass_model.Discriminator) -> None:
        super().__init__()
        self.geometry = geometry
        weights = fold_weights(geometry, folded[0])
        pad = (geometry.patchsize - 1) // 2
        self.convs = nn.ModuleList()
        for weight in weights:
            conv = nn.Conv2d(weight.shape[1], weight.shape[0], geometry.patchsize, padding=pad, bias=False)
            with torch.no_grad():
                conv.weight.copy_(weight)
            self.convs.append(conv)
        self.register_buffer("bias", folded[1].detach().reshape(1, -1, 1, 1).clone())
        self.tail = DiscriminatorTail(discriminator)

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Backbone maps -> patch scores (B,h,w); the grid is the first map's, whatever the input size."""
        total = None
        for feature_map, conv, size in zip(maps, self.convs, self.geometry.sizes):
            layer = conv(feature_map)
            if size != self.geometry.grid:
                layer = F.interpolate(layer, size=maps[0].shape[-2:], mode="bilinear", align_corners=False)
            total = layer if total is None else total + layer
        return self.tail(total + self.bias)


def fold_weights(geometry: HeadGeometry, head_weight: torch.Tensor) -> list[torch.Tensor]:
    """Per-layer conv weights (head_width, C, p, p) = folded head @ stacked-pool block @ layer pool."""
    dim = geometry.pretrain_dim
    head = head_weight.detach().double().cpu().numpy()
    stack = pool_matrix(len(geometry.channels) * dim, geometry.target_dim)
    combined = head @ stack  # (width, layers * dim), computed in float64 then rounded once
    area = geometry.patchsize ** 2
    weights = []
    for index, channels in enumerate(geometry.channels):
        block = combined[:, index * dim:(index + 1) * dim] @ pool_matrix(channels * area, dim)
        shape = (geometry.head_width, channels, geometry.patchsize, geometry.patchsize)
        weights.append(torch.from_numpy(block.reshape(shape)).float())
    return weights


# ----------------------------------------------------------------------------------------
# timm's dynamic "same" padding (Conv2dSame), fixed for export.
# ----------------------------------------------------------------------------------------

class _ConstantPad(torch.autograd.Function):
    """Zero padding of the last two axes that exports as ONE ONNX Pad with constant pads.

    torch's exporter writes F.pad's pads through reversing Slices that it cannot constant-fold,
    and onnxruntime fuses a Pad into the following Conv only when its pads are constants.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
        """F.pad with (left, right, top, bottom)."""
        return F.pad(x, pads)

    @staticmethod
    def symbolic(g: Any, x: Any, pads: tuple[int, int, int, int]) -> Any:
        """ONNX Pad (opset >= 11 layout: all begins, then all ends, over N, C, H, W)."""
        left, right, top, bottom = pads
        onnx_pads = g.op("Constant", value_t=torch.tensor([0, 0, top, left, 0, 0, bottom, right], dtype=torch.int64))
        return g.op("Pad", x, onnx_pads, mode_s="constant")


class StaticPadConv(nn.Module):
    """A TF-"same" convolution with its padding fixed for one input size: constant zero padding
    (asymmetric where needed) + a plain convolution. timm's Conv2dSame computes its padding from
    the input shape at run time, which traces to shape arithmetic and a dynamic Pad that keeps
    onnxruntime from fusing the Pad into the Conv; the result is the same numbers."""

    def __init__(self, conv: nn.Conv2d, pads: tuple[int, int, int, int]) -> None:
        super().__init__()
        left, right, top, bottom = pads
        symmetric = left == right and top == bottom
        self.pads = None if symmetric else pads
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                              (top, left) if symmetric else 0, conv.dilation, conv.groups, conv.bias is not None)
        self.conv.weight = conv.weight
        if conv.bias is not None:
            self.conv.bias = conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pads (when asymmetric) and convolves."""
        return self.conv(x if self.pads is None else _ConstantPad.apply(x, self.pads))


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF "same" padding (before, after) of one axis, as timm's pad_same computes it."""
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def with_static_padding(extractor: nn.Module, imagesize: int) -> nn.Module:
    """A copy of the extractor whose dynamic "same" convolutions have padding fixed for `imagesize`
    (the extractor itself when it has none). For a multiple of the backbone's total stride the
    padding of every "same" convolution is the same for any multiple of it (each layer's input is a
    multiple of its stride, so total padding = kernel - stride), so the copy serves every input the
    engine makes (preprocess.frame_geometry pads to that multiple)."""
    same = [name for name, module in extractor.named_modules() if type(module).__name__ == "Conv2dSame"]
    if not same:
        return extractor
    extractor = copy.deepcopy(extractor)
    modules = dict(extractor.named_modules())
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [modules[name].register_forward_pre_hook(
        lambda module, args, name=name: sizes.__setitem__(name, tuple(args[0].shape[-2:]))) for name in same]
    with torch.no_grad():
        extractor(torch.zeros(1, 3, imagesize, imagesize))
    for hook in hooks:
        hook.remove()
    for name in same:
        conv = modules[name]
        top, bottom = _same_pads(sizes[name][0], conv.kernel_size[0], conv.stride[0], conv.dilation[0])
        left, right = _same_pads(sizes[name][1], conv.kernel_size[1], conv.stride[1], conv.dilation[1])
        parent_name, _, child = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else extractor, child,
                StaticPadConv(conv, (left, right, top, bottom)))
    return extractor


# ----------------------------------------------------------------------------------------
# The module that is exported: backbone + one head form.
# ----------------------------------------------------------------------------------------

class PatchScoreNet(nn.Module):
    """Backbone (the model's truncated extractor) + head: images -> patch scores (and PatchCore's
    image-score grid)."""

    def __init__(self, extractor: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (B,3,H,W), H and W multiples of the largest stride -> patch scores (B,h,w)
        [, image-score grid (B,h,w)]."""
        return self.head(self.extractor(images))


def export_size(net: AnomalyModel) -> int:
    """The square input size exports are traced and checked at: imagesize rounded up to the largest stride."""
    multiple = max(net.strides)
    return -(-net.cfg.imagesize // multiple) * multiple


def head_geometry(net: glass_model.GlassModel) -> HeadGeometry:
    """Reads the head's shapes from the model (one dummy backbone pass at its export size)."""
    cfg = net.cfg
    if cfg.patchsize % 2 == 0:
        raise OnnxModelError(f"patchsize {cfg.patchsize}: only odd patch sizes keep the grid; "
                             "retrain with --patchsize 3")
    size = export_size(net)
    with torch.no_grad():
        maps = net.extractor(torch.zeros(1, 3, size, size))
    body = net.discriminator.body
    return HeadGeometry(
        channels=tuple(int(m.shape[1]) for m in maps),
        sizes=tuple((int(m.shape[-2]), int(m.shape[-1])) for m in maps),
        patchsize=cfg.patchsize, pretrain_dim=cfg.pretrain_embed_dimension, target_dim=cfg.target_embed_dimension,
        head_width=body[0][0].out_features if len(body) else 1,
    )


def choose_form(geometry: HeadGeometry, form: str = "auto") -> str:
    """The requested form, or for "auto" the one with fewer multiply-adds (fold on a tie; see the module
    docstring)."""
    if form not in FORMS:
        raise OnnxModelError(f"--form {form}: unknown head form; use one of {', '.join(FORMS)}")
    if form != "auto":
        return form
    macs = form_macs(geometry)
    return "fold" if macs["fold"] <= macs["pool"] else "pool"


def build_export_module(net: AnomalyModel, form: str = "auto", geometry: HeadGeometry | None = None
                        ) -> tuple[PatchScoreNet, str, HeadGeometry | None]:
    """The export-friendly equivalent of an eval model (on CPU), its form and head geometry (GLASS; other
    methods export their own head: form "<method>", no geometry)."""
    net = net.cpu().eval()
    if net.extractor is None:  # a pixel method (DRAEM, autoencoder): its head is the whole model
        return net.export_head().eval(), net.method, None
    if not isinstance(net, glass_model.GlassModel):
        extractor = with_static_padding(net.extractor, export_size(net))
        return PatchScoreNet(extractor, net.export_head()).eval(), net.method, None
    geometry = geometry or head_geometry(net)
    chosen = choose_form(geometry, form)
    folded = net.fold_affine_head()  # the exact affine head GlassModel.forward uses in eval mode
    head_class = FoldHead if chosen == "fold" else PoolHead
    head = head_class(geometry, folded, net.discriminator)
    extractor = with_static_padding(net.extractor, export_size(net))
    return PatchScoreNet(extractor, head).eval(), chosen, geometry


def verification_batch(height: int, batch: int = VERIFY_BATCH, width: int | None = None) -> torch.Tensor:
    """A fixed, seeded normalised batch used to compare an export with the PyTorch model."""
    generator = torch.Generator().manual_seed(VERIFY_SEED)
    return torch.randn(batch, 3, height, width or height, generator=generator)


def _as_grids(output: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """A module's output as a tuple of grids."""
    return output if isinstance(output, tuple) else (output,)


def expected_grids(net: AnomalyModel, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What an export of `net` must output: the patch scores, and the image-score grid when it differs."""
    patch, image = net.score_grids(images)
    return (patch,) if image is patch else (patch, image)


@torch.no_grad()
def max_difference(module: nn.Module, net: AnomalyModel, images: torch.Tensor) -> float:
    """Largest |module(images) - net(images)| over all output grids."""
    got, expected = _as_grids(module(images)), expected_grids(net, images)
    if len(got) != len(expected):
        raise RuntimeError(f"export module has {len(got)} outputs, the model {len(expected)}; this is a bug")
    return max(float((a - b).abs().max()) for a, b in zip(got, expected))


# ----------------------------------------------------------------------------------------
# Export.
# ----------------------------------------------------------------------------------------

def _check_export_request(opset: int, batch: int, form: str) -> None:
    """Validates export options before any work."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise OnnxModelError(f"--opset {opset}: unsupported; use an opset from {MIN_OPSET} to {MAX_OPSET} (default 17)")
    if batch < 1:
        raise OnnxModelError(f"--batch {batch}: must be at least 1 (or use --dynamic_batch)")
    if form not in FORMS:
        raise OnnxModelError(f"--form {form}: unknown head form; use one of {', '.join(FORMS)}")


def _check_writable(target: Path) -> None:
    """Fails early (one line) when the output file's folder cannot be created or written."""
    if target.is_dir():
        raise OnnxModelError(f"{target}: is a folder; pass a file name such as {target / ONNX_FILE_NAME}")
    try:
        make_writable_folder(target.parent)
    except OSError as err:
        raise OnnxModelError(f"{target.parent}: cannot create or write there ({err.strerror}); "
                             "choose a writable --output") from None


def _to_onnx_bytes(module: nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool, outputs: int = 1
                   ) -> bytes:
    """Traces the module to ONNX (TorchScript exporter) and returns the serialised model; height and
    width are always dynamic, the batch when asked. `outputs`: 1 (patch scores) or 2 (+ image grid)."""
    buffer = io.BytesIO()
    output_names = [OUTPUT_NAME, IMAGE_OUTPUT_NAME][:outputs]
    dynamic_axes = {INPUT_NAME: {2: "height", 3: "width"},
                    **{name: {1: "grid_height", 2: "grid_width"} for name in output_names}}
    if dynamic_batch:
        for axes in dynamic_axes.values():
            axes[0] = "batch"
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (adaptive pooling and timm's dynamic
        # "same" padding trace there); its deprecation and constant-folding notes are noise.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx.*")
        torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=output_names, dynamic_axes=dynamic_axes,
                          do_constant_folding=True)
    return buffer.getvalue()


def _simplified(model_proto: Any) -> tuple[Any, bool]:
    """Runs onnxsim when it is installed; returns (model, whether it was simplified)."""
    try:
        import onnxsim
    except ImportError:
        LOGGER.warning("--simplify: onnxsim is not installed (pip install onnxsim); writing the unsimplified model")
        return model_proto, False
    simplified, ok = onnxsim.simplify(model_proto)
    if not ok:
        LOGGER.warning("--simplify: onnxsim could not validate its result; writing the unsimplified model")
        return model_proto, False
    return simplified, True


def _run_onnx_bytes(payload: bytes, images: np.ndarray) -> list[np.ndarray]:
    """Runs a serialised model once on CPU (export check); all its outputs."""
    session = ort.InferenceSession(payload, providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT_NAME: images})


@dataclass(frozen=True)
class ExportSettings:
    """How to export: opset, fixed batch size or dynamic batch, onnxsim, head form."""

    opset: int = 17
    batch: int = 1
    dynamic_batch: bool = False
    simplify: bool = False
    form: str = "auto"

    def __post_init__(self) -> None:
        _check_export_request(self.opset, self.batch, self.form)


def export_onnx(class_dir: str | os.PathLike, output: Path | None = None, opset: int = 17, batch: int = 1,
                dynamic_batch: bool = False, simplify: bool = False, form: str = "auto") -> tuple[Path, Path]:
    """Exports a class model's scoring path to ONNX (+ JSON sidecar); returns (onnx path, json path)."""
    settings = ExportSettings(opset=opset, batch=batch, dynamic_batch=dynamic_batch, simplify=simplify, form=form)
    class_dir = Path(class_dir)
    target = Path(output) if output is not None else class_dir / ONNX_FILE_NAME
    _check_writable(target)
    checkpoint = glass_model.final_checkpoint_path(class_dir)
    # Hashed before loading: should the file change in between, the recorded hash is the older one and
    # the next cached_export exports again (never a new graph recorded under an old hash, or the reverse).
    source = {"source_checkpoint": checkpoint.name if checkpoint else None,
              "source_checkpoint_sha256": file_sha256(checkpoint) if checkpoint else None}
    net, data = load_trained_model(class_dir, "cpu")
    geometry = head_geometry(net) if isinstance(net, glass_model.GlassModel) else None
    info = ModelInfo.from_checkpoint(data, class_dir.name, net.strides)
    return export_model(net, info, target, settings, source, geometry)


def export_model(net: AnomalyModel, info: ModelInfo, target: Path, settings: ExportSettings,
                 extra: dict[str, Any] | None = None, geometry: HeadGeometry | None = None) -> tuple[Path, Path]:
    """Exports a loaded model to `target` (+ `<target>.json`), checked against the model first."""
    started = time.perf_counter()
    module, chosen, geometry = build_export_module(net, settings.form, geometry)
    payload, simplified, difference = _verified_payload(net, module, settings)
    json_path = sidecar_path(target)
    # The old description goes first: a crash before the new one is written leaves a model without a
    # description (refused, re-exported by cached_export), never a new model with an old threshold.
    json_path.unlink(missing_ok=True)
    utils.atomic_write_bytes(target, payload)
    seconds = time.perf_counter() - started
    description = {
        **info.to_dict(), **_export_facts(settings, info), "form": chosen,
        "form_macs": form_macs(geometry) if geometry is not None else None,
        "simplified": simplified, "max_abs_diff_vs_torch": difference, "export_seconds": round(seconds, 3),
        "torch_version": torch.__version__, "memory_bank_rows": memory_bank_rows(net), **(extra or {}),
    }
    utils.atomic_write_text(json_path, json.dumps(description, indent=2) + "\n")
    LOGGER.info("exported %s (%s form, max |onnx - torch| %.1e) in %.1f s", target, chosen, difference, seconds)
    return target, json_path


def memory_bank_rows(net: AnomalyModel) -> int | None:
    """Rows of the memory bank every patch is compared with (PatchCore); None for models without one."""
    bank = getattr(getattr(net, "head", None), "memory_bank", None)
    return int(bank.shape[0]) if isinstance(bank, torch.Tensor) else None


def _verified_payload(net: AnomalyModel, module: nn.Module, settings: ExportSettings
                      ) -> tuple[bytes, bool, float]:
    """(serialised ONNX model, simplified?, max |onnxruntime - model|), each step checked."""
    import onnx  # here, not at the top: it takes about a second to import and only an export needs it

    size, multiple = export_size(net), max(net.strides)
    images = verification_batch(size)
    wide = verification_batch(size, width=size + 2 * multiple)  # checks the dynamic height and width
    torch_diff = max(max_difference(module, net, images), max_difference(module, net, wide))
    if torch_diff > EXPORT_TOLERANCE:
        raise RuntimeError(f"export module differs from the model by {torch_diff:.2e}; this is a bug")
    fixed = images[:1].expand(settings.batch, -1, -1, -1).contiguous()
    with torch.no_grad():
        outputs = len(expected_grids(net, images[:1]))
    payload = _to_onnx_bytes(module, fixed, settings.opset, settings.dynamic_batch, outputs)
    model_proto = onnx.load_from_string(payload)
    onnx.checker.check_model(model_proto)
    simplified = False
    if settings.simplify:
        model_proto, simplified = _simplified(model_proto)
        payload = model_proto.SerializeToString()
    onnx_diff = 0.0
    for check in (images, wide):
        check = check if settings.dynamic_batch else check[:1].expand(settings.batch, -1, -1, -1).contiguous()
        with torch.no_grad():
            expected = [grid.numpy() for grid in expected_grids(net, check)]
        got = _run_onnx_bytes(payload, check.numpy())
        onnx_diff = max([onnx_diff] + [float(np.abs(a - b).max()) for a, b in zip(got, expected)])
    if onnx_diff > EXPORT_TOLERANCE:
        raise RuntimeError(f"ONNX export differs from the model by {onnx_diff:.2e}; this is a bug")
    return payload, simplified, onnx_diff


def _export_facts(settings: ExportSettings, info: ModelInfo) -> dict[str, Any]:
    """Format, opset, batch and tensor names/shapes for the sidecar."""
    leading: int | str = "batch" if settings.dynamic_batch else settings.batch
    return {
        "format": EXPORT_FORMAT, "opset": settings.opset,
        "batch": "dynamic" if settings.dynamic_batch else settings.batch,
        "input_name": INPUT_NAME, "output_name": OUTPUT_NAME,
        "input_shape": [leading, 3, "height", "width"],
        "output_shape": [leading, f"height/{info.stride}", f"width/{info.stride}"],
        "input_multiple": info.pad_to,
    }


# ----------------------------------------------------------------------------------------
# Freshness cache and reading the sidecar.
# ----------------------------------------------------------------------------------------

def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_fresh(onnx_path: Path, checkpoint: Path) -> bool:
    """True when an existing export was made from exactly this checkpoint's bytes by this export format.

    By content, not by file times or names: a model folder restored with `cp -p`, `rsync -a` or `tar`
    keeps old times, and a checkpoint copied over another keeps its name."""
    json_path = sidecar_path(onnx_path)
    if not (onnx_path.is_file() and json_path.is_file()):
        return False
    try:
        description = json.loads(json_path.read_text(encoding="utf-8"))
        # Exports from before "memory_bank_rows" was recorded are made again once: without it a PatchCore
        # export's runs cannot be sized to bound memory (onnx_runtime.DISTANCE_BUDGET_BYTES).
        return (isinstance(description, dict) and description.get("format") == EXPORT_FORMAT
                and "memory_bank_rows" in description
                and description.get("source_checkpoint_sha256") == file_sha256(checkpoint))
    except (OSError, ValueError):
        return False


def cached_export(class_dir: str | os.PathLike) -> Path:
    """The class directory's glass.onnx (dynamic batch), exported again unless it was made from exactly the
    current checkpoint (same SHA-256) by this export format. A folder that cannot be written raises
    OnnxModelError (OSError while writing; the engine then runs the checkpoint in PyTorch, or stops
    when ONNX was asked for)."""
    class_dir = Path(class_dir)
    checkpoint = glass_model.final_checkpoint_path(class_dir)
    if checkpoint is None:
        raise glass_model.CheckpointError(f"{class_dir}: no ckpt_best_*.pth; train this class first (--test ckpt)")
    onnx_path = class_dir / ONNX_FILE_NAME
    if not _is_fresh(onnx_path, checkpoint):
        LOGGER.info("exporting %s to ONNX (missing or older than %s)", class_dir, checkpoint.name)
        export_onnx(class_dir, onnx_path, dynamic_batch=True)
    return onnx_path


def read_model_description(onnx_path: str | os.PathLike) -> tuple[ModelInfo, dict[str, Any]]:
    """(ModelInfo, whole description) from `<file>.json`; missing or invalid -> OnnxModelError."""
    json_path = sidecar_path(onnx_path)
    fix = "export the model again with python onnx/pth2onnx.py --model_path ... --class_name ..."
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OnnxModelError(f"{json_path}: model description missing beside the ONNX file; {fix}") from None
    except (OSError, ValueError) as err:
        raise OnnxModelError(f"{json_path}: unreadable model description ({type(err).__name__}); {fix}") from None
    if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
        raise OnnxModelError(f"{json_path}: not a {EXPORT_FORMAT} model description; {fix}")
    try:
        info = ModelInfo.from_dict(data, str(json_path))
    except EngineError as err:
        raise OnnxModelError(str(err)) from None
    return info, data
