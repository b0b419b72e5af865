"""Side-by-side video inference: the original frame | the frame with its heatmap and verdict.

    python inference/video_inference_sidebyside.py --model_path results/models/backbone_0/ \
        --class_name mvtec_grid --video_path input.mp4 --output_path output.mp4 --threshold 0.8

The output is twice as wide as the input. Writes the per-frame CSV and timeline PNG beside it.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from inference import cli as shared
from inference.modes import build_command

MODE = "sidebyside"
main = build_command(MODE)


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    return shared.run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
