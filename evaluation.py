"""Testing any method's class model the same way: scores and maps of the test set, image/pixel AUROC,
AP and PRO, the evaluation pictures, and loading the selected checkpoint of a class folder to test it."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tqdm

import drawing
import metrics
import utils
from methods.base import AnomalyModel, CheckpointError
from model import final_checkpoint_path, load_checkpoint


@dataclass
class EvalResult:
    """Predictions and metrics on a test set."""

    metrics: dict[str, float]
    scores: np.ndarray
    labels: np.ndarray
    maps: np.ndarray
    masks: np.ndarray
    images: list[np.ndarray]
    paths: list[str]


@dataclass(frozen=True)
class ClassOutcome:
    """What testing a class folder's selected model gives: metrics, its epoch and selection rule, and the
    calibration stored with it (None for checkpoints written before calibration existed)."""

    metrics: dict[str, float]
    epoch: int
    selection: str
    calibration: dict[str, Any] | None


@torch.no_grad()
def evaluate(model: AnomalyModel, test_loader: torch.utils.data.DataLoader, device: torch.device,
             keep_images: bool = True) -> EvalResult:
    """Scores the test set and computes image/pixel AUROC, AP and PRO."""
    scores, labels, maps, masks, images, paths = [], [], [], [], [], []
    cfg = model.cfg
    for batch in tqdm.tqdm(test_loader, desc="testing", unit="batch", leave=False):
        image_scores, batch_maps, _ = model.predict(batch["image"].to(device))
        scores.append(image_scores)
        maps.append(batch_maps)
        labels.append(batch["is_anomaly"].numpy())
        masks.append(batch["mask_gt"].numpy()[:, 0] > 0.5)
        paths.extend(batch["image_path"])
        if keep_images:
            images.extend(utils.denormalise(img, cfg.mean, cfg.std) for img in batch["image"].numpy())
    result = EvalResult({}, np.concatenate(scores), np.concatenate(labels).astype(int), np.concatenate(maps),
                        np.concatenate(masks), images, paths)
    result.metrics = metrics_of(result)
    return result


def metrics_of(result: EvalResult) -> dict[str, float]:
    """Image AUROC/AP, pixel AUROC/AP and PRO (nan where undefined, e.g. no defect pixels)."""
    out = {name: math.nan for name in utils.METRIC_NAMES}
    if len(np.unique(result.labels)) == 2:
        image = metrics.image_metrics(result.scores, result.labels)
        out["image_auroc"], out["image_ap"] = image["auroc"], image["ap"]
    if result.masks.any() and not result.masks.all():
        pixel = metrics.pixel_metrics(result.maps, result.masks)
        out["pixel_auroc"], out["pixel_ap"] = pixel["auroc"], pixel["ap"]
        out["pixel_pro"] = metrics.compute_pro(result.masks, result.maps)
    return out


def write_visualisations(result: EvalResult, vis_dir: Path) -> None:
    """image | ground truth | heatmap per test image, heatmaps on one shared scale."""
    vmin, vmax = float(result.maps.min()), float(result.maps.max())
    for i, (image, mask, amap) in enumerate(zip(result.images, result.masks, result.maps)):
        name = Path(result.paths[i])
        out = vis_dir / f"{i + 1:03d}_{name.parent.name}_{name.stem}.png"
        heat_rgb = drawing.colorize(amap, vmin, vmax)[..., ::-1]  # BGR -> RGB like the image
        utils.save_visualisation(out, image, mask.astype(np.float32), heat_rgb)


def evaluate_class(model: AnomalyModel, class_dir: Path, test_loader: torch.utils.data.DataLoader,
               device: torch.device, vis_dir: Path | None) -> ClassOutcome:
    """Loads the class folder's selected checkpoint into `model`, evaluates it and writes the pictures."""
    path = final_checkpoint_path(class_dir)
    if path is None:
        raise CheckpointError(f"{class_dir}: no ckpt_best_*.pth to test; train first with --test ckpt")
    data = load_checkpoint(path)
    model.load_weights(data["weights"], str(path))
    model.to(device)
    result = evaluate(model, test_loader, device, keep_images=vis_dir is not None)
    if vis_dir is not None:
        write_visualisations(result, vis_dir)
    return ClassOutcome(result.metrics, int(data["epoch"]), str(data.get("selection", "last")),
                       data.get("calibration"))
