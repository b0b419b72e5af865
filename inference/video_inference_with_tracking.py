"""Video inference with defect tracking: each defect found once, followed across frames, measured.

    python inference/video_inference_with_tracking.py --model_path results/models/backbone_0/ \
        --class_name mvtec_grid --video_path input_video.mp4 --pixel_size 0.1 --fabric_speed 5.0

Every frame's anomaly map goes through `defect_tracking.GLASSDefectTracker`; the run (its output
folder `output/<class_name>/<timestamp>/` with the video, one frame per defect and the JSON report,
`--no_organized_output`, what an interrupted run leaves) is described and done in
`inference/tracking_run.py`.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from inference import cli as shared
from inference.modes import build_command

MODE = "tracking"
main = build_command(MODE)


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    return shared.run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
