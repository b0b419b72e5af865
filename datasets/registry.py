"""Which folder layout each dataset name uses, and building one class and split of a dataset from it.

`base` holds what all datasets share (configuration, samples, checks, transforms, `GlassDataset`);
each layout module (`mvtec`, `visa`) lists a class's samples with base's pieces; this module sits
above both, so no dataset module imports one that imports it back.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import torch

from datasets.base import (
    MVTEC_LAYOUT_NAMES,
    SPLITS,
    DatasetConfig,
    DatasetError,
    GlassDataset,
    Sample,
    attach_fg_masks,
    check_image_header,
    check_mask_size,
    find_textures,
    split_holdout,
)
from datasets.mvtec import mvtec_samples
from datasets.visa import visa_samples

LOGGER = logging.getLogger(__name__)

SampleLister = Callable[[Path, str, str], list[Sample]]  # (dataset root, class, split) -> samples

# Dataset name (base.DATASET_NAMES) -> the function that lists a class's samples in its folder layout.
LAYOUTS: Mapping[str, SampleLister] = MappingProxyType(
    {**{name: mvtec_samples for name in MVTEC_LAYOUT_NAMES}, "visa": visa_samples})


def list_samples(cfg: DatasetConfig, classname: str, split: str) -> list[Sample]:
    """The samples of one class and split, read in the folder layout of the config's dataset."""
    return LAYOUTS[cfg.name](cfg.data_path, classname, split)


def build_dataset(cfg: DatasetConfig, classname: str, split: str, norm_mean: Sequence[float],
                  norm_std: Sequence[float], seed: int, las: bool = True) -> torch.utils.data.Dataset:
    """Validate the files of one class/split and return its dataset (DatasetError on any problem)."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split '{split}'; use one of: {', '.join(SPLITS)}")
    if not cfg.data_path.is_dir():
        raise DatasetError(f"dataset folder {cfg.data_path} does not exist; pass the dataset root as DATA_PATH")
    samples = list_samples(cfg, classname, split)
    heldout: list[Sample] = []
    if split == "train":
        samples, heldout = split_holdout(samples, cfg.holdout)
    for sample in samples + heldout:
        check_image_header(sample.image_path)
        if sample.mask_path is not None:
            check_image_header(sample.mask_path)
            if not cfg.resize_masks:
                check_mask_size(sample.image_path, sample.mask_path)
    use_las = las and split == "train"
    textures: list[Path] = []
    if use_las:
        textures = find_textures(cfg.aug_path)
        if cfg.fg:
            samples = attach_fg_masks(samples, cfg.data_path, classname)
    LOGGER.info("dataset %s/%s %s: %d images%s%s", cfg.name, classname, split, len(samples),
                f" (+{len(heldout)} held out for calibration)" if heldout else "",
                f", {len(textures)} textures" if use_las else "")
    dataset = GlassDataset(cfg, classname, split, samples, norm_mean, norm_std, seed, use_las, textures)
    dataset.heldout_paths = [s.image_path for s in heldout]
    return dataset
