"""Temporal anomalies in video: a ConvLSTM autoencoder trained on defect-free footage flags frames whose
motion is not normal (the belt stopping, jerking, reversing; something crossing; a flickering light).

    # train on a defect-free recording (a video, or a frame folder from video_to_dataset.py --every 1 --jitter 0)
    python inference/video_temporal.py --model results/temporal/line --train normal.mp4 --epochs 6
    # score a video: per-frame CSV, timeline PNG, side-by-side video (original | reconstruction | error)
    python inference/video_temporal.py --model results/temporal/line --video test.mp4 --output output/temporal

Both at once trains, then scores. A --model folder that already holds a model trained with the same
settings and sources is reused (no training); other settings stop with a one-line error. The threshold is
the largest frame score over the held-out end of the training footage (temporal.py); --threshold overrides
it. For every --video, OUTPUT gets `<stem>_temporal_frames.csv` (frame, score, flagged, and the sidecar's
truth: motion, temporal_anomaly), `<stem>_temporal_timeline.png` and `<stem>_temporal.mp4`, all written
atomically; with sidecar truth the summary prints the frame AUROC and the false-alarm rate.
"""
from __future__ import annotations

import csv
import io
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np
import torch

import drawing
import temporal
import utils
import video_io
from methods.video_autoencoder import VideoAEConfig

LOGGER = logging.getLogger(__name__)

DEFAULT_OUTPUT = "output/temporal"
ERROR_SCALE = 2.0  # the heatmap's full colour: this many times the threshold (a pixel's smoothed squared error)
HEAT_SIGMA = 2.0  # Gaussian smoothing of the error map for display (model pixels): regions, not pixel noise
DEFAULTS = VideoAEConfig()
TRAIN_DEFAULTS = temporal.TrainConfig()


def _features(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    """--features as a tuple of ints (a bad value is one line naming the flag)."""
    try:
        return tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give comma-separated channel counts, e.g. 16,32") from None


def check_inputs(train: Sequence[str], videos: Sequence[str]) -> None:
    """Every --train and --video exists and (a file) decodes, before any work."""
    if not train and not videos:
        raise temporal.TemporalError("nothing to do: give --train VIDEO to train and/or --video VIDEO to score")
    for flag, paths in (("--train", train), ("--video", videos)):
        for path in map(Path, paths):
            if not path.exists():
                raise temporal.TemporalError(f"{flag} {path}: no such video or frame folder; check the path")
            if path.is_file():
                try:
                    video_io.probe_video(path)
                except video_io.VideoError as err:
                    raise temporal.TemporalError(f"{flag} {path}: {err}") from None


def trained_model(folder: Path, train: Sequence[str], cfg: VideoAEConfig, train_cfg: temporal.TrainConfig
                  ) -> temporal.TemporalModel:
    """The folder's model: trained now from --train (unless already trained alike), or loaded."""
    if train and temporal.has_model(folder):
        temporal.check_same_settings(folder, cfg, train_cfg, train)
        LOGGER.info("%s: already trained with these settings; reusing it", folder)
    elif train:
        model, seconds = temporal.train(train, cfg, train_cfg)
        temporal.save_model(model, folder)
        click.echo(f"{folder}: trained in {seconds:.0f} s, threshold {model.threshold:.6g}")
        return model
    return temporal.load_model(folder)


def frames_csv(scores: np.ndarray, flagged: np.ndarray, sidecar: dict[str, Any] | None,
               truth: Sequence[bool] | None) -> str:
    """The per-frame CSV: frame, score, flagged (+ motion, temporal_anomaly from the sidecar)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["frame", "score", "flagged"] + (["motion", "temporal_anomaly"] if truth is not None else []))
    records = (sidecar or {}).get("frames", [])
    for index, (score, flag) in enumerate(zip(scores, flagged)):
        row: list[Any] = [index, f"{score:.6g}", int(flag)]
        if truth is not None:
            row += [records[index].get("motion", "normal"), int(truth[index])]
        writer.writerow(row)
    return out.getvalue()


def timeline_png(scores: np.ndarray, threshold: float, truth: Sequence[bool] | None, fps: float) -> bytes:
    """Score per frame with the threshold line and the abnormal-motion frames shaded, as PNG bytes."""
    return drawing.score_timeline_png(np.arange(len(scores)), scores, threshold, scores > threshold, fps,
                                      None if truth is None else np.asarray(truth, bool),
                                      {"score": "reconstruction error", "truth": "abnormal motion (sidecar)",
                                       "axis": "frame score (squared error)"},
                                      top=max(float(scores.max()), threshold) * 1.05)


def side_by_side(frame: np.ndarray, reconstruction: np.ndarray, error: np.ndarray, score: float,
                 threshold: float) -> np.ndarray:
    """original (with score and verdict) | reconstruction | smoothed error heatmap, each at the frame's size."""
    height, width = frame.shape[:2]
    original = drawing.as_bgr(frame).copy()
    recon = np.clip(reconstruction.transpose(1, 2, 0) * 255, 0, 255).astype(np.uint8)
    recon = drawing.as_bgr(cv2.resize(recon, (width, height), interpolation=cv2.INTER_LINEAR))
    smooth = cv2.GaussianBlur(error, (0, 0), HEAT_SIGMA)
    heat = drawing.colorize(cv2.resize(smooth, (width, height), interpolation=cv2.INTER_LINEAR),
                            vmax=ERROR_SCALE * threshold)
    scale = drawing.text_scale(original)
    flagged = score > threshold
    drawing.put_text(original, f"{score:.3g} / {threshold:.3g}", (6, int(32 * scale) + 4), (255, 255, 255), scale)
    drawing.put_text(original, "MOTION ANOMALY" if flagged else "OK", (6, 2 * (int(32 * scale) + 4)),
                     (0, 0, 255) if flagged else (0, 200, 0), scale)
    return np.hstack([original, recon, heat])


def score_one(model: temporal.TemporalModel, video: Path, output: Path, threshold: float) -> dict[str, Any]:
    """Scores one video and writes its CSV, timeline and side-by-side video; returns the summary."""
    scored, (width, height) = temporal.score_video(model, video)
    count = len(scored.scores)
    sidecar = video_io.read_sidecar(video) if video.is_file() else None
    truth = temporal.temporal_truth(sidecar, count)
    flagged = scored.scores > threshold
    fps = video_io.probe_video(video).fps if video.is_file() else video_io.ASSUMED_FPS
    stem = output / f"{video.stem}_temporal"
    index = 0
    with video_io.AtomicVideoWriter(stem.with_suffix(".mp4"), fps, (3 * width, height)) as writer:
        for batch in temporal.iter_source(video):  # read again: full-size frames are not kept in memory
            for frame in batch[:count - index]:
                writer.write(side_by_side(frame, scored.reconstructions[index], scored.errors[index],
                                          float(scored.scores[index]), threshold))
                index += 1
    utils.atomic_write_text(Path(f"{stem}_frames.csv"), frames_csv(scored.scores, flagged, sidecar, truth))
    utils.atomic_write_bytes(Path(f"{stem}_timeline.png"), timeline_png(scored.scores, threshold, truth, fps))
    margin = model.net.cfg.clip_len
    metrics = temporal.detection_metrics(scored.scores, flagged, truth, margin) if truth is not None else {}
    return {"video": str(video), "frames": count, "flagged": int(flagged.sum()),
            "ms_per_frame": 1000 * scored.seconds / count, "output": str(stem.with_suffix(".mp4")), **metrics}


def summary_line(result: dict[str, Any]) -> str:
    """One line per scored video: flagged frames, speed and, with truth, AUROC and false-alarm rate."""
    line = (f"{result['video']}: {result['flagged']}/{result['frames']} frames flagged, "
            f"{result['ms_per_frame']:.1f} ms/frame -> {result['output']}")
    if result.get("frame_auroc") is not None:
        line += f"; frame AUROC {result['frame_auroc']:.3f}"
    if result.get("false_alarm_rate") is not None:
        line += f"; false alarms {result['false_alarm_rate']:.1%} of {result['normal_frames']} normal frames"
    if result.get("false_alarm_rate_far") is not None and result.get("abnormal_frames"):
        line += f" ({result['false_alarm_rate_far']:.1%} more than a clip away from abnormal motion)"
    if result.get("recall") is not None:
        line += f"; recall {result['recall']:.1%} of {result['abnormal_frames']} abnormal frames"
    return line


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "model_dir", required=True, help="Folder of the ConvLSTM model (written by --train).")
@click.option("--train", multiple=True, help="Defect-free video or frame folder to train on (repeatable).")
@click.option("--video", multiple=True, help="Video (or frame folder) to score (repeatable).")
@click.option("--output", default=DEFAULT_OUTPUT, show_default=True, help="Folder for the CSV, PNG and video.")
@click.option("--threshold", type=float, default=None, callback=utils.positive,
              help="Frame-score threshold [the model's: largest held-out frame score].")
@click.option("--clip_len", default=DEFAULTS.clip_len, show_default=True, help="Frames per clip (training).")
@click.option("--size", default=DEFAULTS.size, show_default=True, help="Shorter frame side the model sees, px.")
@click.option("--channels", default=DEFAULTS.channels, show_default=True, help="1 grey, 3 colour.")
@click.option("--features", default=",".join(map(str, DEFAULTS.features)), show_default=True, callback=_features,
              help="Encoder conv channels, comma-separated (each layer halves the resolution).")
@click.option("--hidden", default=DEFAULTS.hidden, show_default=True, help="ConvLSTM hidden channels.")
@click.option("--predict_frames", default=DEFAULTS.predict_frames, show_default=True,
              help="Future frames also predicted (composite model); 0: reconstruction only.")
@click.option("--top_fraction", default=DEFAULTS.top_fraction, show_default=True,
              help="Frame score: mean of this largest fraction of pixel errors (1: mean squared error).")
@click.option("--standardise/--no_standardise", default=DEFAULTS.standardise, show_default=True,
              help="The network sees each clip at zero mean, unit variance (else frames in [0, 1]).")
@click.option("--epochs", default=TRAIN_DEFAULTS.epochs, show_default=True)
@click.option("--batch_size", default=TRAIN_DEFAULTS.batch_size, show_default=True)
@click.option("--lr", default=TRAIN_DEFAULTS.lr, show_default=True)
@click.option("--heldout", default=TRAIN_DEFAULTS.heldout, show_default=True,
              help="Last fraction of each training source held out for the threshold.")
@click.option("--seed", default=TRAIN_DEFAULTS.seed, show_default=True)
@click.option("--threads", type=int, default=None, callback=utils.positive, help="CPU threads [torch's default].")
def _command(model_dir: str, train: tuple[str, ...], video: tuple[str, ...], output: str, threshold: float | None,
             epochs: int, batch_size: int, lr: float, heldout: float, seed: int, threads: int | None,
             **net: Any) -> None:
    """Train a ConvLSTM video autoencoder on defect-free footage and/or flag abnormal motion in videos."""
    cfg = VideoAEConfig(**net)
    train_cfg = temporal.TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, heldout=heldout)
    check_inputs(train, video)
    if threads:
        torch.set_num_threads(threads)
    folder = Path(model_dir)
    if not train and not temporal.has_model(folder):
        temporal.read_checkpoint(folder)  # the one-line error: no model here, train one
    model = trained_model(folder, train, cfg, train_cfg)
    for path in map(Path, video):
        result = score_one(model, path, Path(output), threshold or model.threshold)
        click.echo(summary_line(result))


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    return utils.run_command(_command, argv, "choose a writable --output or --model folder")


if __name__ == "__main__":
    sys.exit(cli())
