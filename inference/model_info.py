"""What a runtime needs to know of a trained class model besides its weights, and the engine's error.

`ModelInfo` is read from a checkpoint (PyTorch backend) or from an ONNX export's JSON sidecar
(ONNX backend) and written into that sidecar; the engine, both backends and the ONNX export share
it from here, so none of them imports another to get it.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any
from collections.abc import Sequence

import numpy as np

import common
import preprocess
from errors import UserError
from methods.base import IMAGE_SCORE_RULES
from methods.registry import DEFAULT_METHOD, METHODS, config_from_checkpoint, method_of_config

LOGGER = logging.getLogger(__name__)

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
    method: str = DEFAULT_METHOD  # the detector (methods.registry): glass, patchcore, padim
    image_score: str = "peak"  # the method's image-score rule (methods.base.IMAGE_SCORE_RULES)

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
            "method": self.method, "image_score": self.image_score,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> ModelInfo:
        """Reads the dict written by to_dict; a missing or bad key names the source file. A description
        written before pixel thresholds existed gets the image threshold as its pixel threshold."""
        rule = data.get("image_score", "peak")
        if rule not in IMAGE_SCORE_RULES:
            raise EngineError(f"{source}: image_score {rule!r} is not one of {', '.join(IMAGE_SCORE_RULES)}; "
                              "export the model again")
        try:
            return cls(
                class_name=str(data["class_name"]), backbone=str(data["backbone"]),
                imagesize=int(data["imagesize"]),
                mean=tuple(float(v) for v in data["mean"]), std=tuple(float(v) for v in data["std"]),
                grid=tuple(int(v) for v in data["grid"]), sigma=float(data["sigma"]),
                threshold=float(data["threshold"]), resize=int(data["resize"]), stride=int(data["stride"]),
                pad_to=int(data["pad_to"]), pixel_threshold=float(data.get("pixel_threshold", data["threshold"])),
                pixel_low=None if data.get("pixel_low") is None else float(data["pixel_low"]),
                method=str(data.get("method", DEFAULT_METHOD)), image_score=rule,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise EngineError(f"{source}: model description is incomplete or invalid ({err!r}); "
                              "export the model again") from None

    @classmethod
    def from_checkpoint(cls, data: dict[str, Any], class_name: str, strides: Sequence[int]) -> ModelInfo:
        """The description of a loaded checkpoint (see model.load_checkpoint) whose backbone layers
        have these strides (the first one is the patch grid's). The thresholds are the checkpoint's
        calibration (inference/calibration.py: from held-out defect-free images); a checkpoint without one
        (written before calibration existed) gets default_threshold of its training-image scores
        for both."""
        threshold, pixel_threshold, pixel_low = checkpoint_thresholds(data)
        info = cls.for_net(config_from_checkpoint(data), class_name, strides, threshold, pixel_threshold)
        return dataclasses.replace(info, pixel_low=pixel_low)

    @classmethod
    def for_net(cls, net: Any, class_name: str, strides: Sequence[int], threshold: float,
                pixel_threshold: float) -> ModelInfo:
        """The description of a model of this configuration (any method's config) whose score grids and padding
        have these strides (AnomalyModel.strides)."""
        stride = int(strides[0])
        side = -(-net.imagesize // stride)
        return cls(
            class_name=class_name, backbone=net.backbone, imagesize=net.imagesize,
            mean=tuple(net.mean), std=tuple(net.std), grid=(side, side), sigma=common.MAP_SIGMA,
            threshold=float(threshold), resize=net.resize, stride=stride, pad_to=max(int(v) for v in strides),
            pixel_threshold=float(pixel_threshold), method=method_of_config(net),
            image_score=METHODS[method_of_config(net)].model.image_score_rule,
        )

    def geometry(self, frame_shape: Sequence[int], roi: preprocess.Roi | None = None) -> preprocess.FrameGeometry:
        """Where a frame of this shape (and its ROI) goes at the training scale."""
        return preprocess.frame_geometry(frame_shape, self.resize, self.pad_to, roi)


def checkpoint_thresholds(data: dict[str, Any]) -> tuple[float, float, float | None]:
    """(image threshold, pixel threshold, pixel_low) of a loaded checkpoint: its calibration (pixel_low: the
    mean defect-free map peak, capped at the pixel threshold; None without map peaks), else default_threshold
    of its training-image scores for both thresholds and no pixel_low."""
    calibration = data.get("calibration")
    if isinstance(calibration, dict) and "image_threshold" in calibration and "pixel_threshold" in calibration:
        threshold, pixel_threshold = float(calibration["image_threshold"]), float(calibration["pixel_threshold"])
        maxima = np.asarray(calibration.get("map_maxima", []), dtype=np.float64)
        pixel_low = min(float(maxima.mean()), pixel_threshold) if maxima.size else None  # typical defect-free peak
        return threshold, pixel_threshold, pixel_low
    threshold = default_threshold(np.asarray(data.get("train_scores", []), dtype=np.float64))
    return threshold, threshold, None


def default_threshold(train_scores: np.ndarray) -> float:
    """Fallback threshold of an uncalibrated checkpoint from its training-image scores (mean + 3 std,
    capped below 1)."""
    if train_scores.size == 0:
        LOGGER.warning("checkpoint holds no training-image scores: default threshold 0.5; pass --threshold")
        return 0.5
    value = float(train_scores.mean() + THRESHOLD_SIGMAS * train_scores.std())
    return min(value, 0.999)
