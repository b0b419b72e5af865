"""The one inference engine behind every video and image command.

It loads a trained class model (PyTorch checkpoint or its ONNX export) and scores BGR (or gray)
frames of any width and height whole, at the scale the model was trained at: the frame (or its
region of interest, `roi`) gets its shorter side scaled to the checkpoint's `resize` by the very
function training uses (`preprocess.frame_input`), is padded at the bottom/right to the
backbone's largest stride, and goes through the fully convolutional network (backbone, patch
aggregation and discriminator are all local). Per frame it returns the image score (the highest
patch score over the scored area, as evaluation computes it) and the anomaly map at the frame's
own resolution (bilinear + Gaussian sigma 4 at the training scale, as `common.anomaly_maps`
builds it, padding cut off, resized to the ROI; zero outside it).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import cv2
import numpy as np
import torch

import common
import model as glass_model
import preprocess
from errors import UserError

LOGGER = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")  # auto: ONNX Runtime on CPU (fastest there), PyTorch on CUDA
ONNX_FILE_NAME = "glass.onnx"

# Decision thresholds come from the checkpoint's calibration on held-out defect-free images
# (inference/calibration.py, docs/calibration.md). Checkpoints written before calibration existed fall back to
# the 3-sigma upper control limit of the training-image scores (mean + 3 standard deviations, the
# Shewhart rule of process control), for the image and the pixel threshold alike.
THRESHOLD_SIGMAS = 3.0


class EngineError(UserError):
    """A bad engine setting or model input; the message is one line naming the fix."""


@dataclass(frozen=True)
class ModelInfo:
    """What a runtime needs besides the weights: input size, normalisation, grid, thresholds."""

    class_name: str
    backbone: str
    imagesize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    grid: tuple[int, int]  # patch grid of one training view (imagesize x imagesize)
    sigma: float
    threshold: float  # image score at or above which a frame is a defect
    resize: int  # frames are scored with their shorter side at this size (the training scale)
    stride: int  # pixels per patch-grid cell
    pad_to: int  # inputs are padded to a multiple of this (the backbone's largest stride)
    pixel_threshold: float  # anomaly-map level at or above which a pixel belongs to a defect region
    # Regions reach down to this level around pixels above pixel_threshold (hysteresis): the typical
    # peak of a defect-free frame's map, so a defect's extent is measured, not just its core.
    pixel_low: float | None = None  # None: pixel_threshold (no hysteresis)

    @property
    def region_low(self) -> float:
        """The level regions extend down to (pixel_low, or pixel_threshold without one)."""
        return self.pixel_threshold if self.pixel_low is None else min(self.pixel_low, self.pixel_threshold)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "class_name": self.class_name, "backbone": self.backbone, "imagesize": self.imagesize,
            "mean": list(self.mean), "std": list(self.std), "grid": list(self.grid),
            "sigma": self.sigma, "threshold": self.threshold, "resize": self.resize, "stride": self.stride,
            "pad_to": self.pad_to, "pixel_threshold": self.pixel_threshold, "pixel_low": self.pixel_low,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> "ModelInfo":
        """Reads the dict written by to_dict; a missing or bad key names the source file. A description
        written before pixel thresholds existed gets the image threshold as its pixel threshold."""
        try:
            return cls(
                class_name=str(data["class_name"]), backbone=str(data["backbone"]),
                imagesize=int(data["imagesize"]),
                mean=tuple(float(v) for v in data["mean"]), std=tuple(float(v) for v in data["std"]),
                grid=tuple(int(v) for v in data["grid"]), sigma=float(data["sigma"]),
                threshold=float(data["threshold"]), resize=int(data["resize"]), stride=int(data["stride"]),
                pad_to=int(data["pad_to"]), pixel_threshold=float(data.get("pixel_threshold", data["threshold"])),
                pixel_low=None if data.get("pixel_low") is None else float(data["pixel_low"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise EngineError(f"{source}: model description is incomplete or invalid ({err!r}); "
                              "export the model again") from None

    @classmethod
    def from_checkpoint(cls, data: dict[str, Any], class_name: str, strides: Sequence[int]) -> "ModelInfo":
        """The description of a loaded checkpoint (see model.load_checkpoint) whose backbone layers
        have these strides (the first one is the patch grid's). The thresholds are the checkpoint's
        calibration (inference/calibration.py: from held-out defect-free images); a checkpoint without one
        (written before calibration existed) gets default_threshold of its training-image scores
        for both."""
        calibration = data.get("calibration")
        pixel_low = None
        if isinstance(calibration, dict) and "image_threshold" in calibration and "pixel_threshold" in calibration:
            threshold, pixel_threshold = float(calibration["image_threshold"]), float(calibration["pixel_threshold"])
            maxima = np.asarray(calibration.get("map_maxima", []), dtype=np.float64)
            if maxima.size:  # the typical peak of a defect-free map
                pixel_low = min(float(maxima.mean()), pixel_threshold)
        else:
            threshold = default_threshold(np.asarray(data.get("train_scores", []), dtype=np.float64))
            pixel_threshold = threshold
        info = cls.for_net(glass_model.NetConfig.from_dict(data["net"]), class_name, strides, threshold,
                           pixel_threshold)
        return dataclasses.replace(info, pixel_low=pixel_low)

    @classmethod
    def for_net(cls, net: glass_model.NetConfig, class_name: str, strides: Sequence[int], threshold: float,
                pixel_threshold: float) -> "ModelInfo":
        """The description of a model of this configuration whose backbone layers have these strides."""
        stride = int(strides[0])
        side = -(-net.imagesize // stride)
        return cls(
            class_name=class_name, backbone=net.backbone, imagesize=net.imagesize,
            mean=tuple(net.mean), std=tuple(net.std), grid=(side, side), sigma=common.MAP_SIGMA,
            threshold=float(threshold), resize=net.resize, stride=stride, pad_to=max(int(v) for v in strides),
            pixel_threshold=float(pixel_threshold),
        )

    def geometry(self, frame_shape: Sequence[int], roi: preprocess.Roi | None = None) -> preprocess.FrameGeometry:
        """Where a frame of this shape (and its ROI) goes at the training scale."""
        return preprocess.frame_geometry(frame_shape, self.resize, self.pad_to, roi)


def default_threshold(train_scores: np.ndarray) -> float:
    """Fallback threshold of an uncalibrated checkpoint from its training-image scores (mean + 3 std,
    capped below 1)."""
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
    roi: preprocess.Roi | None = None

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
    """Anything that turns a normalised batch (B,3,H,W) into patch-score grids (B,H/s,W/s)."""

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
        """Patch scores (B,h,w) for a normalised float32 batch (B,3,H,W)."""
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

    def __init__(self, backend: Backend, info: ModelInfo, threshold: float | None = None, batch_size: int = 8,
                 roi: preprocess.Roi | None = None) -> None:
        self.backend = backend
        self.info = info
        self.threshold = info.threshold if threshold is None else float(threshold)
        self.batch_size = batch_size
        self.roi = roi

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
                return cls(backend, backend.info, cfg.threshold, cfg.batch_size, cfg.roi)
            except (EngineError, OSError) as err:
                if cfg.backend == "onnx":
                    raise
                LOGGER.warning("ONNX backend unavailable (%s): running the checkpoint in PyTorch", err)
        net, data = glass_model.load_trained_model(class_dir, device)
        info = ModelInfo.from_checkpoint(data, class_dir.name, net.extractor.strides)
        LOGGER.info("loaded %s (%s, %d px) on %s", class_dir, info.backbone, info.imagesize, device)
        return cls(TorchBackend(net, device), info, cfg.threshold, cfg.batch_size, cfg.roi)

    def geometry(self, frame: np.ndarray) -> preprocess.FrameGeometry:
        """How this frame is scored: its ROI, its size at the training scale, the padded input."""
        try:
            return self.info.geometry(frame.shape, self.roi)
        except preprocess.PreprocessError as err:
            raise EngineError(str(err)) from None

    def preprocess(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """BGR (or gray) uint8 frames of one shape -> normalised float32 batch (B,3,H,W) at the training
        scale (preprocess.frame_input: the same resize and normalisation as training)."""
        if not len(frames):
            return np.empty((0, 3, 0, 0), np.float32)
        geometry = self.geometry(frames[0])
        batch = np.empty((len(frames), 3, *geometry.padded), np.float32)
        for i, frame in enumerate(frames):
            if frame.shape[:2] != geometry.frame:
                raise EngineError(f"frame of shape {frame.shape} in a batch of {geometry.frame} frames; "
                                  "score frames of different sizes in separate calls")
            try:
                batch[i] = preprocess.frame_input(frame, geometry, self.info.mean, self.info.std)
            except preprocess.PreprocessError as err:
                raise EngineError(str(err)) from None
        return batch

    def patch_scores(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per frame, its patch-score grid over the scored area (padding cells dropped)."""
        grids: list[np.ndarray] = []
        for group in _same_shape_runs(frames, self.batch_size):
            geometry = self.geometry(group[0])
            scored = self.backend.patch_scores(self.preprocess(group))
            rows, cols = (-(-side // self.info.stride) for side in geometry.scaled)
            grids.extend(np.ascontiguousarray(grid[:rows, :cols]) for grid in scored)
        return grids

    def image_scores(self, frames: Sequence[np.ndarray]) -> list[float]:
        """The image score of every frame (no anomaly maps: cheaper than predict)."""
        return [image_score(grid) for grid in self.patch_scores(frames)]

    def predict(self, frames: Sequence[np.ndarray]) -> list[FrameResult]:
        """Image score, anomaly map (frame resolution) and decision for every frame."""
        results = []
        for frame, grid in zip(frames, self.patch_scores(frames)):
            amap = self.frame_map(grid, self.geometry(frame))
            score = image_score(grid)
            results.append(FrameResult(score, amap, score >= self.threshold))
        return results

    def frame_map(self, grid: np.ndarray, geometry: preprocess.FrameGeometry) -> np.ndarray:
        """A frame's anomaly map at frame resolution from its patch grid: bilinear + Gaussian at the
        training scale (common.anomaly_maps), resized to the ROI; zero outside the ROI."""
        stride = self.info.stride
        scaled = common.anomaly_maps(grid[None], (grid.shape[0] * stride, grid.shape[1] * stride),
                                     self.info.sigma)[0]
        scaled = scaled[:geometry.scaled[0], :geometry.scaled[1]]
        roi_h, roi_w = geometry.roi_size
        if scaled.shape != (roi_h, roi_w):
            scaled = cv2.resize(scaled, (roi_w, roi_h), interpolation=cv2.INTER_LINEAR)
        if geometry.roi_size == geometry.frame:
            return scaled
        amap = np.zeros(geometry.frame, np.float32)
        x0, y0, x1, y1 = geometry.roi
        amap[y0:y1, x0:x1] = scaled
        return amap


def image_score(grid: np.ndarray) -> float:
    """A frame's anomaly score: its highest patch score (as in GLASS evaluation)."""
    return float(grid.max())


def _same_shape_runs(frames: Sequence[np.ndarray], batch_size: int) -> list[Sequence[np.ndarray]]:
    """Consecutive frames cut into batches of at most batch_size frames of one shape, in order."""
    runs: list[Sequence[np.ndarray]] = []
    start = 0
    for end in range(1, len(frames) + 1):
        if end == len(frames) or end - start == batch_size or frames[end].shape != frames[start].shape:
            runs.append(frames[start:end])
            start = end
    return runs
