"""A test video with a chosen share of defect frames spread evenly over its whole duration.

    python preprocessing/create_enhanced_video.py --dataset custom --class_name grid --video_name grid_test
    python preprocessing/create_enhanced_video.py --dataset custom --class_name grid --defect_ratio 0.5 --enhance
    python preprocessing/create_enhanced_video.py --dataset wfdd --class_name yellow_cloth --total_frames 300 \
        --save_good_frames
    python preprocessing/create_enhanced_video.py --dataset custom --class_name grid --no_save_frames

Frames: ``n_defect = round(defect_ratio * total_frames)`` (halves round up) defect frames, one in
the middle of each of n_defect equal stretches of the video (stretch k: frames i with
``k * total / n_defect <= i < (k + 1) * total / n_defect``), good frames everywhere else. Defect
frames draw from all defect types of ``<class>/test``, good frames from ``<class>/test/good``;
each pool is gone through in a seeded random order, and only when it is used up is it reshuffled
and repeated, so images repeat only when the video needs more frames than there are images. Same
seed and flags -> same video.
--total_frames defaults to the number of test images of the class.

Output: ``<output_dir>/<video_name>/<video_name>.mp4`` + its sidecar ``<video_name>.mp4.json`` +
(unless --no_save_frames) ``good_frames/frame_<index>.jpg``, the good frames as they appear in
the video (after resizing/enhancement), named by frame index. good_frames/ is replaced as a whole
when the video is written, so it never mixes files of two runs.
"""
from __future__ import annotations

import logging
import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import cv2
import numpy as np

from preprocessing.video_sources import (
    DEFAULT_OUTPUT_DIR, DEFAULT_SIZE, GENERATED_VIDEO_FPS, FrameConfig, SourceError, SourceImage, class_test_dir,
    dataset_options, even, list_test_types, render_video, replace_folder, resolve_data_path, run_cli,
    staging_folder,
)
from utils import positive

LOGGER = logging.getLogger("create_enhanced_video")

GOOD_FRAMES_DIR = "good_frames"
# Quality 95 without chroma subsampling (4:4:4): the saved good frames keep fine colour texture,
# which matters when they are reused as defect-free reference or training images.
JPEG_PARAMS = (cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444)


@dataclass(frozen=True)
class EnhancedVideoOptions:
    """Command-line options of create_enhanced_video (validated on creation)."""

    dataset: str
    class_name: str
    data_path: Path | None = None
    output_dir: Path = Path(DEFAULT_OUTPUT_DIR)
    video_name: str | None = None
    defect_ratio: float = 0.3
    total_frames: int | None = None
    save_good_frames: bool = True
    enhance: bool = False
    seed: int = 0
    fps: float = GENERATED_VIDEO_FPS
    size: int = DEFAULT_SIZE

    def __post_init__(self) -> None:
        """Rejects values no video can be made from."""
        if not 0.0 <= self.defect_ratio <= 1.0:
            raise SourceError(f"--defect_ratio {self.defect_ratio}: must be in [0, 1] (0.3 = 30% defect frames)")
        if self.total_frames is not None and self.total_frames < 1:
            raise SourceError(f"--total_frames {self.total_frames}: must be at least 1")
        name = self.name()
        if not name or Path(name).name != name or name in (".", ".."):
            raise SourceError(f"--video_name {name!r}: must be a plain file name without folders")

    def name(self) -> str:
        """--video_name, else <dataset>_<class>."""
        return self.video_name if self.video_name is not None else f"{self.dataset}_{self.class_name}"

    def video_path(self) -> Path:
        """<output_dir>/<name>/<name>.mp4."""
        return self.output_dir / self.name() / f"{self.name()}.mp4"


def defect_count(total: int, ratio: float) -> int:
    """round(ratio * total) with halves rounded up (Python's round() rounds halves to even)."""
    return min(total, int(math.floor(ratio * total + 0.5)))


def defect_slots(total: int, n_defect: int) -> list[int]:
    """Frame indices of the defect frames: the middle frame of each of n_defect equal stretches of the video.

    Stretch k holds the frames i with k * total / n_defect <= i < (k + 1) * total / n_defect
    (integer arithmetic, so no float rounding can move a slot out of its stretch).
    """
    starts = [-(-k * total // n_defect) for k in range(n_defect + 1)]  # ceil(k * total / n_defect)
    return [(starts[k] + starts[k + 1] - 1) // 2 for k in range(n_defect)]


def draw(pool: Sequence[SourceImage], n: int, rng: np.random.Generator) -> list[SourceImage]:
    """`n` images from `pool`: a seeded shuffle, reshuffled and repeated only once it is used up."""
    drawn: list[SourceImage] = []
    while len(drawn) < n:
        drawn.extend(pool[i] for i in rng.permutation(len(pool))[:n - len(drawn)])
    return drawn


def plan_frames(good: Sequence[SourceImage], defects: Sequence[SourceImage], total: int, ratio: float,
                seed: int) -> list[SourceImage]:
    """The source image of every frame: defect images at the evenly spread slots, good images elsewhere."""
    n_defect = defect_count(total, ratio)
    if n_defect and not defects:
        raise SourceError(f"--defect_ratio {ratio}: the class has no defect test images; use --defect_ratio 0")
    if n_defect < total and not good:
        raise SourceError(f"--defect_ratio {ratio}: the class has no test/good images for the "
                          f"{total - n_defect} good frames; use --defect_ratio 1")
    if ratio > 0 and n_defect == 0:
        LOGGER.warning("--defect_ratio %s of %d frames rounds to 0 defect frames", ratio, total)
    rng = np.random.default_rng(seed)
    defect_iter = iter(draw(defects, n_defect, rng))
    good_iter = iter(draw(good, total - n_defect, rng))
    slots = set(defect_slots(total, n_defect)) if n_defect else set()
    return [next(defect_iter) if index in slots else next(good_iter) for index in range(total)]


def frame_file_name(index: int, total: int) -> str:
    """frame_<index>.jpg, zero-padded (at least 5 digits) so names sort in frame order."""
    digits = max(5, len(str(total - 1)))
    return f"frame_{index:0{digits}d}.jpg"


def create_enhanced_video(opts: EnhancedVideoOptions) -> Path:
    """Writes the video, its sidecar and (optionally) the good frames; returns the video path."""
    data_path = resolve_data_path(opts.dataset, opts.data_path)
    test_dir = class_test_dir(data_path, opts.class_name)
    types = list_test_types(test_dir)
    good = [image for t in types if not t.is_defect for image in t.images]
    defects = [image for t in types if t.is_defect for image in t.images]
    total = opts.total_frames or len(good) + len(defects)
    if total == 0:
        raise SourceError(f"{test_dir} holds no test images; put images in <class>/test/<type>/")
    frames = plan_frames(good, defects, total, opts.defect_ratio, opts.seed)
    cfg = FrameConfig(frame_size=(even(opts.size), even(opts.size)), resize_method="fixed",
                      enhance=opts.enhance, fps=opts.fps)
    output = opts.video_path()
    settings = {"tool": "create_enhanced_video", "dataset": opts.dataset, "class_name": opts.class_name,
                "data_path": str(data_path.resolve()), "defect_ratio": opts.defect_ratio, "total_frames": total,
                "defect_frames": sum(f.is_defect for f in frames), "seed": opts.seed,
                "save_good_frames": opts.save_good_frames}
    if not opts.save_good_frames:
        render_video(frames, output, cfg, settings)
        if (output.parent / GOOD_FRAMES_DIR).exists():
            LOGGER.warning("%s is from an earlier run (kept; --no_save_frames)", output.parent / GOOD_FRAMES_DIR)
        return output
    staging = staging_folder(output.parent, GOOD_FRAMES_DIR)

    def save_good(index: int, source: SourceImage, frame: np.ndarray) -> None:
        """Writes a good frame into the staging folder."""
        if not source.is_defect:
            path = staging / frame_file_name(index, total)
            if not cv2.imwrite(str(path), frame, list(JPEG_PARAMS)):
                raise SourceError(f"cannot write {path}; choose a writable --output_dir")

    try:
        render_video(frames, output, cfg, settings, on_frame=save_good)
        replace_folder(staging, output.parent / GOOD_FRAMES_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful replace
    LOGGER.info("good frames in %s", output.parent / GOOD_FRAMES_DIR)
    return output


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@dataset_options
@click.option("--video_name", type=str, default=None, help="Video (and folder) name. Default: <dataset>_<class>.")
@click.option("--defect_ratio", type=float, default=0.3, show_default=True,
              help="Share of defect frames, spread evenly over the video.")
@click.option("--total_frames", type=int, default=None, help="Frames in the video. Default: number of test images.")
@click.option("--save_good_frames/--no_save_frames", default=True, show_default=True,
              help="Save the good frames as good_frames/frame_<index>.jpg.")
@click.option("--enhance", is_flag=True, help="Mild CLAHE + unsharp-mask enhancement of every frame.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the image draws.")
@click.option("--fps", type=float, default=GENERATED_VIDEO_FPS, show_default=True, callback=positive)
@click.option("--size", type=int, default=DEFAULT_SIZE, show_default=True, callback=positive,
              help="Frames are SIZE x SIZE pixels (rounded up to even).")
def main(**kwargs: object) -> None:
    """Create a video with defect frames spread evenly over its duration, plus its good frames as images."""
    create_enhanced_video(EnhancedVideoOptions(**kwargs))


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 with a one-line error for bad input)."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
