"""Side-by-side video inference: the original frame | the frame with its heatmap and verdict.

    python inference/video_inference_sidebyside.py --model_path results/models/backbone_0/ \
        --class_name mvtec_grid --video_path input.mp4 --output_path output.mp4 --threshold 0.8

The output is twice as wide as the input. Writes the per-frame CSV and timeline PNG beside it.
"""
from __future__ import annotations

import sys
from typing import Any, Sequence

import click
import numpy as np

import drawing
from inference import cli as shared
from inference import runner
from inference.engine import FrameResult, InferenceEngine
from inference.video_inference import OVERLAY_INTENSITY

MODE = "sidebyside"


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


def make_renderer(engine: InferenceEngine) -> SideBySideRenderer:
    """The renderer of this script for a loaded engine."""
    return SideBySideRenderer(engine.threshold)


@click.command(name="video_inference_sidebyside", help="Original frame | heatmap overlay with score and verdict.")
@shared.model_options
@shared.video_options
def main(**options: Any) -> None:
    """Runs the side-by-side renderer over the video."""
    shared.run_inference(options, MODE, make_renderer)


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    return shared.run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
