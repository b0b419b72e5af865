"""Reference numbers from anomalib 2.7 (PyPI) for PatchCore and PaDiM on an MVTec-layout folder, on CPU, offline.

Run with the separate anomalib venv (benchmarks/setup_anomalib_venv.sh), never with the project's:

    /work/main/.venv/bin/python benchmarks/save_lite0_hf_cache.py --hf_home /work/anomalib_hf_home
    /work/anomalib_venv/bin/python benchmarks/anomalib_reference.py --hf_home /work/anomalib_hf_home \\
        --data /tmp/demo_new/data/mvtec --classes brick gravel grass --output /tmp/anomalib_reference.csv

--hf_home sets HF_HOME (else the HF_HOME of the environment is used); HF_HUB_OFFLINE=1 is always set
before anything of huggingface_hub is imported, so nothing is downloaded: the backbone's pretrained
weights must already be in that cache (for tf_efficientnet_lite0 the script above puts our converted
weights there as timm/tf_efficientnet_lite0.in1k). Before training, every tensor of anomalib's feature
extractor is compared with the cached file (a silent random init would fail there: timm loads
EfficientNet feature extractors non-strictly).

For each class and method: anomalib's Patchcore / Padim with `pre_processor` = PreProcessor(Resize((s, s)),
Normalize(mean, std)) (no center crop; ImageNet mean/std, or timm's for the backbone with
--normalization backbone), trained with anomalib's Engine (accelerator cpu, 1 device, no logger, Lightning
barebones mode: no checkpoint, no progress bar; root folder a temporary one; validation skipped, the memory
bank / Gaussian is fitted at the end of the training epoch) and tested with `Engine.test` on the class's
test split. The post-processor and visualizer are off, so scores stay raw.

Metrics: image_auroc and pixel_auroc are sklearn's roc_auc_score on the raw predictions that the test
loop returns (pred_score against the label; every anomaly_map pixel against gt_mask, all test images
pooled). anomalib's Evaluator is off: its AUROC (torchmetrics BinaryROC) applies a sigmoid to scores
outside [0, 1], so on raw distances it reads ~0.5; anomalib's own pipeline feeds it scores min-max
normalised by its PostProcessor with statistics of the validation split, clamped to [0, 1].
train_seconds is the wall time of Engine.fit (feature extraction of the train images + coreset / Gaussian
fit), test_seconds that of Engine.test (inference on the test images); model building (backbone load) is
not timed.
Each run is seeded with Lightning's seed_everything(--seed) right before the model is built, which fixes
PaDiM's random channel subset (written to the CSV as padim_channels: indices into the concatenation of
the --layers maps, in anomalib's order) and PatchCore's coreset start point and random projection.

Memory: allocations of 1 MiB and more are served by mmap (glibc mallopt M_MMAP_THRESHOLD, set at start,
unless the environment sets MALLOC_MMAP_THRESHOLD_).
With glibc's default sliding threshold, anomalib's k-center-greedy loop (one 30720 x 255 float temporary
per iteration) grew the heap by ~19 MB per iteration here and was OOM-killed at 23 GB on the demo data.
"""
from __future__ import annotations

import argparse
import ctypes
import csv
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from anomalib.models.components import AnomalibModule

LOGGER = logging.getLogger("anomalib_reference")

METHODS = ("patchcore", "padim")
NORMALIZATIONS = ("imagenet", "backbone")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".png", ".PNG")  # what anomalib's MVTecAD dataset reads
FIELDS = ("method", "class", "image_auroc", "pixel_auroc", "train_seconds", "test_seconds", "n_train", "n_test",
          "n_test_anomalous", "memory_bank",
          "backbone", "layers", "image_size", "normalization", "mean", "std", "coreset", "num_neighbors",
          "padim_features", "seed", "batch_size", "threads", "anomalib_version", "torch_version",
          "timm_version", "weights", "padim_channels")


class UserError(ValueError):
    """A bad flag, folder or cache the user can fix; printed as one line, exit code 2."""


@dataclass
class Predictions:
    """Raw test-set predictions collected batch by batch."""

    scores: list[np.ndarray]
    labels: list[np.ndarray]
    maps: list[np.ndarray]
    masks: list[np.ndarray]


def positive_int(text: str) -> int:
    """argparse type: an integer > 0 (not utils.positive_int: this script runs in anomalib's virtualenv, where
    the toolkit and its dependencies are not installed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def ratio(text: str) -> float:
    """argparse type: a float in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", type=Path, required=True,
                        help="MVTec-layout root: <data>/<class>/train/good, test/<type>, ground_truth/<type>")
    parser.add_argument("--classes", nargs="+", default=None,
                        help="classes (folders of --data); default: every folder with train/good")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--backbone", default="tf_efficientnet_lite0", help="timm model name")
    parser.add_argument("--layers", nargs="+", default=["blocks.2", "blocks.4"],
                        help="timm feature_info module names, shallow to deep (the first sets the resolution)")
    parser.add_argument("--image_size", type=positive_int, default=256, help="images are resized to S x S")
    parser.add_argument("--normalization", choices=NORMALIZATIONS, default="imagenet",
                        help="input mean/std: ImageNet's, or the backbone's timm pretrained_cfg")
    parser.add_argument("--coreset", type=ratio, default=0.1, help="PatchCore coreset sampling ratio")
    parser.add_argument("--num_neighbors", type=positive_int, default=9,
                        help="PatchCore neighbours for the image-score reweighting")
    parser.add_argument("--padim_features", type=positive_int, default=100,
                        help="PaDiM random channel subset size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=positive_int, default=32, help="train and test batch size")
    parser.add_argument("--workers", type=int, default=0, help="dataloader workers")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--hf_home", type=Path, default=None,
                        help="Hugging Face home holding the backbone weights (default: $HF_HOME)")
    parser.add_argument("--output", type=Path, required=True, help="CSV file to write")
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error(f"--workers must be >= 0, got {args.workers}")
    return args


def set_offline_env(hf_home: Path | None) -> None:
    """HF_HUB_OFFLINE=1 (and HF_HOME when given); must run before huggingface_hub is imported."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    if hf_home is not None:
        if not hf_home.is_dir():
            raise UserError(f"--hf_home {hf_home} is not a folder; create it with "
                            "benchmarks/save_lite0_hf_cache.py --hf_home (project venv)")
        os.environ["HF_HOME"] = str(hf_home.resolve())
    if "huggingface_hub" in sys.modules:  # imported by a caller: its constants were read already
        from huggingface_hub import constants

        if not constants.HF_HUB_OFFLINE or (hf_home is not None and constants.HF_HOME != os.environ["HF_HOME"]):
            raise RuntimeError("huggingface_hub was imported before HF_HUB_OFFLINE / HF_HOME were set")


def image_files(folder: Path) -> list[Path]:
    """Image files anomalib reads from `folder` (sorted)."""
    return sorted(path for path in folder.iterdir() if path.suffix in IMAGE_SUFFIXES) if folder.is_dir() else []


def check_class(data: Path, name: str) -> tuple[int, int, int]:
    """(train, test, anomalous test) image counts of class `name`; UserError on a bad layout."""
    root = data / name
    if not root.is_dir():
        raise UserError(f"class folder {root} does not exist (classes in {data}: "
                        f"{', '.join(sorted(p.name for p in data.iterdir() if p.is_dir())) or 'none'})")
    train = image_files(root / "train" / "good")
    if not train:
        raise UserError(f"no .png images in {root / 'train' / 'good'}")
    test_dir = root / "test"
    types = sorted(p for p in test_dir.iterdir() if p.is_dir()) if test_dir.is_dir() else []
    n_test = sum(len(image_files(folder)) for folder in types)
    good = len(image_files(test_dir / "good"))
    if good == 0 or n_test == good:
        raise UserError(f"{test_dir} needs good/ and at least one defect folder with .png images (AUROC needs both)")
    for folder in types:
        if folder.name == "good":
            continue
        for image in image_files(folder):
            mask = root / "ground_truth" / folder.name / f"{image.stem}_mask.png"
            if not mask.is_file():
                raise UserError(f"mask {mask} for test image {image} does not exist")
    return len(train), n_test, n_test - good


def default_classes(data: Path) -> list[str]:
    """Folders of `data` with a train/good folder."""
    found = sorted(p.name for p in data.iterdir() if (p / "train" / "good").is_dir())
    if not found:
        raise UserError(f"no class folder with train/good in {data}")
    return found


def check_layers(backbone: str, layers: list[str]) -> int:
    """Channel count of the concatenated `layers`; UserError unless they are feature_info modules of
    `backbone`, each once, shallow to deep."""
    import timm

    if not timm.is_model(backbone):
        raise UserError(f"unknown timm model {backbone!r}")
    model = timm.create_model(backbone, pretrained=False, features_only=True, exportable=True)
    valid = [info["module"] for info in model.feature_info.info]
    unknown = [layer for layer in layers if layer not in valid]
    if unknown:
        raise UserError(f"unknown layer {unknown[0]!r} for {backbone}; valid layers: {', '.join(valid)}")
    positions = [valid.index(layer) for layer in layers]
    if positions != sorted(set(positions)):
        raise UserError(f"--layers {' '.join(layers)}: give each layer once, shallow to deep "
                        f"(anomalib pairs them with timm's outputs in network order)")
    return sum(model.feature_info.info[position]["num_chs"] for position in positions)


def cached_weights_file(backbone: str) -> Path:
    """The backbone's pretrained weights file in the local Hugging Face cache; UserError when absent."""
    import timm
    from huggingface_hub import constants, try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(backbone)
    if cfg is None or not cfg.hf_hub_id:
        raise UserError(f"timm model {backbone!r} has no Hugging Face weights id; pick another backbone")
    repo, _, revision = cfg.hf_hub_id.partition("@")
    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(repo, filename, cache_dir=constants.HF_HUB_CACHE, revision=revision or None)
        if isinstance(path, str):
            return Path(path)
    raise UserError(f"no weights for {repo} in the Hugging Face cache {constants.HF_HUB_CACHE} (offline); "
                    "for tf_efficientnet_lite0 run benchmarks/save_lite0_hf_cache.py --hf_home DIR with the "
                    "project venv and pass --hf_home DIR")


def check_pretrained(model: AnomalibModule, weights: Path) -> int:
    """Number of feature-extractor tensors, after checking that each equals the cached weights file."""
    import timm
    import torch

    reference = timm.models.load_state_dict(str(weights), use_ema=False, weights_only=True)
    state = model.model.feature_extractor.feature_extractor.state_dict()
    missing = [key for key in state if key not in reference]
    different = [key for key in state if key in reference and not torch.equal(state[key], reference[key])]
    if missing or different:
        key = (missing or different)[0]
        raise UserError(f"anomalib's feature extractor does not hold the cached weights {weights}: "
                        f"{len(missing)} tensors missing there, {len(different)} different (e.g. {key})")
    return len(state)


def normalization_stats(choice: str, backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) for --normalization."""
    if choice == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    import timm

    cfg = timm.models.get_pretrained_cfg(backbone)
    return tuple(cfg.mean), tuple(cfg.std)


def build_model(method: str, args: argparse.Namespace, mean: tuple[float, ...], std: tuple[float, ...]
                ) -> AnomalibModule:
    """anomalib Patchcore or Padim with our pre-processing and raw outputs (no post-processor nor evaluator)."""
    from anomalib.models import Padim, Patchcore
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    size = (args.image_size, args.image_size)
    common: dict[str, Any] = {
        "backbone": args.backbone,
        "layers": list(args.layers),
        "pre_trained": True,
        "pre_processor": PreProcessor(transform=Compose([Resize(size, antialias=True),
                                                         Normalize(mean=list(mean), std=list(std))])),
        "post_processor": False,
        "evaluator": False,  # see the module docstring: AUROC comes from sklearn on the raw outputs
        "visualizer": False,
    }
    if method == "patchcore":
        return Patchcore(coreset_sampling_ratio=args.coreset, num_neighbors=args.num_neighbors, **common)
    try:
        return Padim(n_features=args.padim_features, **common)
    except ValueError as err:  # n_features out of range for the layers' channel count
        raise UserError(f"--padim_features {args.padim_features}: {err}") from err


def collector_callback(store: Predictions) -> Any:
    """Lightning callback that copies each test batch's raw predictions and ground truth into `store`."""
    from lightning.pytorch import Callback

    class _Collector(Callback):
        """Keeps pred_score, gt_label, anomaly_map and gt_mask of every test batch."""

        def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                              dataloader_idx: int = 0) -> None:
            """Store one batch (on CPU, as numpy)."""
            store.scores.append(outputs.pred_score.detach().cpu().reshape(-1).numpy())
            store.labels.append(outputs.gt_label.detach().cpu().reshape(-1).numpy())
            store.maps.append(outputs.anomaly_map.detach().cpu().reshape(len(outputs.pred_score), -1).numpy())
            store.masks.append(outputs.gt_mask.detach().cpu().reshape(len(outputs.pred_score), -1).numpy())

    return _Collector()


def sklearn_aurocs(store: Predictions) -> tuple[float, float]:
    """(image AUROC, pixel AUROC) of the collected raw predictions."""
    from sklearn.metrics import roc_auc_score

    labels = np.concatenate(store.labels).astype(int)
    image = roc_auc_score(labels, np.concatenate(store.scores))
    maps = np.concatenate(store.maps)
    masks = np.concatenate(store.masks).astype(bool)
    if maps.shape != masks.shape:
        raise RuntimeError(f"anomaly maps {maps.shape} and masks {masks.shape} differ in size")
    pixel = roc_auc_score(masks.reshape(-1), maps.reshape(-1))
    return float(image), float(pixel)


def memory_bank_size(model: AnomalibModule, method: str) -> str:
    """PatchCore: coreset rows x dims; PaDiM: dims x positions of the fitted Gaussian."""
    if method == "patchcore":
        return "x".join(str(d) for d in model.model.memory_bank.shape)
    return "x".join(str(d) for d in model.model.gaussian.mean.shape)


def run_one(method: str, name: str, args: argparse.Namespace, weights: Path) -> dict[str, Any]:
    """Train and test one (method, class); one CSV row."""
    import torch
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    mean, std = normalization_stats(args.normalization, args.backbone)
    seed_everything(args.seed, workers=True, verbose=False)
    model = build_model(method, args, mean, std)
    tensors = check_pretrained(model, weights)
    LOGGER.info("%s/%s: %d backbone tensors equal %s", method, name, tensors, weights)
    datamodule = MVTecAD(root=args.data, category=name, train_batch_size=args.batch_size,
                         eval_batch_size=args.batch_size, num_workers=args.workers, seed=args.seed)
    store = Predictions([], [], [], [])
    with tempfile.TemporaryDirectory(prefix="anomalib_reference_") as root:
        engine = Engine(accelerator="cpu", devices=1, logger=False, barebones=True, limit_val_batches=0,
                        default_root_dir=root, callbacks=[collector_callback(store)])
        start = time.perf_counter()
        engine.fit(model=model, datamodule=datamodule)
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        engine.test(model=model, datamodule=datamodule, verbose=False)
        test_seconds = time.perf_counter() - start
    image_auroc, pixel_auroc = sklearn_aurocs(store)
    return {
        "method": method, "class": name,
        "image_auroc": f"{image_auroc:.6f}", "pixel_auroc": f"{pixel_auroc:.6f}",
        "train_seconds": f"{train_seconds:.2f}", "test_seconds": f"{test_seconds:.2f}",
        "n_train": len(datamodule.train_data), "n_test": len(datamodule.test_data),
        "n_test_anomalous": int(np.concatenate(store.labels).sum()),
        "memory_bank": memory_bank_size(model, method),
        "mean": " ".join(f"{v:g}" for v in mean), "std": " ".join(f"{v:g}" for v in std),
        "threads": torch.get_num_threads(),
        "padim_channels": " ".join(str(i) for i in model.model.idx.tolist()) if method == "padim" else "",
    }


def settings_columns(args: argparse.Namespace, method: str, weights: Path) -> dict[str, Any]:
    """The run's settings and library versions, as CSV columns."""
    import anomalib
    import timm
    import torch

    return {
        "backbone": args.backbone, "layers": " ".join(args.layers), "image_size": args.image_size,
        "normalization": args.normalization,
        "coreset": args.coreset if method == "patchcore" else "",
        "num_neighbors": args.num_neighbors if method == "patchcore" else "",
        "padim_features": args.padim_features if method == "padim" else "",
        "seed": args.seed, "batch_size": args.batch_size,
        "anomalib_version": anomalib.__version__, "torch_version": torch.__version__,
        "timm_version": timm.__version__, "weights": str(weights),
    }


def use_mmap_for_large_allocations(threshold: int = 1 << 20) -> None:
    """glibc only: serve allocations >= `threshold` bytes by mmap, a fixed threshold (see the docstring)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:  # glibc's own variable, applied at start: it wins
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        if libc.mallopt(-3, threshold) != 1:  # -3: M_MMAP_THRESHOLD
            LOGGER.warning("mallopt(M_MMAP_THRESHOLD) failed; memory may grow during coreset selection")
    except (OSError, AttributeError):
        LOGGER.warning("not glibc: cannot set M_MMAP_THRESHOLD; memory may grow during coreset selection")


def quiet_libraries() -> None:
    """Keep the libraries' info logs, progress bars and known warnings out of the output."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # anomalib's coreset progress bar: one line per update
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "anomalib", "timm"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*xFormers.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*limit_val_batches=0.*")


def main(argv: list[str] | None = None) -> int:
    """Check the inputs, then train and test every (class, method) and write the CSV."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.data.is_dir():
        raise UserError(f"data folder {args.data} does not exist")
    set_offline_env(args.hf_home)
    use_mmap_for_large_allocations()
    classes = args.classes or default_classes(args.data)
    counts = {name: check_class(args.data, name) for name in classes}
    if args.output.is_dir():
        raise UserError(f"--output {args.output} is a folder; give a CSV file path")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    quiet_libraries()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    channels = check_layers(args.backbone, args.layers)
    if "padim" in args.methods and args.padim_features > channels:
        raise UserError(f"--padim_features {args.padim_features} exceeds the {channels} channels of "
                        f"--layers {' '.join(args.layers)}")
    weights = cached_weights_file(args.backbone)
    LOGGER.info("backbone %s weights: %s; classes %s", args.backbone, weights,
                ", ".join(f"{n} ({c[0]} train, {c[1]} test)" for n, c in counts.items()))
    with args.output.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for name in classes:
            for method in args.methods:
                row = run_one(method, name, args, weights) | settings_columns(args, method, weights)
                writer.writerow(row)
                handle.flush()
                LOGGER.info("%s/%s: image AUROC %s, pixel AUROC %s, train %ss, test %ss", method, name,
                            row["image_auroc"], row["pixel_auroc"], row["train_seconds"], row["test_seconds"])
    LOGGER.info("wrote %s", args.output)
    return 0


def run(argv: list[str] | None = None) -> int:
    """Exit code of main: a UserError prints `error: <message>` on one line and gives 2."""
    try:
        return main(argv)
    except UserError as err:
        print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
