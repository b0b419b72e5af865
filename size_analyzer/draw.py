"""Measured defects drawn on a frame: one box per defect, coloured by severity, labelled with its area."""
from __future__ import annotations

import numpy as np

import drawing
from size_analyzer.measure import SizeAnalysis, SizeAnalysisError

#: BGR colour of each severity in annotated images.
SEVERITY_COLOURS_BGR = {
    "low": (0, 200, 0),
    "medium": (0, 220, 255),
    "high": (0, 140, 255),
    "critical": (0, 0, 255),
}


def draw_defects(
    image: np.ndarray,
    result: SizeAnalysis,
    *,
    colour: drawing.Colour | None = None,
    thickness: int = 2,
    show_labels: bool = True,
    font_scale: float = 0.45,
) -> np.ndarray:
    """Copy of a BGR (or grey) uint8 image with each defect's box and '#n area unit^2' label (input untouched).

    Boxes are coloured by severity unless ``colour`` is given. When the image size differs
    from the analysed map's, boxes are scaled to the image.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or not (
        image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))
    ):
        shape = getattr(image, "shape", None)
        raise SizeAnalysisError(
            f"image must be a uint8 BGR (H, W, 3) or grey (H, W) array, got {type(image).__name__} {shape}; "
            "pass a decoded frame"
        )
    canvas = drawing.as_bgr(image)
    scale = np.array([canvas.shape[1] / result.image_shape[1], canvas.shape[0] / result.image_shape[0]] * 2)
    boxes = np.round(np.array([d.box for d in result.defects], np.float64).reshape(-1, 4) * scale)
    colours = [colour or SEVERITY_COLOURS_BGR[d.severity] for d in result.defects]
    labels = None
    if show_labels:
        labels = [f"#{i + 1} {d.area_physical:.2f} {result.physical_unit}^2" for i, d in enumerate(result.defects)]
    return drawing.draw_boxes(canvas, boxes, colours, labels, thickness=thickness, text_scale=font_scale)
