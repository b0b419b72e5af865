"""What the plain video modes draw: one renderer class per mode and how flags make it.

A renderer turns one scored frame into the frame written to the output video (see
`runner.BaseRenderer`). A mode's renderer factory is called with the command's flags before the
model loads (so a flag it checks fails first) and returns `make_renderer(engine) -> renderer`.
The tracking mode's renderer lives in `inference.tracking_run` with the rest of its run.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping

import numpy as np

import drawing
from inference import cli as shared
from inference import runner
from inference.engine import FrameResult, InferenceEngine
from size_analyzer import DefectSizeAnalyzer, SizeAnalysis, csv_text, draw_defects, frame_report, summarize_batch

OVERLAY_INTENSITY = 0.5  # heatmap weight in the blend

MakeRenderer = Callable[[InferenceEngine], runner.FrameRenderer]
RendererFactory = Callable[[Mapping[str, Any]], MakeRenderer]


class OverlayRenderer(runner.BaseRenderer):
    """Heatmap overlay with the frame score, threshold and verdict written on it."""

    def __init__(self, threshold: float, intensity: float = OVERLAY_INTENSITY) -> None:
        self.threshold = threshold
        self.intensity = intensity

    def render(self, frame: np.ndarray, result: FrameResult, index: int) -> np.ndarray:
        """Overlay + 'score S / T' + DEFECT or OK."""
        return runner.draw_verdict(drawing.overlay(frame, result.anomaly_map, self.intensity), result, self.threshold)


class SideBySideRenderer(runner.BaseRenderer):
    """Original on the left, heatmap overlay with score and verdict on the right."""

    def __init__(self, threshold: float, intensity: float = OVERLAY_INTENSITY) -> None:
        self.threshold = threshold
        self.intensity = intensity

    def render(self, frame: np.ndarray, result: FrameResult, index: int) -> np.ndarray:
        """hstack(original, overlay + verdict)."""
        right = runner.draw_verdict(drawing.overlay(frame, result.anomaly_map, self.intensity), result, self.threshold)
        left = frame.copy()
        drawing.put_text(left, "original", (6, int(32 * drawing.text_scale(left)) + 4), (255, 255, 255))
        return np.hstack([left, right])


class CleanRenderer(runner.BaseRenderer):
    """Heatmap overlay without any text."""

    def __init__(self, intensity: float = OVERLAY_INTENSITY) -> None:
        self.intensity = intensity

    def render(self, frame: np.ndarray, result: FrameResult, index: int) -> np.ndarray:
        """The blended overlay."""
        return drawing.overlay(frame, result.anomaly_map, self.intensity)


class SizeRenderer(runner.BaseRenderer):
    """Overlay + verdict + one severity-coloured box and area label per defect; collects the sizes."""

    def __init__(self, analyzer: DefectSizeAnalyzer, threshold: float, intensity: float = OVERLAY_INTENSITY,
                 image_threshold: float | None = None) -> None:
        """threshold: the map level that cuts regions; image_threshold: the frame decision's (shown)."""
        self.analyzer = analyzer
        self.threshold = threshold
        self.image_threshold = threshold if image_threshold is None else image_threshold
        self.intensity = intensity
        self.metrics: list[SizeAnalysis] = []

    def render(self, frame: np.ndarray, result: FrameResult, index: int) -> np.ndarray:
        """Measures the frame's defects and draws them with their areas."""
        metrics = self.analyzer.analyze_defects(result.anomaly_map, self.threshold)
        self.metrics.append(metrics)
        canvas = draw_defects(drawing.overlay(frame, result.anomaly_map, self.intensity), metrics)
        runner.draw_verdict(canvas, result, self.image_threshold)
        if metrics.defects:
            scale = drawing.text_scale(canvas)
            area = f"{metrics.total_area_physical:.2f} {metrics.physical_unit}^2"
            text = f"{len(metrics.defects)} defect(s), {area}"
            # bottom-left: the top-left holds the verdict, and box labels sit above their boxes
            drawing.put_text(canvas, text, (6, canvas.shape[0] - int(12 * scale) - 2), (255, 255, 255), scale)
        return canvas

    def summary(self) -> dict[str, Any]:
        """Totals and statistics over all frames (size_analyzer.summarize_batch)."""
        return summarize_batch(self.metrics, self.analyzer.physical_unit)

    def finish(self) -> dict[str, Any]:
        """A one-line size summary for the terminal plus the full statistics."""
        stats = self.summary()
        unit = stats["physical_unit"]
        line = (f"{stats['total_defects']} in {stats['frames_with_defects']} frame(s); largest "
                f"{stats['largest_defect_area_physical']:.3f} {unit}^2, mean {stats['mean_defect_area_physical']:.3f} "
                f"{unit}^2 (pixel {self.analyzer.pixel_size} {unit})")
        return {"defects": line, "size_summary": stats}

    def artifacts(self, output_path: Path, summary: runner.RunSummary) -> dict[Path, runner.Artifact]:
        """The per-defect CSV and the JSON size report beside the video."""
        return {
            runner.side_path(output_path, "defects.csv"): self.defects_csv(),
            runner.side_path(output_path, "sizes.json"): json.dumps(self.report(), indent=2, allow_nan=False) + "\n",
        }

    def defects_csv(self) -> str:
        """One row per defect per frame (size_analyzer.CSV_COLUMNS)."""
        return csv_text(self.metrics)

    def report(self) -> dict[str, Any]:
        """Settings, totals and the frames that hold defects."""
        thresholds = self.analyzer.severity_thresholds
        return {
            "settings": {
                "pixel_size": self.analyzer.pixel_size, "physical_unit": self.analyzer.physical_unit,
                "min_defect_area_pixels": self.analyzer.min_defect_area, "threshold": self.threshold,
                "image_threshold": self.image_threshold,
                "severity_thresholds_mm2": [thresholds.low_below, thresholds.medium_below, thresholds.high_below],
            },
            "summary": self.summary(),
            "frames": [{"frame_index": i, **frame_report(m)} for i, m in enumerate(self.metrics) if m.defects],
        }


def overlay_renderer(options: Mapping[str, Any]) -> MakeRenderer:
    """basic: the overlay with score and verdict at the model's threshold."""
    return lambda engine: OverlayRenderer(engine.threshold)


def side_by_side_renderer(options: Mapping[str, Any]) -> MakeRenderer:
    """sidebyside: original | overlay with score and verdict at the model's threshold."""
    return lambda engine: SideBySideRenderer(engine.threshold)


def clean_renderer(options: Mapping[str, Any]) -> MakeRenderer:
    """clean: the overlay alone, at --intensity."""
    return lambda engine: CleanRenderer(options["intensity"])


def size_renderer(options: Mapping[str, Any]) -> MakeRenderer:
    """size: defect boxes measured with --pixel_size --physical_unit --min_defect_area, cut at the pixel threshold."""
    analyzer = shared.size_analyzer(options)

    def make_renderer(engine: InferenceEngine) -> SizeRenderer:
        """A fresh renderer cutting regions at the pixel threshold (shared.region_threshold)."""
        return SizeRenderer(analyzer, shared.region_threshold(engine, options["pixel_threshold"], options["threshold"]),
                            image_threshold=engine.threshold)

    return make_renderer
