"""Set up a line from a recording: an MVTec-layout class from a defect-free video.

Every Nth frame of the video (optionally only frames START..END) is kept; an evenly spaced
fraction of the kept frames is held out as ``test/good``, the rest become ``train/good``.
Frames keep their shape and colour (no resize, no crop) and are written as lossless PNG; each
training frame is moved by a random whole number of pixels (``--jitter``, below)::

    OUTPUT/CLASS/train/good/000.png ...
    OUTPUT/CLASS/test/good/000.png ...
    OUTPUT/CLASS/video_to_dataset.json    (source video, its fps/frame count/size, settings, and
                                           which source frame every image is)

    python preprocessing/video_to_dataset.py --video normal.mp4 --class_name steel --every 5 --output data/

Why the jitter: a belt at a constant speed shows the surface at few sampling phases (at 6 px per
frame every frame is an even number of pixels further on), and the network is not shift-invariant
(its first convolution has stride 2: the same texture one pixel further on gives other features). A
model trained only on even phases flagged 16.7 % of a new recording at 3 px per frame (every odd
frame; benchmarks/bench_line.py, grass 704x256) and none of its own recording. Moving each training
frame by up to --jitter pixels in x and y (the uncovered border mirrored; seeded, recorded in the
sidecar) shows the model every phase; ``--jitter 0`` keeps the frames exactly as decoded. Test
frames are never moved.

``main.py`` trains on OUTPUT as any MVTec-layout dataset (``dataset ... -d steel mvtec data/ DTD``;
pass ``--fg 0``: a recording has no foreground masks, and ``--jpeg 30``: half the frames compressed in training, so
that production video compressed harder than the recording is not flagged, README "Compressed video"; for large
frames with thin defects, train at the
camera's scale on squares cut anywhere in the frames: ``--resize <frame height> --imagesize 256 --train_crop
random``, README "Large frames at full resolution"). The test split holds good images only, so
image AUROC/AP are undefined (nan) until defective images are added under ``test/<defect>`` with
their masks under ``ground_truth/<defect>``.

The class is built in a hidden temporary folder beside OUTPUT/CLASS and renamed into place when
complete, so an interrupted run leaves no half-written class; an existing non-empty class folder
is kept unless --overwrite, and then replaced only once the new one is complete.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import click
import cv2
import numpy as np
from tqdm import tqdm

import utils
import video_io
from errors import UserError

LOGGER = logging.getLogger(__name__)

SIDECAR_NAME = "video_to_dataset.json"
MIN_TRAIN_FRAMES = 2
CLASS_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RESERVED_NAMES = ("fg_mask",)  # a folder of that name under the dataset root holds foreground masks
READ_BATCH = 16
STAGING_DIR = "frames"
MAX_JITTER = 16


class VideoDatasetError(UserError):
    """A bad setting or input; one line naming the flag or file and the fix."""


def split_counts(kept: int, test_fraction: float) -> tuple[int, int]:
    """(train, test) image counts for `kept` frames: round(fraction * kept) test frames, at least 1 if fraction > 0."""
    if test_fraction <= 0 or kept == 0:
        return kept, 0
    test = max(1, math.floor(test_fraction * kept + 0.5))
    return kept - test, test


@dataclass(frozen=True)
class VideoDatasetConfig:
    """Which frames of which video become which class, validated on creation."""

    video: Path
    class_name: str
    output: Path
    every: int = 5
    start: int = 0
    end: int | None = None  # exclusive
    test_fraction: float = 0.1
    max_frames: int | None = None
    overwrite: bool = False
    jitter: int = 2  # training frames move by up to this many pixels in x and y (0: unchanged)
    seed: int = 0  # of the jitter

    def __post_init__(self) -> None:
        """Coerces the paths and checks every value that does not need the video."""
        object.__setattr__(self, "video", Path(self.video))
        object.__setattr__(self, "output", Path(self.output))
        name = self.class_name
        if not CLASS_NAME_PATTERN.fullmatch(name) or name in RESERVED_NAMES:
            raise VideoDatasetError(f"--class_name {name!r}: use a plain folder name of letters, digits, '.', '_' "
                                    f"and '-' starting with a letter or digit (not {', '.join(RESERVED_NAMES)}), "
                                    f"e.g. steel")
        if self.every < 1:
            raise VideoDatasetError(f"--every {self.every}: must be at least 1 (1 keeps every frame)")
        if self.start < 0:
            raise VideoDatasetError(f"--start {self.start}: must be a frame index of 0 or more")
        if self.end is not None and self.end <= self.start:
            raise VideoDatasetError(f"--end {self.end}: must be greater than --start {self.start} "
                                    f"(frames start..end-1 are used)")
        if not (math.isfinite(self.test_fraction) and 0.0 <= self.test_fraction < 1.0):
            raise VideoDatasetError(f"--test_fraction {self.test_fraction}: must be in [0, 1), e.g. 0.1")
        if not 0 <= self.jitter <= MAX_JITTER:
            raise VideoDatasetError(f"--jitter {self.jitter}: use 0 (frames unchanged) to {MAX_JITTER} pixels, "
                                    f"e.g. 2")
        if self.max_frames is not None:
            train, test = split_counts(self.max_frames, self.test_fraction)
            if self.max_frames < 1 or train < MIN_TRAIN_FRAMES:
                raise VideoDatasetError(f"--max_frames {self.max_frames}: leaves {max(train, 0)} training frames "
                                        f"with --test_fraction {self.test_fraction}; raise it to keep at least "
                                        f"{MIN_TRAIN_FRAMES}")

    @property
    def class_dir(self) -> Path:
        """OUTPUT/CLASS."""
        return self.output / self.class_name


def is_kept(index: int, cfg: VideoDatasetConfig) -> bool:
    """Whether source frame `index` is one of the every-Nth frames of the START..END range."""
    in_range = index >= cfg.start and (cfg.end is None or index < cfg.end)
    return in_range and (index - cfg.start) % cfg.every == 0


def held_out_positions(kept: int, test: int) -> list[int]:
    """Positions (0..kept-1) of the `test` held-out frames: the centres of `test` equal parts of the kept frames.

    Evenly spaced rather than one contiguous block, so the held-out frames span the whole recording
    (lighting drift, every part of the surface) instead of only its end. This does not make them
    independent of training: the train frames next to a held-out frame are only `every` source
    frames away and, for a small --every, near-duplicates of it, so test/good scores are a sanity
    check of false alarms, not an unbiased estimate (raise --every for more distinct frames).
    """
    return [((2 * i + 1) * kept) // (2 * test) for i in range(test)]


def check_target(cfg: VideoDatasetConfig) -> None:
    """VideoDatasetError if OUTPUT/CLASS is a file, or a non-empty folder and --overwrite is not set."""
    target = cfg.class_dir
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise VideoDatasetError(f"--class_name {cfg.class_name}: {target} exists and is not a folder; "
                                f"choose another --class_name or --output")
    if target.is_dir() and any(target.iterdir()) and not cfg.overwrite:
        raise VideoDatasetError(f"--class_name {cfg.class_name}: {target} already exists and is not empty; "
                                f"pass --overwrite to replace it, or choose another --class_name or --output")


def make_staging_dir(cfg: VideoDatasetConfig) -> Path:
    """A new hidden temporary folder beside OUTPUT/CLASS (VideoDatasetError if OUTPUT cannot be written)."""
    try:
        cfg.output.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cfg.output, prefix=f".{cfg.class_name}.", suffix=".tmp"))
    except OSError as exc:
        raise VideoDatasetError(f"--output {cfg.output}: cannot create or write the folder "
                                f"({exc.strerror or exc}); choose a writable --output") from exc
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the mode a plain mkdir would
    return tmp


def _umask() -> int:
    """The process umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_png(path: Path, frame: np.ndarray) -> None:
    """Writes a BGR frame as a lossless PNG (VideoDatasetError if it cannot be written)."""
    if not cv2.imwrite(str(path), frame):
        raise VideoDatasetError(f"cannot write {path}; check that --output is writable and has free space")


def extract_frames(cfg: VideoDatasetConfig, info: video_io.VideoInfo, staging: Path) -> tuple[list[int], int]:
    """Writes the kept frames as staging/frames/<source index>.png; returns (kept source indices, frames read)."""
    stop = info.frame_count if cfg.end is None else min(cfg.end, info.frame_count)
    kept: list[int] = []
    index = 0
    with tqdm(total=max(stop, 0), unit="frame", desc=f"reading {info.path.name}", disable=None) as bar:
        batches = video_io.iter_frames(info.path, READ_BATCH, check=False)
        try:
            for batch in batches:
                for frame in batch:
                    if is_kept(index, cfg):
                        write_png(staging / STAGING_DIR / f"{index}.png", frame)
                        kept.append(index)
                    index += 1
                    bar.update(1)
                    if (cfg.end is not None and index >= cfg.end) or len(kept) == cfg.max_frames:
                        return kept, index
        finally:
            batches.close()  # releases the capture when reading stops early
    return kept, index


def shift_frame(frame: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The frame's content moved dx pixels right and dy down (negative: left, up), same shape; the
    uncovered border mirrored from the frame (OpenCV's BORDER_REFLECT_101)."""
    pad = max(abs(dx), abs(dy))
    if pad == 0:
        return frame
    padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    height, width = frame.shape[:2]
    return np.ascontiguousarray(padded[pad - dy:pad - dy + height, pad - dx:pad - dx + width])


def split_frames(staging: Path, kept: list[int], test_fraction: float, jitter: int = 0,
                 seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Moves the staged frames into train/good and test/good, numbered in source order, each training
    frame shifted by a seeded random (dx, dy) in [-jitter, jitter]; returns the images of each split
    as {"image": path relative to the class folder, "frame": source index[, "shift": [dx, dy]]}."""
    rng = np.random.default_rng(seed)
    n_train, n_test = split_counts(len(kept), test_fraction)
    held_out = set(held_out_positions(len(kept), n_test)) if n_test else set()
    sources = {"train": [src for pos, src in enumerate(kept) if pos not in held_out],
               "test": [src for pos, src in enumerate(kept) if pos in held_out]}
    width = max(3, len(str(max(n_train, n_test) - 1)))  # names sort in frame order
    images: dict[str, list[dict[str, Any]]] = {}
    for split, frames in sources.items():
        folder = staging / split / "good"
        folder.mkdir(parents=True)
        images[split] = []
        for number, src in enumerate(frames):
            name = f"{split}/good/{number:0{width}d}.png"
            staged = staging / STAGING_DIR / f"{src}.png"
            record: dict[str, Any] = {"image": name, "frame": src}
            if split == "train" and jitter:
                dx, dy = (int(v) for v in rng.integers(-jitter, jitter + 1, size=2))
                write_png(staging / name, shift_frame(cv2.imread(str(staged), cv2.IMREAD_UNCHANGED), dx, dy))
                staged.unlink()
                record["shift"] = [dx, dy]
            else:
                os.replace(staged, staging / name)
            images[split].append(record)
    (staging / STAGING_DIR).rmdir()
    return images


def too_few_message(cfg: VideoDatasetConfig, kept: int, n_train: int, read: int) -> str:
    """The error for too few kept frames, naming the flag most likely at fault."""
    if kept == 0 and cfg.start >= read:
        return f"--start {cfg.start}: the video {cfg.video} has only {read} frames; choose a smaller --start"
    end = "the end" if cfg.end is None else cfg.end
    return (f"--every {cfg.every}: kept only {kept} frames of {cfg.video} (frames {cfg.start} to {end}, "
            f"{read} read), {n_train} for training with --test_fraction {cfg.test_fraction}; need at least "
            f"{MIN_TRAIN_FRAMES} training frames: lower --every or --test_fraction, or widen --start/--end")


def publish(staging: Path, cfg: VideoDatasetConfig) -> None:
    """Renames the complete staging folder onto OUTPUT/CLASS; an old folder goes only after the new one is there."""
    check_target(cfg)  # again: the folder may have appeared while the video was read
    target = cfg.class_dir
    if not target.exists():
        os.rename(staging, target)
        return
    if not any(target.iterdir()):
        target.rmdir()
        os.rename(staging, target)
        return
    old = Path(tempfile.mkdtemp(dir=cfg.output, prefix=f".{cfg.class_name}.", suffix=".old"))
    os.rename(target, old / cfg.class_name)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(old / cfg.class_name, target)  # put the old class back
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def video_to_dataset(cfg: VideoDatasetConfig) -> dict[str, Any]:
    """Builds OUTPUT/CLASS from the video; returns the sidecar data written beside the images."""
    info = video_io.probe_video(cfg.video)  # VideoError for a missing, corrupt or empty video
    check_target(cfg)
    staging = make_staging_dir(cfg)
    try:
        (staging / STAGING_DIR).mkdir()
        kept, read = extract_frames(cfg, info, staging)
        n_train, _ = split_counts(len(kept), cfg.test_fraction)
        if n_train < MIN_TRAIN_FRAMES:
            raise VideoDatasetError(too_few_message(cfg, len(kept), n_train, read))
        images = split_frames(staging, kept, cfg.test_fraction, cfg.jitter, cfg.seed)
        data = sidecar_data(cfg, info, read, images)
        utils.atomic_write_text(staging / SIDECAR_NAME, json.dumps(data, indent=2) + "\n")
        publish(staging, cfg)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not images["test"]:
        LOGGER.warning("no test frames (--test_fraction 0): %s is empty; main.py tests on test/ images, add some",
                       cfg.class_dir / "test" / "good")
    LOGGER.info("wrote %s: %d train and %d test frames", cfg.class_dir, len(images["train"]), len(images["test"]))
    return data


def sidecar_data(cfg: VideoDatasetConfig, info: video_io.VideoInfo, read: int,
                 images: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The sidecar: source video, its properties, the settings and the source frame of every image."""
    return {
        "generator": "video_to_dataset",
        "video": str(cfg.video.resolve()),
        "fps": info.fps,
        "frame_count": info.frame_count,  # as the container states it
        "frames_read": read,  # decoded until the last kept frame (or the end of the video)
        "width": info.width,
        "height": info.height,
        "settings": {"class_name": cfg.class_name, "every": cfg.every, "start": cfg.start, "end": cfg.end,
                     "test_fraction": cfg.test_fraction, "max_frames": cfg.max_frames, "jitter": cfg.jitter,
                     "seed": cfg.seed},
        # per image: its file, the source frame index and that frame's time in the video
        **{split: [{**record, "time_s": round(record["frame"] / info.fps, 3)} for record in records]
           for split, records in images.items()},
    }


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--video", required=True, help="Defect-free recording of the line (any video OpenCV/FFmpeg reads).")
@click.option("--class_name", required=True, help="Class folder name, e.g. steel (letters, digits, . _ -).")
@click.option("--output", default="data", show_default=True, help="Dataset root; the class goes in OUTPUT/CLASS_NAME.")
@click.option("--every", default=5, show_default=True,
              help="Keep every Nth frame (consecutive frames are near-duplicates).")
@click.option("--start", default=0, show_default=True, help="First source frame index to use.")
@click.option("--end", default=None, type=int, help="Stop before this source frame index [end of the video].")
@click.option("--test_fraction", default=0.1, show_default=True,
              help="Fraction of the kept frames held out as test/good, evenly spaced (0 to 1, 1 excluded).")
@click.option("--max_frames", default=None, type=int, help="Stop after this many kept frames [no cap].")
@click.option("--overwrite", is_flag=True, help="Replace an existing non-empty OUTPUT/CLASS_NAME folder.")
@click.option("--jitter", default=2, show_default=True,
              help="Move each training frame by a random 0 to N pixels in x and y (the model then sees the "
                   "surface at every sampling phase); 0 keeps the frames exactly as decoded.")
@click.option("--seed", default=0, show_default=True, help="Seed of the --jitter shifts.")
def _command(video: str, class_name: str, output: str, every: int, start: int, end: int | None,
             test_fraction: float, max_frames: int | None, overwrite: bool, jitter: int, seed: int) -> None:
    """Write an MVTec-layout class (train/good, test/good) from a defect-free video."""
    cfg = VideoDatasetConfig(Path(video), class_name, Path(output), every, start, end, test_fraction, max_frames,
                             overwrite, jitter, seed)
    data = video_to_dataset(cfg)
    click.echo(f"{cfg.class_dir}: {len(data['train'])} train + {len(data['test'])} test frames, "
               f"{data['width']}x{data['height']}, every {cfg.every} from {cfg.video}")


def cli(argv: Sequence[str] | None = None) -> int:
    """Runs the command; user errors print one line and return 2."""
    return utils.run_command(_command, argv, "choose a writable --output")


if __name__ == "__main__":
    sys.exit(cli())
