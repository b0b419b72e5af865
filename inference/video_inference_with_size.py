"""Video inference with defect size analysis in physical units.

    python inference/video_inference_with_size.py --model_path results/models/backbone_0/ \
        --class_name wfdd_pink_flower --video_path input.mp4 --output_path output.mp4 \
        --pixel_size 0.1 --physical_unit mm

Every frame's anomaly map (at frame resolution) is cut at the pixel threshold (the model's calibrated
one, or --pixel_threshold / --threshold) and measured by
size_analyzer.DefectSizeAnalyzer: each defect gets a box coloured by severity and its area in
unit^2. Besides the video, the per-frame CSV and the timeline PNG, it writes
`<output stem>_defects.csv` (one row per defect per frame, size_analyzer.CSV_COLUMNS) and
`<output stem>_sizes.json` (settings, totals and statistics, and every frame that has defects).
`--pixel_size` is the side of one video pixel in `--physical_unit`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import click
import numpy as np

import drawing
from inference import cli as shared
from inference import runner
from inference.engine import FrameResult, InferenceEngine
from inference.video_inference import OVERLAY_INTENSITY
from size_analyzer import DefectSizeAnalyzer, SizeAnalysis, csv_text, draw_defects, frame_report, summarize_batch

MODE = "size"


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


@click.command(name="video_inference_with_size", help="Heatmap overlay with defect boxes and areas in physical units.")
@shared.model_options
@shared.video_options
@shared.size_options
def main(pixel_size: float, physical_unit: str, min_defect_area: int, pixel_threshold: float | None,
         **options: Any) -> None:
    """Runs the size renderer over the video."""
    analyzer = DefectSizeAnalyzer(pixel_size, physical_unit, min_defect_area)  # checked before the model loads

    def make_renderer(engine: InferenceEngine) -> SizeRenderer:
        """A fresh renderer cutting regions at the pixel threshold (shared.region_threshold)."""
        return SizeRenderer(analyzer, shared.region_threshold(engine, pixel_threshold, options["threshold"]),
                            image_threshold=engine.threshold)

    shared.run_inference(options, MODE, make_renderer)


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    return shared.run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
