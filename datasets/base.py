"""Dataset configuration, errors, image transforms and LAS synthesis shared by all GLASS datasets.

Randomness: every training item's random draws (Perlin mask, texture, ops, beta and the
torchvision random transforms, run under ``torch.random.fork_rng``) come from a seed that is a
function of (dataset seed, epoch, item index) only. The trainer calls ``set_epoch`` before each
epoch; results then depend neither on ``num_workers`` nor on whether a run was resumed, and the
global RNG state is never consumed. ``build_dataloader`` adds a seeded shuffle generator.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from torchvision import transforms
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

import preprocess
from errors import UserError, first_line
from paths import IMAGE_SUFFIXES
from perlin import las_mask

LOGGER = logging.getLogger(__name__)

DATASET_NAMES = ("mvtec", "mpdd", "wfdd", "mad-man", "mad-sys", "custom", "visa")
MVTEC_LAYOUT_NAMES = ("mvtec", "mpdd", "wfdd", "mad-man", "mad-sys", "custom")
SPLITS = ("train", "test")
TEXTURE_SUFFIXES = (".jpg", ".jpeg", ".png")
FG_MASK_DIR = "fg_mask"
BETA_RANGE = (0.2, 0.8)
GOOD = "good"
DEFAULT_HOLDOUT = 0.1  # `dataset --holdout` default: fraction of train/good held out to calibrate the thresholds
MIN_HOLDOUT = 8  # at least this many images are held out (fewer give no usable calibration)
MAX_HOLDOUT = 0.5  # never more held out than trained on
TRAIN_CROPS = ("centre", "random")  # `dataset --train_crop`: where training cuts its imagesize square
# The `dataset` options that change what a model learns from its training images (batches, augmentation,
# anomaly synthesis, crops): recorded in checkpoints, and a resumed run must keep them.
TRAINING_OPTIONS = ("batch_size", "rotate_degrees", "translate", "scale", "brightness", "contrast", "saturation",
                    "gray", "hflip", "vflip", "distribution", "mean", "std", "fg", "rand_aug", "train_crop", "jpeg",
                    "blur")


class DatasetError(UserError):
    """Bad dataset input; the one-line message names the missing path or bad value and the fix."""


def default_num_workers() -> int:
    """Loader workers: one per core, at most 8 (2 on the 2-core dev box; measured: 1 and 2 workers tie there)."""
    return min(8, os.cpu_count() or 1)


# MVTec AD classes whose resize the official loader overrides, and the override's ratio to --imagesize.
ENLARGED_CLASSES = ("toothbrush", "wood")
ENLARGED_RATIO = 329 / 288


def forced_resize(dataset: str, classname: str, imagesize: int) -> int | None:
    """The resize the official code trains and tests a class with in place of --resize, or None (--resize kept).

    The official MVTecDataset resizes the MVTec AD classes toothbrush and wood to
    round(imagesize * 329 / 288) (329 px for the paper's 288 px crop) before the centre crop, for
    the training and test images and their masks alike. We mirror it so that MVTec AD models see the
    same pixels as the reference's. The reference states no reason; the effect is a tighter centre
    crop (the middle 288/329, about 88 %, of the shorter side) for the two classes whose objects
    fill the frame differently from the other classes'. Python's round (halves to even), as the
    reference. Kept to the `mvtec` dataset name (the reference applies it to a class of these names
    in any MVTec-layout dataset).

    The reference skips it when --distribution is 1, but such a run only judges manifold/hypersphere
    and trains nothing: its models are trained in a later run that applies the override. Our
    --distribution 1 judges and trains in one run, so the judge sees --resize (main.decide_svd) and
    training applies this override.
    """
    if dataset == "mvtec" and classname in ENLARGED_CLASSES:
        return round(imagesize * ENLARGED_RATIO)
    return None


@dataclass(frozen=True)
class DatasetConfig:
    """Options of the reference `dataset` CLI command (same names and defaults), validated on creation."""

    name: str
    data_path: Path
    aug_path: Path
    subdatasets: tuple[str, ...]
    batch_size: int = 8
    num_workers: int = field(default_factory=default_num_workers)
    resize: int = 288
    imagesize: int = 288
    rotate_degrees: int = 0
    translate: float = 0
    scale: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    gray: float = 0.0
    hflip: float = 0.0
    vflip: float = 0.0
    distribution: int = 0
    mean: float = 0.5
    std: float = 0.1
    fg: int = 1
    rand_aug: int = 1
    downsampling: int = 8
    augment: bool = False  # accepted like the reference CLI, which passes it on but never uses it
    # Fraction of train/good kept out of training to calibrate the thresholds on. 0 here (the reference's
    # dataset: programmatic users such as the benchmarks keep every image); the CLI's default is DEFAULT_HOLDOUT.
    holdout: float = 0.0
    resize_masks: bool = False  # resize ground-truth masks to their image (else a size mismatch is an error)
    # Where a training item's imagesize square is cut from the image scaled to resize: the centre (the
    # reference), or a place drawn per item and epoch, so that frames wider or taller than the square are
    # learnt whole (test images keep the centre crop; the engine scores whole frames either way).
    train_crop: str = "centre"
    # Lowest JPEG quality of the compression applied to half the training images (each time at a quality drawn in
    # jpeg..100, at the image's own scale), so that a line whose video is compressed harder than its training
    # footage does not see the codec's blocks as defects; 0: none (the reference).
    jpeg: int = 0
    # Largest standard deviation (pixels, at the image's own scale) of the Gaussian blur applied to half the training
    # images (each time drawn in 0..blur), so that a lens slightly out of focus is not taken for defects; 0: none.
    blur: float = 0.0

    def __post_init__(self) -> None:
        """Coerce paths/tuples and validate the values."""
        object.__setattr__(self, "data_path", Path(self.data_path))
        object.__setattr__(self, "aug_path", Path(self.aug_path))
        subdatasets = (self.subdatasets,) if isinstance(self.subdatasets, str) else tuple(self.subdatasets)
        object.__setattr__(self, "subdatasets", subdatasets)
        self.validate()

    def validate(self) -> None:
        """Raise DatasetError on the first invalid value (file-system checks happen in build_dataset)."""
        if self.name not in DATASET_NAMES:
            raise DatasetError(f"unknown dataset name '{self.name}'; choose one of: {', '.join(DATASET_NAMES)}")
        if not self.subdatasets:
            raise DatasetError("no class given; pass at least one --subdatasets/-d CLASS")
        for flag, value in (("--batch_size", self.batch_size), ("--resize", self.resize),
                            ("--imagesize", self.imagesize), ("--downsampling", self.downsampling)):
            if value < 1:
                raise DatasetError(f"{flag} must be >= 1, got {value}")
        if self.num_workers < 0:
            raise DatasetError(f"--num_workers must be >= 0, got {self.num_workers}")
        if self.imagesize % self.downsampling:
            raise DatasetError(
                f"--imagesize {self.imagesize} is not divisible by --downsampling {self.downsampling}; "
                f"use a multiple of {self.downsampling} (e.g. 288)")
        if self.resize < self.imagesize:
            # MVTec AD's toothbrush and wood get the reference's own resize whatever --resize says.
            short = [c for c in self.subdatasets if forced_resize(self.name, c, self.imagesize) is None]
            if short:
                which = f" for {', '.join(short)}" if len(short) < len(self.subdatasets) else ""
                raise DatasetError(f"--resize {self.resize} is smaller than --imagesize {self.imagesize}{which}; "
                                   f"the centre crop needs resize >= imagesize")
        self._validate_ranges()

    def _validate_ranges(self) -> None:
        """Check probabilities, factors and mode switches."""
        for flag, value in (("--gray", self.gray), ("--hflip", self.hflip), ("--vflip", self.vflip),
                            ("--translate", self.translate)):
            if not 0.0 <= value <= 1.0:
                raise DatasetError(f"{flag} must be in [0, 1], got {value}")
        for flag, value in (("--brightness", self.brightness), ("--contrast", self.contrast),
                            ("--saturation", self.saturation), ("--std", self.std),
                            ("--rotate_degrees", self.rotate_degrees)):
            if value < 0:
                raise DatasetError(f"{flag} must be >= 0, got {value}")
        if not 0.0 <= self.scale < 1.0:
            raise DatasetError(f"--scale must be in [0, 1), got {self.scale}")
        if self.distribution not in (0, 1, 2, 3, 4):
            raise DatasetError(f"--distribution must be 0 (table), 1 (judge), 2 (manifold), 3 (hypersphere) "
                               f"or 4 (opposite of table), got {self.distribution}")
        if self.fg not in (0, 1):
            raise DatasetError(f"--fg must be 0 (no foreground masks) or 1 (use <data_path>/{FG_MASK_DIR}), "
                               f"got {self.fg}")
        if self.rand_aug not in (0, 1):
            raise DatasetError(f"--rand_aug must be 0 or 1, got {self.rand_aug}")
        if self.train_crop not in TRAIN_CROPS:
            raise DatasetError(f"--train_crop must be one of {', '.join(TRAIN_CROPS)}, got {self.train_crop!r}")
        if not 0.0 <= self.blur <= 8.0:
            raise DatasetError(f"--blur must be a standard deviation in [0, 8] pixels (0: no blur), got {self.blur}")
        if not 0 <= self.jpeg <= 100:
            raise DatasetError(f"--jpeg must be a JPEG quality in [1, 100] (0: no compression), got {self.jpeg}")
        if not 0.0 <= self.holdout <= MAX_HOLDOUT:
            raise DatasetError(f"--holdout must be in [0, {MAX_HOLDOUT}] (the fraction of train/good held out for "
                               f"calibration; 0 holds out none), got {self.holdout}")

    def training_options(self) -> dict[str, Any]:
        """The options that change what a model learns (TRAINING_OPTIONS), by name."""
        return {name: getattr(self, name) for name in TRAINING_OPTIONS}

    @property
    def augments_clean_images(self) -> bool:
        """True when any train-time transform changes the clean image between epochs."""
        return any((self.rotate_degrees, self.translate, self.scale, self.brightness, self.contrast,
                    self.saturation, self.gray, self.hflip, self.vflip, self.train_crop == "random", self.jpeg,
                    self.blur))

    @property
    def feature_size(self) -> int:
        """Side of the feature grid that `mask_s` lives on."""
        return self.imagesize // self.downsampling


@dataclass(frozen=True)
class Sample:
    """One image of a split with its label and optional ground-truth / foreground mask paths."""

    image_path: Path
    anomaly_type: str
    is_anomaly: int
    mask_path: Path | None = None
    fg_path: Path | None = None


def check_image_header(path: Path) -> None:
    """Raise DatasetError if `path` is missing or not an image PIL can identify (reads the header only)."""
    if not path.is_file():
        raise DatasetError(f"image {path} does not exist; fix the dataset layout or the split file")
    try:
        with PIL.Image.open(path) as img:
            img.size  # noqa: B018 - forces header parsing
    except (OSError, PIL.UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path} ({first_line(exc)}); replace or remove the file") from exc


def check_mask_size(image_path: Path, mask_path: Path) -> None:
    """Raise DatasetError when a ground-truth mask's size differs from its image's (headers only):
    resized on its own, it would move the defect's pixels and change pixel AUROC and PRO unnoticed."""
    with PIL.Image.open(image_path) as image, PIL.Image.open(mask_path) as mask:
        image_size, mask_size = image.size, mask.size
    if image_size != mask_size:
        raise DatasetError(f"mask {mask_path} is {mask_size[0]}x{mask_size[1]} but its image {image_path.name} is "
                           f"{image_size[0]}x{image_size[1]}; fix the mask, or pass --resize_masks to resize "
                           "masks to their images (nearest neighbour)")


def load_image(path: Path, mode: str) -> PIL.Image.Image:
    """Fully decode an image in PIL `mode`, turning read errors into DatasetError naming the file."""
    try:
        with PIL.Image.open(path) as img:
            return img.convert(mode)
    except (OSError, PIL.UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path} ({first_line(exc)}); replace or remove the file") from exc


def list_images(folder: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Sorted image files directly inside `folder` (hidden files skipped)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes)


def holdout_count(n_images: int, fraction: float) -> int:
    """How many of n training images are held out for calibration: max(MIN_HOLDOUT, round(fraction * n)),
    or 0 when fraction is 0 or when that would leave fewer training images than held-out ones."""
    if fraction <= 0:
        return 0
    count = max(MIN_HOLDOUT, round(fraction * n_images))
    return count if n_images >= 2 * count else 0


def holdout_indices(n_images: int, count: int) -> list[int]:
    """`count` indices evenly spaced over range(n_images): the middle of each of `count` equal runs
    (deterministic; over time-sorted video frames they span the whole recording)."""
    return sorted({min(n_images - 1, int((i + 0.5) * n_images / count)) for i in range(count)})


def split_holdout(samples: Sequence[Sample], fraction: float) -> tuple[list[Sample], list[Sample]]:
    """(training samples, held-out samples): holdout_count(len, fraction) images chosen by holdout_indices
    over the file list sorted by path; both lists keep the input order."""
    count = holdout_count(len(samples), fraction)
    if not count:
        return list(samples), []
    by_path = sorted(range(len(samples)), key=lambda i: str(samples[i].image_path))
    held = {by_path[i] for i in holdout_indices(len(samples), count)}
    return ([s for i, s in enumerate(samples) if i not in held],
            [s for i, s in enumerate(samples) if i in held])


def holdout_warning(n_images: int, fraction: float) -> str | None:
    """The one-line warning for a --holdout that could not be honoured (None when it was, or is 0)."""
    if fraction <= 0 or holdout_count(n_images, fraction):
        return None
    wanted = max(MIN_HOLDOUT, round(fraction * n_images))
    return (f"only {n_images} training images: --holdout {fraction:g} would hold out {wanted} and train on fewer; "
            f"nothing held out, so the thresholds come from training-image scores (optimistic: too many false "
            f"alarms on new footage); add training images (at least {2 * wanted}) to calibrate on held-out ones")


def find_textures(aug_path: Path) -> list[Path]:
    """Texture images at `<aug_path>/<category>/*.jpg|jpeg|png`, sorted; DatasetError if there are none."""
    if not aug_path.is_dir():
        raise DatasetError(f"texture folder {aug_path} does not exist; pass the DTD 'images' folder as AUG_PATH")
    textures = sorted(p for sub in aug_path.iterdir() if sub.is_dir() for p in list_images(sub, TEXTURE_SUFFIXES))
    if not textures:
        hint = f" (did you mean {aug_path / 'images'}?)" if (aug_path / "images").is_dir() else ""
        raise DatasetError(f"no texture images (*.jpg/*.jpeg/*.png) in the sub-folders of {aug_path}{hint}; "
                           f"AUG_PATH must hold <category>/*.jpg like DTD's images folder")
    return textures


def fg_mask_path(data_path: Path, classname: str, image_path: Path) -> Path:
    """Reference location of an image's foreground mask: <data_path>/fg_mask/<class>/<image file name>."""
    return data_path / FG_MASK_DIR / classname / image_path.name


def attach_fg_masks(samples: list[Sample], data_path: Path, classname: str) -> list[Sample]:
    """Add foreground-mask paths to training samples; DatasetError naming the first missing mask."""
    folder = data_path / FG_MASK_DIR / classname
    if not folder.is_dir():
        raise DatasetError(f"foreground mask folder {folder} does not exist; add the masks "
                           f"(<data_path>/{FG_MASK_DIR}/<class>/<image name>) or pass --fg 0")
    attached = []
    for sample in samples:
        path = fg_mask_path(data_path, classname, sample.image_path)
        if not path.is_file():
            raise DatasetError(f"foreground mask {path} does not exist; add it or pass --fg 0")
        check_image_header(path)
        attached.append(Sample(sample.image_path, sample.anomaly_type, sample.is_anomaly, sample.mask_path, path))
    return attached


def binarize_mask(mask: PIL.Image.Image) -> PIL.Image.Image:
    """Grey-level mask with every non-zero pixel set to 255."""
    return mask.point(lambda value: 255 if value else 0)


def rand_aug_ops() -> tuple[torch.nn.Module, ...]:
    """The nine texture ops of the reference `rand_aug` (three distinct ones are applied per texture)."""
    return (
        transforms.ColorJitter(contrast=(0.8, 1.2)),
        transforms.ColorJitter(brightness=(0.8, 1.2)),
        transforms.ColorJitter(saturation=(0.8, 1.2), hue=(-0.2, 0.2)),
        transforms.RandomHorizontalFlip(p=1),
        transforms.RandomVerticalFlip(p=1),
        transforms.RandomGrayscale(p=1),
        transforms.RandomAutocontrast(p=1),
        transforms.RandomEqualize(p=1),
        transforms.RandomAffine(degrees=(-45, 45)),
    )


class GlassDataset(torch.utils.data.Dataset):
    """Images of one class and split; training items also carry a LAS image and its pooled mask."""

    def __init__(self, cfg: DatasetConfig, classname: str, split: str, samples: list[Sample],
                 norm_mean: Sequence[float], norm_std: Sequence[float], seed: int, las: bool,
                 textures: list[Path]) -> None:
        """Keep the validated samples; all checks have been done by the caller."""
        super().__init__()
        self.cfg = cfg
        self.classname = classname
        self.split = split
        self.samples = samples
        self.norm_mean = tuple(float(v) for v in norm_mean)
        self.norm_std = tuple(float(v) for v in norm_std)
        self.seed = int(seed)
        self.las = las and split == "train"
        self.textures = textures
        self.input_shape = (3, cfg.imagesize, cfg.imagesize)
        self._ops = rand_aug_ops()
        self._jitter = transforms.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation)
        self.epoch = 0
        self._empty_fg_warned: set[Path] = set()
        self.heldout_paths: list[Path] = []  # train split: defect-free images kept out of training (calibration)

    def __len__(self) -> int:
        """Number of images."""
        return len(self.samples)

    @property
    def image_paths(self) -> list[str]:
        """Paths of all images, in item order."""
        return [str(s.image_path) for s in self.samples]

    # ---- randomness -------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose LAS draws __getitem__ makes (call before iterating a loader)."""
        self.epoch = int(epoch)

    def _item_seed(self, idx: int) -> int:
        """Seed of one item's random draws: a function of (seed, epoch, index) only, so results do not
        depend on the number of workers and a resumed run repeats the draws of an uninterrupted one."""
        return int(np.random.SeedSequence([self.seed, self.epoch, idx]).generate_state(1, np.uint64)[0] >> 1)

    # ---- transforms -------------------------------------------------------------------------
    def _resize_crop(self, img: PIL.Image.Image) -> PIL.Image.Image:
        """Resize the shorter side to `resize` (bilinear), then centre-crop to `imagesize`."""
        return preprocess.training_view(img, self.cfg.resize, self.cfg.imagesize)

    def _to_normalized(self, img: PIL.Image.Image) -> np.ndarray:
        """PIL RGB -> float32 array (3,S,S) scaled to [0,1] and normalised with the backbone mean/std."""
        return preprocess.normalize(img, self.norm_mean, self.norm_std)

    def _train_transform(self, img: PIL.Image.Image, fg: PIL.Image.Image | None
                         ) -> tuple[np.ndarray, np.ndarray | None]:
        """Reference train transform (resize, jitter, flips, grey, affine, crop); fg follows the geometry."""
        cfg = self.cfg
        if cfg.blur and torch.rand(1).item() < 0.5:
            img = self._defocus(img)
        if cfg.jpeg and torch.rand(1).item() < 0.5:
            img = self._compress(img)
        img = preprocess.scale_short_side(img, cfg.resize)
        if fg is not None:
            fg = preprocess.scale_short_side(fg, cfg.resize)
        if cfg.brightness or cfg.contrast or cfg.saturation:
            img = self._jitter(img)
        if cfg.hflip and torch.rand(1).item() < cfg.hflip:
            img, fg = TF.hflip(img), (None if fg is None else TF.hflip(fg))
        if cfg.vflip and torch.rand(1).item() < cfg.vflip:
            img, fg = TF.vflip(img), (None if fg is None else TF.vflip(fg))
        if cfg.gray and torch.rand(1).item() < cfg.gray:
            img = TF.rgb_to_grayscale(img, num_output_channels=3)
        if cfg.rotate_degrees or cfg.translate or cfg.scale:
            params = transforms.RandomAffine.get_params(
                [-float(cfg.rotate_degrees), float(cfg.rotate_degrees)], [cfg.translate, cfg.translate],
                [1.0 - cfg.scale, 1.0 + cfg.scale], None, list(img.size))
            img = TF.affine(img, *params, interpolation=InterpolationMode.BILINEAR)
            if fg is not None:
                fg = TF.affine(fg, *params, interpolation=InterpolationMode.BILINEAR)
        img, fg = self._crop(img, fg)
        fg_array = None
        if fg is not None:
            # Like the reference (ceil after bilinear resize): any partially covered pixel is foreground.
            fg_array = (np.asarray(fg) > 0).astype(np.float32)
        return self._to_normalized(img), fg_array

    def _defocus(self, img: PIL.Image.Image) -> PIL.Image.Image:
        """The image blurred as by a lens out of focus, sigma drawn in 0..cfg.blur (the item-seeded torch RNG)."""
        sigma = float(torch.rand(1).item()) * self.cfg.blur
        if sigma < 0.05:
            return img
        return PIL.Image.fromarray(preprocess.defocus(np.asarray(img), sigma))

    def _compress(self, img: PIL.Image.Image) -> PIL.Image.Image:
        """The image after JPEG compression at a quality drawn in cfg.jpeg..100 (the item-seeded torch RNG)."""
        quality = int(torch.randint(self.cfg.jpeg, 101, (1,)).item())
        bgr = np.ascontiguousarray(np.asarray(img.convert("RGB"))[:, :, ::-1])
        return PIL.Image.fromarray(np.ascontiguousarray(preprocess.jpeg_round_trip(bgr, quality)[:, :, ::-1]))

    def _crop(self, img: PIL.Image.Image, fg: PIL.Image.Image | None
              ) -> tuple[PIL.Image.Image, PIL.Image.Image | None]:
        """The training square of an image (and of its foreground mask, cut at the same place): --train_crop."""
        size = self.cfg.imagesize
        if self.cfg.train_crop == "centre" or min(img.size) < size:  # (too small: centre_crop pads, as before)
            return TF.center_crop(img, size), (None if fg is None else TF.center_crop(fg, size))
        top, left, height, width = transforms.RandomCrop.get_params(img, (size, size))  # torch RNG: item-seeded
        return (TF.crop(img, top, left, height, width),
                None if fg is None else TF.crop(fg, top, left, height, width))

    def _texture(self, rng: np.random.Generator) -> np.ndarray:
        """A random texture image, with three random ops (rand_aug=1) or the train transform (rand_aug=0)."""
        texture = load_image(self.textures[int(rng.integers(len(self.textures)))], "RGB")
        if not self.cfg.rand_aug:
            return self._train_transform(texture, None)[0]
        texture = preprocess.scale_short_side(texture, self.cfg.resize)
        for op_index in rng.choice(len(self._ops), size=3, replace=False):
            texture = self._ops[int(op_index)](texture)
        return self._to_normalized(TF.center_crop(texture, self.cfg.imagesize))

    def synthesize(self, image: np.ndarray, fg: np.ndarray | None, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LAS: (aug image (3,S,S), full-size mask (S,S), pooled mask (S/d,S/d)) for a normalised clean image."""
        texture = self._texture(rng)
        size = (self.cfg.imagesize, self.cfg.imagesize)
        try:
            mask, pooled = las_mask(size, rng, self.cfg.downsampling, fg)
        except ValueError as exc:
            raise DatasetError(f"{first_line(exc)}; check the foreground masks or pass --fg 0") from exc
        beta = np.float32(np.clip(rng.normal(self.cfg.mean, self.cfg.std), *BETA_RANGE))
        aug = image * (1 - mask) + (1 - beta) * texture * mask + beta * image * mask
        return aug.astype(np.float32), mask, pooled.astype(np.float32)

    def _load_fg(self, sample: Sample) -> PIL.Image.Image | None:
        """Foreground mask of a training sample as a binary 'L' image, or None when unused/empty."""
        if sample.fg_path is None or not self.las:
            return None
        fg = binarize_mask(load_image(sample.fg_path, "L"))
        if fg.getbbox() is None:
            if sample.fg_path not in self._empty_fg_warned:
                LOGGER.warning("foreground mask %s is empty; LAS ignores it for this image", sample.fg_path)
                self._empty_fg_warned.add(sample.fg_path)
            return None
        return fg

    # ---- items ------------------------------------------------------------------------------
    def __getitem__(self, idx: int) -> dict:
        """Training item (image, aug, mask_s, mask, ...) or test item (image, mask_gt, ...)."""
        sample = self.samples[idx]
        image = load_image(sample.image_path, "RGB")
        if self.split == "test":
            return self._test_item(idx, sample, image)
        item_seed = self._item_seed(idx)
        rng = np.random.default_rng(item_seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed)
            clean, fg = self._train_transform(image, self._load_fg(sample))
            item = {"image": torch.from_numpy(clean), "is_anomaly": 0,
                    "image_path": str(sample.image_path), "idx": idx}
            if self.las:
                aug, mask, pooled = self.synthesize(clean, fg, rng)
                item["aug"], item["mask_s"] = torch.from_numpy(aug), torch.from_numpy(pooled)
                item["mask"] = torch.from_numpy(mask)  # full size (DRAEM's segmentation target)
        return item

    def _test_item(self, idx: int, sample: Sample, image: PIL.Image.Image) -> dict:
        """Test item with its binary ground-truth mask (zeros for good images)."""
        size = self.cfg.imagesize
        if sample.mask_path is None:
            mask_gt = torch.zeros(1, size, size)
        else:
            mask = binarize_mask(load_image(sample.mask_path, "L"))
            if mask.size != image.size:  # only with --resize_masks (checked in build_dataset)
                mask = mask.resize(image.size, PIL.Image.NEAREST)
            mask = self._resize_crop(mask)
            mask_gt = torch.from_numpy((np.asarray(mask) >= 128).astype(np.float32))[None]
        return {
            "image": torch.from_numpy(self._to_normalized(self._resize_crop(image))),
            "mask_gt": mask_gt,
            "is_anomaly": sample.is_anomaly,
            "anomaly_type": sample.anomaly_type,
            "image_path": str(sample.image_path),
            "idx": idx,
        }


def loader_error_message(exc: BaseException) -> str:
    """One-line message of an error re-raised by a DataLoader worker (torch prepends the worker traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    last = lines[-1]
    prefix = f"{type(exc).__name__}: "
    return last.split(prefix, 1)[1] if prefix in last else last


def worker_init_fn(worker_id: int) -> None:
    """Seed the `random` and NumPy globals of a DataLoader worker from its torch seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - global state seeded for third-party code only


def build_dataloader(dataset: torch.utils.data.Dataset, cfg: DatasetConfig, seed: int, shuffle: bool,
                     pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """DataLoader with the config's batch size/workers, a seeded generator and worker seeding."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=shuffle,
        num_workers=cfg.num_workers,
        worker_init_fn=worker_init_fn,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=pin_memory,
        persistent_workers=False,
    )

