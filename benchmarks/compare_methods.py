"""GLASS, PatchCore, PaDiM, DRAEM and the convolutional autoencoder side by side: same classes, data, image
size and pipeline (the backbone methods: the same backbone); one table and one chart.

    python benchmarks/compare_methods.py --data demo_data/mvtec --classes brick gravel grass
    python benchmarks/compare_methods.py --data demo_data/mvtec --classes brick --methods patchcore padim
    bash shell/run-compare.sh                                # builds the demo data first when missing

Every method trains (GLASS, DRAEM, autoencoder) or fits (PatchCore, PaDiM) and tests every class with `main.py` in a
subprocess of its own (--in_process: main.cli in this process, for small runs), into OUTPUT/<method>/
(results.csv, models/, run.log), on the same MVTec-layout data, image size, backbone and seed. Models
already in OUTPUT are reused (main.py keeps a finished GLASS run and a model fitted with the same settings,
and only tests them), so a rerun is cheap; --fresh deletes OUTPUT/<method>/ first. Per (method, class) the
table gives:

* image_auroc, pixel_auroc, pixel_pro: from that method's results.csv (main.py's evaluation);
* train_seconds: the training (epochs) or fitting (one pass) wall time stored in the checkpoint;
* ms_per_image: measured here, in this process, for all methods side by side: the class's test images
  scored one at a time by the inference engine (torch backend, CPU, --threads 1 by default, `predict`:
  image score and anomaly map), after warm-up runs, in turn across the methods so that all see the same
  load; the median;
* model_mb: the selected checkpoint's size on disk (1 MB = 10^6 bytes; the pretrained backbone, loaded
  from its own weights file, is not in it);

plus one Mean row per method. Written to OUTPUT/comparison.csv (and .md), charted in OUTPUT/comparison.png.

With `--methods ... convlstm`, a second table compares temporal anomalies (OUTPUT/temporal.csv and .md): a
conveyor of --temporal_texture (preprocessing/create_conveyor_video.py, no defects) whose belt stops for one
second and then jerks; the ConvLSTM video autoencoder (temporal.py) is trained on a defect-free recording of
it (into OUTPUT/convlstm/, reused on a rerun with the same settings) and every image method whose models
cover that texture (a compared class of that name) scores the same frames with its engine: frame AUROC
against the sidecar's truth, false alarms on the normal frames and recall at each model's own threshold,
ms per frame.
Defaults: efficientnet_lite0 at 256 px, GLASS with shell/run-demo.sh's settings (15 epochs, dims 512), DRAEM and
the autoencoder with their CPU demo settings (narrow networks, few epochs; the papers' are in
shell/run-draem-mvtec.sh).
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import errors
import utils

REPO = Path(__file__).resolve().parent.parent
METHODS = ("glass", "patchcore", "padim", "draem", "ae")
COMMANDS = {"glass": "net", "patchcore": "patchcore", "padim": "padim", "draem": "draem", "ae": "ae"}  # main.py's
LAS_METHODS = ("glass", "draem")  # trained on synthetic anomalies: need the texture folder
TEMPORAL = "convlstm"  # the video method (temporal.py), compared on a conveyor whose belt stops and jerks
TEMPORAL_COLUMNS = ("method", "frame_auroc", "false_alarm_rate", "recall", "train_seconds", "ms_per_frame")
DATASET = "mvtec"  # --data is an MVTec-layout root
COLUMNS = ("method", "class", "image_auroc", "pixel_auroc", "pixel_pro", "train_seconds", "ms_per_image",
           "model_mb")
METRICS = ("image_auroc", "pixel_auroc", "pixel_pro")
DECIMALS = {"image_auroc": 4, "pixel_auroc": 4, "pixel_pro": 4, "train_seconds": 3, "ms_per_image": 2,
            "model_mb": 3}
TITLES = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "pixel_pro": "PRO",
          "train_seconds": "training seconds", "ms_per_image": "ms per image (engine, torch, 1 image)",
          "model_mb": "model size on disk (MB)"}
MEAN_ROW = utils.MEAN_ROW
# CPU demo settings (a few minutes per class on 2 cores at 256 px; measured in README "Comparison methods").
DRAEM_DEMO = {"epochs": 270, "width": 8, "lr": 1e-3, "crop": 128}
AE_DEMO = {"epochs": 60, "width": 8, "latent": 512}
LOGGER = logging.getLogger("compare_methods")


class CompareError(errors.UserError):
    """Bad input of the comparison (folders, classes, settings) or a method run that stopped on bad input."""


def open_fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    value = utils.positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (`error: <message>`, exit 2 through errors.run_script) instead
    of the usage text and the message."""

    def error(self, message: str) -> Any:
        raise CompareError(f"{message} (see --help)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Comparison settings (defaults: the demo's, shell/run-demo.sh for GLASS)."""
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="MVTec-layout root (one folder per class)")
    parser.add_argument("--aug", type=Path, help="texture folder for GLASS's LAS (default: DATA/../dtd/images)")
    parser.add_argument("--classes", nargs="+", help="classes (default: every class folder of --data)")
    parser.add_argument("--methods", nargs="+", choices=(*METHODS, TEMPORAL), default=list(METHODS),
                        help=f"image methods, and {TEMPORAL} for the temporal table (default: the image methods)")
    parser.add_argument("--backbone", default="efficientnet_lite0", help="one backbone for every method")
    parser.add_argument("--imagesize", type=utils.positive_int, default=256)
    parser.add_argument("--resize", type=utils.positive_int, default=256, help="shorter side before the crop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=utils.positive_int, default=8)
    parser.add_argument("--num_workers", type=utils.non_negative_int, help="data loader workers (main.py's default)")
    parser.add_argument("--output", type=Path, default=Path("results/compare"))
    parser.add_argument("--fresh", action="store_true", help="delete OUTPUT/<method>/ first (retrain everything)")
    parser.add_argument("--in_process", action="store_true",
                        help="run main.py's CLI in this process (no run.log; saves its start-up, about 6 s per "
                             "method: for small runs and tests; the default subprocess isolates memory)")
    glass = parser.add_argument_group("GLASS (main.py net; defaults: shell/run-demo.sh)")
    glass.add_argument("--glass_layers", nargs="+", help="default: blocks.2 blocks.4 for efficientnet_lite0, "
                                                         "else the backbone's stride-8 and stride-16 stages")
    glass.add_argument("--glass_epochs", type=utils.positive_int, default=15)
    glass.add_argument("--glass_eval_epochs", type=utils.positive_int, default=5,
                       help="test-set evaluation every N epochs (and after the last, whose numbers are reported)")
    glass.add_argument("--glass_dims", type=utils.positive_int, default=512,
                       help="pretrain and target embedding dimension")
    glass.add_argument("--glass_hidden", type=utils.positive_int, default=512, help="discriminator hidden width")
    glass.add_argument("--glass_lr", type=utils.positive_float, default=5e-4)
    glass.add_argument("--glass_step", type=utils.positive_int, default=20, help="gradient ascent steps")
    patchcore = parser.add_argument_group("PatchCore (main.py patchcore)")
    patchcore.add_argument("--patchcore_layers", nargs="+", help="default: blocks.2 blocks.4 for "
                                                                 "efficientnet_lite0, else the backbone's default")
    patchcore.add_argument("--coreset", type=open_fraction, default=0.1, help="memory bank fraction kept")
    padim = parser.add_argument_group("PaDiM (main.py padim)")
    padim.add_argument("--padim_layers", nargs="+", help="default: the backbone's stride-4, 8 and 16 stages")
    padim.add_argument("--features", type=utils.positive_int, default=100, help="channels kept (random subset)")
    draem = parser.add_argument_group("DRAEM (main.py draem; defaults: the CPU demo setting)")
    draem.add_argument("--draem_epochs", type=utils.positive_int, default=DRAEM_DEMO["epochs"])
    draem.add_argument("--draem_width", type=utils.positive_int, default=DRAEM_DEMO["width"],
                       help="base channels of both sub-networks (the paper: 128 and 64)")
    draem.add_argument("--draem_lr", type=utils.positive_float, default=DRAEM_DEMO["lr"])
    draem.add_argument("--draem_crop", type=utils.non_negative_int, default=DRAEM_DEMO["crop"],
                       help="train on random crops of this side (0: whole images, the paper's)")
    ae = parser.add_argument_group("Autoencoder (main.py ae; defaults: the CPU demo setting)")
    ae.add_argument("--ae_epochs", type=utils.positive_int, default=AE_DEMO["epochs"])
    ae.add_argument("--ae_width", type=utils.positive_int, default=AE_DEMO["width"], help="first block's channels")
    ae.add_argument("--ae_latent", type=utils.positive_int, default=AE_DEMO["latent"], help="latent numbers per tile")
    temporal = parser.add_argument_group("Temporal anomalies (with --methods ... convlstm)")
    temporal.add_argument("--temporal_texture", default="gravel", help="the conveyor's photo (a demo class name)")
    temporal.add_argument("--temporal_size", type=utils.positive_int, nargs=2, default=[320, 128],
                          metavar=("WIDTH", "HEIGHT"), help="frame size of the conveyor videos")
    temporal.add_argument("--temporal_speed", type=utils.positive_int, default=3, help="belt speed, px per frame")
    temporal.add_argument("--temporal_frames", type=utils.positive_int, nargs=2, default=[500, 300],
                          metavar=("TRAIN", "TEST"), help="frames of the training recording and the test video")
    temporal.add_argument("--temporal_epochs", type=utils.positive_int, default=4)
    timing = parser.add_argument_group("ms per image")
    timing.add_argument("--timing_images", type=utils.positive_int, default=20,
                        help="test images timed per class (evenly spaced over the sorted test set)")
    timing.add_argument("--warmup", type=utils.non_negative_int, default=3, help="untimed runs per method first")
    timing.add_argument("--repeats", type=utils.positive_int, default=3, help="timed passes over the images")
    timing.add_argument("--threads", type=utils.positive_int, default=1,
                        help="torch CPU threads for the timing (default 1: one image stream on one core; with "
                             "more threads than idle cores, waits between threads make the times jump, up to "
                             "20x on a busy 2-core machine)")
    return parser.parse_args(argv)


def check_inputs(args: argparse.Namespace) -> tuple[Path, list[str]]:
    """(texture folder, classes) after checking the folders, the classes and the sizes; CompareError otherwise."""
    if not args.data.is_dir():
        raise CompareError(f"--data {args.data} is not a folder; pass an MVTec-layout root (one folder per class)")
    available = sorted(p.name for p in args.data.iterdir() if (p / "train").is_dir() and (p / "test").is_dir())
    classes = list(dict.fromkeys(args.classes or available))
    if not classes:
        raise CompareError(f"--data {args.data} has no class folder with train/ and test/; pass an MVTec-layout root")
    unknown = [name for name in classes if name not in available]
    if unknown:
        raise CompareError(f"--classes {' '.join(unknown)}: no such class in {args.data} (with train/ and test/); "
                           f"classes there: {', '.join(available) or 'none'}")
    aug = args.aug if args.aug is not None else args.data.parent / "dtd" / "images"
    if TEMPORAL in args.methods:
        from preprocessing.create_conveyor_video import CLASS_PHOTOS

        if args.temporal_texture not in CLASS_PHOTOS:
            raise CompareError(f"--temporal_texture {args.temporal_texture}: unknown; use one of "
                               f"{', '.join(CLASS_PHOTOS)}")
    needing = [method for method in args.methods if method in LAS_METHODS]
    if needing and not aug.is_dir():
        raise CompareError(f"--aug {aug} is not a folder; {' and '.join(needing)} need a texture folder for their "
                           "synthetic anomalies (DTD's images)")
    if args.resize < args.imagesize:
        raise CompareError(f"--resize {args.resize} is smaller than --imagesize {args.imagesize}; "
                           "resize must be >= imagesize (centre crop)")
    import backbones

    try:
        valid = backbones.layer_names(args.backbone)
    except backbones.BackboneError as err:
        raise CompareError(f"--backbone {args.backbone}: {errors.first_line(err)}") from None
    for flag in ("glass_layers", "patchcore_layers", "padim_layers"):
        bad = [layer for layer in getattr(args, flag) or () if layer not in valid]
        if bad:
            raise CompareError(f"--{flag} {' '.join(bad)}: not a layer of {args.backbone}; valid: {', '.join(valid)}")
    return aug, classes


def default_layers(args: argparse.Namespace, method: str) -> list[str]:
    """The layers passed to a method: its flag, else blocks.2 blocks.4 for efficientnet_lite0 (the demo's) for
    GLASS and PatchCore, else none (main.py's default for the backbone)."""
    chosen = getattr(args, f"{method}_layers")
    if chosen:
        return list(chosen)
    if method != "padim" and args.backbone == "efficientnet_lite0":
        return ["blocks.2", "blocks.4"]
    return []


def method_argv(args: argparse.Namespace, method: str) -> list[str]:
    """main.py's method command with its settings."""
    if method == "draem":
        return ["draem", "--recon_width", str(args.draem_width), "--disc_width", str(args.draem_width),
                "--epochs", str(args.draem_epochs), "--lr", str(args.draem_lr), "--crop", str(args.draem_crop)]
    if method == "ae":
        return ["ae", "--width", str(args.ae_width), "--latent", str(args.ae_latent), "--epochs", str(args.ae_epochs)]
    layers = [flag for layer in default_layers(args, method) for flag in ("-le", layer)]
    head = [COMMANDS[method], "-b", args.backbone, *layers]
    if method == "glass":
        return [*head, "--pretrain_embed_dimension", str(args.glass_dims), "--target_embed_dimension",
                str(args.glass_dims), "--patchsize", "3", "--meta_epochs", str(args.glass_epochs),
                "--eval_epochs", str(min(args.glass_eval_epochs, args.glass_epochs)), "--dsc_layers", "2",
                "--dsc_hidden", str(args.glass_hidden), "--pre_proj", "1", "--mining", "1", "--noise", "0.015",
                "--radius", "0.75", "--p", "0.5", "--step", str(args.glass_step), "--limit", "392",
                "--lr", str(args.glass_lr), "--select", "last"]
    if method == "patchcore":
        return [*head, "--coreset", str(args.coreset)]
    return [*head, "--features", str(args.features)]


def dataset_argv(args: argparse.Namespace, method: str, aug: Path, classes: Sequence[str]) -> list[str]:
    """main.py's dataset command: the same data, sizes and batches for every method (LAS settings: GLASS's)."""
    argv = ["dataset", "--batch_size", str(args.batch_size), "--resize", str(args.resize),
            "--imagesize", str(args.imagesize)]
    if args.num_workers is not None:
        argv += ["--num_workers", str(args.num_workers)]
    if method in LAS_METHODS:
        argv += ["--mean", "0.5", "--std", "0.1", "--fg", "0", "--rand_aug", "1"]
    if method == "glass":
        import backbones

        layers = default_layers(args, method) or list(backbones.backbone_info(args.backbone).default_layers)
        argv += ["--distribution", "1", "--downsampling", str(backbones.layer_strides(args.backbone, layers)[0])]
    for name in classes:
        argv += ["-d", name]
    return [*argv, DATASET, str(args.data.resolve()), str(aug.resolve())]


def run_method(args: argparse.Namespace, method: str, aug: Path, classes: Sequence[str]) -> Path:
    """Trains/fits (or reuses) and tests one method on every class with main.py (a subprocess, or with
    --in_process main.cli here); returns its results folder. A main.py input error is a CompareError naming
    it; a crash ends the run (exit 1)."""
    folder = args.output / method
    if args.fresh and folder.exists():
        LOGGER.info("--fresh: deleting %s", folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    argv = ["--seed", str(args.seed), "--test", "ckpt", "--results_path", str(folder.resolve()),
            *method_argv(args, method), *dataset_argv(args, method, aug, classes)]
    log = folder / "run.log"
    LOGGER.info("%s: main.py %s%s", method, " ".join(argv), "" if args.in_process else f"  (log: {log})")
    started = time.perf_counter()
    if args.in_process:
        code, output = run_in_process(argv)
    else:
        command = [sys.executable, str(REPO / "main.py"), *argv]
        with open(log, "w") as handle:
            handle.write("$ " + " ".join(command) + "\n")
            handle.flush()
            code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO).returncode
        output = log.read_text(errors="replace")
    LOGGER.info("%s: done in %.1f s", method, time.perf_counter() - started)
    where = "" if args.in_process else f" (log: {log})"
    if code == 2:
        lines = [line for line in output.splitlines() if line.startswith("error:")]
        reason = lines[-1][len("error:"):].strip() if lines else "bad input"
        if "different" in reason:  # a model of OUTPUT was made with other settings
            reason += f" (or rerun with --fresh: retrains every {method} model of {folder})"
        raise CompareError(f"main.py {COMMANDS[method]}: {reason}{where}")
    if code:
        raise SystemExit(f"error: main.py {COMMANDS[method]} failed (exit {code}){where}")
    return folder


class _Tee(io.TextIOBase):
    """A text stream keeping a copy of what is written and passing it on to another one, except main.py's
    `error:` line (the comparison reports it in its own one line)."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return len(text) if text.startswith("error:") else self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def run_in_process(argv: Sequence[str]) -> tuple[int, str]:
    """main.cli(argv) in this process; (exit code, what it wrote on stderr through sys.stderr)."""
    import contextlib

    import main as glass_main

    tee = _Tee(sys.stderr)
    with contextlib.redirect_stderr(tee):
        code = glass_main.cli(list(argv))
    return code, tee.copy.getvalue()


def class_dir(args: argparse.Namespace, method: str, name: str) -> Path:
    """The model folder of a method's class (main.py's layout)."""
    from main import method_tag

    return args.output / method / "models" / method_tag(method, 0) / f"{DATASET}_{name}"


def collect(args: argparse.Namespace, method: str, classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per class: the metrics from the method's results.csv, training seconds and checkpoint size."""
    from model import final_checkpoint_path, load_checkpoint

    table = args.output / method / "results.csv"
    rows = {(row["method"], row["class"]): row for row in utils.read_results_csv(table)}
    results = {}
    for name in classes:
        row = rows.get((method, f"{DATASET}_{name}"))
        if row is None:
            raise CompareError(f"{table}: no row for {method} {DATASET}_{name}; rerun (the run may have been cut)")
        path = final_checkpoint_path(class_dir(args, method, name))
        if path is None:
            raise CompareError(f"{class_dir(args, method, name)}: no ckpt_best_*.pth; rerun with --fresh")
        stored = load_checkpoint(path)
        results[name] = {**{m: float(row[m]) for m in METRICS},
                         "train_seconds": float(stored.get("timing", {}).get("train_seconds", float("nan"))),
                         "model_mb": path.stat().st_size / 1e6}
    return results


def timing_frames(args: argparse.Namespace, name: str) -> list[Any]:
    """Up to --timing_images test images of a class (BGR, evenly spaced over the sorted test set)."""
    import cv2
    import numpy as np

    import paths

    files = sorted(p for p in (args.data / name / "test").rglob("*") if p.suffix.lower() in paths.IMAGE_SUFFIXES)
    if len(files) > args.timing_images:
        files = [files[int(i)] for i in np.linspace(0, len(files) - 1, args.timing_images).round()]
    frames = [cv2.imread(str(path), cv2.IMREAD_COLOR) for path in files]
    unreadable = [str(path) for path, frame in zip(files, frames) if frame is None]
    if unreadable or not frames:
        raise CompareError(f"{args.data / name / 'test'}: no readable test image ({', '.join(unreadable[:3])})")
    return frames


def time_per_image(runners: dict[str, Callable[[Any], object]], frames: Sequence[Any], warmup: int,
                   repeats: int) -> dict[str, float]:
    """Median ms per image of every runner, one image per call; the runners take turns on each image
    (their order rotating) so that all of them see the same load from other processes."""
    labels = list(runners)
    for label in labels:
        for _ in range(warmup):
            runners[label](frames[0])
    times: dict[str, list[float]] = {label: [] for label in labels}
    turn = 0
    for _ in range(repeats):
        for frame in frames:
            for label in labels[turn % len(labels):] + labels[:turn % len(labels)]:
                start = time.perf_counter()
                runners[label](frame)
                times[label].append(time.perf_counter() - start)
            turn += 1
    return {label: 1000 * statistics.median(values) for label, values in times.items()}


def measure_speed(args: argparse.Namespace, methods: Sequence[str], name: str) -> dict[str, float]:
    """ms per image of every method on a class's test images (see time_per_image)."""
    from inference.engine import EngineConfig, InferenceEngine

    import torch

    frames = timing_frames(args, name)
    quiet = [logging.getLogger(n) for n in ("backbones", "inference.backends", "timm")]  # 3 loading lines a model
    levels, threads = [logger.level for logger in quiet], torch.get_num_threads()
    try:
        for logger in quiet:
            logger.setLevel(logging.WARNING)
        torch.set_num_threads(args.threads)
        runners = {}
        for method in methods:
            engine = InferenceEngine.from_config(EngineConfig(model_path=str(class_dir(args, method, name)),
                                                              device="cpu", backend="torch", batch_size=1))
            runners[method] = lambda frame, engine=engine: engine.predict([frame])
        return time_per_image(runners, frames, args.warmup, args.repeats)
    finally:
        torch.set_num_threads(threads)
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


def with_means(rows: list[dict[str, Any]], methods: Sequence[str]) -> list[dict[str, Any]]:
    """The class rows, then one Mean row per method (the mean of its class rows, column by column)."""
    means = []
    for method in methods:
        own = [row for row in rows if row["method"] == method]
        means.append({"method": method, "class": MEAN_ROW,
                      **{c: statistics.fmean(row[c] for row in own) for c in COLUMNS[2:]}})
    return [*rows, *means]


def render_csv(rows: Sequence[dict[str, Any]]) -> str:
    """comparison.csv text."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: f"{row[c]:.{DECIMALS[c]}f}" if c in DECIMALS else row[c] for c in COLUMNS})
    return out.getvalue()


def render_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The table in markdown (metrics in percent)."""
    header = ["method", "class", "image AUROC %", "pixel AUROC %", "PRO %", "train s", "ms / image", "model MB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(header) - 2)]
    for row in rows:
        cells = [row["method"], row["class"], *(f"{100 * row[m]:.1f}" for m in METRICS),
                 f"{row['train_seconds']:.1f}", f"{row['ms_per_image']:.1f}", f"{row['model_mb']:.2f}"]
        if row["class"] == MEAN_ROW:
            cells = [f"**{cell}**" for cell in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_text(rows: Sequence[dict[str, Any]]) -> str:
    """The table for the terminal (as comparison.csv, aligned)."""
    cells = [list(COLUMNS)] + [render_csv([row]).splitlines()[1].split(",") for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
             for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def short_number(value: float, metric: bool) -> str:
    """A bar's label: metrics with 2 decimals (the table has 4), other values with 3 significant digits."""
    if metric:
        return f"{value:.2f}"
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def chart_png(rows: Sequence[dict[str, Any]], methods: Sequence[str], classes: Sequence[str], note: str) -> bytes:
    """One bar-chart panel per column: bars per method, grouped by class (and the mean); PNG bytes."""
    # Figure + Agg canvas directly (no pyplot): no global backend switch, no GUI, thread-safe.
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = [*classes, MEAN_ROW] if len(classes) > 1 else list(classes)
    value = {(row["method"], row["class"]): row for row in rows}
    figure = Figure(figsize=(4.2 * 3, 3.4 * 2 + 0.6), dpi=100)
    FigureCanvasAgg(figure)
    width = 0.8 / len(methods)
    x = np.arange(len(groups))
    colours = {"glass": "tab:blue", "patchcore": "tab:orange", "padim": "tab:green", "draem": "tab:red",
               "ae": "tab:purple"}
    for index, column in enumerate(COLUMNS[2:]):
        axes = figure.add_subplot(2, 3, index + 1)
        for i, method in enumerate(methods):
            heights = [value[(method, group)][column] for group in groups]
            bars = axes.bar(x + (i - (len(methods) - 1) / 2) * width, heights, width, label=method,
                            color=colours.get(method))
            axes.bar_label(bars, labels=[short_number(h, column in METRICS) for h in heights], fontsize=6, padding=1)
        axes.set_xticks(x, groups, fontsize=8)
        axes.set_title(TITLES[column], fontsize=10)
        if column in METRICS:
            low = min(value[(m, g)][column] for m in methods for g in groups)
            axes.set_ylim(max(0.0, min(0.5, low - 0.05)), 1.04)
        else:
            axes.set_ylim(0, 1.15 * max(value[(m, g)][column] for m in methods for g in groups) or 1)
        axes.tick_params(axis="y", labelsize=8)
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=len(methods), fontsize=9, frameon=False)
    figure.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=7)
    figure.tight_layout(rect=(0, 0.03, 1, 0.95))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def temporal_model(args: argparse.Namespace, train_video: Path) -> Any:
    """The ConvLSTM autoencoder of OUTPUT/convlstm/model: reused when trained with these settings (other
    settings: CompareError naming --fresh), else trained on the recording and saved."""
    import temporal
    from methods.base import CheckpointError
    from methods.video_autoencoder import VideoAEConfig

    folder = args.output / TEMPORAL / "model"
    cfg, train_cfg = VideoAEConfig(), temporal.TrainConfig(epochs=args.temporal_epochs, seed=args.seed)
    if temporal.has_model(folder):
        try:
            temporal.check_same_settings(folder, cfg, train_cfg, [train_video])
        except CheckpointError as err:
            raise CompareError(f"{errors.first_line(err)} (or rerun with --fresh)") from None
        return temporal.load_model(folder)
    model, _ = temporal.train([train_video], cfg, train_cfg, progress=True)
    temporal.save_model(model, folder)
    return model


def image_method_on_video(args: argparse.Namespace, method: str, video: Path, truth: Sequence[bool]
                          ) -> dict[str, Any]:
    """An image method's model of the conveyor's texture on every frame of the video: detection metrics at the
    model's calibrated threshold (temporal.detection_metrics) and ms per frame (engine, torch, batches of 8)."""
    import numpy as np

    import temporal
    import video_io
    from inference.engine import EngineConfig, InferenceEngine

    engine = InferenceEngine.from_config(EngineConfig(model_path=str(class_dir(args, method, args.temporal_texture)),
                                                      device="cpu", backend="torch", batch_size=8))
    scores: list[float] = []
    started = time.perf_counter()
    for batch in video_io.iter_frames(video, batch_size=8):
        scores += engine.image_scores(batch)
    seconds = time.perf_counter() - started
    values = np.asarray(scores)
    return {**temporal.detection_metrics(values, values >= engine.threshold, truth),
            "ms_per_frame": 1000 * seconds / len(values)}


def compare_temporal(args: argparse.Namespace, methods: Sequence[str], results: dict[str, Any]) -> list[dict[str, Any]]:
    """The temporal table: the ConvLSTM autoencoder, then each image method that has a model of the texture."""
    import temporal
    import video_io
    from preprocessing.create_conveyor_video import ConveyorConfig, stop_and_jerk_videos

    width, height = args.temporal_size
    base = ConveyorConfig(texture=args.temporal_texture, width=width, height=height, speed=args.temporal_speed,
                          defects=0, seed=args.seed)
    videos = stop_and_jerk_videos(args.output / TEMPORAL / "videos", base, *args.temporal_frames)
    model = temporal_model(args, videos["train"])
    scored = temporal.evaluate_video(model, videos["stop_jerk"])
    rows = [{"method": TEMPORAL, **scored, "train_seconds": float(model.timing.get("train_seconds", float("nan")))}]
    truth = temporal.temporal_truth(video_io.read_sidecar(videos["stop_jerk"]), scored["frames"])
    for method in methods:
        if args.temporal_texture in results.get(method, {}):
            row = image_method_on_video(args, method, videos["stop_jerk"], truth)
            rows.append({"method": method, **row, "train_seconds": results[method][args.temporal_texture]
                         ["train_seconds"]})
    return rows


def render_temporal(rows: Sequence[dict[str, Any]], fmt: str) -> str:
    """The temporal table as CSV or markdown (rates in percent there)."""
    def cell(row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        if isinstance(value, str):
            return value
        if value is None:
            return ""
        if fmt == "md":
            return f"{100 * value:.1f}" if column in ("frame_auroc", "false_alarm_rate", "recall") else f"{value:.1f}"
        return f"{value:.4f}"

    if fmt == "csv":
        return "\n".join([",".join(TEMPORAL_COLUMNS), *(",".join(cell(r, c) for c in TEMPORAL_COLUMNS) for r in rows)]
                         ) + "\n"
    header = ["method", "frame AUROC %", "false alarms %", "recall %", "train s", "ms / frame"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(cell(r, c) for c in TEMPORAL_COLUMNS) + " |" for r in rows])


def main(argv: Sequence[str] | None = None) -> int:
    """Runs every method, measures, writes comparison.csv/.md/.png (and temporal.csv/.md) and prints the tables."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    aug, classes = check_inputs(args)
    methods = [method for method in dict.fromkeys(args.methods) if method != TEMPORAL]
    args.output.mkdir(parents=True, exist_ok=True)
    if args.fresh and TEMPORAL in args.methods and (args.output / TEMPORAL).exists():
        shutil.rmtree(args.output / TEMPORAL)
    results = {}
    for method in methods:
        run_method(args, method, aug, classes)
        results[method] = collect(args, method, classes)
    if methods:
        compare_images(args, methods, classes, results)
    if TEMPORAL in args.methods:
        rows = compare_temporal(args, methods, results)
        note = (f"{args.temporal_texture} conveyor {args.temporal_size[0]}x{args.temporal_size[1]}, "
                f"{args.temporal_speed} px/frame, belt stops 1 s then jerks; {args.temporal_frames[0]} training "
                f"frames, ConvLSTM {args.temporal_epochs} epochs; seed {args.seed}; {time.strftime('%Y-%m-%d')}")
        utils.atomic_write_text(args.output / "temporal.csv", render_temporal(rows, "csv"))
        utils.atomic_write_text(args.output / "temporal.md", f"{note}\n\n{render_temporal(rows, 'md')}\n")
        print(note)
        print(render_temporal(rows, "md"))
        print(f"temporal: {args.output / 'temporal.csv'}")
    return 0


def compare_images(args: argparse.Namespace, methods: Sequence[str], classes: Sequence[str],
                   results: dict[str, Any]) -> None:
    """Times the engines and writes comparison.csv/.md/.png; prints the table."""
    LOGGER.info("timing the engines: %d classes, %d passes over up to %d test images each, %d torch threads",
                len(classes), args.repeats, args.timing_images, args.threads)
    load = os.getloadavg()  # other processes on the machine slow the timing down; said in the note
    speeds = {name: measure_speed(args, methods, name) for name in classes}
    rows = []
    for name, speed in speeds.items():
        rows += [{"method": method, "class": name, **results[method][name], "ms_per_image": speed[method]}
                 for method in methods]
    rows.sort(key=lambda row: methods.index(row["method"]))
    rows = with_means(rows, methods)
    note = (f"{args.backbone}, {args.imagesize} px, seed {args.seed}; GLASS {args.glass_epochs} epochs, DRAEM "
            f"{args.draem_epochs} (width {args.draem_width}, crop {args.draem_crop}), AE {args.ae_epochs} "
            f"(width {args.ae_width}); "
            f"ms per image: torch engine, {args.threads} thread{'s' if args.threads > 1 else ''}, one image per "
            "call, median; "
            f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, load average {load[0]:.1f} -> "
            f"{os.getloadavg()[0]:.1f} while timing")
    utils.atomic_write_text(args.output / "comparison.csv", render_csv(rows))
    utils.atomic_write_text(args.output / "comparison.md", f"{note}\n\n{render_markdown(rows)}\n")
    utils.atomic_write_bytes(args.output / "comparison.png", chart_png(rows, methods, classes, note))
    print(note)
    print(render_text(rows))
    print(f"comparison: {args.output / 'comparison.csv'} (chart: {args.output / 'comparison.png'})")


if __name__ == "__main__":
    sys.exit(errors.run_script(main))
