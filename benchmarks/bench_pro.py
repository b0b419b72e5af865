"""Time metrics.compute_pro against the literal loop the tests check it with (tests/pro_reference.py).

    python benchmarks/bench_pro.py --images 50 --size 256
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage import draw

import errors
from metrics import GLASS_PRO_DILATION, compute_pro

REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "pro_reference.py"


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of the synthetic evaluation set and how to time it."""

    images: int = 50
    size: int = 256
    thresholds: int = 200
    max_fpr: float = 0.3
    dilation: int = GLASS_PRO_DILATION
    defect_fraction: float = 0.6
    repeats: int = 3
    seed: int = 0
    skip_reference: bool = False


def synthetic_set(config: BenchConfig) -> tuple[np.ndarray, np.ndarray]:
    """Return (masks uint8, maps float32) of shape (images, size, size) with random elliptic blobs."""
    rng = np.random.default_rng(config.seed)
    shape = (config.size, config.size)
    masks = np.zeros((config.images, *shape), dtype=np.uint8)
    for mask in masks:
        if rng.random() >= config.defect_fraction:
            continue  # a defect-free image
        for _ in range(rng.integers(1, 5)):
            centre = rng.uniform(0, config.size, 2)
            radii = rng.uniform(0.02, 0.12, 2) * config.size
            rows, cols = draw.ellipse(*centre, *radii, shape=shape, rotation=rng.uniform(0, np.pi))
            mask[rows, cols] = 1
    if not masks.any():
        masks[0, : config.size // 8, : config.size // 8] = 1
    noise = ndimage.gaussian_filter(rng.random(masks.shape, dtype=np.float32), sigma=(0, 4, 4))
    signal = ndimage.gaussian_filter(masks.astype(np.float32), sigma=(0, 4, 4))
    return masks, noise + 0.05 * signal


def best_time(function: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Return (fastest wall time in seconds, result) over ``repeats`` calls."""
    times, result = [], float("nan")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def load_reference() -> Callable[..., float]:
    """The tests' literal PRO loop (tests/pro_reference.py), loaded from its file (no test package on the path)."""
    spec = importlib.util.spec_from_file_location("pro_reference", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compute_pro_reference


def run(config: BenchConfig) -> list[tuple[str, float, float]]:
    """Time both implementations; return rows (name, seconds, PRO)."""
    masks, maps = synthetic_set(config)
    kwargs = {"max_fpr": config.max_fpr, "num_thresholds": config.thresholds, "dilation": config.dilation}
    rows = [("compute_pro", *best_time(lambda: compute_pro(masks, maps, **kwargs), config.repeats))]
    if not config.skip_reference:
        # The literal version is slow; one call is enough to time it.
        reference = load_reference()
        rows.append(("compute_pro_reference", *best_time(lambda: reference(masks, maps, **kwargs), 1)))
    return rows


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    """Return the benchmark configuration from the command line."""
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=defaults.images, help="number of maps")
    parser.add_argument("--size", type=int, default=defaults.size, help="side of each square map in pixels")
    parser.add_argument("--thresholds", type=int, default=defaults.thresholds, help="PRO thresholds")
    parser.add_argument("--max-fpr", type=float, default=defaults.max_fpr, help="PRO integration limit")
    parser.add_argument("--dilation", type=int, default=defaults.dilation, help="prediction dilation (1 = none)")
    parser.add_argument("--repeats", type=int, default=defaults.repeats, help="timed calls of compute_pro (best kept)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed of the synthetic set")
    parser.add_argument("--skip-reference", action="store_true", help="do not time the slow literal version")
    args = parser.parse_args(argv)
    if args.images < 1 or args.size < 8:
        parser.error("--images must be >= 1 and --size >= 8")
    return BenchConfig(
        images=args.images,
        size=args.size,
        thresholds=args.thresholds,
        max_fpr=args.max_fpr,
        dilation=args.dilation,
        repeats=args.repeats,
        seed=args.seed,
        skip_reference=args.skip_reference,
    )


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a table."""
    config = parse_args(argv)
    rows = run(config)
    print(
        f"{config.images} maps of {config.size}x{config.size}, {config.thresholds} thresholds, "
        f"max_fpr {config.max_fpr}, dilation {config.dilation}"
    )
    print(f"{'implementation':<24}{'seconds':>10}{'PRO':>12}")
    for name, seconds, pro in rows:
        print(f"{name:<24}{seconds:>10.3f}{pro:>12.6f}")
    if len(rows) == 2:
        (_, fast_s, fast_pro), (_, ref_s, ref_pro) = rows
        print(f"speed-up x{ref_s / fast_s:.1f}, |difference| {abs(fast_pro - ref_pro):.2e}")


if __name__ == "__main__":
    raise SystemExit(errors.run_script(main))
