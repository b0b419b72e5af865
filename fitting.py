"""Fitting every method but GLASS: PatchCore and PaDiM in one pass over a class's defect-free training
images, DRAEM and the autoencoder in their epochs of training (methods.pixel); the checkpoint
(ckpt_best_<epochs>.pth) holds the config, the fitted state, the held-out calibration and the
timing, like a GLASS checkpoint, so every tool loads it from the class folder alone.

A class folder that already holds a model fitted with the same settings is kept (a rerun tests it, as a
finished GLASS run does); one fitted with other settings stops the run with a one-line error.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import utils
from inference import calibration
from methods.base import AnomalyModel, CheckpointError
from model import CHECKPOINT_FORMAT, LATEST_NAME, final_checkpoint_path, load_checkpoint

LOGGER = logging.getLogger(__name__)

FIT_EPOCH = 1  # a one-pass method's checkpoint is ckpt_best_1.pth: one pass over the training images


def checkpoint_header(model: AnomalyModel, seed: int, meta: dict[str, Any]) -> dict[str, Any]:
    """The fields that say what a fitted checkpoint is: format, method, config, seed, data."""
    return {"format": CHECKPOINT_FORMAT, "method": model.method, "net": model.cfg.to_dict(),
            "train": {"seed": int(seed)}, "meta": meta}


def _already_fitted(class_dir: Path, header: dict[str, Any]) -> bool:
    """True when the class folder holds a model fitted with these settings; other settings raise."""
    path = final_checkpoint_path(class_dir)
    if path is None:
        return False
    stored = load_checkpoint(path)
    for key in ("method", "net", "train"):
        if stored.get(key, "glass" if key == "method" else None) != header[key]:
            raise CheckpointError(f"{path}: was fitted with different '{key}' settings; use the same flags, or "
                                  f"delete {class_dir} to fit again")
    return True


def unfinished_training(latest: Path, header: dict[str, Any]) -> dict[str, Any] | None:
    """The training state an interrupted run left in `latest` (None when there is none); a state of other
    settings or data raises CheckpointError."""
    if not latest.is_file():
        return None
    state = load_checkpoint(latest)
    for key in ("method", "net", "train", "meta"):
        if state.get(key) != header[key]:
            raise CheckpointError(f"{latest}: an unfinished {header['method']} training with other '{key}' settings "
                                  f"or data; use the same flags, or delete {latest.parent} to start over")
    return state


def set_distance_scale(model: AnomalyModel, device: torch.device, paths: Sequence[str | Path],
                       batch_size: int = 8) -> float:
    """Sets a distance method's score scale (methods.base.squash) to the largest patch distance over these
    defect-free image files, scored whole as the engine scores frames: the held-out images (the training
    images when none are held out, whose distances are optimistic), so that their worst patch scores 0.5.
    Returns the scale; models without one are left alone."""
    head = getattr(model, "head", None)
    if head is None or not isinstance(getattr(head, "scale", None), torch.Tensor) or not paths:
        return float("nan")
    head.scale = torch.ones((), device=head.scale.device)  # scores d / (d + 1): d = s / (1 - s)
    engine = calibration.model_engine(model, device, batch_size=batch_size)
    top = 0.0
    for start in range(0, len(paths), batch_size):
        frames = [calibration.read_frame(path) for path in paths[start:start + batch_size]]
        top = max([top] + [float(grid.max()) for grid in engine.patch_scores(frames)])
    scale = top / (1 - top) if 0 < top < 1 else 1.0
    head.scale = torch.tensor(scale, device=head.scale.device)
    LOGGER.info("%s: score scale %.4g (largest patch distance of %d defect-free images)", model.method, scale,
                len(paths))
    return scale


def fit_class(model: AnomalyModel, loader: torch.utils.data.DataLoader, class_dir: Path,
              device: torch.device, seed: int, heldout: Sequence[Path] = (), meta: dict[str, Any] | None = None,
              checkpoint_saved: Callable[[Path], None] | None = None) -> Path:
    """Fits `model` on a training loader (unless already fitted alike; `AnomalyModel.fit_loader`: one pass,
    or a pixel method's epochs), calibrates the thresholds on the
    held-out images and writes ckpt_best_1.pth atomically; returns the checkpoint path. `checkpoint_saved(path)`
    follows each epoch's training state of a method trained for epochs (scale_out sends it to the driver)."""
    meta = {**(meta or {}), "heldout": [Path(p).name for p in heldout]}
    header = checkpoint_header(model, seed, meta)
    class_dir.mkdir(parents=True, exist_ok=True)
    if _already_fitted(class_dir, header):
        LOGGER.info("%s: already fitted with these settings; testing it", class_dir)
        return final_checkpoint_path(class_dir)
    model.to(device)
    utils.fix_seeds(seed)
    started = time.perf_counter()
    latest = class_dir / LATEST_NAME  # the training state between epochs (pixel methods), as GLASS's

    def save_epoch(state: dict[str, Any]) -> None:
        utils.atomic_torch_save({**header, **state}, latest)
        if checkpoint_saved is not None:
            checkpoint_saved(latest)

    facts = model.fit_loader(loader, seed=seed, resume=unfinished_training(latest, header), on_epoch=save_epoch)
    seconds = time.perf_counter() - started
    epochs = int(facts.get("epochs", FIT_EPOCH))
    LOGGER.info("%s: fitted %s in %.1f s", class_dir.name, model.method, seconds)
    training = getattr(loader.dataset, "image_paths", [])
    batch_size = loader.batch_size or 1
    set_distance_scale(model, device, list(heldout) or training, batch_size)
    calibrated = calibration.calibrate_model(model, device, list(heldout), training, batch_size=batch_size)
    LOGGER.info("%s: %s", class_dir.name, calibration.describe(calibrated))
    state = {**header, "epoch": epochs, "selection": "last", "weights": model.weights(),
             "calibration": calibrated, "timing": {"epochs": epochs, "train_seconds": seconds, "fit": facts}}
    path = class_dir / f"ckpt_best_{epochs}.pth"
    utils.atomic_torch_save(state, path)
    latest.unlink(missing_ok=True)  # the final checkpoint holds what a rerun needs
    return path
