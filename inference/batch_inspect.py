"""Many videos through the tracking pipeline: each video a Ray task, or one after the other without Ray.

    python inference/batch_inspect.py --videos 'line3/*.mp4' --model_path results/models/backbone_0/ \
        --class_name mvtec_grid --pixel_size 0.1 [--ray auto] [--output output/line3]

Every video goes through `tracking_run.run_tracking`, the run of `video_inference_with_tracking.py`
(engine, tracker, report; the video and its files written atomically), into `OUTPUT/<video stem>/`:
`<stem>_tracking.mp4` with its `_frames.csv` and `_timeline.png`, `<stem>_tracking_report.json` and one
frame per defect in `<stem>_tracking_defects/`. `OUTPUT/summary.csv` has one row per video, in the order of
the list: video, frames, measured FPS, tracks, defects, defects per severity, report path, and the one-line
error of a video that failed (the others finish; the command then ends with exit code 2). The summary is
rewritten atomically each time a video finishes, so an interrupted batch leaves the rows of the finished ones.

`--videos` takes a folder (its video files, `video_io.VIDEO_INPUT_SUFFIXES`), one video, or a glob
(`'videos/**/*.mp4'`, quoted so the shell leaves it alone). With `--ray` (or `$RAY_ADDRESS`) each video is a
Ray task through `scale_out` (one GPU each when the cluster has GPUs, else `--ray_cpus` CPUs, run again
from the start when its worker dies; Ctrl-C cancels the rest). The report names the files it wrote, so on
a cluster the videos, the model folder and OUTPUT must be on a filesystem every node mounts at the same path;
a worker that does not see OUTPUT fails its video with a one-line error saying so.
"""
from __future__ import annotations

import csv
import datetime as dt
import functools
import glob
import io
import json
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

import model as glass_model
import paths
import scale_out
import utils
import video_io
from errors import UserError
from inference import cli as shared
from inference import tracking_run
from size_analyzer import SEVERITY_LEVELS

LOGGER = logging.getLogger(__name__)

SUMMARY_NAME = "summary.csv"
SUMMARY_FIELDS = ("video", "frames", "fps", "tracks", "defects", *(f"defects_{level}" for level in SEVERITY_LEVELS),
                  "report", "error")
GLOB_CHARACTERS = "*?["


class BatchError(UserError):
    """No videos to inspect, or videos that failed (the others finished)."""


def find_videos(pattern: str) -> list[Path]:
    """The videos --videos names: a folder's video files, one file, or a glob's files; sorted, absolute."""
    path = Path(pattern)
    if any(char in pattern for char in GLOB_CHARACTERS):
        found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    elif path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in video_io.VIDEO_INPUT_SUFFIXES)
    elif path.is_file():
        found = [path]
    else:
        raise BatchError(f"--videos {pattern}: no such file or folder; pass a folder of videos, a video or a "
                         "quoted glob such as 'videos/*.mp4'")
    if not found:
        raise BatchError(f"--videos {pattern}: no video files there (looked for "
                         f"{' '.join(video_io.VIDEO_INPUT_SUFFIXES)}); pass a folder of videos or a glob")
    return [p.resolve() for p in found]


def output_names(videos: Sequence[Path]) -> list[str]:
    """One folder name per video: its stem, with _2, _3, ... for stems met before."""
    seen: Counter[str] = Counter()
    names = []
    for video in videos:
        seen[video.stem] += 1
        names.append(video.stem if seen[video.stem] == 1 else f"{video.stem}_{seen[video.stem]}")
    return names


def video_options(options: dict[str, Any], video: Path, folder: Path) -> dict[str, Any]:
    """The tracking run's options for one video: the batch's flags, its output in `folder`, defect frames kept."""
    return {**options, "video_path": str(video), "output_path": str(folder / f"{video.stem}_{tracking_run.MODE}"
                                                                             f"{video_io.VIDEO_SUFFIX}"),
            "display": False, "no_organized_output": True, "save_defect_frames": True, "defect_frames_dir": None}


def inspect_video(options: dict[str, Any], context: scale_out.WorkerContext) -> dict[str, Any]:
    """Tracks one video (run_tracking) and returns its summary row (without the video and error columns)."""
    summary, layout = tracking_run.run_tracking(options)
    report = json.loads(layout.report.read_text(encoding="utf-8"))
    severities = Counter(defect["severity"] for defect in report["defects"])
    return {"frames": summary.frames, "fps": round(summary.measured_fps, 2),
            "tracks": report["totals"]["num_tracks"], "defects": report["totals"]["num_defects"],
            **{f"defects_{level}": severities.get(level, 0) for level in SEVERITY_LEVELS},
            "report": str(layout.report)}


class BatchSummary:
    """summary.csv: one row per finished video (in list order, as scale_out emits), rewritten atomically."""

    def __init__(self, path: Path, videos: Sequence[Path]) -> None:
        self.path = path
        self.videos = videos
        self.rows: list[dict[str, Any]] = []
        self.failures: list[tuple[str, str]] = []

    def record(self, index: int, outcome: scale_out.Outcome) -> None:
        """Adds a video's row (or its error) and rewrites the summary."""
        video = self.videos[index]
        if outcome.error is not None:
            LOGGER.error("%s failed: %s", video, outcome.error)
            self.failures.append((video.name, outcome.error))
        self.rows.append({"video": str(video), **(outcome.value or {}), "error": outcome.error or ""})
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        utils.atomic_write_text(self.path, out.getvalue())

    def raise_failures(self) -> None:
        """BatchError naming the failed videos (the first one's error), when there are any."""
        if self.failures:
            raise BatchError(f"{scale_out.failure_summary(self.failures, len(self.videos), 'videos')}; see {self.path}")


def check_inputs(options: dict[str, Any]) -> None:
    """The model folder, class and flags, checked once before any video starts."""
    probe = {**options, "video_path": "", "output_path": None, "display": False}
    tracking_run.check_settings(probe)
    engine_cfg = shared.engine_config(probe)
    glass_model.resolve_class_dir(engine_cfg.model_path, engine_cfg.class_name)


@click.command("batch_inspect")
@click.option("--videos", required=True, help="A folder of videos, one video, or a quoted glob ('line3/**/*.mp4').")
@shared.model_options
@tracking_run.tracking_settings_options
@click.option("--max_frames", type=click.IntRange(min=1), default=None,
              help="Process at most this many frames per video.")
@click.option("--output", default=None,
              help="Folder for every video's outputs and summary.csv (default: output/batch_<timestamp>/).")
@click.option("--ray", "ray_address", default=None,
              help="Run each video as a Ray task: auto (the cluster `ray start` made), local or HOST:PORT; default: "
                   "$RAY_ADDRESS when set, else one video after the other here.")
@click.option("--ray_cpus", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPUs per Ray task when the cluster has no GPU (with GPUs each task takes one GPU).")
@click.option("--ray_retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Times a Ray task whose worker died is run again (from the start of its video).")
def main(videos: str, output: str | None, ray_address: str | None, ray_cpus: int, ray_retries: int,
         **options: Any) -> None:
    """Tracks defects in many videos; writes each video's outputs and one summary CSV."""
    found = find_videos(videos)
    address = scale_out.ray_address(ray_address)
    ray_cfg = None if address is None else scale_out.RayConfig(address, ray_cpus, ray_retries, sync="shared")
    options["model_path"] = str(Path(options["model_path"]).resolve())  # workers may start in another folder
    if options["onnx_path"]:
        options["onnx_path"] = str(Path(options["onnx_path"]).resolve())
    check_inputs(options)
    stamp = dt.datetime.now().strftime(tracking_run.TIMESTAMP_FORMAT)
    folder = Path(output or Path(shared.DEFAULT_OUTPUT_ROOT) / f"batch_{stamp}").resolve()
    paths.make_writable_folder(folder)
    tasks = [scale_out.Task(video.name, functools.partial(inspect_video, video_options(options, video, folder / name)))
             for video, name in zip(found, output_names(found))]
    summary = BatchSummary(folder / SUMMARY_NAME, found)
    LOGGER.info("%d video(s) -> %s", len(found), folder)
    if ray_cfg is not None:
        scale_out.run_on_ray(tasks, folder, summary.record, ray_cfg, desc="videos")
    else:
        scale_out.run_here(tasks, folder, summary.record, desc="videos")
    click.echo(f"summary        {summary.path}")
    summary.raise_failures()


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input or a video that failed)."""
    return shared.run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
