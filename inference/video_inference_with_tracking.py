"""Video inference with defect tracking: each defect found once, followed across frames, measured.

    python inference/video_inference_with_tracking.py --model_path results/models/backbone_0/ \
        --class_name mvtec_grid --video_path input_video.mp4 --pixel_size 0.1 --fabric_speed 5.0

Every frame's anomaly map goes through `defect_tracking.GLASSDefectTracker` (defect regions from
the size analyzer, surface motion, ByteTrack). By default a run writes a folder of its own:

    output/<class_name>/<timestamp>/
        output-video/   <video stem>_tracking.mp4 (+ _frames.csv, _timeline.png)
        defects/        defect_<id>_frame_<n>.png: one annotated frame per defect (ID, score, area)
        report/         tracking_report.json: per track first/last frame, duration, max/mean score,
                        largest area (px and unit^2), bbox; totals; run settings; measured FPS

With `--no_organized_output` the video goes to `--output_path` (default
output/<class_name>/<video stem>_tracking.mp4), the report beside it (`<stem>_report.json`) and
the defect frames only with `--save_defect_frames` (to `--defect_frames_dir`, default
`<stem>_defects/`). Everything is written only once the whole video went through.

An error, Ctrl-C or SIGTERM (`docker stop`, systemd; exit code 143) leaves no file and no run folder.
While it runs, a run's hidden entries carry its pid and are locked (video_io.PartialLock): the partial
video `.<stem>.<pid>-<hex>.partial.mp4`, the staging folder of defect frames `defects/.staging-<pid>-<hex>/`
and, in an organized run folder, `.run-<pid>-<hex>.lock`. After `kill -9` the next run on the same output
folders removes those whose lock is free and whose process is gone (and the run folders that leaves
empty) and says so in one line; a run that is still going keeps its lock and its files.
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
