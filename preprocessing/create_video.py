"""Test images of one class (all types, or one defect type) to one MP4 with a sidecar JSON.

    python preprocessing/create_video.py grid --input_path datasets/custom/grid/test \
        --output preprocessing/grid_test_video.mp4
    python preprocessing/create_video.py grid --defect hole --output preprocessing/grid_hole_video.mp4

Without --input_path the images come from ``<data_path>/<CLASS>/test`` (``--data_path``
defaults to ``datasets/<dataset>``, ``--dataset`` to ``custom``). --input_path may be a test
folder with ``<type>/`` sub-folders (frames labelled by type, ``good`` first) or a plain folder
of images (frames labelled with the folder's name). Every image is resized to --size x --size.
Output defaults to ``<output_dir>/<CLASS>_<defect|all>.mp4``; the sidecar ``<video>.json``
records the source image and label of every frame.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from preprocessing.video_sources import (
    DEFAULT_OUTPUT_DIR, DEFAULT_SIZE, GENERATED_VIDEO_FPS, FrameConfig, SourceError, SourceImage, class_test_dir, even,
    folder_images, list_test_types, render_video, resolve_data_path, run_cli, select_types,
)
from utils import positive

LOGGER = logging.getLogger("create_video")


@dataclass(frozen=True)
class CreateVideoOptions:
    """Command-line options of create_video."""

    class_name: str
    input_path: Path | None = None
    defect: str | None = None
    output: Path | None = None
    output_dir: Path = Path(DEFAULT_OUTPUT_DIR)
    dataset: str = "custom"
    data_path: Path | None = None
    fps: float = GENERATED_VIDEO_FPS
    size: int = DEFAULT_SIZE
    enhance: bool = False

    def video_path(self) -> Path:
        """--output, else <output_dir>/<class>_<defect|all>.mp4."""
        return self.output or self.output_dir / f"{self.class_name}_{self.defect or 'all'}.mp4"


def input_folder(opts: CreateVideoOptions) -> Path:
    """--input_path, else the class's test folder under the data path."""
    if opts.input_path is None:
        return class_test_dir(resolve_data_path(opts.dataset, opts.data_path), opts.class_name)
    if not opts.input_path.is_dir():
        raise SourceError(f"--input_path {opts.input_path} is not a folder; pass a test folder "
                          f"(<class>/test) or a folder of images")
    return opts.input_path


def collect_sources(folder: Path, defect: str | None) -> list[SourceImage]:
    """Images of every type sub-folder (or of --defect only); a folder without type sub-folders as is."""
    types = list_test_types(folder)
    if any(t.images for t in types):
        return [image for t in select_types(types, [defect] if defect else [], flag="--defect") for image in t.images]
    if defect:
        raise SourceError(f"--defect {defect}: {folder} has no <type> sub-folders with images; pass the test "
                          f"folder as --input_path or drop --defect")
    return folder_images(folder)


def create_video(opts: CreateVideoOptions) -> Path:
    """Writes the video and its sidecar; returns the video path."""
    folder = input_folder(opts)
    sources = collect_sources(folder, opts.defect)
    cfg = FrameConfig(frame_size=(even(opts.size), even(opts.size)), resize_method="fixed",
                      enhance=opts.enhance, fps=opts.fps)
    settings = {"tool": "create_video", "class_name": opts.class_name, "defect": opts.defect,
                "input_path": str(folder.resolve())}
    output = opts.video_path()
    render_video(sources, output, cfg, settings)
    return output


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("class_name")
@click.option("--input_path", type=click.Path(path_type=Path), default=None,
              help="Test folder with <type>/ sub-folders, or a folder of images. Default: <data_path>/CLASS/test.")
@click.option("--defect", type=str, default=None, help="Only this test type (e.g. hole, or good).")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Output .mp4. Default: <output_dir>/CLASS_<defect|all>.mp4.")
@click.option("--output_dir", type=click.Path(path_type=Path), default=Path(DEFAULT_OUTPUT_DIR), show_default=True)
@click.option("--dataset", type=str, default="custom", show_default=True,
              help="Dataset name; the data path defaults to datasets/<dataset>.")
@click.option("--data_path", type=click.Path(path_type=Path), default=None,
              help="Folder holding the class folders (MVTec layout). Default: datasets/<dataset>.")
@click.option("--fps", type=float, default=GENERATED_VIDEO_FPS, show_default=True, callback=positive)
@click.option("--size", type=int, default=DEFAULT_SIZE, show_default=True, callback=positive,
              help="Frames are SIZE x SIZE pixels (rounded up to even).")
@click.option("--enhance", is_flag=True, help="Mild CLAHE + unsharp-mask enhancement of every frame.")
def main(**kwargs: object) -> None:
    """Write the test images of CLASS (or one defect type) to one MP4 video with a sidecar JSON."""
    create_video(CreateVideoOptions(**kwargs))


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 with a one-line error for bad input)."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
