"""Clean video inference: the heatmap overlay only, no text (for presentations and labelling).

    python inference/video_inference_clean.py --model_path results/models/backbone_0/ \
        --class_name mvtec_grid --video_path input.mp4 --output_path output.mp4 --intensity 0.6

`--intensity` is the heatmap's weight in the blend: 0 = the original frame, 1 = the heatmap only.
Writes the per-frame CSV and timeline PNG beside the video.
"""
from __future__ import annotations

import sys
from typing import Any, Sequence

import click
import numpy as np

import drawing
from inference import cli as shared
from inference import runner
from inference.engine import FrameResult
from inference.video_inference import OVERLAY_INTENSITY

MODE = "clean"


class CleanRenderer(runner.BaseRenderer):
    """Heatmap overlay without any text."""

    def __init__(self, intensity: float = OVERLAY_INTENSITY) -> None:
        self.intensity = intensity

    def render(self, frame: np.ndarray, result: FrameResult, index: int) -> np.ndarray:
        """The blended overlay."""
        return drawing.overlay(frame, result.anomaly_map, self.intensity)


@click.command(name="video_inference_clean", help="Heatmap overlay only, no text.")
@shared.model_options
@shared.video_options
@click.option("--intensity", type=click.FloatRange(0.0, 1.0), default=OVERLAY_INTENSITY, show_default=True,
              help="Heatmap weight in the blend, 0 (original frame) to 1 (heatmap only).")
def main(intensity: float, **options: Any) -> None:
    """Runs the clean overlay renderer over the video."""
    shared.run_inference(options, MODE, lambda engine: CleanRenderer(intensity))


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    return shared.run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
