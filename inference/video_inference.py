"""Video inference: each frame with its anomaly heatmap blended in, the score and DEFECT/OK.

    python inference/video_inference.py --model_path results/models/backbone_0/ \
        --class_name wfdd_yellow_cloth --video_path input.mp4 --output_path output.mp4

Writes the video plus `<output stem>_frames.csv` and `<output stem>_timeline.png` (see
inference/runner.py). Heatmap colours use the fixed score scale [0, 1].
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

MODE = "basic"
OVERLAY_INTENSITY = 0.5  # heatmap weight in the blend


class OverlayRenderer(runner.BaseRenderer):
    """Heatmap overlay with the frame score, threshold and verdict written on it."""

    def __init__(self, threshold: float, intensity: float = OVERLAY_INTENSITY) -> None:
        self.threshold = threshold
        self.intensity = intensity

    def render(self, frame: np.ndarray, result: FrameResult, index: int) -> np.ndarray:
        """Overlay + 'score S / T' + DEFECT or OK."""
        return runner.draw_verdict(drawing.overlay(frame, result.anomaly_map, self.intensity), result, self.threshold)


def make_renderer(engine: InferenceEngine) -> OverlayRenderer:
    """The renderer of this script for a loaded engine."""
    return OverlayRenderer(engine.threshold)


@click.command(name="video_inference", help="Anomaly heatmap overlay with score and DEFECT/OK on every frame.")
@shared.model_options
@shared.video_options
def main(**options: Any) -> None:
    """Runs the overlay renderer over the video."""
    shared.run_inference(options, MODE, make_renderer)


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    return shared.run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
