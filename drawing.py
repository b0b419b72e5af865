"""Frame drawing shared by the video renderers, the size analyzer and the tracker.

Heatmaps use one JET colouring on a FIXED scale, [0, 1] by default (scores are probabilities): a
per-frame min-max stretch would paint the highest patch of a perfectly good frame red and make
every frame look defective. Boxes and their labels are drawn with `supervision`'s annotators.
All colours are BGR.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

import cv2
import numpy as np
import supervision as sv

Colour = tuple[int, int, int]  # BGR
BLACK: Colour = (0, 0, 0)


def colorize(anomaly_map: np.ndarray, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Anomaly map -> uint8 BGR JET heatmap: vmin (and below) dark blue, vmax (and above) dark red."""
    scale = 255.0 / max(vmax - vmin, 1e-10)
    # convertScaleAbs scales, rounds and saturates to uint8 in one pass; values below vmin are
    # raised to it first (the absolute value it takes would otherwise fold them back up the scale).
    levels = cv2.convertScaleAbs(np.maximum(anomaly_map, vmin), alpha=scale, beta=-vmin * scale)
    return cv2.applyColorMap(levels, cv2.COLORMAP_JET)


def overlay(frame: np.ndarray, anomaly_map: np.ndarray, intensity: float = 0.5) -> np.ndarray:
    """The frame with its heatmap blended in (intensity = heatmap weight, 0..1)."""
    return cv2.addWeighted(frame, 1.0 - intensity, colorize(anomaly_map), intensity, 0.0)


def as_bgr(image: np.ndarray) -> np.ndarray:
    """A BGR copy of a BGR (H, W, 3) or grey (H, W) / (H, W, 1) image."""
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 or image.shape[2] == 1 else image.copy()


def draw_boxes(
    image: np.ndarray,
    boxes: Sequence[Sequence[float]] | np.ndarray,
    colours: Sequence[Colour],
    labels: Sequence[str] | None = None,
    *,
    thickness: int = 2,
    text_scale: float = 0.45,
    text_thickness: int = 1,
) -> np.ndarray:
    """Draws each box (x1, y1, x2, y2, x2/y2 exclusive) in its colour, with its label on a filled tag
    of that colour above it (kept inside the frame); in place, returns image."""
    if len(boxes) == 0:
        return image
    corners = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    # supervision outlines the pixels at x2 and y2: pass the last pixel inside the box.
    corners[:, 2:] = np.maximum(corners[:, 2:] - 1, corners[:, :2])
    detections = sv.Detections(xyxy=corners)
    palette = sv.ColorPalette([sv.Color.from_bgr_tuple(tuple(int(v) for v in c)) for c in colours])
    sv.BoxAnnotator(color=palette, thickness=thickness, color_lookup=sv.ColorLookup.INDEX).annotate(image, detections)
    if labels is not None:
        sv.LabelAnnotator(
            color=palette, color_lookup=sv.ColorLookup.INDEX, text_color=sv.Color.from_bgr_tuple(BLACK),
            text_scale=text_scale, text_thickness=text_thickness, text_padding=2, smart_position=True,
        ).annotate(image, detections, labels=list(labels))
    return image


def text_scale(image: np.ndarray) -> float:
    """A font scale readable on the image (grows with the frame, floor for tiny frames)."""
    return max(0.3, min(image.shape[:2]) / 600.0)


def put_text(image: np.ndarray, text: str, origin: tuple[int, int], colour: Colour,
             scale: float | None = None) -> None:
    """Draws text on a black box so it stays legible on any heatmap colour (in place; origin = baseline left)."""
    # Hand-written: supervision anchors text to a detection (LabelAnnotator) or centres it on a
    # point (sv.draw_text); the verdict and status lines are left-aligned at a frame corner.
    scale = text_scale(image) if scale is None else scale
    thickness = max(1, round(1.5 * scale))
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x, y = origin
    cv2.rectangle(image, (x - 2, y - height - 3), (x + width + 2, y + baseline), BLACK, cv2.FILLED)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) positions of each run of True values."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def score_timeline_png(index: np.ndarray, scores: np.ndarray, threshold: float, flagged: np.ndarray, fps: float,
                       truth: np.ndarray | None, labels: dict[str, str], top: float | None = None) -> bytes:
    """Score per frame with the threshold line, flagged frames marked and the true frames shaded, as PNG
    bytes. `labels`: "score", "truth" (legend) and "axis" (y axis); `top`: the y limit (default 1.02)."""
    # Figure + Agg canvas directly (no pyplot): no global backend switch, no GUI, thread-safe.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    if truth is not None and np.any(truth):
        for first, last in true_runs(truth):
            axes.axvspan(index[first] - 0.5, index[last] + 0.5, color="tab:red", alpha=0.15, lw=0)
        axes.plot([], [], color="tab:red", alpha=0.3, lw=8, label=labels["truth"])
    axes.plot(index, scores, color="tab:blue", lw=1.2, marker="." if len(index) <= 200 else None,
              label=labels["score"])
    axes.scatter(index[flagged], scores[flagged], color="tab:red", s=12, zorder=3, label="flagged")
    axes.axhline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    axes.set_xlim(index[0] - 0.5, index[-1] + 0.5)
    axes.set_ylim(0, 1.02 if top is None else top)
    axes.set_xlabel(f"frame ({fps:.1f} fps)")
    axes.set_ylabel(labels["axis"])
    axes.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=8, ncol=4, frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
