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
builds it, padding cut off, resized to the ROI; zero outside it). With a grid shift per frame
(`preprocess.grid_shift`; tracking that averages maps on the surface) the input begins a few pixels
into the region along the motion, so the patch grid meets the surface at another phase in every frame.
"""
from __future__ import annotations

import math
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
__all__ = ["BACKENDS", "EngineConfig", "EngineError", "FrameResult", "InferenceEngine", "ModelInfo", "frame_shifts",
           "image_score", "resolve_device", "surface_edges"]


# The band at a frame's edges whose map values carry the network's border, in strides of the backbone's largest
# layer. bench_line's brick line, averaged maps of a recording at 4 px/frame whose thresholds came from one at
# 9 px/frame (grid shifts with a mirrored pad, as first tried): the highest defect-free peak 0.533 with 1 stride
# (2 false defects, both where surface points had just passed --surface_min_frames near the entering edge), 0.495
# with 4 (none; threshold 0.501); this version (input cut): 0.493, no defect tracked. The deep layer sees far
# beyond the 12-16 px where single maps visibly rise at the edge (docs/calibration.md, "Other belt speeds").
EDGE_STRIDES = 4


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
    # Light compensation: each frame scaled so that its light level (preprocess.light_level) is this one, the
    # level of the recording the thresholds were calibrated on; None: frames as they come.
    light_level: float | None = None

    def __post_init__(self) -> None:
        check_backend_name(self.backend)
        if self.light_level is not None and not 1.0 <= self.light_level <= 255.0:
            raise EngineError(f"light level {self.light_level}: a grey level in 1..255; calibrate again")
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
                 roi: preprocess.Roi | None = None, light_level: float | None = None) -> None:
        self.backend = backend
        self.info = info
        self.threshold = info.threshold if threshold is None else float(threshold)
        self.batch_size = batch_size
        self.roi = roi
        self.light_level = light_level

    @property
    def backend_name(self) -> str:
        """'torch' or 'onnx': the backend that actually runs."""
        return getattr(self.backend, "name", type(self.backend).__name__)

    @classmethod
    def from_config(cls, cfg: EngineConfig) -> InferenceEngine:
        """Loads the class model named by the config with the chosen backend."""
        class_dir = glass_model.resolve_class_dir(cfg.model_path, cfg.class_name)
        backend, info = make_backend(cfg.backend, class_dir, cfg.device, cfg.onnx_path)
        return cls(backend, info, cfg.threshold, cfg.batch_size, cfg.roi, cfg.light_level)

    def geometry(self, frame: np.ndarray, shift: preprocess.GridShift | None = None) -> preprocess.FrameGeometry:
        """How this frame is scored: its ROI, its size at the training scale, the padded input (with the
        input beginning `shift.offset` pixels into the region along its axis: see preprocess.grid_shift)."""
        geometry = self._whole_geometry(frame.shape)
        if shift is None:
            return geometry
        try:
            return preprocess.shifted_geometry(geometry, shift, self.info.pad_to)
        except preprocess.PreprocessError as err:
            raise EngineError(str(err)) from None

    def _whole_geometry(self, frame_shape: Sequence[int]) -> preprocess.FrameGeometry:
        """How a frame of this shape is scored whole (its ROI), with no grid shift; EngineError for a bad shape."""
        try:
            return self.info.geometry(frame_shape, self.roi)
        except preprocess.PreprocessError as err:
            raise EngineError(str(err)) from None

    def cell_px(self, frame_shape: Sequence[int]) -> float:
        """The map's patch cell (its grid's stride at the training scale) in frame pixels, for frames of this
        shape (or their ROI)."""
        geometry = self._whole_geometry(frame_shape)
        return self.info.stride * geometry.roi_size[0] / geometry.scaled[0]

    def edge_band(self, frame_shape: Sequence[int]) -> tuple[preprocess.Roi, int]:
        """(the scored part of a frame of this shape, the width in frame pixels of the band at its edges where
        the network's own border shows in the maps: EDGE_STRIDES of the backbone's largest stride at the
        training scale, at most a quarter of the region's shorter side so that half of it stays averaged)."""
        geometry = self._whole_geometry(frame_shape)
        band = math.ceil(EDGE_STRIDES * self.info.pad_to * geometry.roi_size[0] / geometry.scaled[0])
        return geometry.roi, int(min(band, min(geometry.roi_size) // 4))

    def preprocess(self, frames: Sequence[np.ndarray],
                   shifts: Sequence[preprocess.GridShift] | None = None) -> np.ndarray:
        """BGR (or gray) uint8 frames of one shape -> normalised float32 batch (B,3,H,W) at the training
        scale (preprocess.frame_input: the same resize and normalisation as training; with a light level, each
        frame's light compensated first); `shifts`: per frame, where in its region the input begins (all
        shifts give one input size)."""
        if not len(frames):
            return np.empty((0, 3, 0, 0), np.float32)
        shifts = _check_shifts(frames, shifts)
        geometry = self.geometry(frames[0], shifts[0])
        batch = np.empty((len(frames), 3, *geometry.padded), np.float32)
        for i, (frame, shift) in enumerate(zip(frames, shifts)):
            if frame.shape[:2] != geometry.frame:
                raise EngineError(f"frame of shape {frame.shape} in a batch of {geometry.frame} frames; "
                                  "score frames of different sizes in separate calls")
            if self.light_level is not None:
                frame = preprocess.compensate_light(frame, self.light_level, self.roi)
            try:
                preprocess.frame_input(frame, self.geometry(frame, shift), self.info.mean, self.info.std, out=batch[i])
            except preprocess.PreprocessError as err:
                raise EngineError(str(err)) from None
        return batch

    def score_grids(self, frames: Sequence[np.ndarray],
                    shifts: Sequence[preprocess.GridShift] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per frame, its (patch-score grid, image-score grid) over the scored area (cells of padding only
        dropped; `shifts` as in `preprocess`)."""
        shifts = _check_shifts(frames, shifts)
        grids: list[tuple[np.ndarray, np.ndarray]] = []
        start = 0
        for group in _same_shape_runs(frames, self.batch_size):
            group_shifts = shifts[start:start + len(group)]
            start += len(group)
            patch, image = self.backend.score_grids(self.preprocess(group, group_shifts))
            for patch_grid, image_grid, shift in zip(patch, image, group_shifts):
                cells = self._scored_cells(self.geometry(group[0], shift))
                cropped = np.ascontiguousarray(patch_grid[cells])
                grids.append((cropped, cropped if image is patch else np.ascontiguousarray(image_grid[cells])))
        return grids

    def _scored_cells(self, geometry: preprocess.FrameGeometry) -> tuple[slice, slice]:
        """The rows and columns of the patch grid that hold some of the scored region (not only padding)."""
        height, width = _covered(geometry)
        return slice(0, -(-height // self.info.stride)), slice(0, -(-width // self.info.stride))

    def patch_scores(self, frames: Sequence[np.ndarray],
                     shifts: Sequence[preprocess.GridShift] | None = None) -> list[np.ndarray]:
        """Per frame, its patch-score grid over the scored area (padding cells dropped)."""
        return [patch for patch, _ in self.score_grids(frames, shifts)]

    def image_scores(self, frames: Sequence[np.ndarray]) -> list[float]:
        """The image score of every frame (without anomaly maps where the method allows: cheaper than predict)."""
        if self.info.image_score == "map_max":
            return [result.score for result in self.predict(frames)]
        return [image_score(*grids, rule=self.info.image_score) for grids in self.score_grids(frames)]

    def predict(self, frames: Sequence[np.ndarray],
                shifts: Sequence[preprocess.GridShift] | None = None) -> list[FrameResult]:
        """Image score, anomaly map (frame resolution) and decision for every frame (`shifts`: per frame, the
        patch grid's offset, as in `preprocess`; None: no offset)."""
        shifts = _check_shifts(frames, shifts)
        results = []
        for frame, shift, (grid, image_grid) in zip(frames, shifts, self.score_grids(frames, shifts)):
            amap = self.frame_map(grid, self.geometry(frame, shift))
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
        (height, width), (y0, x0) = _covered(geometry), geometry.start
        scaled = scaled[:height, :width]
        if (height, width) != geometry.scaled:  # a grid shift left the ends out: their nearest values
            scaled = np.pad(scaled, ((y0, geometry.scaled[0] - y0 - height), (x0, geometry.scaled[1] - x0 - width)),
                            mode="edge")
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


def _covered(geometry: preprocess.FrameGeometry) -> tuple[int, int]:
    """(h, w) of the part of the scaled region that the input holds (from geometry.start on)."""
    return (min(geometry.padded[0], geometry.scaled[0] - geometry.start[0]),
            min(geometry.padded[1], geometry.scaled[1] - geometry.start[1]))


def frame_shifts(engine: InferenceEngine, first_index: int, count: int,
                 motion: tuple[float, float]) -> list[preprocess.GridShift]:
    """The grid shifts (preprocess.grid_shift over the backbone's largest stride) of `count` frames of a video
    from frame `first_index` on, along the axis of the surface motion so far (dx, dy; x while none): what
    tracking and calibrate_surface score the frames they average with."""
    axis = 0 if abs(motion[1]) > abs(motion[0]) else 1
    return [preprocess.grid_shift(first_index + i, engine.info.pad_to, axis) for i in range(count)]


def surface_edges(engine: InferenceEngine, frame_shape: Sequence[int]) -> dict[str, object]:
    """The surface average's view and margin (GLASSDefectTracker's surface_view, surface_margin) for frames of
    this shape: what tracking and calibrate_surface average with."""
    view, margin = engine.edge_band(frame_shape)
    return {"surface_view": view, "surface_margin": margin}


def _check_shifts(frames: Sequence[np.ndarray],
                  shifts: Sequence[preprocess.GridShift] | None) -> Sequence[preprocess.GridShift | None]:
    """One shift (or None) per frame."""
    if shifts is None:
        return [None] * len(frames)
    if len(shifts) != len(frames):
        raise EngineError(f"{len(shifts)} grid shifts for {len(frames)} frames; give one per frame")
    return shifts


def _same_shape_runs(frames: Sequence[np.ndarray], batch_size: int) -> list[Sequence[np.ndarray]]:
    """Consecutive frames cut into batches of at most batch_size frames of one shape, in order."""
    runs: list[Sequence[np.ndarray]] = []
    start = 0
    for end in range(1, len(frames) + 1):
        if end == len(frames) or end - start == batch_size or frames[end].shape != frames[start].shape:
            runs.append(frames[start:end])
            start = end
    return runs
