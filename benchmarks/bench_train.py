"""Training and inference speed of GLASS: seconds per epoch, where the time goes, ms per test image, peak RAM.

    python benchmarks/bench_train.py                       # efficientnet_lite0, 256 px, paper dims, 20 images
    python benchmarks/bench_train.py -b wideresnet50 --imagesize 288 --random_weights --n_train 8 --epochs 1

Data: the demo dataset (built on the fly into --data_root, default a temporary folder), or an
MVTec-layout dataset given by --data_path/--aug_path/--classname.
"""
from __future__ import annotations

import argparse
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import errors
from datasets import base as data
from datasets.registry import build_dataset
from glass import COMPILE_MODES, GLASS, TrainConfig
from model import GlassModel, NetConfig
import backbones
import common
from inference.backends import resolve_device
from inference.model_info import EngineError
from preprocessing.make_demo_dataset import DemoDatasetConfig, build_demo_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Benchmark settings (defaults: the setting the reference was timed at)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-b", "--backbone", default="efficientnet_lite0")
    parser.add_argument("--imagesize", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--n_train", type=int, default=20, help="training images (the limit is 392 as the paper)")
    parser.add_argument("--limit", type=int, default=392)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--pretrain_embed_dimension", type=int, default=1536)
    parser.add_argument("--target_embed_dimension", type=int, default=1536)
    parser.add_argument("--dsc_hidden", type=int, default=1024)
    parser.add_argument("--step", type=int, default=20)
    parser.add_argument("--svd", type=int, default=0)
    parser.add_argument("--num_workers", type=int, default=data.default_num_workers())
    parser.add_argument("--literal", action="store_true",
                        help="reference-style path: clean features recomputed every batch, literal gradient ascent")
    parser.add_argument("--compile", choices=COMPILE_MODES, default="auto",
                        help="main.py --compile: torch.compile the GAS gradient (auto: large batches only)")
    parser.add_argument("--random_weights", action="store_true", help="random backbone weights (no download needed)")
    parser.add_argument("--data_path", type=Path, help="MVTec-layout root (default: demo data)")
    parser.add_argument("--aug_path", type=Path, help="DTD images folder (default: demo textures)")
    parser.add_argument("--classname", default="brick")
    parser.add_argument("--data_root", type=Path, help="where to build the demo data (default: a temp folder)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    try:
        args.device = resolve_device(args.device)
    except EngineError as error:
        parser.error(str(error))
    return args


def demo_paths(args: argparse.Namespace, root: Path) -> tuple[Path, Path]:
    """Builds (or reuses) demo data with n_train training images of the chosen class."""
    built = build_demo_dataset(root, DemoDatasetConfig(classes=(args.classname,), n_train=args.n_train,
                                                       n_test_good=4, n_test_defect=4, size=args.imagesize))
    return built.mvtec_root, built.dtd_images


def time_inference(model: GlassModel, images: torch.Tensor, repeats: int = 3) -> tuple[float, float]:
    """(forward-only ms/image, full prediction with maps ms/image), best of `repeats`."""
    model.eval()
    forward, full = [], []
    with torch.no_grad():
        model(images)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(images)
            forward.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.predict(images)
            full.append(time.perf_counter() - start)
    return 1000 * min(forward) / len(images), 1000 * min(full) / len(images)


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints the table."""
    logging.basicConfig(level=logging.WARNING)
    common.keep_freed_memory()
    args = parse_args(argv)
    device = args.device
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.data_path is not None:
            data_path, aug_path = args.data_path, args.aug_path
        else:
            data_path, aug_path = demo_paths(args, args.data_root or root / "demo")
        info = backbones.backbone_info(args.backbone)
        mean, std = backbones.normalization_stats(info, backbones.DEFAULT_NORMALIZATION)
        cfg = NetConfig(backbone=args.backbone, layers=info.default_layers,
                        pretrain_embed_dimension=args.pretrain_embed_dimension,
                        target_embed_dimension=args.target_embed_dimension, dsc_hidden=args.dsc_hidden,
                        imagesize=args.imagesize, resize=args.imagesize, mean=mean, std=std)
        dcfg = data.DatasetConfig(name="mvtec", data_path=data_path, aug_path=aug_path,
                                  subdatasets=(args.classname,), batch_size=args.batch_size,
                                  num_workers=args.num_workers, resize=args.imagesize, imagesize=args.imagesize,
                                  fg=0, downsampling=backbones.layer_strides(args.backbone, cfg.layers)[0])
        sets = {split: build_dataset(dcfg, args.classname, split, cfg.mean, cfg.std, seed=0, las=las)
                for split, las in (("train", True), ("test", False))}
        clean = build_dataset(dcfg, args.classname, "train", cfg.mean, cfg.std, seed=0, las=False)
        loaders = {name: data.build_dataloader(ds, dcfg, 0, shuffle=name == "train") for name, ds in sets.items()}
        model = GlassModel.build(cfg, pretrained=not args.random_weights)
        train_cfg = TrainConfig(meta_epochs=args.epochs, eval_epochs=10**6, step=args.step, limit=args.limit)
        trainer = GLASS(model, train_cfg, device, root / "model", svd=args.svd, hidden_space_ascent=not args.literal,
                        compile_mode=args.compile)
        start = time.perf_counter()
        trainer.train(loaders["train"], data.build_dataloader(clean, dcfg, 0, shuffle=False), loaders["test"],
                      cache_features=not args.literal)
        total = time.perf_counter() - start
        images = torch.stack([sets["test"][i]["image"] for i in range(min(args.batch_size, len(sets["test"])))])
        forward_ms, full_ms = time_inference(model, images.to(device))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    epochs = trainer.epoch_seconds
    print(f"\nGLASS training benchmark: {args.backbone} {args.imagesize}px, dims "
          f"{args.pretrain_embed_dimension}/{args.target_embed_dimension}, hidden {args.dsc_hidden}, "
          f"batch {args.batch_size}, {len(sets['train'])} training images, step {args.step}, "
          f"{'random' if args.random_weights else 'pretrained'} weights, {device}, "
          f"{'literal (reference-style) path' if args.literal else 'optimised path'}, compile {args.compile}, "
          f"{torch.get_num_threads()} threads, {args.num_workers} workers")
    print(f"{'measure':<38}{'value':>12}")
    print("-" * 50)
    print(f"{'seconds per epoch (mean)':<38}{statistics.mean(epochs):>12.2f}")
    print(f"{'seconds per epoch (min)':<38}{min(epochs):>12.2f}")
    if len(epochs) > 1:  # the first epoch carries one-time costs (feature cache, torch.compile) that long runs spread
        print(f"{'seconds per epoch (epochs 2+)':<38}{statistics.mean(epochs[1:]):>12.2f}")
    print(f"{'whole run incl. caching and test (s)':<38}{total:>12.2f}")
    for stage, seconds in sorted(trainer.timings.items(), key=lambda kv: -kv[1]):
        print(f"{'  ' + stage + ' (s, all epochs)':<38}{seconds:>12.2f}")
    print(f"{'inference forward ms/image':<38}{forward_ms:>12.1f}")
    print(f"{'inference with maps ms/image':<38}{full_ms:>12.1f}")
    print(f"{'peak RAM (MB)':<38}{peak_mb:>12.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(errors.run_script(main))
