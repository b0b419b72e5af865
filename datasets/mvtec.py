"""MVTec-AD folder layout (also MPDD, WFDD, MAD-man, MAD-sys and custom data).

<root>/<class>/train/good/*.png, <root>/<class>/test/<good|defect>/*.png,
<root>/<class>/ground_truth/<defect>/<name>_mask.png, optional <root>/fg_mask/<class>/<name>.
"""

from __future__ import annotations

from pathlib import Path

from datasets.base import FG_MASK_DIR, GOOD, DatasetError, Sample, list_images
from paths import IMAGE_SUFFIXES

GROUND_TRUTH_DIR = "ground_truth"


def mvtec_classes(root: Path) -> list[str]:
    """Class folders under `root` (those holding a train or test folder)."""
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and p.name != FG_MASK_DIR and ((p / "train").is_dir() or (p / "test").is_dir()))


def class_folder(root: Path, classname: str) -> Path:
    """The folder of `classname`; DatasetError listing the classes found if it is missing."""
    folder = root / classname
    if not folder.is_dir():
        found = ", ".join(mvtec_classes(root)) or "none"
        raise DatasetError(f"class '{classname}' not found: {folder} does not exist (classes found in {root}: "
                           f"{found}); check --subdatasets/-d")
    return folder


def find_ground_truth(gt_folder: Path, image_path: Path) -> Path | None:
    """Ground-truth mask of a defective test image: <stem>_mask.<ext> (or <stem>.<ext>) in `gt_folder`, or None."""
    for stem in (f"{image_path.stem}_mask", image_path.stem):
        for suffix in IMAGE_SUFFIXES:
            candidate = gt_folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def ground_truth_path(gt_folder: Path, image_path: Path) -> Path:
    """Ground-truth mask of a defective test image (find_ground_truth); DatasetError when there is none."""
    found = find_ground_truth(gt_folder, image_path)
    if found is not None:
        return found
    expected = gt_folder / f"{image_path.stem}_mask.png"
    raise DatasetError(f"ground-truth mask {expected} does not exist for test image {image_path}; "
                       f"add it under <class>/{GROUND_TRUTH_DIR}/<defect>/")


def train_samples(folder: Path) -> list[Sample]:
    """Defect-free training images in <class>/train/good."""
    good = folder / "train" / GOOD
    if not good.is_dir():
        raise DatasetError(f"training folder {good} does not exist; put the defect-free training images there")
    images = list_images(good)
    if not images:
        raise DatasetError(f"training folder {good} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                           f"add defect-free training images")
    return [Sample(path, GOOD, 0) for path in images]


def evaluation_samples(folder: Path) -> list[Sample]:
    """Test images of every <class>/test/<type> folder (sorted types), with ground-truth masks for defects."""
    test = folder / "test"
    if not test.is_dir():
        raise DatasetError(f"test folder {test} does not exist; put test images in {test}/good and "
                           f"{test}/<defect type>")
    samples = []
    for type_folder in sorted(p for p in test.iterdir() if p.is_dir() and not p.name.startswith(".")):
        anomalous = type_folder.name != GOOD
        for path in list_images(type_folder):
            mask = ground_truth_path(folder / GROUND_TRUTH_DIR / type_folder.name, path) if anomalous else None
            samples.append(Sample(path, type_folder.name, int(anomalous), mask))
    if not samples:
        raise DatasetError(f"test folder {test} holds no images; add <type>/*.png folders (good and defects)")
    return samples


def mvtec_samples(root: Path, classname: str, split: str) -> list[Sample]:
    """Samples of one class and split in MVTec layout (DatasetError naming any missing path)."""
    folder = class_folder(root, classname)
    return train_samples(folder) if split == "train" else evaluation_samples(folder)
