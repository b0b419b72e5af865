"""The one inference engine behind every video and image command.

It loads a trained class model of any method (PyTorch checkpoint or its ONNX export) and scores BGR (or gray)
frames of any width and height whole, at the scale the model was trained at: the frame (or its
region of interest, `roi`) gets its shorter side scaled to the checkpoint's `resize` by the very
function training uses (`preprocess.frame_input`), is padded at the bottom/right to the
backbone's largest stride, and goes through the fully convolutional network (backbone, patch
aggregation and discriminator are all local; PatchCore's nearest-neighbour search too; PaDiM's
position statistics are resized to the frame's grid). Per frame it returns the image score (as
evaluation computes it: the highest patch score over the scored area for GLASS, PatchCore's reweighted
score, the anomaly map's maximum for PaDiM) and the anomaly map at the frame's
own resolution (bilinear + Gaussian sigma 4 at the training scale, as `common.anomaly_maps`
builds it, padding cut off, resized to the ROI; zero outside it).
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence

import cv2
import numpy as np

import common
import model as glass_model
import preprocess
from inference.backends import BACKENDS, Backend, check_backend_name, make_backend, resolve_device
from inference.model_info import EngineError, ModelInfo

# BACKENDS, EngineError, ModelInfo and resolve_device belong to the engine's interface too (the command lines
# import them from here).
__all__ = ["BACKENDS", "EngineConfig", "EngineError", "FrameResult", "InferenceEngine", "ModelInfo", "image_score",
           "resolve_device"]


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
        check_backend_name(self.backend)
        if self.batch_size < 1:
            raise EngineError(f"--batch_size {self.batch_size}: must be at least 1")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise EngineError(f"--threshold {self.threshold}: scores lie in [0, 1]; pass a value in that range")
        resolve_device(self.device)


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
    def from_config(cls, cfg: EngineConfig) -> InferenceEngine:
        """Loads the class model named by the config with the chosen backend."""
        class_dir = glass_model.resolve_class_dir(cfg.model_path, cfg.class_name)
        backend, info = make_backend(cfg.backend, class_dir, cfg.device, cfg.onnx_path)
        return cls(backend, info, cfg.threshold, cfg.batch_size, cfg.roi)

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

    def score_grids(self, frames: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per frame, its (patch-score grid, image-score grid) over the scored area (padding cells dropped)."""
        grids: list[tuple[np.ndarray, np.ndarray]] = []
        for group in _same_shape_runs(frames, self.batch_size):
            geometry = self.geometry(group[0])
            patch, image = self.backend.score_grids(self.preprocess(group))
            rows, cols = (-(-side // self.info.stride) for side in geometry.scaled)
            for patch_grid, image_grid in zip(patch, image):
                cropped = np.ascontiguousarray(patch_grid[:rows, :cols])
                grids.append((cropped, cropped if image is patch else np.ascontiguousarray(image_grid[:rows, :cols])))
        return grids

    def patch_scores(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per frame, its patch-score grid over the scored area (padding cells dropped)."""
        return [patch for patch, _ in self.score_grids(frames)]

    def image_scores(self, frames: Sequence[np.ndarray]) -> list[float]:
        """The image score of every frame (without anomaly maps where the method allows: cheaper than predict)."""
        if self.info.image_score == "map_max":
            return [result.score for result in self.predict(frames)]
        return [image_score(*grids, rule=self.info.image_score) for grids in self.score_grids(frames)]

    def predict(self, frames: Sequence[np.ndarray]) -> list[FrameResult]:
        """Image score, anomaly map (frame resolution) and decision for every frame."""
        results = []
        for frame, (grid, image_grid) in zip(frames, self.score_grids(frames)):
            amap = self.frame_map(grid, self.geometry(frame))
            rule = self.info.image_score
            score = float(amap.max()) if rule == "map_max" else image_score(grid, image_grid, rule)
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


def image_score(grid: np.ndarray, image_grid: np.ndarray | None = None, rule: str = "peak") -> float:
    """A frame's anomaly score, as evaluation computes it: under the "peak" rule the image-score grid at the
    highest patch score (without one, or for GLASS, the highest patch score itself; PatchCore: its reweighted
    score), under "grid_max" (DRAEM) the image-score grid's maximum. The "map_max" rule (PaDiM, autoencoder)
    takes the anomaly map's maximum instead (InferenceEngine.predict)."""
    if image_grid is None or image_grid is grid:
        return float(grid.max())
    if rule == "grid_max":
        return float(image_grid.max())
    return float(image_grid.flat[int(np.argmax(grid))])


def _same_shape_runs(frames: Sequence[np.ndarray], batch_size: int) -> list[Sequence[np.ndarray]]:
    """Consecutive frames cut into batches of at most batch_size frames of one shape, in order."""
    runs: list[Sequence[np.ndarray]] = []
    start = 0
    for end in range(1, len(frames) + 1):
        if end == len(frames) or end - start == batch_size or frames[end].shape != frames[start].shape:
            runs.append(frames[start:end])
            start = end
    return runs
