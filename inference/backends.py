"""The engine's backends and the factory that picks one: the trained PyTorch model, or its ONNX export
in ONNX Runtime (inference.onnx_runtime), exported on demand (inference.onnx_export).

"auto" runs ONNX Runtime on CPU, where it is the faster of the two, and PyTorch on CUDA; a given
ONNX file is always run. When ONNX is unavailable (export failed, folder not writable, bad file)
"auto" falls back to the checkpoint in PyTorch; an explicit "onnx" stops with the error instead.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from inference import onnx_export
from methods.base import AnomalyModel
from methods.registry import load_trained_model
from inference.model_info import EngineError, ModelInfo
from inference.onnx_runtime import OnnxBackend, has_cuda

LOGGER = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")  # auto: ONNX Runtime on CPU (fastest there), PyTorch on CUDA


class Backend(Protocol):
    """Anything that turns a normalised batch (B,3,H,W) into score grids (B,H/s,W/s) of a class model."""

    def score_grids(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(patch scores, image-score grid) in [0, 1] for a float32 batch (see methods.base)."""


class TorchBackend:
    """The trained PyTorch model (any method), eager, channels-last (its fastest CPU layout)."""

    name = "torch"

    def __init__(self, net: AnomalyModel, device: torch.device) -> None:
        self.net = net.to(device).eval()
        self.device = device

    def patch_scores(self, batch: np.ndarray) -> np.ndarray:
        """Patch scores (B,h,w) of a batch (see score_grids)."""
        return self.score_grids(batch)[0]

    @torch.inference_mode()
    def score_grids(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(patch scores, image-score grid), each (B,h,w), for a normalised float32 batch (B,3,H,W)."""
        images = torch.from_numpy(batch).to(self.device).contiguous(memory_format=torch.channels_last)
        patch, image = self.net.score_grids(images)
        patch_np = patch.float().cpu().numpy()
        return patch_np, patch_np if image is patch else image.float().cpu().numpy()


def check_backend_name(name: str) -> None:
    """Raises EngineError unless `name` is one of BACKENDS."""
    if name not in BACKENDS:
        raise EngineError(f"--backend {name}: unknown backend; use one of {', '.join(BACKENDS)}")


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cpu', 'cuda', 'cuda:N' as given (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EngineError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise EngineError(f"--device {name}: only cpu and cuda are supported")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EngineError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EngineError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s); use cuda:0")
    return device


def _onnx_provider(requested: str, device: torch.device) -> str:
    """ONNX Runtime provider for a device: 'auto' uses CUDA only when this onnxruntime has it."""
    if device.type != "cuda":
        return "cpu"
    if requested == "auto" and not has_cuda():
        LOGGER.info("onnxruntime has no CUDA provider (pip install onnxruntime-gpu): running ONNX on CPU")
        return "cpu"
    return "cuda"


def load_onnx_backend(class_dir: Path, onnx_path: str | None, provider: str) -> tuple[OnnxBackend, ModelInfo]:
    """The given ONNX file, or the class folder's glass.onnx (exported when missing or stale), in ONNX Runtime."""
    path = Path(onnx_path) if onnx_path else onnx_export.cached_export(class_dir)
    backend = OnnxBackend(path, provider=provider)
    return backend, backend.info


def load_torch_backend(class_dir: Path, device: torch.device) -> tuple[TorchBackend, ModelInfo]:
    """The class folder's final checkpoint in PyTorch on `device`."""
    net, data = load_trained_model(class_dir, device)
    info = ModelInfo.from_checkpoint(data, class_dir.name, net.strides)
    LOGGER.info("loaded %s (%s, %d px) on %s", class_dir, info.backbone, info.imagesize, device)
    return TorchBackend(net, device), info


def make_backend(name: str, class_dir: Path, device_name: str = "auto", onnx_path: str | None = None
                 ) -> tuple[Backend, ModelInfo]:
    """The backend `name` ("auto", "torch" or "onnx", see the module docstring) for a class folder's
    model on a device, and the model's description."""
    check_backend_name(name)
    device = resolve_device(device_name)
    if name == "onnx" or (name == "auto" and (device.type == "cpu" or onnx_path)):
        try:
            return load_onnx_backend(class_dir, onnx_path, _onnx_provider(device_name, device))
        except (EngineError, OSError) as err:
            if name == "onnx":
                raise
            LOGGER.warning("ONNX backend unavailable (%s): running the checkpoint in PyTorch", err)
    return load_torch_backend(class_dir, device)
