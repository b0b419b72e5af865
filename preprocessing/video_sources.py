"""Shared code of the video-creation scripts (create_video, create_dataset_video, create_enhanced_video).

* where the data is: ``--data_path`` or ``datasets/<dataset>`` (MVTec layout:
  ``<root>/<class>/test/<type>/*.png``, ``<root>/<class>/ground_truth/<type>/<name>_mask.png``);
* a test split listed by type (``good`` first, then the defect types in name order), with the
  ground-truth mask of each defective image where one exists;
* frames: images read with OpenCV, brought to one frame size by a resize method, optionally
  enhanced, written to an MP4 with a sidecar JSON (see :mod:`video_io`);
* the command-line runner the three scripts share (one-line errors, exit code 2).

Resize methods (``--resize_method``), all giving even frame sizes (MP4 needs them):

``pad``
    letterbox: each image is scaled, keeping its aspect ratio, to fit the largest width and
    the largest height found among the selected images, and centred on black borders;
``largest``
    every image is stretched to the largest width x largest height, no padding (aspect
    ratio changes for images of another shape);
``fixed``
    every image is resized to ``--size`` x ``--size`` (stretching non-square images).

Enhancement (``--enhance``, :class:`EnhanceConfig`) is deliberately mild: CLAHE (contrast
limited adaptive histogram equalisation, clip limit 2, 8x8 tiles) on the L channel of CIE Lab,
so colours keep their hue, followed by a light unsharp mask (Gaussian sigma 1, amount 0.5).
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np
import PIL.Image
from tqdm import tqdm

import utils
from datasets.base import GOOD, list_images
from datasets.mvtec import GROUND_TRUTH_DIR, find_ground_truth
from errors import UserError
from paths import IMAGE_SUFFIXES
from video_io import AtomicVideoWriter, FrameRecord, make_sidecar, write_sidecar

LOGGER = logging.getLogger(__name__)

RESIZE_METHODS = ("pad", "largest", "fixed")
DEFAULT_DATASETS_DIR = "datasets"
DEFAULT_OUTPUT_DIR = "test-video"
GENERATED_VIDEO_FPS = 10.0  # the frame rate of the videos these generators write (--fps)
DEFAULT_SIZE = 256
TEST_DIR = "test"


class SourceError(UserError):
    """Bad video-creation input; the one-line message names the flag or file and the fix."""


@dataclass(frozen=True)
class SourceImage:
    """One image that becomes one video frame, with its label (test type or 'good')."""

    path: Path
    label: str
    mask: Path | None = None

    @property
    def is_defect(self) -> bool:
        """True for every label except 'good'."""
        return self.label != GOOD

    def record(self, index: int) -> FrameRecord:
        """The sidecar entry of this image shown as frame `index`."""
        return FrameRecord(index=index, source=str(self.path.resolve()), label=self.label,
                           is_defect=self.is_defect, mask=str(self.mask.resolve()) if self.mask else None)


@dataclass(frozen=True)
class TypeFolder:
    """One test type folder (good or a defect type) with its images and ground-truth masks."""

    name: str
    images: tuple[SourceImage, ...]

    @property
    def is_defect(self) -> bool:
        """True for defect types."""
        return self.name != GOOD

    @property
    def masks_found(self) -> int:
        """How many of the images have a ground-truth mask."""
        return sum(image.mask is not None for image in self.images)


@dataclass(frozen=True)
class EnhanceConfig:
    """Settings of the mild enhancement: CLAHE on Lab L, then an unsharp mask."""

    clip_limit: float = 2.0
    tile_grid: int = 8
    sharpen_sigma: float = 1.0
    sharpen_amount: float = 0.5


@dataclass(frozen=True)
class FrameConfig:
    """How source images become frames: frame size (w, h), resize method, enhancement, frame rate."""

    frame_size: tuple[int, int]
    resize_method: str = "fixed"
    enhance: bool = False
    fps: float = GENERATED_VIDEO_FPS
    enhancement: EnhanceConfig = field(default_factory=EnhanceConfig)

    def settings(self) -> dict[str, Any]:
        """The sidecar 'settings' entries describing these frames."""
        out: dict[str, Any] = {"fps": self.fps, "frame_size": list(self.frame_size),
                               "resize_method": self.resize_method, "enhance": self.enhance}
        if self.enhance:
            out["enhancement"] = asdict(self.enhancement)
        return out


# ---------------------------------------------------------------- where the images are

def resolve_data_path(dataset: str, data_path: str | os.PathLike | None) -> Path:
    """The folder holding the class folders: --data_path, else datasets/<dataset> (name matched case-insensitively)."""
    if data_path is not None:
        root = Path(data_path)
        if not root.is_dir():
            raise SourceError(f"--data_path {root} is not a folder; pass the folder that holds the class folders "
                              f"(<data_path>/<class>/test/<type>/*.png)")
        return root
    base = Path(DEFAULT_DATASETS_DIR)
    root = base / dataset
    if root.is_dir():
        return root
    if base.is_dir():  # e.g. --dataset wfdd with the data in datasets/WFDD
        matches = sorted(p for p in base.iterdir() if p.is_dir() and p.name.lower() == dataset.lower())
        if matches:
            return matches[0]
    raise SourceError(f"dataset folder {root} does not exist; pass --data_path <folder holding the class folders>")


def class_test_dir(data_path: Path, class_name: str) -> Path:
    """<data_path>/<class>/test; SourceError listing the classes found when it is missing."""
    folder = data_path / class_name
    if not (folder / TEST_DIR).is_dir():
        found = sorted(p.name for p in data_path.iterdir() if (p / TEST_DIR).is_dir())
        raise SourceError(f"--class_name {class_name}: {folder / TEST_DIR} does not exist (classes with a test "
                          f"folder in {data_path}: {', '.join(found) or 'none'}); check --class_name/--data_path")
    return folder / TEST_DIR


def _type_order(name: str) -> tuple[int, str]:
    """Sort key: 'good' first, then the defect types by name."""
    return (name != GOOD, name)


def list_test_types(test_dir: Path) -> list[TypeFolder]:
    """Every non-hidden sub-folder of a test folder as a TypeFolder (good first), masks from ../ground_truth."""
    gt_root = test_dir.parent / GROUND_TRUTH_DIR
    types = []
    for folder in sorted((p for p in test_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                         key=lambda p: _type_order(p.name)):
        gt_folder = gt_root / folder.name
        images = tuple(
            SourceImage(path, folder.name, find_ground_truth(gt_folder, path) if folder.name != GOOD else None)
            for path in list_images(folder)
        )
        types.append(TypeFolder(folder.name, images))
    return types


def select_types(types: Sequence[TypeFolder], wanted: Sequence[str], flag: str = "--test_types") -> list[TypeFolder]:
    """The requested types in the order given (all non-empty ones when none is given); SourceError otherwise."""
    available = [t.name for t in types if t.images]
    if not available:
        raise SourceError(f"no test images found (types: {', '.join(t.name for t in types) or 'none'}); "
                          f"put images in <class>/test/<type>/")
    if not wanted:
        return [t for t in types if t.images]
    by_name = {t.name: t for t in types}
    chosen: list[TypeFolder] = []
    for name in dict.fromkeys(wanted):  # keeps the user's order, drops repeats
        if name not in by_name:
            raise SourceError(f"{flag} {name}: unknown test type; available: {', '.join(available)}")
        if not by_name[name].images:
            raise SourceError(f"{flag} {name}: the folder holds no images; available: {', '.join(available)}")
        chosen.append(by_name[name])
    return chosen


def folder_images(folder: Path) -> list[SourceImage]:
    """The images directly inside a folder, labelled with the folder's name."""
    images = list_images(folder)
    if not images:
        raise SourceError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); point to a folder of test images")
    return [SourceImage(path, folder.name) for path in images]


def format_structure(class_name: str, test_dir: Path, types: Sequence[TypeFolder]) -> str:
    """Plain-text table of a class's test types: images and ground-truth masks per type."""
    header = f"{'test type':<24}{'images':>8}  ground truth"
    lines = [f"{class_name}: {test_dir}", header, "-" * len(header)]
    for t in types:
        if not t.is_defect:
            gt = "- (good)"
        elif t.masks_found == len(t.images) and t.images:
            gt = f"yes ({t.masks_found}/{len(t.images)})"
        elif t.masks_found:
            gt = f"partial ({t.masks_found}/{len(t.images)})"
        else:
            gt = "no"
        lines.append(f"{t.name:<24}{len(t.images):>8}  {gt}")
    lines.append(f"{'total':<24}{sum(len(t.images) for t in types):>8}")
    return "\n".join(lines)


# ---------------------------------------------------------------- frames

def read_image(path: Path) -> np.ndarray:
    """An image as BGR uint8 HxWx3 (gray and 16-bit images converted); SourceError naming the file."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"cannot read image {path}; replace or remove the file")
    return image


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header (no decoding)."""
    try:
        with PIL.Image.open(path) as img:
            return img.size
    except (OSError, PIL.UnidentifiedImageError, ValueError) as exc:
        raise SourceError(f"cannot read image {path} ({type(exc).__name__}); replace or remove the file") from exc


def even(value: int) -> int:
    """`value` rounded up to an even number (MP4 frame sizes must be even)."""
    return value + (value % 2)


def plan_frame_size(images: Sequence[SourceImage], method: str, size: int) -> tuple[int, int]:
    """Frame (width, height) for a resize method: --size square for fixed, else the largest width and height."""
    if method not in RESIZE_METHODS:
        raise SourceError(f"--resize_method {method}: choose one of {', '.join(RESIZE_METHODS)}")
    if method == "fixed":
        return even(size), even(size)
    sizes = [image_size(image.path) for image in tqdm(images, desc="reading image sizes", unit="img", leave=False)]
    return even(max(w for w, _ in sizes)), even(max(h for _, h in sizes))


def _interpolation(src: tuple[int, int], dst: tuple[int, int]) -> int:
    """INTER_AREA when shrinking (no aliasing), bilinear when enlarging."""
    return cv2.INTER_AREA if dst[0] * dst[1] < src[0] * src[1] else cv2.INTER_LINEAR


def fit_frame(image: np.ndarray, frame_size: tuple[int, int], method: str) -> np.ndarray:
    """Brings an image to `frame_size` (w, h): letterboxed for 'pad', stretched for 'largest' and 'fixed'."""
    height, width = image.shape[:2]
    out_w, out_h = frame_size
    if (width, height) == (out_w, out_h):
        return image
    if method != "pad":
        return cv2.resize(image, (out_w, out_h), interpolation=_interpolation((width, height), (out_w, out_h)))
    scale = min(out_w / width, out_h / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = image if (new_w, new_h) == (width, height) else cv2.resize(
        image, (new_w, new_h), interpolation=_interpolation((width, height), (new_w, new_h)))
    frame = np.zeros((out_h, out_w, 3), np.uint8)
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    frame[top:top + new_h, left:left + new_w] = resized
    return frame


def enhance_image(image: np.ndarray, cfg: EnhanceConfig = EnhanceConfig()) -> np.ndarray:
    """Mild enhancement: CLAHE on the Lab lightness channel, then a light unsharp mask (BGR uint8 in and out)."""
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)
    clahe = cv2.createCLAHE(clipLimit=cfg.clip_limit, tileGridSize=(cfg.tile_grid, cfg.tile_grid))
    lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    equalised = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    blurred = cv2.GaussianBlur(equalised, (0, 0), cfg.sharpen_sigma)
    return cv2.addWeighted(equalised, 1.0 + cfg.sharpen_amount, blurred, -cfg.sharpen_amount, 0)


def make_frame(source: SourceImage, cfg: FrameConfig) -> np.ndarray:
    """The video frame of one source image: read, resized, optionally enhanced."""
    frame = fit_frame(read_image(source.path), cfg.frame_size, cfg.resize_method)
    return enhance_image(frame, cfg.enhancement) if cfg.enhance else frame


FrameHook = Callable[[int, SourceImage, np.ndarray], None]


def render_video(sources: Sequence[SourceImage], output: Path, cfg: FrameConfig, settings: dict[str, Any],
                 on_frame: FrameHook | None = None) -> dict[str, Any]:
    """Writes `sources` as frames of an MP4 (atomically) plus its sidecar; returns the sidecar dict."""
    if not sources:
        raise SourceError(f"no images selected for {output}; check the test types")
    records = []
    with AtomicVideoWriter(output, cfg.fps, cfg.frame_size) as writer:
        for index, source in enumerate(tqdm(sources, desc=output.name, unit="frame")):
            frame = make_frame(source, cfg)
            writer.write(frame)
            if on_frame is not None:
                on_frame(index, source, frame)
            records.append(source.record(index))
    sidecar = make_sidecar(output, cfg.fps, cfg.frame_size, records, {**settings, **cfg.settings()})
    write_sidecar(output, sidecar)
    LOGGER.info("%s: %d frames (%d defect), sidecar %s", output, len(records),
                sum(r.is_defect for r in records), output.name + ".json")
    return sidecar


def replace_folder(staging: Path, target: Path) -> None:
    """Moves a finished staging folder onto `target`, replacing an older one.

    The older folder is renamed aside first and deleted only once the new one is in place, so a
    crash leaves either folder at `target`, never none.
    """
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old.{secrets.token_hex(4)}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def ensure_output_folder(folder: Path) -> Path:
    """Creates an output folder (with parents) before any work; SourceError if that is impossible."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SourceError(f"cannot create output folder {folder} ({exc.strerror or exc}); "
                          f"choose a writable --output_dir") from exc
    return folder


def staging_folder(parent: Path, name: str) -> Path:
    """A fresh hidden folder beside `parent / name` for files published together at the end."""
    ensure_output_folder(parent)
    while True:  # not tempfile.mkdtemp: its mode 0700 would stay on the published folder
        candidate = parent / f".{name}.{secrets.token_hex(4)}"
        try:
            candidate.mkdir(mode=0o777)  # the umask decides, as for any new folder
        except FileExistsError:
            continue
        except OSError as exc:
            raise SourceError(f"cannot write in output folder {parent} ({exc.strerror or exc}); "
                              f"choose a writable --output_dir") from exc
        return candidate


# ---------------------------------------------------------------- command line

def expand_multi_value(args: Sequence[str], flag: str) -> list[str]:
    """Rewrites `flag a b c` (and `flag a,b`) as `flag a flag b flag c`, which Click's multiple=True takes."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out.extend(args[i:])
            break
        if arg != flag:
            out.append(arg)
            i += 1
            continue
        i += 1
        values: list[str] = []
        while i < len(args) and not args[i].startswith("-"):
            values.extend(v for v in args[i].split(",") if v)
            i += 1
        if not values:
            out.append(flag)  # Click reports the missing value
        for value in values:
            out += [flag, value]
    return out


def dataset_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--dataset --class_name --data_path --output_dir, shared by the dataset video scripts."""
    options = [
        click.option("--dataset", type=str, required=True, help="Dataset name (mvtec, wfdd, custom, ...)."),
        click.option("--class_name", type=str, required=True, help="Class folder inside the dataset."),
        click.option("--data_path", type=click.Path(path_type=Path), default=None,
                     help="Folder holding the class folders (MVTec layout). Default: datasets/<dataset>."),
        click.option("--output_dir", type=click.Path(path_type=Path), default=Path(DEFAULT_OUTPUT_DIR),
                     show_default=True),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def run_cli(command: click.Command, argv: Sequence[str] | None, multi_value_flags: Sequence[str] = ()) -> int:
    """Runs a Click command: user errors end as `error: <one line>` on stderr with exit code 2, no traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    for flag in multi_value_flags:
        args = expand_multi_value(args, flag)
    return utils.run_command(command, args, "choose a writable output folder")
