"""Video inference: each frame with its anomaly heatmap blended in, the score and DEFECT/OK.

    python inference/video_inference.py --model_path results/models/backbone_0/ \
        --class_name wfdd_yellow_cloth --video_path input.mp4 --output_path output.mp4

Writes the video plus `<output stem>_frames.csv` and `<output stem>_timeline.png` (see
inference/runner.py). Heatmap colours use the fixed score scale [0, 1].
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from inference import cli as shared
from inference.modes import build_command

MODE = "basic"
main = build_command(MODE)


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    return shared.run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
