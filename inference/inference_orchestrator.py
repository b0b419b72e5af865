"""Automatic model choice: score sample frames with every trained model, track with the best fit.

    python inference/inference_orchestrator.py --video_path input_video.mp4
    python inference/inference_orchestrator.py --list_models
    python inference/inference_orchestrator.py --video_path input_video.mp4 --sample_frames 50 --device cuda:0

Every class model under `--results_path` (`**/backbone_*/<class>/ckpt_best_*.pth`) scores the
same `--sample_frames` frames, spread evenly over the video. GLASS models are trained on
defect-free images of one product, so the model whose normal appearance fits the video best
finds the frames most normal: the lowest MEDIAN sample score wins (ties: the lower mean, then the
lower maximum). The median, not the mean: a production video's frames are mostly defect-free, and
the frames that do show a defect are scored high by exactly the model that fits (it sees the
defect), which pulled the mean of the right model above a wrong one's on the demo conveyors. The
z of the median against the model's own held-out defect-free scores is printed too, but does not
rank: eight held-out images estimate a spread too poorly to divide by (a model whose held-out
scores happened to agree closely got z 5 on its own product). The
ranking is printed, then the tracking run (`tracking_run.run_tracking`, what
`video_inference_with_tracking.py` runs) goes with the winner and every tracking flag given here;
the ranking is saved beside the tracking report (`model_selection.json`). A model that cannot be
loaded (corrupt checkpoint, backbone weights not on this machine) is skipped with a warning and listed
as such.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import click
import numpy as np

import backbones
import model as glass_model
import video_io
from inference import cli as shared
from inference import runner
from inference import tracking_run as tracking
from inference.engine import EngineError, InferenceEngine
from inference.model_info import checkpoint_thresholds
from methods.registry import config_from_checkpoint, method_of_config

LOGGER = logging.getLogger(__name__)

DEFAULT_RESULTS_PATH = "results"
MODEL_GLOB = f"**/backbone_*/*/{glass_model.FINAL_PATTERN}"
LOAD_ERRORS = (glass_model.CheckpointError, backbones.BackboneError, EngineError)


class SelectionError(runner.RunError):
    """No model to choose from; the message names the flag and the fix."""


@dataclass(frozen=True)
class ModelScore:
    """How one trained model scored the sample frames (error set when it could not run)."""

    class_name: str
    class_dir: str
    mean_score: float | None = None
    max_score: float | None = None
    threshold: float | None = None
    flagged_fraction: float | None = None  # sample frames at or above the model's threshold
    median_score: float | None = None  # the ranking key: robust to the minority of frames showing a defect
    normality: float | None = None  # z of the median sample score against the model's own normal scores
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the model scored the frames."""
        return self.error is None


def find_models(results_path: str | Path) -> list[Path]:
    """Every trained class directory under the results folder, sorted by path."""
    root = Path(results_path)
    if not root.is_dir():
        raise SelectionError(f"--results_path {root}: folder not found; train a model first or point to the results "
                             f"folder (e.g. --results_path results/demo)")
    found = {path.parent for path in root.glob(MODEL_GLOB)}
    return sorted(found)


def describe(class_dir: Path) -> dict[str, Any]:
    """Class name, backbone, image size, method, thresholds (image_threshold, pixel_threshold: the checkpoint's
    calibrated ones, as the engine takes them) and checkpoint of a model directory (--list_models, the service)."""
    path = glass_model.final_checkpoint_path(class_dir)
    row: dict[str, Any] = {"class_name": class_dir.name, "class_dir": str(class_dir), "checkpoint": path.name}
    try:
        data = glass_model.load_checkpoint(path)
        net = config_from_checkpoint(data, str(path))  # any method's config
        image_threshold, pixel_threshold, _ = checkpoint_thresholds(data)
        row.update(backbone=net.backbone, imagesize=net.imagesize, method=method_of_config(net),
                   image_threshold=image_threshold, pixel_threshold=pixel_threshold)
    except (glass_model.CheckpointError, KeyError, TypeError, ValueError) as err:
        row.update(backbone="?", imagesize="?", error=str(err))
    return row


def score_model(class_dir: Path, samples: list[np.ndarray], options: dict[str, Any]) -> ModelScore:
    """Loads one model and scores the sample frames with it."""
    tick = time.perf_counter()
    cfg = shared.engine_config({**options, "model_path": str(class_dir), "class_name": None, "onnx_path": None,
                                "threshold": None})
    try:
        engine = InferenceEngine.from_config(cfg)
    except LOAD_ERRORS as err:
        LOGGER.warning("skipping %s: %s", class_dir, err)
        return ModelScore(class_dir.name, str(class_dir), error=str(err))
    scores = np.asarray(engine.image_scores(samples))
    normal = normal_scores(class_dir)
    spread = max(float(normal.std()), 1e-6) if normal.size else 1.0
    median = float(np.median(scores))
    normality = (median - float(normal.mean())) / spread if normal.size else None
    return ModelScore(class_dir.name, str(class_dir), float(scores.mean()), float(scores.max()), engine.threshold,
                      float((scores >= engine.threshold).mean()), median_score=median, normality=normality,
                      seconds=time.perf_counter() - tick)


def normal_scores(class_dir: Path) -> np.ndarray:
    """The model's image scores of defect-free images: its held-out calibration images (whole frames, as
    the engine scores), else its training images; empty when the checkpoint has neither."""
    data = glass_model.load_checkpoint(glass_model.final_checkpoint_path(class_dir))
    calibration = data.get("calibration")
    if isinstance(calibration, dict) and calibration.get("image_scores"):
        return np.asarray(calibration["image_scores"], dtype=np.float64)
    return np.asarray(data.get("train_scores", []), dtype=np.float64)


def rank(scores: Sequence[ModelScore]) -> list[ModelScore]:
    """Usable models by median sample score, lowest (best fit) first; then the ones that failed."""
    usable = sorted((s for s in scores if s.ok), key=lambda s: (s.median_score, s.mean_score, s.max_score,
                                                                 s.class_dir))
    return usable + [s for s in scores if not s.ok]


def ranking_table(ranking: Sequence[ModelScore]) -> str:
    """The ranking as a plain-text table."""
    lines = [f"{'rank':>4}  {'class':<24} {'median':>7} {'mean':>7} {'max':>7} {'z':>6} {'thresh':>7} {'flagged':>8}"
             "  model directory"]
    for position, score in enumerate(ranking, start=1):
        if score.ok:
            z = f"{score.normality:>6.1f}" if score.normality is not None else f"{'-':>6}"
            lines.append(f"{position:>4}  {score.class_name:<24} {score.median_score:>7.4f} {score.mean_score:>7.4f} "
                         f"{score.max_score:>7.4f} {z} {score.threshold:>7.4f} {score.flagged_fraction:>8.0%}  "
                         f"{score.class_dir}")
        else:
            lines.append(f"{'-':>4}  {score.class_name:<24} {'skipped: ' + score.error}")
    return "\n".join(lines)


def select_model(options: dict[str, Any]) -> tuple[list[ModelScore], list[int]]:
    """Scores evenly spaced sample frames with every model; returns the ranking and the sampled frame indices."""
    models = find_models(options["results_path"])
    if not models:
        raise SelectionError(f"--results_path {options['results_path']}: no trained model (backbone_*/<class>/"
                             f"{glass_model.FINAL_PATTERN}) found; train one first")
    samples = video_io.sample_frames(options["video_path"], options["sample_frames"])
    LOGGER.info("scoring %d sample frames with %d model(s)", len(samples), len(models))
    frames = [frame for _, frame in samples]
    ranking = rank([score_model(class_dir, frames, options) for class_dir in models])
    if not ranking[0].ok:
        raise SelectionError(f"--results_path {options['results_path']}: none of the {len(models)} model(s) could be "
                             f"loaded ({ranking[0].error})")
    return ranking, [index for index, _ in samples]


def print_models(results_path: str) -> None:
    """Prints every trained model found under the results folder."""
    models = find_models(results_path)
    if not models:
        click.echo(f"no trained model under {results_path} (looked for {MODEL_GLOB})")
        return
    click.echo(f"{'class':<24} {'backbone':<20} {'size':>5}  checkpoint")
    for row in map(describe, models):
        click.echo(f"{row['class_name']:<24} {row['backbone']:<20} {row['imagesize']!s:>5}  "
                   f"{Path(row['class_dir']) / row['checkpoint']}" + (f"  ({row['error']})" if "error" in row else ""))


@click.command(name="inference_orchestrator",
               help="Pick the best-fitting trained model for a video, then run tracking inference with it.")
@click.option("--video_path", default=None, help="Input video (required unless --list_models).")
@click.option("--results_path", default=DEFAULT_RESULTS_PATH, show_default=True,
              help="Folder searched for trained models (backbone_*/<class>/ckpt_best_*.pth).")
@click.option("--sample_frames", type=click.IntRange(min=1), default=50, show_default=True,
              help="Frames, evenly spaced over the video, scored by every model.")
@click.option("--list_models", is_flag=True, default=False, help="List the trained models found and stop.")
@shared.engine_options
@click.option("--output_path", default=None, help="Output .mp4 name (the run layout: inference/tracking_run.py).")
@click.option("--display/--no_display", default=False, show_default=True, help="Show a preview window.")
@click.option("--max_frames", type=int, default=None, help="Track at most this many frames.")
@tracking.tracking_options
def main(list_models: bool, results_path: str, sample_frames: int, **options: Any) -> None:
    """Lists models, or ranks them on sample frames and tracks the video with the best one."""
    if list_models:
        print_models(results_path)
        return
    if not options["video_path"]:
        raise click.UsageError("--video_path is required (or pass --list_models)")
    # every flag and the video are checked before any model loads
    shared.engine_config({**options, "model_path": results_path, "class_name": None, "onnx_path": None})
    tracking.check_settings(options)
    video_io.probe_video(options["video_path"])
    ranking, indices = select_model({**options, "results_path": results_path, "sample_frames": sample_frames})
    best = ranking[0]
    click.echo(f"model ranking on {len(indices)} sample frames (lowest median score fits best):")
    click.echo(ranking_table(ranking))
    click.echo(f"selected {best.class_name} ({best.class_dir})")
    content = {"video": options["video_path"], "results_path": results_path, "sample_frames": indices,
                 "criterion": "lowest median image score on the sample frames",
                 "selected": asdict(best), "ranking": [asdict(score) for score in ranking]}
    run_options = {**options, "model_path": best.class_dir, "class_name": None, "onnx_path": None}
    # the ranking is saved with the tracking report, in the same all-or-nothing step
    selection = tracking.SideReport("model_selection", "selection.json", content)
    _, layout = tracking.run_tracking(run_options, dt.datetime.now(), [selection])
    click.echo(f"selection      {layout.side_report(selection)}")


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    return shared.run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
