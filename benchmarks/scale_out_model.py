"""Expected wall time of a fanned-out run (MVTec AD, paper settings) on 1, 4 and 8 devices: a MODEL, not a
measurement.

    python benchmarks/scale_out_model.py                              # MVTec AD, 640 epochs, this VM's figures
    python benchmarks/scale_out_model.py --s_per_batch 0.9 --s_per_image 0.02   # your device's measured figures
    python benchmarks/scale_out_model.py --times class_seconds.csv   # measured per-class times (class,seconds)

Per-class times. Without --times, each class's time is computed from its image counts (MVTec AD's published
train/test counts) and two measured costs of one device, for the paper's settings (wideresnet50, 288 px,
dims 1536/1536, hidden 1024, batch 8, 20 ascent steps, --limit 392, --eval_epochs 1, --holdout 0.1):

    seconds = epochs x (batches per epoch x s_per_batch + test images x s_per_image)
              + (training + test images) x s_per_image          (clean features, calibration, final test: once)
    batches per epoch = min(ceil(training images after the hold-out / batch), limit // batch + 1)

The default s_per_batch 21.2 s and s_per_image 0.230 s were measured on this 2-core VM's CPU by
`python benchmarks/bench_train.py -b wideresnet50 --imagesize 288 --random_weights --n_train 16 --epochs 2`
(42.4 s per epoch of 2 batches, 230 ms per test image; the cores were shared with other work, load average
3-5; README's quiet figure was 15.6 s per batch), so the hours in the table are hours of devices as fast as
this CPU. No GPU was measured: the hours on a GPU are these times the GPU/CPU speed ratio (pass your device's
measured figures, or its measured per-class times with --times). The speedup and efficiency columns hold for
any device whose per-class times keep the same proportions.

The schedule: every class is one job on one device; jobs are packed longest first (LPT: each job, in order of
decreasing time, goes to the device that is free first), as `scale_out` starts the classes with the most
training images first. Not modelled: worker start-up (seconds), loading the data on shared disks, a retry
after a lost worker, several classes sharing a machine's CPUs for data loading.
"""
from __future__ import annotations

import argparse
import csv
import heapq
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import errors
import utils
from datasets.base import holdout_count

# MVTec AD (Bergmann et al., CVPR 2019, Table 1): defect-free training images and test images per class.
MVTEC_AD = {
    "bottle": (209, 83), "cable": (224, 150), "capsule": (219, 132), "carpet": (280, 117), "grid": (264, 78),
    "hazelnut": (391, 110), "leather": (245, 124), "metal_nut": (220, 115), "pill": (267, 167),
    "screw": (320, 160), "tile": (230, 117), "toothbrush": (60, 42), "transistor": (213, 100), "wood": (247, 79),
    "zipper": (240, 151),
}
MEASURED_S_PER_BATCH = 21.2  # bench_train.py, wideresnet50 288 px paper dims, this VM's CPU (2 threads), shared
MEASURED_S_PER_IMAGE = 0.230  # the same run: inference forward ms per test image
DEVICE_COUNTS = (1, 4, 8)


class ModelInputError(errors.UserError):
    """A --times file that is not a class,seconds table."""


@dataclass(frozen=True)
class Costs:
    """The measured costs and the settings the per-class times are computed from."""

    s_per_batch: float = MEASURED_S_PER_BATCH
    s_per_image: float = MEASURED_S_PER_IMAGE
    epochs: int = 640
    batch: int = 8
    limit: int = 392
    holdout: float = 0.1


def batches_per_epoch(n_train: int, costs: Costs) -> int:
    """Batches GLASS trains on per epoch: the training images left after the hold-out, in batches, until more than
    `limit` images were seen."""
    training = n_train - holdout_count(n_train, costs.holdout)
    return min(math.ceil(training / costs.batch), costs.limit // costs.batch + 1)


def class_seconds(n_train: int, n_test: int, costs: Costs) -> float:
    """A class's modelled run time: its epochs (training batches and the per-epoch test) and the one-off passes."""
    per_epoch = batches_per_epoch(n_train, costs) * costs.s_per_batch + n_test * costs.s_per_image
    return costs.epochs * per_epoch + (n_train + n_test) * costs.s_per_image


def pack_longest_first(times: dict[str, float], devices: int) -> list[list[str]]:
    """LPT: jobs in order of decreasing time, each to the device that becomes free first; the jobs per device."""
    loads = [(0.0, device) for device in range(devices)]
    packed: list[list[str]] = [[] for _ in range(devices)]
    for name in sorted(times, key=lambda n: (-times[n], n)):
        load, device = heapq.heappop(loads)
        packed[device].append(name)
        heapq.heappush(loads, (load + times[name], device))
    return packed


def makespan(times: dict[str, float], packed: Sequence[Sequence[str]]) -> float:
    """The wall time of a packing: the busiest device's total."""
    return max(sum(times[name] for name in jobs) for jobs in packed)


def read_times(path: Path) -> dict[str, float]:
    """class -> seconds from a CSV with columns class,seconds."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        times = {row["class"]: float(row["seconds"]) for row in rows}
    except (OSError, KeyError, TypeError, ValueError, csv.Error) as err:
        raise ModelInputError(f"--times {path}: not a class,seconds table ({errors.first_line(err)})") from None
    if not times or min(times.values()) <= 0:
        raise ModelInputError(f"--times {path}: needs at least one class with seconds > 0")
    return times


def table(times: dict[str, float], device_counts: Sequence[int]) -> str:
    """The model's wall time, speedup and efficiency per device count, with the lower bound."""
    total = sum(times.values())
    lines = [f"{'devices':>7}  {'wall time (h)':>13}  {'lower bound (h)':>15}  {'speedup':>7}  {'efficiency':>10}  "
             "classes on the busiest device"]
    for devices in device_counts:
        packed = pack_longest_first(times, devices)
        wall = makespan(times, packed)
        bound = max(total / devices, max(times.values()))
        busiest = max(packed, key=lambda jobs: sum(times[name] for name in jobs))
        lines.append(f"{devices:>7}  {wall / 3600:>13.1f}  {bound / 3600:>15.1f}  {total / wall:>6.2f}x  "
                     f"{100 * total / wall / devices:>9.0f} %  "
                     f"{'all' if len(busiest) == len(times) else ', '.join(busiest)}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The costs, or a per-class time table, and the device counts."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--times", type=Path, help="measured per-class times: a CSV with columns class,seconds")
    parser.add_argument("--s_per_batch", type=utils.positive_float, default=MEASURED_S_PER_BATCH,
                        help="seconds per training batch of 8 on one device (paper settings)")
    parser.add_argument("--s_per_image", type=utils.positive_float, default=MEASURED_S_PER_IMAGE,
                        help="seconds per test image on one device")
    parser.add_argument("--epochs", type=utils.positive_int, default=640)
    parser.add_argument("--devices", type=utils.positive_int, nargs="+", default=list(DEVICE_COUNTS))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Prints the per-class times and the modelled wall time per device count."""
    args = parse_args(argv)
    if args.times is not None:
        times = read_times(args.times)
        print(f"Per-class times from {args.times} (measured by you), {len(times)} classes.")
    else:
        costs = Costs(args.s_per_batch, args.s_per_image, args.epochs)
        times = {name: class_seconds(n_train, n_test, costs) for name, (n_train, n_test) in MVTEC_AD.items()}
        print(f"MVTec AD, {len(times)} classes, {costs.epochs} epochs (paper settings); per-class times computed from "
              f"{costs.s_per_batch:g} s per batch of {costs.batch} and {costs.s_per_image:g} s per test image.")
        print(f"{'class':<12} {'train':>5} {'test':>5} {'batches/epoch':>13} {'hours':>7}")
        for name, (n_train, n_test) in sorted(MVTEC_AD.items(), key=lambda item: -times[item[0]]):
            print(f"{name:<12} {n_train:>5} {n_test:>5} {batches_per_epoch(n_train, costs):>13} "
                  f"{times[name] / 3600:>7.1f}")
    print("\nA MODEL, NOT A MEASUREMENT: classes packed on identical devices, longest first.")
    print(table(times, args.devices))
    return 0


if __name__ == "__main__":
    sys.exit(errors.run_script(main))
