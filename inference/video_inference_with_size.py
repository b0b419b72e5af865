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

import sys
from collections.abc import Sequence

from inference import cli as shared
from inference.modes import build_command

MODE = "size"
main = build_command(MODE)


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    return shared.run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
