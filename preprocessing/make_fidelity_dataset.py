"""Build the fidelity benchmark dataset: real photos and defect shapes that no GLASS variant was tuned on.

Its purpose is to compare this repository's GLASS with the official GLASS code on data neither has
seen: the demo classes (brick, gravel, grass) and the demo's five defect types are what this code's
demo and tests run on, so a fair comparison needs other surfaces and other defects. Every source
photo ships inside scikit-image (``skimage.data``, no download needed).

Classes (random square crops of one photo each, with random flips and a small brightness/contrast
jitter; train and test crops come from the same photo, as MVTec texture images come from the same
material):

* ``moon`` (``moon``): grey lunar regolith, low contrast, with natural craters and dark ridges;
* ``ihc`` (``immunohistochemistry``): a busy stained-tissue texture of brown glands and blue stroma;
* ``retina`` (``retina``): orange fundus with its vessel network, cropped inside the disc (no black
  border) and right of the macula (no optic disc or dark macula in the crops);
* ``cell`` (``cell``): a plain, fine-grained grey microscope background (like a coated surface),
  cropped left of the bright cell so that good crops hold only the background and its rare specks.

(``hubble_deep_field`` was tried and left out: its black sky hides dark holes and tinted stains.)

Defect folders (six per class, used in turn; :mod:`preprocessing.defect_simulator` draws them):

* ``small_hole``: the simulator's ``hole``, 3-6 px radius at 256 px (far smaller than the demo's);
* ``large_stain``: the simulator's ``stain``, 14-22 % of the side in radius (far larger, fainter),
  its mask trimmed to where the change reaches 3 grey levels (not the invisible soft fringe);
* ``fibre``: a long, thin, smoothly bending hair or lint fibre (1-2 px wide);
* ``smudge``: a faint hazy smear (blurred, lower contrast, slightly brighter or darker);
* ``patch``: a piece of the same surface pasted elsewhere rotated and magnified;
* ``bump``: a dent or bulge that exists only as shading.

LAS textures (the DTD stand-in that GLASS blends into training images): random crops of bundled
photos that are *not* classes here: brick, gravel, grass (the demo classes), coffee, astronaut,
chelsea (cat), rocket, camera, coins, hubble_deep_field.

Layout under OUTPUT (that of :mod:`preprocessing.make_demo_dataset`)::

    mvtec/<class>/train/good/000.png
    mvtec/<class>/test/good/000.png
    mvtec/<class>/test/<defect>/000.png
    mvtec/<class>/ground_truth/<defect>/000_mask.png    (uint8, 0/255)
    dtd/images/<category>/<category>_000.jpg
    fidelity_dataset.json                                 (written last: build is complete)

A build is skipped when ``fidelity_dataset.json`` matches the requested settings and every file
it lists exists; ``force`` rebuilds. Same settings and seed give byte-identical files, and each
class draws from its own random stream (a subset of classes gives the same images per class).
Use another OUTPUT than the demo dataset's: both write ``mvtec/`` and ``dtd/images/``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple, NoReturn

import numpy as np

if __package__ in (None, ""):  # run as a script (python preprocessing/...): make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import errors
from errors import UserError
from preprocessing.defect_simulator import ALL_DEFECT_TYPES, DefectParams
from preprocessing.make_demo_dataset import (
    DatasetPlan,
    DefectKind,
    DemoDataset,
    build_dataset,
    check_common_settings,
    dataset_arguments,
    load_photo,
    marker_is_complete,
    run_cli,
)

LOGGER = logging.getLogger(__name__)

# Bumped whenever the generated content changes, so old builds are not reused.
GENERATOR_VERSION = 1
MARKER_NAME = "fidelity_dataset.json"


class ClassPhoto(NamedTuple):
    """A class's source: skimage.data loader, region used (top, bottom, left, right as fractions), crop side."""

    loader: str
    region: tuple[float, float, float, float]
    crop_fraction: float


# Crop sides give about 255-330 source pixels per crop, so 256 px images are (almost) not upsampled.
CLASS_PHOTOS = MappingProxyType({
    "moon": ClassPhoto("moon", (0.0, 1.0, 0.0, 1.0), 0.5),
    "ihc": ClassPhoto("immunohistochemistry", (0.0, 1.0, 0.0, 1.0), 0.5),
    # Inside the fundus disc (corners at 0.96 of its radius) and right of the macula.
    "retina": ClassPhoto("retina", (0.18, 0.82, 0.56, 0.85), 0.8),
    # Left of the bright cell and its dark halo (which start at about 0.62 of the width).
    "cell": ClassPhoto("cell", (0.0, 1.0, 0.0, 0.58), 0.8),
})
# LAS texture category -> skimage.data loader (bundled, none of them a class photo here).
TEXTURE_PHOTOS = MappingProxyType({
    "brick": "brick",
    "gravel": "gravel",
    "grass": "grass",
    "coffee": "coffee",
    "astronaut": "astronaut",
    "cat": "chelsea",
    "rocket": "rocket",
    "camera": "camera",
    "coins": "coins",
    "hubble": "hubble_deep_field",
})
# Two demo types at other sizes, then the simulator's four extra shapes.
DEFECTS = (
    DefectKind("small_hole", "hole", DefectParams(hole_radius=(0.012, 0.025), min_area_fraction=0.0002)),
    DefectKind("large_stain", "stain", DefectParams(stain_radius=(0.14, 0.22), stain_strength=(0.45, 0.75),
                                                    max_area_fraction=0.25, min_visible_change=3.0)),
    DefectKind("fibre", "fibre", DefectParams(fibre_length=(0.5, 0.95), fibre_width=(0.004, 0.007),
                                              min_area_fraction=0.0003)),
    DefectKind("smudge", "smudge", DefectParams(smudge_radius=(0.08, 0.16), max_area_fraction=0.15)),
    DefectKind("patch", "patch", DefectParams(patch_size=(0.12, 0.25), max_area_fraction=0.1)),
    DefectKind("bump", "bump", DefectParams(bump_radius=(0.05, 0.12), max_area_fraction=0.1)),
)


class FidelityDatasetError(UserError):
    """Bad fidelity-dataset setting."""


@dataclass(frozen=True)
class FidelityDatasetConfig:
    """What to build: classes, image counts per split, image size, seed, defect folders."""

    classes: tuple[str, ...] = tuple(CLASS_PHOTOS)
    n_train: int = 80
    n_test_good: int = 30
    n_test_defect: int = 60
    size: int = 256
    seed: int = 0
    brightness_jitter: float = 0.06
    textures_per_category: int = 5
    defects: tuple[DefectKind, ...] = DEFECTS

    def __post_init__(self) -> None:
        """Reject settings that cannot give a usable dataset."""
        check_common_settings(self, CLASS_PHOTOS, FidelityDatasetError)
        if self.seed < 0:
            raise FidelityDatasetError(f"--seed {self.seed}: need a non-negative integer")
        if self.textures_per_category < 1:
            raise FidelityDatasetError(f"--textures {self.textures_per_category}: need at least 1 image")
        if not 0 <= self.brightness_jitter < 0.5:
            raise FidelityDatasetError(f"brightness_jitter {self.brightness_jitter}: need a value in [0, 0.5)")
        labels = [kind.label for kind in self.defects]
        if not labels or len(set(labels)) != len(labels) or "good" in labels:
            raise FidelityDatasetError(f"defects {labels}: need distinct folder names other than 'good'")
        bad_types = [kind.defect_type for kind in self.defects if kind.defect_type not in ALL_DEFECT_TYPES]
        if bad_types:
            raise FidelityDatasetError(f"defects: unknown simulator types {', '.join(bad_types)}; "
                                       f"choose from {', '.join(ALL_DEFECT_TYPES)}")


def load_class_photo(name: str) -> np.ndarray:
    """The class photo (uint8 RGB) cut to the region its crops are taken from."""
    spec = CLASS_PHOTOS[name]
    photo = load_photo(spec.loader)
    height, width = photo.shape[:2]
    top, bottom, left, right = spec.region
    return np.ascontiguousarray(photo[round(top * height):round(bottom * height),
                                      round(left * width):round(right * width)])


def _settings(config: FidelityDatasetConfig) -> dict:
    """The JSON-able settings recorded in the completion marker."""
    return {"dataset": "fidelity", "generator_version": GENERATOR_VERSION, **asdict(config)}


def _plan(config: FidelityDatasetConfig) -> DatasetPlan:
    """The fidelity classes (their photo regions), defects and textures."""
    return DatasetPlan(
        title="fidelity dataset", marker_name=MARKER_NAME, settings=_settings(config),
        class_source=lambda name: (load_class_photo(name), CLASS_PHOTOS[name].crop_fraction),
        class_stream="fidelity:class:{}", defects=config.defects,
        texture_photos=TEXTURE_PHOTOS, texture_stream="fidelity:dtd", logger=LOGGER)


def is_complete(output: Path, config: FidelityDatasetConfig) -> bool:
    """True when a finished build with these settings lies in `output` (marker and all files)."""
    return marker_is_complete(output / MARKER_NAME, _settings(config))


def build_fidelity_dataset(output: Path | str, config: FidelityDatasetConfig = FidelityDatasetConfig(),
                           force: bool = False) -> DemoDataset:
    """Build (or reuse, when complete) the fidelity MVTec classes and DTD textures under `output`."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise FidelityDatasetError(f"--output {output}: exists and is not a folder; give a folder")
    return build_dataset(output, config, _plan(config), force)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one `FidelityDatasetError` (one stderr line, exit 2)."""

    def error(self, message: str) -> NoReturn:
        """Raise instead of printing the usage and exiting."""
        raise FidelityDatasetError(message)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = _Parser(description="Build the fidelity benchmark dataset (MVTec layout + DTD textures) from "
                                 "photos bundled with scikit-image, with defect shapes beyond the demo's.")
    return dataset_arguments(parser, FidelityDatasetConfig(), CLASS_PHOTOS, "fidelity_data").parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 on bad input)."""
    return run_cli(lambda: _parse_args(argv), FidelityDatasetConfig, build_fidelity_dataset)


if __name__ == "__main__":
    sys.exit(errors.run_script(main))
