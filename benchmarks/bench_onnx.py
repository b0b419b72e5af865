"""Inference speed on CPU: PyTorch eager (NCHW and channels_last) against ONNX Runtime, ms per image.

    python benchmarks/bench_onnx.py                          # lite0 paper dims, lite0 demo dims, wideresnet50
    python benchmarks/bench_onnx.py --models lite0-demo --repeats 20 --threads 2

Models are built with the configuration named (backbone, image size, dims); head weights are
random (timing does not depend on weight values). Backbone weights are the pretrained ones when
found locally, else random (said in the table). Each setting: warm-up runs, then the median
(and the minimum, less disturbed by other processes) of N timed runs, per image; the settings
of a model run in turn (round robin) so that all of them see the same load from other processes.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

import numpy as np
import torch

import errors
import utils
import backbones
import common
from inference import onnx_export
from inference.model_info import ModelInfo
from inference.onnx_runtime import OnnxBackend
from model import GlassModel, NetConfig

LOGGER = logging.getLogger("bench_onnx")


@dataclass(frozen=True)
class BenchModel:
    """One benchmarked configuration."""

    key: str
    backbone: str
    imagesize: int
    pretrain_dim: int
    target_dim: int
    hidden: int


MODELS = {
    "lite0-paper": BenchModel("lite0-paper", "efficientnet_lite0", 256, 1536, 1536, 1024),
    "lite0-demo": BenchModel("lite0-demo", "efficientnet_lite0", 256, 512, 512, 512),
    "wrn50": BenchModel("wrn50", "wideresnet50", 288, 1024, 1024, 1024),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Benchmark settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=utils.positive_int, default=[1, 8])
    parser.add_argument("--threads", type=utils.positive_int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=utils.positive_int, default=10,
                        help="timed runs per setting (median reported)")
    parser.add_argument("--form", choices=onnx_export.FORMS, default="auto", help="ONNX head form")
    parser.add_argument("--both_forms", action="store_true", help="also time the ONNX form auto did not pick")
    return parser.parse_args(argv)


def build_net(spec: BenchModel) -> tuple[GlassModel, str]:
    """The GLASS model of a spec (random head) and which backbone weights it has."""
    cfg = NetConfig(backbone=spec.backbone, layers=backbones.backbone_info(spec.backbone).default_layers,
                    pretrain_embed_dimension=spec.pretrain_dim, target_embed_dimension=spec.target_dim,
                    dsc_hidden=spec.hidden, imagesize=spec.imagesize, resize=spec.imagesize,
                    mean=backbones.backbone_info(spec.backbone).mean, std=backbones.backbone_info(spec.backbone).std)
    try:
        return GlassModel.build(cfg, pretrained=True).eval(), "pretrained"
    except backbones.BackboneError:
        LOGGER.info("%s: no local pretrained weights, timing with random backbone weights", spec.backbone)
        return GlassModel.build(cfg, pretrained=False).eval(), "random"


def set_channels_last(net: GlassModel, enabled: bool) -> None:
    """Switches the extractor between channels_last and PyTorch's default NCHW layout."""
    fmt = torch.channels_last if enabled else torch.contiguous_format
    net.extractor.body = net.extractor.body.to(memory_format=fmt)
    net.extractor.channels_last = enabled


Runner = Callable[[np.ndarray], object]
Timings = dict[int, tuple[float, float]]  # batch -> (median, min) ms per image


def time_interleaved(runners: dict[str, Runner], batch: np.ndarray, warmup: int, repeats: int
                     ) -> dict[str, tuple[float, float]]:
    """(median, minimum) ms per image of every runner; runs alternate so that all see the same load."""
    for run in runners.values():
        for _ in range(warmup):
            run(batch)
    times: dict[str, list[float]] = {label: [] for label in runners}
    for _ in range(repeats):
        for label, run in runners.items():
            start = time.perf_counter()
            run(batch)
            times[label].append(time.perf_counter() - start)
    return {label: (1000 * statistics.median(t) / len(batch), 1000 * min(t) / len(batch)) for label, t in times.items()}


def torch_runner(net: GlassModel) -> Callable[[np.ndarray], object]:
    """Runs the model as the engine's TorchBackend does (inference mode, input in the extractor's layout)."""
    def run(batch: np.ndarray) -> object:
        with torch.inference_mode():
            images = torch.from_numpy(batch)
            if net.extractor.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            return net(images)
    return run


def model_info(net: GlassModel, spec: BenchModel) -> ModelInfo:
    """What an engine needs to know of the benchmark model (thresholds 0.5: it is not calibrated)."""
    return ModelInfo.for_net(net.cfg, spec.key, net.extractor.strides, threshold=0.5, pixel_threshold=0.5)


def export(net: GlassModel, spec: BenchModel, folder: Path, form: str) -> tuple[Path, dict, float]:
    """Dynamic-batch ONNX export of the net; (path, description, seconds)."""
    info = model_info(net, spec)
    start = time.perf_counter()
    path, _ = onnx_export.export_model(net, info, folder / f"{spec.key}-{form}.onnx",
                                        onnx_export.ExportSettings(dynamic_batch=True, form=form))
    seconds = time.perf_counter() - start
    _, description = onnx_export.read_model_description(path)
    return path, description, seconds


def torch_runners(net: GlassModel) -> dict[str, Runner]:
    """The engine's PyTorch path in PyTorch's default NCHW layout and in channels_last (two model copies)."""
    nchw = copy.deepcopy(net)
    set_channels_last(nchw, False)
    set_channels_last(net, True)
    return {"torch eager NCHW": torch_runner(nchw), "torch eager channels_last": torch_runner(net)}


def onnx_runners(net: GlassModel, spec: BenchModel, args: argparse.Namespace, folder: Path
                 ) -> tuple[dict[str, Runner], list[str]]:
    """ONNX Runtime runners of the chosen form (and the other one with --both_forms), with notes."""
    exports = [export(net, spec, folder, args.form)]
    chosen = exports[0][1]["form"]
    if args.both_forms:
        exports.append(export(net, spec, folder, "pool" if chosen == "fold" else "fold"))
    runners, notes = {}, []
    for path, description, seconds in exports:
        form = description["form"]
        label = f"onnxruntime cpu ({form}{', ' + args.form if form == chosen else ''})"
        runners[label] = OnnxBackend(path, "cpu", threads=args.threads).patch_scores
        macs = description["form_macs"]
        notes.append(f"{spec.key}: {form} form (head multiply-adds/image, M: pool "
                     f"{macs['pool'] / 1e6:.0f}, fold {macs['fold'] / 1e6:.0f}), "
                     f"export {seconds:.1f} s, max |onnx - torch| {description['max_abs_diff_vs_torch']:.1e}")
    return runners, notes


def bench_model(spec: BenchModel, args: argparse.Namespace, folder: Path) -> tuple[list[list[str]], list[str]]:
    """Table rows and notes for one model."""
    net, weights = build_net(spec)
    onnx, notes = onnx_runners(net, spec, args, folder)
    runners = {**torch_runners(net), **onnx}
    rng = np.random.default_rng(0)
    timings: dict[str, Timings] = {label: {} for label in runners}
    for b in args.batches:
        batch = rng.normal(size=(b, 3, spec.imagesize, spec.imagesize)).astype(np.float32)
        for label, timing in time_interleaved(runners, batch, args.warmup, args.repeats).items():
            timings[label][b] = timing
    first = args.batches[0]
    best_torch = min(timing[first][0] for label, timing in timings.items() if label.startswith("torch"))
    rows = []
    config = f"{spec.backbone} {spec.imagesize}px {spec.pretrain_dim}/{spec.target_dim}/{spec.hidden}"
    for label, timing in timings.items():
        cells = [f"{timing[b][0]:.1f} ({timing[b][1]:.1f})" for b in args.batches]
        rows.append([spec.key, config, weights, label, *cells, f"{best_torch / timing[first][0]:.2f}x"])
    return rows, notes


def format_rows(rows: list[list[str]], batches: list[int]) -> str:
    """Plain-text table."""
    header = ["model", "config", "backbone weights", "setting",
              *[f"batch {b} ms/img median (min)" for b in batches], f"vs best torch b{batches[0]}"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints the table."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    common.keep_freed_memory()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models:
            model_rows, model_notes = bench_model(MODELS[key], args, Path(tmp))
            rows += model_rows
            notes += model_notes
    load_after = os.getloadavg()
    print(f"threads {args.threads} (torch and onnxruntime), {args.warmup} warm-up + {args.repeats} timed runs, "
          f"torch {torch.__version__}, cpus {os.cpu_count()}")
    print(format_rows(rows, args.batches))
    print("\n".join(notes))
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          "(other processes share the cores; the minimum is the less disturbed figure)")
    return 0


if __name__ == "__main__":
    sys.exit(errors.run_script(main))
