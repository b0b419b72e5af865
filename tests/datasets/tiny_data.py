"""Tiny MVTec and VisA class folders and texture folders for the dataset tests (written into tmp_path)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from datasets.base import DatasetConfig

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
RESIZE, SIZE, DOWN = 36, 32, 8
GRID = SIZE // DOWN
CLASS = "bottle"
GOOD_COLOUR = (255, 0, 128)


def save(path: Path, array: np.ndarray) -> Path:
    """Write an image, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(array).save(path)
    return path


def noise(rng: np.random.Generator, height: int = 40, width: int = 48) -> np.ndarray:
    """Random RGB image."""
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def defect_mask() -> np.ndarray:
    """40x48 mask with a defect block in the middle (value 255)."""
    mask = np.zeros((40, 48), np.uint8)
    mask[10:30, 14:34] = 255
    return mask


def fg_left() -> np.ndarray:
    """40x48 foreground mask covering the left 24 columns."""
    fg = np.zeros((40, 48), np.uint8)
    fg[:, :24] = 255
    return fg


def make_mvtec(root: Path, n_train: int = 4) -> Path:
    """Tiny MVTec-layout dataset with one class, fg masks and one defect type."""
    rng = np.random.default_rng(0)
    for i in range(n_train):
        save(root / CLASS / "train" / "good" / f"{i:03d}.png", noise(rng))
        save(root / "fg_mask" / CLASS / f"{i:03d}.png", fg_left())
    save(root / CLASS / "test" / "good" / "000.png", np.full((40, 48, 3), GOOD_COLOUR, np.uint8))
    save(root / CLASS / "test" / "crack" / "000.png", noise(rng))
    save(root / CLASS / "ground_truth" / "crack" / "000_mask.png", defect_mask())
    return root


def make_textures(aug: Path) -> Path:
    """Three texture images in two DTD-style category folders (jpg and png)."""
    rng = np.random.default_rng(1)
    save(aug / "banded" / "banded_0001.jpg", noise(rng, 50, 60))
    save(aug / "banded" / "banded_0002.jpg", noise(rng, 64, 64))
    save(aug / "dotted" / "dotted_0001.png", noise(rng, 45, 45))
    return aug


def make_visa(root: Path) -> Path:
    """Tiny VisA-layout dataset: two classes, label-valued masks (1 where defective)."""
    rng = np.random.default_rng(2)
    rows = ["object,split,label,image,mask"]
    for obj in ("candle", "pcb1"):
        for i in range(3):
            rel = f"{obj}/Data/Images/Normal/{i:03d}.JPG"
            save(root / rel, noise(rng))
            rows.append(f"{obj},train,normal,{rel},")
        rel = f"{obj}/Data/Images/Normal/100.JPG"
        save(root / rel, noise(rng))
        rows.append(f"{obj},test,normal,{rel},")
        rel, mask = f"{obj}/Data/Images/Anomaly/000.JPG", f"{obj}/Data/Masks/Anomaly/000.png"
        save(root / rel, noise(rng))
        save(root / mask, (defect_mask() > 0).astype(np.uint8))  # values 0/1 like label maps
        rows.append(f"{obj},test,anomaly,{rel},{mask}")
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    return root


def config(root: Path, aug: Path, name: str = "mvtec", **kwargs) -> DatasetConfig:
    """Small-image config for the tiny datasets."""
    base = {"resize": RESIZE, "imagesize": SIZE, "downsampling": DOWN, "num_workers": 0}
    base.update(kwargs)
    return DatasetConfig(name, root, aug, (CLASS,), **base)


def assert_one_line_error(info: pytest.ExceptionInfo, path: Path) -> None:
    """The DatasetError names `path` and is one line."""
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
