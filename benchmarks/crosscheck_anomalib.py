"""Our PatchCore and PaDiM against anomalib's at identical settings, from the CSV that
benchmarks/anomalib_reference.py writes (anomalib runs in its own virtualenv; see that script).

    python benchmarks/crosscheck_anomalib.py --anomalib_csv /tmp/anomalib_reference.csv \\
        --data /tmp/demo_new/data/mvtec --output results/crosscheck

For every (method, class) row of the anomalib CSV, our model is built with the same backbone, layers,
image size, normalisation, coreset ratio and neighbours (PatchCore) or channel count (PaDiM), fitted on
ALL the class's train/good images (no held-out images: anomalib holds none out) through the toolkit's
own pipeline (datasets.registry.build_dataset, methods.registry.build_model, model.fit,
evaluation.evaluate), and tested on the same test split. PaDiM draws a random channel subset; the
rows say which: ours (drawn from the seed) and, as a second row, anomalib's own subset (read from the CSV),
which isolates the implementation from the luck of the draw. Each anomalib CSV is one seed (its `seed`
column); ours runs with the same seed (PatchCore: the coreset's start point and random projection differ
between the two implementations whatever the seed, so single runs differ by chance: on 25 test images one
misordered pair moves the image AUROC by 0.7 points). The table gives both AUROCs per seed and, per
(method, class, channels), their means over the seeds (seed "mean"), with the difference in points;
`within_1` says whether |ours - anomalib| <= 1 image AUROC point.
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

import errors
import evaluation
import utils
from datasets import base as data
from datasets.registry import build_dataset
from methods.padim import PadimConfig
from methods.patchcore import PatchCoreConfig
from methods.registry import build_model

LOGGER = logging.getLogger("crosscheck_anomalib")
BACKBONES = {"tf_efficientnet_lite0": "efficientnet_lite0", "wide_resnet50_2": "wideresnet50", "resnet18": "resnet18"}
COLUMNS = ("method", "class", "channels", "seed", "anomalib_image_auroc", "ours_image_auroc", "image_delta",
           "anomalib_pixel_auroc", "ours_pixel_auroc", "pixel_delta", "within_1", "ours_fit_seconds")


class CrosscheckError(errors.UserError):
    """A missing or unusable input of the cross-check (one line)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anomalib_csv", type=Path, nargs="+", required=True,
                        help="CSVs written by anomalib_reference.py, one per seed")
    parser.add_argument("--data", type=Path, required=True, help="the MVTec-layout root anomalib ran on")
    parser.add_argument("--output", type=Path, default=Path("results/crosscheck"))
    return parser.parse_args(argv)


def read_reference(path: Path) -> list[dict[str, str]]:
    """The anomalib CSV's rows; CrosscheckError when missing or without the needed columns."""
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except OSError as err:
        raise CrosscheckError(f"--anomalib_csv {path}: cannot read it ({err.strerror}); run "
                              "benchmarks/anomalib_reference.py first") from None
    needed = {"method", "class", "image_auroc", "pixel_auroc", "backbone", "layers", "image_size", "mean", "std"}
    if not rows or not needed <= set(rows[0]):
        raise CrosscheckError(f"--anomalib_csv {path}: not a CSV of anomalib_reference.py (needs {sorted(needed)})")
    return rows


def our_config(row: dict[str, str]) -> Any:
    """Our method config with the settings of an anomalib row."""
    backbone = BACKBONES.get(row["backbone"])
    if backbone is None:
        raise CrosscheckError(f"backbone {row['backbone']} has no counterpart here; use one of {sorted(BACKBONES)}")
    size = int(row["image_size"])
    shared = {"backbone": backbone, "layers": tuple(row["layers"].split()), "imagesize": size, "resize": size,
              "mean": tuple(float(v) for v in row["mean"].split()), "std": tuple(float(v) for v in row["std"].split())}
    if row["method"] == "patchcore":
        return PatchCoreConfig(**shared, coreset=float(row["coreset"]), neighbours=int(row["num_neighbors"]))
    return PadimConfig(**shared, features=int(row["padim_features"]))


def run_ours(row: dict[str, str], data_root: Path, seed: int, channels: torch.Tensor | None) -> tuple[dict, float]:
    """(test metrics, fit seconds) of our model with the row's settings on all train/good images."""
    cfg = our_config(row)
    dataset_cfg = data.DatasetConfig(name="mvtec", data_path=data_root, aug_path=data_root,
                                     subdatasets=(row["class"],), resize=cfg.resize, imagesize=cfg.imagesize,
                                     holdout=0.0)
    train = build_dataset(dataset_cfg, row["class"], "train", cfg.mean, cfg.std, seed=seed, las=False)
    test = build_dataset(dataset_cfg, row["class"], "test", cfg.mean, cfg.std, seed=seed, las=False)
    utils.fix_seeds(seed)
    model = build_model(cfg)
    batches = (batch["image"] for batch in data.build_dataloader(train, dataset_cfg, seed, shuffle=False))
    started = time.perf_counter()
    if channels is None:
        model.fit(batches, seed=seed)
    else:
        model.fit(batches, seed=seed, channels=channels)
    seconds = time.perf_counter() - started
    loader = data.build_dataloader(test, dataset_cfg, seed, shuffle=False)
    return evaluation.evaluate(model, loader, torch.device("cpu"), keep_images=False).metrics, seconds


def compare(row: dict[str, str], data_root: Path) -> list[dict[str, Any]]:
    """Our rows against one anomalib row, at its seed: one per channel choice (PaDiM: ours and anomalib's)."""
    seed = int(row.get("seed") or 0)
    choices: list[tuple[str, torch.Tensor | None]] = [("ours" if row["method"] == "padim" else "all", None)]
    if row["method"] == "padim" and row.get("padim_channels"):
        choices.append(("anomalib's", torch.tensor([int(v) for v in row["padim_channels"].split()])))
    out = []
    for label, channels in choices:
        ours, seconds = run_ours(row, data_root, seed, channels)
        reference = {name: 100 * float(row[f"{name}_auroc"]) for name in ("image", "pixel")}
        mine = {name: 100 * ours[f"{name}_auroc"] for name in ("image", "pixel")}
        out.append(table_row(row["method"], row["class"], label, seed, reference, mine, seconds))
        LOGGER.info("%s", out[-1])
    return out


def table_row(method: str, classname: str, channels: str, seed: int | str, reference: dict[str, float],
              mine: dict[str, float], seconds: float) -> dict[str, Any]:
    """One line of the table from AUROCs in points."""
    return {"method": method, "class": classname, "channels": channels, "seed": seed,
            "anomalib_image_auroc": round(reference["image"], 2), "ours_image_auroc": round(mine["image"], 2),
            "image_delta": round(mine["image"] - reference["image"], 2),
            "anomalib_pixel_auroc": round(reference["pixel"], 2), "ours_pixel_auroc": round(mine["pixel"], 2),
            "pixel_delta": round(mine["pixel"] - reference["pixel"], 2),
            "within_1": abs(mine["image"] - reference["image"]) <= 1.0 + 1e-9, "ours_fit_seconds": round(seconds, 1)}


def seed_means(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (method, class, channels) seen with more than one seed: the means over the seeds."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["class"], row["channels"]), []).append(row)
    means = []
    for (method, classname, channels), members in groups.items():
        if len(members) < 2:
            continue
        mean = {key: sum(float(m[key]) for m in members) / len(members) for key in
                ("anomalib_image_auroc", "anomalib_pixel_auroc", "ours_image_auroc", "ours_pixel_auroc",
                 "ours_fit_seconds")}
        means.append(table_row(method, classname, channels, "mean",
                               {"image": mean["anomalib_image_auroc"], "pixel": mean["anomalib_pixel_auroc"]},
                               {"image": mean["ours_image_auroc"], "pixel": mean["ours_pixel_auroc"]},
                               mean["ours_fit_seconds"]))
    return means


def render(rows: list[dict[str, Any]]) -> str:
    """The comparison as CSV text."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Runs the cross-check and prints the table."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if not args.data.is_dir():
        raise CrosscheckError(f"--data {args.data}: not a folder; pass the MVTec-layout root anomalib ran on")
    references = [row for path in args.anomalib_csv for row in read_reference(path)]
    rows = [out for row in references for out in compare(row, args.data)]
    text = render(rows + seed_means(rows))
    args.output.mkdir(parents=True, exist_ok=True)
    utils.atomic_write_text(args.output / "crosscheck_anomalib.csv", text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(errors.run_script(main))
