"""datasets.visa: the VisA layout (split CSV, 0/1 label masks) and its one-line errors."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from datasets.base import DatasetConfig, DatasetError
from datasets.registry import build_dataset
from tests.datasets.tiny_data import GRID, MEAN, RESIZE, SIZE, STD, assert_one_line_error, make_textures, make_visa


def test_visa_dataset(tmp_path: Path) -> None:
    root, aug = make_visa(tmp_path / "visa"), make_textures(tmp_path / "dtd")
    cfg = DatasetConfig("visa", root, aug, ("candle",), resize=RESIZE, imagesize=SIZE, fg=0, num_workers=0)
    train = build_dataset(cfg, "candle", "train", MEAN, STD, seed=0)
    assert len(train) == 3
    item = train[0]
    assert item["aug"].shape == (3, SIZE, SIZE) and item["mask_s"].shape == (GRID, GRID)
    assert item["mask_s"].max() == 1
    test = build_dataset(cfg, "candle", "test", MEAN, STD, seed=0)
    items = [test[i] for i in range(len(test))]
    assert [(it["is_anomaly"], it["anomaly_type"]) for it in items] == [(1, "anomaly"), (0, "good")]
    assert items[0]["mask_gt"].max() == 1 and items[0]["mask_gt"][0, 16, 17] == 1  # 0/1 label masks
    assert items[1]["mask_gt"].sum() == 0
    assert "candle" in items[0]["image_path"] and "pcb1" not in items[0]["image_path"]


def test_missing_visa_csv(tmp_path: Path) -> None:
    root = tmp_path / "visa"
    root.mkdir()
    cfg = DatasetConfig("visa", root, tmp_path, ("candle",), num_workers=0)
    with pytest.raises(DatasetError, match="1cls.csv") as info:
        build_dataset(cfg, "candle", "test", MEAN, STD, seed=0)
    assert_one_line_error(info, root / "split_csv" / "1cls.csv")


def test_visa_unknown_class_and_bad_csv(tmp_path: Path) -> None:
    root, aug = make_visa(tmp_path / "visa"), make_textures(tmp_path / "dtd")
    cfg = DatasetConfig("visa", root, aug, ("candle",), fg=0, num_workers=0)
    with pytest.raises(DatasetError, match=re.escape("classes found: candle, pcb1")):
        build_dataset(cfg, "capsules", "train", MEAN, STD, seed=0)
    (root / "split_csv" / "1cls.csv").write_text("object,split,image\ncandle,train,x.png\n")
    with pytest.raises(DatasetError, match="lacks column"):
        build_dataset(cfg, "candle", "train", MEAN, STD, seed=0)
