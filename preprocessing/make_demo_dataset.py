"""Build a small offline demo dataset: MVTec-layout texture classes plus a DTD-style texture folder.

Every source photo ships inside scikit-image (`skimage.data`, no download needed):

* classes (defect-free surfaces): ``brick``, ``gravel``, ``grass``; training and test images
  are random crops of the photo with random flips and a small brightness/contrast jitter;
  defective test images get one synthetic defect each from
  :mod:`preprocessing.defect_simulator` (scratch, crack, hole, stain, contamination);
* LAS textures (the DTD stand-in that GLASS blends into training images): random crops of
  *other* photos (coffee, astronaut, cat, Hubble field, retina, rocket, IHC stain, moon, coins).

Layout under OUTPUT::

    mvtec/<class>/train/good/000.png
    mvtec/<class>/test/good/000.png
    mvtec/<class>/test/<defect>/000.png
    mvtec/<class>/ground_truth/<defect>/000_mask.png    (uint8, 0/255)
    dtd/images/<category>/<category>_000.jpg
    demo_dataset.json                                     (written last: build is complete)

A build is skipped when ``demo_dataset.json`` matches the requested settings and every
file it lists exists; ``force`` rebuilds. Same settings and seed give identical files.

The building blocks (photo views, the class and texture writers behind `build_dataset`, the
completion marker, the common settings and CLI options) are shared with
:mod:`preprocessing.make_fidelity_dataset`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple, Protocol

import cv2
import numpy as np
import skimage.data

if __package__ in (None, ""):  # run as a script (python preprocessing/...): make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from errors import UserError, first_line
from preprocessing.defect_simulator import DEFECT_TYPES, DefectParams, simulate_defect

LOGGER = logging.getLogger(__name__)

# Bumped whenever the generated content changes, so old builds are not reused.
GENERATOR_VERSION = 1
MARKER_NAME = "demo_dataset.json"
MVTEC_DIR = "mvtec"
DTD_IMAGES_DIR = os.path.join("dtd", "images")

# Demo class -> skimage.data loader. All three are bundled 512x512 grayscale texture photos.
CLASS_PHOTOS = MappingProxyType({"brick": "brick", "gravel": "gravel", "grass": "grass"})
# LAS texture category -> skimage.data loader (bundled, and none of them a class photo).
TEXTURE_PHOTOS = MappingProxyType({
    "coffee": "coffee",
    "astronaut": "astronaut",
    "cat": "chelsea",
    "hubble": "hubble_deep_field",
    "retina": "retina",
    "rocket": "rocket",
    "ihc": "immunohistochemistry",
    "moon": "moon",
    "coins": "coins",
})


class DemoDatasetError(UserError):
    """Bad demo-dataset setting."""


class DatasetConfig(Protocol):
    """The settings every dataset builder has (the demo's and the fidelity benchmark's)."""

    classes: tuple[str, ...]
    n_train: int
    n_test_good: int
    n_test_defect: int
    size: int
    seed: int
    brightness_jitter: float
    textures_per_category: int


def check_common_settings(config: DatasetConfig, class_names: Iterable[str], error: type[ValueError]) -> None:
    """Reject unknown or repeated classes, image counts below 1 and images under 32 px (naming the flag)."""
    known = tuple(class_names)
    unknown = [name for name in config.classes if name not in known]
    if unknown or not config.classes:
        raise error(f"--classes: unknown or none ({', '.join(unknown)}); choose from {', '.join(known)}")
    if len(set(config.classes)) != len(config.classes):
        raise error("--classes: a class is listed twice; list each once")
    for flag, value in (("--train", config.n_train), ("--test_good", config.n_test_good),
                        ("--test_defect", config.n_test_defect)):
        if value < 1:
            raise error(f"{flag} {value}: need at least 1 image")
    if config.size < 32:
        raise error(f"--size {config.size}: need at least 32 pixels")


@dataclass(frozen=True)
class DemoDatasetConfig:
    """What to build: classes, image counts per split, image size, seed."""

    classes: tuple[str, ...] = tuple(CLASS_PHOTOS)
    n_train: int = 30
    n_test_good: int = 10
    n_test_defect: int = 15
    size: int = 256
    seed: int = 0
    crop_fraction: float = 0.75
    brightness_jitter: float = 0.06
    textures_per_category: int = 5
    defect_types: tuple[str, ...] = DEFECT_TYPES
    defect_params: DefectParams = DefectParams()

    def __post_init__(self) -> None:
        """Reject settings that cannot give a usable dataset."""
        check_common_settings(self, CLASS_PHOTOS, DemoDatasetError)
        if not 0.1 <= self.crop_fraction <= 1.0:
            raise DemoDatasetError(f"crop_fraction {self.crop_fraction}: need a value in [0.1, 1]")
        if not 0 <= self.brightness_jitter < 0.5:
            raise DemoDatasetError(f"brightness_jitter {self.brightness_jitter}: need a value in [0, 0.5)")
        if self.textures_per_category < 1:
            raise DemoDatasetError(f"textures_per_category {self.textures_per_category}: need at least 1")
        bad_types = [name for name in self.defect_types if name not in DEFECT_TYPES]
        if bad_types or not self.defect_types:
            raise DemoDatasetError(f"defect_types: unknown or none ({', '.join(bad_types)}); "
                                   f"choose from {', '.join(DEFECT_TYPES)}")


class DefectKind(NamedTuple):
    """One defect folder of a class: its name, the simulator type it draws, and that type's ranges."""

    label: str
    defect_type: str
    params: DefectParams


@dataclass(frozen=True)
class DatasetPlan:
    """What a builder writes beyond the common settings: class sources, defects, textures, marker."""

    title: str                                                # for the logs, e.g. "demo dataset"
    marker_name: str
    settings: Mapping                                         # JSON-able, recorded in the marker
    class_source: Callable[[str], tuple[np.ndarray, float]]   # class -> (photo, crop fraction)
    class_stream: str                                         # random stream name; {} is the class
    defects: tuple[DefectKind, ...]
    texture_photos: Mapping[str, str]                         # category -> skimage.data loader
    texture_stream: str
    logger: logging.Logger


@dataclass(frozen=True)
class DemoDataset:
    """Where a built dataset lies (the `datapath` and `augpath` of the shell scripts) and whether it was built now."""

    mvtec_root: Path
    dtd_images: Path
    built: bool


def _rng(seed: int, stream: str) -> np.random.Generator:
    """Independent generator per named stream, so one class does not shift another's images."""
    return np.random.default_rng([seed, zlib.crc32(stream.encode())])


def load_photo(loader: str) -> np.ndarray:
    """A bundled skimage.data photo as uint8 RGB (HxWx3)."""
    photo = np.asarray(getattr(skimage.data, loader)())
    if photo.ndim == 2:
        photo = np.repeat(photo[..., None], 3, axis=2)
    return np.ascontiguousarray(photo[..., :3]).astype(np.uint8)


def random_view(photo: np.ndarray, size: int, crop_fraction: float, jitter: float,
                rng: np.random.Generator) -> np.ndarray:
    """A random square crop resized to `size`, randomly flipped, with brightness/contrast jitter."""
    height, width = photo.shape[:2]
    side = max(8, int(round(min(height, width) * crop_fraction)))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    view = photo[top:top + side, left:left + side]
    if side != size:
        interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
        view = cv2.resize(view, (size, size), interpolation=interpolation)
    if rng.random() < 0.5:
        view = view[:, ::-1]
    if rng.random() < 0.5:
        view = view[::-1]
    gain = rng.uniform(1 - jitter, 1 + jitter)
    offset = rng.uniform(-1, 1) * jitter * 128
    mean = float(view.mean())
    jittered = (view.astype(np.float32) - mean) * gain + mean + offset
    return np.ascontiguousarray(np.clip(np.round(jittered), 0, 255).astype(np.uint8))


def _write_image(path: Path, image: np.ndarray) -> None:
    """Write an RGB (HxWx3) or gray (HxW) uint8 image; PNG or JPEG by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    options = [cv2.IMWRITE_JPEG_QUALITY, 92] if path.suffix.lower() == ".jpg" else []
    if not cv2.imwrite(str(path), pixels, options):
        raise OSError(f"cannot write {path}")


def _write_class(output: Path, name: str, config: DatasetConfig, plan: DatasetPlan) -> list[str]:
    """Write one MVTec-layout class (train, good test, the plan's defects in turn); return its paths."""
    photo, crop_fraction = plan.class_source(name)
    rng = _rng(config.seed, plan.class_stream.format(name))
    root = Path(MVTEC_DIR) / name
    written: list[str] = []

    def view() -> np.ndarray:
        """The next random view of the class photo."""
        return random_view(photo, config.size, crop_fraction, config.brightness_jitter, rng)

    for split, count in (("train", config.n_train), ("test", config.n_test_good)):
        for index in range(count):
            written.append(str(root / split / "good" / f"{index:03d}.png"))
            _write_image(output / written[-1], view())
    for index in range(config.n_test_defect):
        kind = plan.defects[index % len(plan.defects)]
        number = index // len(plan.defects)
        defective, mask = simulate_defect(view(), kind.defect_type, rng, kind.params)
        if not mask.any():
            raise DemoDatasetError(f"{root}: the {kind.label} defect {number:03d} came out empty; try another seed")
        image_path = root / "test" / kind.label / f"{number:03d}.png"
        mask_path = root / "ground_truth" / kind.label / f"{number:03d}_mask.png"
        _write_image(output / image_path, defective)
        _write_image(output / mask_path, mask)
        written += [str(image_path), str(mask_path)]
    return written


def _write_textures(output: Path, config: DatasetConfig, plan: DatasetPlan) -> list[str]:
    """Write the DTD-style LAS texture folder (random crops of the plan's photos); return its paths."""
    rng = _rng(config.seed, plan.texture_stream)
    written: list[str] = []
    for category, loader in plan.texture_photos.items():
        photo = load_photo(loader)
        for index in range(config.textures_per_category):
            texture = random_view(photo, config.size, rng.uniform(0.3, 0.9), 0.0, rng)
            written.append(str(Path(DTD_IMAGES_DIR) / category / f"{category}_{index:03d}.jpg"))
            _write_image(output / written[-1], texture)
    return written


def marker_is_complete(marker: Path, settings: Mapping) -> bool:
    """True when `marker` records a finished build with these settings and every file it lists exists."""
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if recorded.get("settings") != json.loads(json.dumps(settings)):
        return False
    return all((marker.parent / relative).is_file() for relative in recorded.get("files", []))


def build_dataset(output: Path, config: DatasetConfig, plan: DatasetPlan, force: bool) -> DemoDataset:
    """Build (or reuse, when its marker says complete) the MVTec classes and DTD textures under `output`."""
    marker = output / plan.marker_name
    result = DemoDataset(output / MVTEC_DIR, output / DTD_IMAGES_DIR, built=False)
    if not force and marker_is_complete(marker, plan.settings):
        plan.logger.info("%s in %s exists and is complete; skipping (use --force to rebuild)", plan.title, output)
        return result
    # Remove the marker and the folders this build writes (nothing else in `output`).
    marker.unlink(missing_ok=True)
    targets = [output / MVTEC_DIR / name for name in config.classes]
    targets += [output / DTD_IMAGES_DIR / category for category in plan.texture_photos]
    for target in targets:
        if target.is_dir():
            shutil.rmtree(target)
    written: list[str] = []
    for name in config.classes:
        plan.logger.info("building class %s (%d train, %d good + %d defective test images, %d px)",
                         name, config.n_train, config.n_test_good, config.n_test_defect, config.size)
        written += _write_class(output, name, config, plan)
    plan.logger.info("building LAS textures (%d categories x %d)", len(plan.texture_photos),
                     config.textures_per_category)
    written += _write_textures(output, config, plan)
    # The marker goes last, via an atomic rename: an interrupted build has none.
    partial = marker.with_suffix(".json.tmp")
    partial.write_text(json.dumps({"settings": plan.settings, "files": written}, indent=1))
    os.replace(partial, marker)
    plan.logger.info("%s ready: datapath=%s augpath=%s", plan.title, result.mvtec_root, result.dtd_images)
    return DemoDataset(result.mvtec_root, result.dtd_images, built=True)


def _settings(config: DemoDatasetConfig) -> dict:
    """The JSON-able settings recorded in the completion marker."""
    return {"generator_version": GENERATOR_VERSION, **asdict(config)}


def _plan(config: DemoDatasetConfig) -> DatasetPlan:
    """The demo's classes, defects and textures."""
    return DatasetPlan(
        title="demo dataset", marker_name=MARKER_NAME, settings=_settings(config),
        class_source=lambda name: (load_photo(CLASS_PHOTOS[name]), config.crop_fraction), class_stream="class:{}",
        defects=tuple(DefectKind(kind, kind, config.defect_params) for kind in config.defect_types),
        texture_photos=TEXTURE_PHOTOS, texture_stream="dtd", logger=LOGGER)


def is_complete(output: Path, config: DemoDatasetConfig) -> bool:
    """True when a finished build with these settings lies in `output` (marker and all files)."""
    return marker_is_complete(output / MARKER_NAME, _settings(config))


def build_demo_dataset(output: Path | str, config: DemoDatasetConfig = DemoDatasetConfig(),
                       force: bool = False) -> DemoDataset:
    """Build (or reuse, when complete) the demo MVTec classes and DTD textures under `output`."""
    return build_dataset(Path(output), config, _plan(config), force)


def dataset_arguments(parser: argparse.ArgumentParser, defaults: DatasetConfig, class_names: Iterable[str],
                      output: str) -> argparse.ArgumentParser:
    """Add the options every dataset builder has to `parser`; return it."""
    parser.add_argument("--output", type=Path, default=Path(output), help=f"output folder (default {output})")
    parser.add_argument("--classes", nargs="+", default=list(defaults.classes),
                        help=f"classes to build, from: {', '.join(class_names)}")
    parser.add_argument("--train", type=int, default=defaults.n_train, help="training images per class")
    parser.add_argument("--test_good", type=int, default=defaults.n_test_good, help="good test images per class")
    parser.add_argument("--test_defect", type=int, default=defaults.n_test_defect,
                        help="defective test images per class (spread over the defect types)")
    parser.add_argument("--size", type=int, default=defaults.size, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--textures", type=int, default=defaults.textures_per_category,
                        help="LAS texture images per category")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete build exists")
    return parser


def run_cli(parse: Callable[[], argparse.Namespace], config_type: Callable[..., DatasetConfig],
            build: Callable[..., DemoDataset]) -> int:
    """Parse, validate and build; a bad value gives one `error: ...` line on stderr and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        args = parse()
        config = config_type(classes=tuple(args.classes), n_train=args.train, n_test_good=args.test_good,
                             n_test_defect=args.test_defect, size=args.size, seed=args.seed,
                             textures_per_category=args.textures)
        build(args.output, config, force=args.force)
    except UserError as error:
        print(f"error: {first_line(error)}", file=sys.stderr)
        return 2
    return 0


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Build the offline demo dataset (MVTec layout + DTD textures) "
                                                 "from photos bundled with scikit-image.")
    return dataset_arguments(parser, DemoDatasetConfig(), CLASS_PHOTOS, "demo_data").parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 on bad input)."""
    return run_cli(lambda: _parse_args(argv), DemoDatasetConfig, build_demo_dataset)


if __name__ == "__main__":
    sys.exit(main())
