"""Clean video inference: the heatmap overlay only, no text (for presentations and labelling).

    python inference/video_inference_clean.py --model_path results/models/backbone_0/ \
        --class_name mvtec_grid --video_path input.mp4 --output_path output.mp4 --intensity 0.6

`--intensity` is the heatmap's weight in the blend: 0 = the original frame, 1 = the heatmap only.
Writes the per-frame CSV and timeline PNG beside the video.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from inference import cli as shared
from inference.modes import build_command

MODE = "clean"
main = build_command(MODE)


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    return shared.run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
