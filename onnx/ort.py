"""Run an exported GLASS model with ONNX Runtime on one image or a folder of images.

    python onnx/ort.py --onnx results/models/backbone_0/mvtec_bottle/glass.onnx --image broken.png
    python onnx/ort.py --onnx glass.onnx --image test_images/ --output heatmaps/ --provider cpu

Anomaly maps are built exactly as the PyTorch path builds them (the shared inference engine:
bilinear resize of the patch scores, Gaussian sigma 4). Writes per image a PNG panel
(original | heatmap overlay, with score and decision) and a CSV of image scores and decisions:
for one image beside --output (default heatmap.png, heatmap.csv), for a folder inside --output
(default heatmaps/, scores.csv there; sub-folders mirrored).
"""
from __future__ import annotations

import csv
import io
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator, Sequence

import click
import cv2
import numpy as np
from tqdm import tqdm

import drawing
import utils
from errors import UserError
from inference import runner
from inference.engine import FrameResult, InferenceEngine
from inference.onnx_runtime import OnnxBackend
from paths import IMAGE_SUFFIXES, make_writable_folder, remove_empty_folders

LOGGER = logging.getLogger("ort")
OVERLAY_ALPHA = 0.5
CSV_FIELDS = ("image", "score", "threshold", "is_defect", "heatmap")


class InputError(UserError):
    """A missing or unreadable --image / --output (one-line message with the fix)."""


@dataclass(frozen=True)
class Job:
    """One image to score and where its heatmap goes."""

    source: Path
    name: str  # as written in the CSV (relative to the input folder)
    heatmap: Path


def plan_jobs(image: Path, output: Path | None) -> tuple[list[Job], Path]:
    """The images to score, their heatmap paths and the CSV path (validated, nothing written)."""
    if image.is_file():
        target = output or Path("heatmap.png")
        if target.suffix.lower() != ".png":
            raise InputError(f"--output {target}: for one image give a .png file name (e.g. heatmap.png)")
        return [Job(image, image.name, target)], target.with_suffix(".csv")
    if not image.is_dir():
        raise InputError(f"--image {image}: no such image or folder; pass an image file or a folder of images")
    folder = output or Path("heatmaps")
    if folder.suffix.lower() == ".png":
        raise InputError(f"--output {folder}: for a folder of images give an output folder, not a .png file")
    sources = sorted(p for p in image.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not sources:
        raise InputError(f"--image {image}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    jobs = []
    for source in sources:
        relative = source.relative_to(image)
        jobs.append(Job(source, relative.as_posix(), folder / relative.parent / f"{relative.stem}_heatmap.png"))
    return jobs, folder / "scores.csv"


def check_writable(folder: Path) -> list[Path]:
    """Creates the output folder and fails early (one line) when files cannot be written there; returns the
    folders it created (none left behind when it fails)."""
    try:
        return make_writable_folder(folder)
    except OSError as err:
        raise InputError(f"--output {folder}: cannot write there ({err.strerror}); "
                         "choose a writable --output") from None


def read_bgr(path: Path) -> np.ndarray | None:
    """BGR uint8 image, or None when OpenCV cannot read it."""
    data = np.fromfile(str(path), dtype=np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None


def overlay_panel(frame: np.ndarray, result: FrameResult, threshold: float) -> np.ndarray:
    """BGR panel: original | heatmap overlay (fixed range 0..1) with score and decision, as the video scripts draw."""
    blended = runner.draw_verdict(drawing.overlay(frame, result.anomaly_map, OVERLAY_ALPHA), result, threshold)
    return np.hstack([frame, blended])


def write_png(path: Path, image: np.ndarray) -> None:
    """PNG through a temporary file and a rename."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    utils.atomic_write_bytes(path, encoded.tobytes())


def batches(jobs: Sequence[Job], size: int) -> Iterator[list[tuple[Job, np.ndarray]]]:
    """Readable images in batches; unreadable ones are skipped with a warning."""
    batch: list[tuple[Job, np.ndarray]] = []
    for job in jobs:
        frame = read_bgr(job.source)
        if frame is None:
            LOGGER.warning("%s: not a readable image, skipped", job.source)
            continue
        batch.append((job, frame))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run(engine: InferenceEngine, jobs: Sequence[Job], csv_path: Path, progress: bool) -> list[dict[str, object]]:
    """Scores every job, writes heatmaps, then the CSV; returns the CSV rows."""
    rows: list[dict[str, object]] = []
    # The CSV indexes the heatmaps: an older one goes first, so a crash part-way leaves heatmaps without an
    # index, never an index of another run.
    csv_path.unlink(missing_ok=True)
    with tqdm(total=len(jobs), unit="img", disable=not progress) as bar:
        for batch in batches(jobs, engine.batch_size):
            results = engine.predict([frame for _, frame in batch])
            for (job, frame), result in zip(batch, results):
                write_png(job.heatmap, overlay_panel(frame, result, engine.threshold))
                rows.append({"image": job.name, "score": f"{result.score:.6f}", "threshold": f"{engine.threshold:.6f}",
                             "is_defect": int(result.is_defect),
                             "heatmap": os.path.relpath(job.heatmap, csv_path.parent)})
            bar.update(len(batch))
    if not rows:
        raise InputError(f"{jobs[0].source}: no readable image among the inputs; pass PNG/JPEG images")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    utils.atomic_write_text(csv_path, out.getvalue())
    return rows


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--onnx", "onnx_path", required=True, type=click.Path(path_type=Path),
              help="Exported model (python onnx/pth2onnx.py); its .json must lie beside it.")
@click.option("--image", required=True, type=click.Path(path_type=Path), help="An image or a folder of images.")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Heatmap PNG for one image (default heatmap.png) or a folder for many (default heatmaps/).")
@click.option("--provider", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Decision threshold on the image score (default: the model's, calibrated on held-out images).")
@click.option("--batch_size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: physical cores).")
def main(onnx_path: Path, image: Path, output: Path | None, provider: str, threshold: float | None,
         batch_size: int, threads: int | None) -> None:
    """Score images with an ONNX GLASS model; write heatmaps and a CSV of scores."""
    jobs, csv_path = plan_jobs(image, output)
    # The model is loaded (a missing or corrupt file fails here) before anything is created.
    backend = OnnxBackend(onnx_path, provider=provider, threads=threads)
    engine = InferenceEngine(backend, backend.info, threshold=threshold, batch_size=batch_size)
    created = check_writable(csv_path.parent)
    try:
        rows = run(engine, jobs, csv_path, progress=len(jobs) > 1)
    except BaseException:
        remove_empty_folders(created)  # e.g. no readable image: no empty --output folder left behind
        raise
    defects = sum(int(row["is_defect"]) for row in rows)
    LOGGER.info("%d image(s) scored, %d above threshold %.4f; scores in %s", len(rows), defects, engine.threshold,
                csv_path)


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point: bad input ends with `error: <one line>` and exit code 2, never a traceback."""
    return utils.run_command(main, argv, "choose a writable --output")


if __name__ == "__main__":
    sys.exit(cli())
