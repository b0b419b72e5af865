"""The one inference engine behind every video and image command.

It loads a trained class model (PyTorch checkpoint or its ONNX export), turns BGR frames into
the network's input exactly as training did (resize, RGB, normalise), scores them in batches
and returns, per frame, the image score (maximum patch score, as the evaluation uses) and the
anomaly map at the frame's own resolution (bilinear + Gaussian sigma 4 at the model's input
size, as `common.anomaly_maps` builds it, then resized to the frame).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import cv2
import numpy as np
import torch

import common
import model as glass_model

LOGGER = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")  # auto: ONNX Runtime on CPU (fastest there), PyTorch on CUDA
ONNX_FILE_NAME = "glass.onnx"

# Default decision threshold: the 3-sigma upper control limit of the training-image scores
# (mean + 3 standard deviations), the classic Shewhart rule of industrial process control.
# Training images are the model's own normal data; a frame above that limit is out of control.
THRESHOLD_SIGMAS = 3.0


class EngineError(ValueError):
    """A bad engine setting or model input; the message is one line naming the fix."""


@dataclass(frozen=True)
class ModelInfo:
    """What a runtime needs besides the weights: input size, normalisation, grid, threshold."""

    class_name: str
    backbone: str
    imagesize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    grid: tuple[int, int]
    sigma: float
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "class_name": self.class_name, "backbone": self.backbone, "imagesize": self.imagesize,
            "mean": list(self.mean), "std": list(self.std), "grid": list(self.grid),
            "sigma": self.sigma, "threshold": self.threshold,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> "ModelInfo":
        """Reads the dict written by to_dict; a missing or bad key names the source file."""
        try:
            return cls(
                class_name=str(data["class_name"]), backbone=str(data["backbone"]),
                imagesize=int(data["imagesize"]),
                mean=tuple(float(v) for v in data["mean"]), std=tuple(float(v) for v in data["std"]),
                grid=tuple(int(v) for v in data["grid"]), sigma=float(data["sigma"]),
                threshold=float(data["threshold"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise EngineError(f"{source}: model description is incomplete or invalid ({err!r}); "
                              "export the model again") from None

    @classmethod
    def from_checkpoint(cls, data: dict[str, Any], class_name: str, grid: tuple[int, int]) -> "ModelInfo":
        """The description of a loaded checkpoint (see model.load_checkpoint)."""
        net = glass_model.NetConfig.from_dict(data["net"])
        return cls(
            class_name=class_name, backbone=net.backbone, imagesize=net.imagesize,
            mean=tuple(net.mean), std=tuple(net.std), grid=grid, sigma=common.MAP_SIGMA,
            threshold=default_threshold(np.asarray(data.get("train_scores", []), dtype=np.float64)),
        )


def default_threshold(train_scores: np.ndarray) -> float:
    """Decision threshold from the training-image scores (mean + 3 std, capped below 1)."""
    if train_scores.size == 0:
        LOGGER.warning("checkpoint holds no training-image scores: default threshold 0.5; pass --threshold")
        return 0.5
    value = float(train_scores.mean() + THRESHOLD_SIGMAS * train_scores.std())
    return min(value, 0.999)


@dataclass(frozen=True)
class EngineConfig:
    """How to load and run a model; validated once here, at the edge."""

    model_path: str
    class_name: str | None = None
    device: str = "auto"
    backend: str = "torch"
    onnx_path: str | None = None
    batch_size: int = 8
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise EngineError(f"--backend {self.backend}: unknown backend; use one of {', '.join(BACKENDS)}")
        if self.batch_size < 1:
            raise EngineError(f"--batch_size {self.batch_size}: must be at least 1")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise EngineError(f"--threshold {self.threshold}: scores lie in [0, 1]; pass a value in that range")
        resolve_device(self.device)


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
    if requested == "auto":
        from inference import onnx_backend

        if not onnx_backend.has_cuda():
            LOGGER.info("onnxruntime has no CUDA provider (pip install onnxruntime-gpu): running ONNX on CPU")
            return "cpu"
    return "cuda"


class Backend(Protocol):
    """Anything that turns a normalised batch (B,3,S,S) into patch-score grids (B,h,w)."""

    def patch_scores(self, batch: np.ndarray) -> np.ndarray:
        """Patch scores in [0, 1] for a float32 batch."""


class TorchBackend:
    """The trained PyTorch model, eager, channels-last (its fastest CPU layout)."""

    name = "torch"

    def __init__(self, net: glass_model.GlassModel, device: torch.device) -> None:
        self.net = net.to(device).eval()
        self.device = device

    @torch.inference_mode()
    def patch_scores(self, batch: np.ndarray) -> np.ndarray:
        """Patch scores (B,h,w) for a normalised float32 batch (B,3,S,S)."""
        images = torch.from_numpy(batch).to(self.device).contiguous(memory_format=torch.channels_last)
        return self.net(images).float().cpu().numpy()


@dataclass(frozen=True)
class FrameResult:
    """One frame's verdict: image score, anomaly map at frame resolution, decision."""

    score: float
    anomaly_map: np.ndarray
    is_defect: bool


class InferenceEngine:
    """Scores BGR frames with one backend; see the module docstring for what it computes."""

    def __init__(self, backend: Backend, info: ModelInfo, threshold: float | None = None, batch_size: int = 8) -> None:
        self.backend = backend
        self.info = info
        self.threshold = info.threshold if threshold is None else float(threshold)
        self.batch_size = batch_size
        mean = np.asarray(info.mean, np.float32)
        std = np.asarray(info.std, np.float32)
        # (x / 255 - mean) / std as one multiply-add per pixel.
        self._scale = (1.0 / (255.0 * std)).reshape(1, 1, 1, 3)
        self._shift = (-mean / std).reshape(1, 1, 1, 3)

    @property
    def backend_name(self) -> str:
        """'torch' or 'onnx': the backend that actually runs."""
        return getattr(self.backend, "name", type(self.backend).__name__)

    @classmethod
    def from_config(cls, cfg: EngineConfig) -> "InferenceEngine":
        """Loads the class model named by the config with the chosen backend."""
        class_dir = glass_model.resolve_class_dir(cfg.model_path, cfg.class_name)
        device = resolve_device(cfg.device)
        if cfg.backend == "onnx" or (cfg.backend == "auto" and (device.type == "cpu" or cfg.onnx_path)):
            from inference import onnx_backend  # onnxruntime is imported only when asked for

            try:
                onnx_path = Path(cfg.onnx_path) if cfg.onnx_path else onnx_backend.cached_export(class_dir)
                backend = onnx_backend.OnnxBackend(onnx_path, provider=_onnx_provider(cfg.device, device))
                return cls(backend, backend.info, cfg.threshold, cfg.batch_size)
            except (EngineError, OSError) as err:
                if cfg.backend == "onnx":
                    raise
                LOGGER.warning("ONNX backend unavailable (%s): running the checkpoint in PyTorch", err)
        net, data = glass_model.load_trained_model(class_dir, device)
        grid = _grid_of(net)
        info = ModelInfo.from_checkpoint(data, class_dir.name, grid)
        LOGGER.info("loaded %s (%s, %d px) on %s", class_dir, info.backbone, info.imagesize, device)
        return cls(TorchBackend(net, device), info, cfg.threshold, cfg.batch_size)

    def preprocess(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 frames -> normalised float32 batch (B,3,S,S) at the model's input size."""
        size = self.info.imagesize
        batch = np.empty((len(frames), size, size, 3), np.float32)
        for i, frame in enumerate(frames):
            frame = _as_bgr(frame)
            if frame.shape[:2] != (size, size):
                frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
            batch[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        batch *= self._scale
        batch += self._shift
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))

    def patch_scores(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Patch-score grids (B,h,w) of BGR frames, scored batch_size at a time."""
        grids = [
            self.backend.patch_scores(self.preprocess(frames[start:start + self.batch_size]))
            for start in range(0, len(frames), self.batch_size)
        ]
        return np.concatenate(grids) if grids else np.empty((0, *self.info.grid), np.float32)

    def image_scores(self, frames: Sequence[np.ndarray]) -> list[float]:
        """The image score of every frame (no anomaly maps: cheaper than predict)."""
        return [image_score(grid) for grid in self.patch_scores(frames)] if len(frames) else []

    def predict(self, frames: Sequence[np.ndarray]) -> list[FrameResult]:
        """Image score, anomaly map (frame resolution) and decision for every frame."""
        grids = self.patch_scores(frames)
        maps = common.anomaly_maps(grids, self.info.imagesize, self.info.sigma) if len(grids) else []
        results = []
        for frame, grid, amap in zip(frames, grids, maps):
            height, width = frame.shape[:2]
            if amap.shape != (height, width):
                amap = cv2.resize(amap, (width, height), interpolation=cv2.INTER_LINEAR)
            score = image_score(grid)
            results.append(FrameResult(score, amap, score >= self.threshold))
        return results


def image_score(grid: np.ndarray) -> float:
    """A frame's anomaly score: its highest patch score (as in GLASS evaluation)."""
    return float(grid.max())


def _as_bgr(frame: np.ndarray) -> np.ndarray:
    """Checks a frame is uint8 HxWx3 (or HxW gray, converted)."""
    if frame.dtype != np.uint8:
        raise EngineError(f"frame of dtype {frame.dtype}: expected uint8 BGR images")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise EngineError(f"frame of shape {frame.shape}: expected HxWx3 BGR images")
    return frame


def _grid_of(net: glass_model.GlassModel) -> tuple[int, int]:
    """The patch grid (h, w) the model produces for its input size."""
    stride = net.extractor.strides[0]
    side = -(-net.cfg.imagesize // stride)
    return side, side
