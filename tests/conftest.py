"""Shared fixtures: tiny datasets written into tmp_path."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

import common

common.keep_freed_memory()  # as the CLI does: large CPU temporaries are reused, not page-faulted again


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour texture (uint8 HxWx3)."""
    noise = rng.normal(0.5, 0.15, (size // 4, size // 4, 3)).astype(np.float32)
    image = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def write_tiny_mvtec(root: Path, classes=("toy",), n_train=6, n_good=3, n_bad=3, size=64, seed=0) -> tuple[Path, Path]:
    """Writes an MVTec-layout dataset (dark square defects) and a DTD-style texture folder."""
    rng = np.random.default_rng(seed)
    data = root / "mvtec"
    for cls in classes:
        for i in range(n_train):
            _write(data / cls / "train" / "good" / f"{i:03d}.png", _texture(rng, size))
        for i in range(n_good):
            _write(data / cls / "test" / "good" / f"{i:03d}.png", _texture(rng, size))
        for i in range(n_bad):
            image = _texture(rng, size)
            mask = np.zeros((size, size), np.uint8)
            y, x = rng.integers(8, size - 24, 2)
            image[y:y + 14, x:x + 14] = (20, 20, 200)
            mask[y:y + 14, x:x + 14] = 255
            _write(data / cls / "test" / "blob" / f"{i:03d}.png", image)
            _write(data / cls / "ground_truth" / "blob" / f"{i:03d}_mask.png", mask)
    aug = root / "dtd" / "images"
    for category in ("a", "b"):
        for i in range(2):
            _write(aug / category / f"{category}_{i}.jpg", _texture(rng, size))
    return data, aug


def _write(path: Path, image: np.ndarray) -> None:
    """Writes an RGB or gray uint8 image, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), image)


@pytest.fixture
def tiny_mvtec(tmp_path: Path) -> tuple[Path, Path]:
    """(data_path, aug_path) of a one-class MVTec-layout dataset with 64 px images."""
    return write_tiny_mvtec(tmp_path)


@dataclass(frozen=True)
class TinyModel:
    """A trained tiny model directory as the video and export commands take it."""

    model_path: Path  # results/models/backbone_0
    class_name: str  # mvtec_toy
    class_dir: Path
    data_path: Path  # the MVTec-layout data it was trained on


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A tiny efficientnet_lite0 GLASS model (64 px, dims 64, 2 epochs), trained once per session."""
    import main  # imported here: the fixture module stays light for tests that do not train

    root = tmp_path_factory.mktemp("tiny_model")
    data, aug = write_tiny_mvtec(root)
    results = root / "results"
    code = main.cli([
        "--results_path", str(results), "--seed", "3",
        "net", "-b", "efficientnet_lite0", "--pretrain_embed_dimension", "64", "--target_embed_dimension", "64",
        "--dsc_hidden", "32", "--meta_epochs", "2", "--step", "2",
        "dataset", "--batch_size", "4", "--num_workers", "0", "--resize", "64", "--imagesize", "64",
        "--fg", "0", "--distribution", "2", "-d", "toy", "mvtec", str(data), str(aug),
    ])
    assert code == 0
    model_path = results / "models" / "backbone_0"
    return TinyModel(model_path, "mvtec_toy", model_path / "mvtec_toy", data)


def interrupt_second_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes training die (Ctrl-C) during its second epoch, after ckpt.pth of the first was written."""
    import glass

    original = glass.GLASS._train_epoch
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(glass.GLASS, "_train_epoch", interrupted)


def write_scrolling_clip(tiny_model: TinyModel, path: Path, frames: int, shift: int = 2) -> Path:
    """An MP4 of the fixture's first defective test image scrolling left by `shift` px per frame."""
    import video_io

    image = cv2.imread(str(tiny_model.data_path / "toy" / "test" / "blob" / "000.png"))
    height, width = image.shape[:2]
    with video_io.AtomicVideoWriter(path, 10.0, (width, height)) as writer:
        for index in range(frames):
            writer.write(np.ascontiguousarray(np.roll(image, -shift * index, axis=1)))
    return path
