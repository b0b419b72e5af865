"""Manifold or hypersphere (`svd`) per class: the spectral judge and the saved per-dataset table.

The judge looks at the mean of a class's training images. Aligned objects leave a large,
smooth structure in the mean image whose spectrum has a dense cloud of strong low
frequencies (-> hypersphere, svd 1); unaligned textures average out to a nearly flat image
whose spectrum is little more than the DC term (-> manifold, svd 0).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import filelock
import numpy as np
import PIL.Image

import utils
from datasets.base import DatasetError, load_image
from errors import first_line

LOGGER = logging.getLogger(__name__)

JUDGE_SIZE = 289
BLUR_KERNEL = 39
LOG_MAGNITUDE_THRESHOLD = 170.0
DENSITY_THRESHOLD = 0.21
MIN_RADIUS = 12.0
MIN_POINTS = 60
MANIFOLD, HYPERSPHERE = 0, 1
TABLE_COLUMNS = ("Class", "Distribution")
DISTRIBUTION_MODES = {0: "table", 1: "judge", 2: "manifold", 3: "hypersphere", 4: "opposite of table"}


def mean_training_image(image_paths: Sequence[str | Path], size: int = 288, crop: int | None = None) -> np.ndarray:
    """Pixel-wise mean (uint8 HxWx3 RGB) of the training images, each resized to size x size (then centre-cropped)."""
    # Like the reference's judge run: square resize (no aspect ratio kept), optional centre crop,
    # average, then cast to uint8 (truncation, as the reference's astype does).
    if not image_paths:
        raise DatasetError("no training images to average for the distribution judge; check the train folder")
    total: np.ndarray | None = None
    for path in image_paths:
        img = load_image(Path(path), "RGB").resize((size, size), PIL.Image.Resampling.BILINEAR)
        if crop is not None:
            left = int(round((size - crop) / 2))  # as torchvision's CenterCrop
            img = img.crop((left, left, left + crop, left + crop))
        array = np.asarray(img, dtype=np.float64)
        total = array if total is None else total + array
    return np.clip(total / len(image_paths), 0, 255).astype(np.uint8)


def bright_frequencies(mean_image: np.ndarray) -> np.ndarray:
    """(y, x) offsets from DC of the spectrum points with 20*ln|F| > 170 after grey + 39x39 box blur."""
    img = mean_image if mean_image.dtype == np.uint8 else np.clip(mean_image, 0, 255).astype(np.uint8)
    img = cv2.resize(img, (JUDGE_SIZE, JUDGE_SIZE))
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    gray = cv2.blur(gray, (BLUR_KERNEL, BLUR_KERNEL))
    spectrum = np.fft.fftshift(cv2.dft(np.float32(gray), flags=cv2.DFT_COMPLEX_OUTPUT), axes=(0, 1))
    with np.errstate(divide="ignore"):
        log_magnitude = 20.0 * np.log(cv2.magnitude(spectrum[..., 0], spectrum[..., 1]))
    ys, xs = np.nonzero(log_magnitude > LOG_MAGNITUDE_THRESHOLD)
    height, width = log_magnitude.shape
    return np.stack([ys - height // 2, xs - width // 2], axis=1)


def circle_area(radius: float, size: int = JUDGE_SIZE) -> int:
    """Lattice points within `radius` of the DC point, counted like the reference (grid [0, 2*size)^2)."""
    # The reference counts on a 2*size x 2*size index grid whose origin is the top-left corner,
    # so circles wider than size//2 are clipped on the top and left; mirrored here.
    centre = size // 2
    ys, xs = np.indices((2 * size, 2 * size))
    return int(np.count_nonzero((ys - centre) ** 2 + (xs - centre) ** 2 <= radius**2))


def classify_points(points: np.ndarray) -> int:
    """Reference rule on the bright spectrum points: dense (box or circle) and R > 12 and n > 60 -> 1."""
    count = len(points)
    if count == 0:
        return MANIFOLD
    side_y, side_x = np.abs(points).max(axis=0)
    radius = float(np.sqrt((points.astype(np.float64) ** 2).sum(axis=1)).max())
    box_density = count / (4 * max(int(side_x), 1) * max(int(side_y), 1))
    circle_density = count / (circle_area(radius) + 1e-10)
    dense = box_density > DENSITY_THRESHOLD or circle_density > DENSITY_THRESHOLD
    verdict = HYPERSPHERE if dense and radius > MIN_RADIUS and count > MIN_POINTS else MANIFOLD
    LOGGER.debug("judge: n=%d sx=%d sy=%d R=%.1f box=%.3f circle=%.3f -> %d",
                 count, side_x, side_y, radius, box_density, circle_density, verdict)
    return verdict


def judge_distribution(mean_image: np.ndarray) -> int:
    """Spectral judge of the reference: 1 (hypersphere) or 0 (manifold) for a mean training image (RGB)."""
    return classify_points(bright_frequencies(mean_image))


def read_table(path: Path) -> dict[str, int]:
    """Class -> svd from a CSV with columns Class,Distribution (extra columns ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"distribution table {path} does not exist; run once with --distribution 1 to create it")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if any(column not in (reader.fieldnames or []) for column in TABLE_COLUMNS):
                raise DatasetError(f"distribution table {path} needs columns {','.join(TABLE_COLUMNS)}; "
                                   f"fix its header or delete it and rerun with --distribution 1")
            rows = {row["Class"].strip(): row["Distribution"].strip() for row in reader}
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read distribution table {path} ({first_line(exc)}); fix or delete it") from exc
    table = {}
    for name, value in rows.items():
        if value not in ("0", "1", "0.0", "1.0"):
            raise DatasetError(f"distribution table {path}: class '{name}' has Distribution '{value}', "
                               f"expected 0 (manifold) or 1 (hypersphere); fix the row")
        table[name] = int(float(value))
    return table


def write_table(path: Path, rows: dict[str, int]) -> None:
    """Write Class,Distribution rows atomically (utils.atomic_write_text: temporary file, then os.replace),
    with the mode a plain open() gives (0666 & ~umask) like every other output."""
    out = io.StringIO()
    writer = csv.writer(out)  # csv's default \r\n line ends, as the table has always been written
    writer.writerow(TABLE_COLUMNS)
    for name, value in rows.items():
        writer.writerow((name, int(value)))
    utils.atomic_write_text(Path(path), out.getvalue())


def _judge_and_save(table: Path, class_key: str, judge: Callable[[], int]) -> int:
    """Run the judge and merge its answer for `class_key` into the table."""
    svd = int(judge())
    merge_entry(table, class_key, svd)
    return svd


def merge_entry(table: Path, class_key: str, svd: int) -> None:
    """Sets one class's entry in the table, keeping the others: under a file lock (`<table>.lock`), so that
    classes judged at the same time (runs fanned out by scale_out, or two runs) do not drop each other's."""
    table = Path(table)
    table.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(table.with_name(f"{table.name}.lock"), timeout=utils.RESULTS_LOCK_TIMEOUT_S):
        rows = read_table(table) if table.is_file() else {}
        if rows.get(class_key) != int(svd):
            rows[class_key] = int(svd)
            write_table(table, rows)


def resolve_svd(mode: int, table: Path, class_key: str, judge: Callable[[], int]) -> tuple[int, str]:
    """svd (0 manifold / 1 hypersphere) for `--distribution mode`, with a sentence saying how it was decided."""
    names = {MANIFOLD: "manifold", HYPERSPHERE: "hypersphere"}
    if mode == 2:
        return MANIFOLD, "manifold (forced by --distribution 2)"
    if mode == 3:
        return HYPERSPHERE, "hypersphere (forced by --distribution 3)"
    if mode == 1:
        svd = _judge_and_save(table, class_key, judge)
        return svd, f"{names[svd]} (spectral judge, --distribution 1; saved to {table})"
    if mode not in (0, 4):
        raise DatasetError(f"--distribution must be one of {sorted(DISTRIBUTION_MODES)} "
                           f"({', '.join(f'{k}={v}' for k, v in DISTRIBUTION_MODES.items())}), got {mode}")
    rows = read_table(table) if Path(table).is_file() else {}
    if class_key in rows:
        if mode == 0:
            return rows[class_key], f"{names[rows[class_key]]} (read from {table})"
        svd = 1 - rows[class_key]
        return svd, f"{names[svd]} (opposite of {names[rows[class_key]]} in {table}, --distribution 4)"
    svd = _judge_and_save(table, class_key, judge)
    return svd, (f"{names[svd]} (no entry for '{class_key}' in {table}: fell back to the spectral judge "
                 f"like the reference, and saved it)")
