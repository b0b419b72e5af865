"""One image through the engine: score, decision, defect regions measured, pictures for the page.

Every number comes from `InferenceEngine.predict` (the one code path of every command). The decision is
score >= threshold (the model's calibrated image threshold, or the request's). Regions are cut from the anomaly
map as the size video mode cuts them (`size_analyzer`): at the model's calibrated pixel threshold, or at the
request's threshold when one is given (one knob for both, `cli.region_threshold`), measured with the request's
pixel size. A region's length and width are its box's longer and shorter side (a still image has no direction
of motion). With unit "px" sizes are in pixels (pixel size 1; severity then reads them as mm: size_analyzer's px
unit, which video jobs pass on to the tracking command).
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

import drawing
from inference.cli import region_threshold
from inference.engine import FrameResult
from service.http_errors import ApiError
from service.models import LoadedModel
from size_analyzer import MM_PER_UNIT, PIXEL_UNIT, Defect, DefectSizeAnalyzer, SizeAnalysis, draw_defects

UNITS = (PIXEL_UNIT, *MM_PER_UNIT, "in")
MIN_DEFECT_AREA = 10  # px; the video commands' --min_defect_area default
OVERLAY_INTENSITY = 0.5  # heatmap weight in the overlay (as the video overlays)


@dataclass(frozen=True)
class InspectParams:
    """The optional form fields of an inspection request, checked."""

    threshold: float | None = None
    pixel_size: float = 1.0
    unit: str = PIXEL_UNIT

    @classmethod
    def from_form(cls, threshold: str | None, pixel_size: str | None, unit: str | None) -> InspectParams:
        """Parses the form's text fields (empty = not given): 400 naming the field for a bad value."""
        value = parse_float("threshold", threshold)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ApiError(400, f"threshold {threshold}: scores lie in [0, 1]; pass a value in that range")
        size = parse_float("pixel_size", pixel_size)
        if size is not None and size <= 0:
            raise ApiError(400, f"pixel_size {pixel_size}: must be > 0 (one pixel's side in unit)")
        name = (unit or PIXEL_UNIT).strip().lower()
        if name not in UNITS:
            raise ApiError(400, f"unit {unit!r}: use one of {', '.join(UNITS)}")
        if name == PIXEL_UNIT and size not in (None, 1.0):
            raise ApiError(400, f"pixel_size {pixel_size} with unit px: give the unit it is in (mm, cm or inch)")
        return cls(value, 1.0 if size is None else size, name)

    def analyzer(self) -> DefectSizeAnalyzer:
        """The size analyzer measuring in this pixel size and unit."""
        return DefectSizeAnalyzer(self.pixel_size, self.unit, MIN_DEFECT_AREA)

    @property
    def shown_unit(self) -> str:
        """The unit regions are reported in (px, mm, cm or inch)."""
        return self.analyzer().physical_unit


def parse_float(field: str, text: str | None) -> float | None:
    """A finite number from a form field, None when it is missing or empty; 400 naming the field otherwise."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, f"{field} {text!r}: not a number") from None
    if not math.isfinite(value):
        raise ApiError(400, f"{field} {text!r}: must be a finite number")
    return value


def parse_int(field: str, text: str | None, minimum: int) -> int | None:
    """An integer >= minimum from a form field, None when missing or empty; 400 naming the field otherwise."""
    if text is None or not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{field} {text!r}: not an integer") from None
    if value < minimum:
        raise ApiError(400, f"{field} {value}: must be at least {minimum}")
    return value


@dataclass(frozen=True)
class Inspection:
    """One image's verdict at the request's thresholds, its regions measured."""

    result: FrameResult
    threshold: float
    pixel_threshold: float
    analysis: SizeAnalysis

    @property
    def decision(self) -> str:
        """'defect' when score >= threshold, else 'good'."""
        return "defect" if self.result.score >= self.threshold else "good"


def inspect(model: LoadedModel, image: np.ndarray, params: InspectParams) -> Inspection:
    """Scores one BGR image with the model's engine and measures its regions."""
    result = model.predict(image)
    engine = model.engine
    threshold = engine.threshold if params.threshold is None else params.threshold
    pixel_threshold = region_threshold(engine, None, params.threshold)
    analysis = params.analyzer().analyze_defects(result.anomaly_map, pixel_threshold)
    return Inspection(result, float(threshold), float(pixel_threshold), analysis)


def region(index: int, defect: Defect, params: InspectParams) -> dict[str, Any]:
    """One measured region as the API gives it (x, y, w, h in image pixels; sizes in the request's unit)."""
    x1, y1, x2, y2 = defect.box
    w, h = x2 - x1, y2 - y1
    return {"id": index, "x": int(x1), "y": int(y1), "w": int(w), "h": int(h), "area_px": int(defect.area_px),
            "area": float(defect.area_physical), "length": float(max(w, h) * params.pixel_size),
            "width": float(min(w, h) * params.pixel_size), "unit": params.shown_unit, "severity": defect.severity,
            "max_score": float(defect.max_score)}


def png_base64(image: np.ndarray) -> str:
    """An image (BGR or grey uint8) as base64 PNG text."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ApiError(400, "the image could not be encoded as PNG")
    return base64.b64encode(encoded.tobytes()).decode("ascii")


def map_levels(anomaly_map: np.ndarray) -> np.ndarray:
    """An anomaly map in [0, 1] as 8-bit levels, round(score * 255)."""
    return np.clip(np.rint(anomaly_map * 255.0), 0, 255).astype(np.uint8)


def image_response(name: str, model_id: str, image: np.ndarray, found: Inspection,
                   params: InspectParams) -> dict[str, Any]:
    """The full JSON of /api/test_image: numbers, regions and the three pictures."""
    score = float(found.result.score)
    overlay = draw_defects(drawing.overlay(image, found.result.anomaly_map, OVERLAY_INTENSITY), found.analysis)
    return {
        "file": name, "model_id": model_id, "width": int(image.shape[1]), "height": int(image.shape[0]),
        "score": score, "threshold": found.threshold, "decision": found.decision,
        "margin": score - found.threshold, "pixel_threshold": found.pixel_threshold,
        "regions": [region(i, d, params) for i, d in enumerate(found.analysis.defects, start=1)],
        "overlay_png": png_base64(overlay), "map_png": png_base64(map_levels(found.result.anomaly_map)),
        "original_png": png_base64(image),
    }


def batch_row(name: str, found: Inspection) -> dict[str, Any]:
    """One row of /api/batch_test for a scored image."""
    score = float(found.result.score)
    return {"file": name, "score": score, "decision": found.decision, "margin": score - found.threshold,
            "regions": len(found.analysis.defects), "error": None}


def failed_row(name: str, reason: str) -> dict[str, Any]:
    """One row of /api/batch_test for a file that could not be scored."""
    return {"file": name, "score": None, "decision": None, "margin": None, "regions": None, "error": reason}
