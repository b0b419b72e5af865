"""Videos of a dataset class's test split, organised as test-video/<dataset>/<class>/.

    python preprocessing/create_dataset_video.py --dataset custom --class_name grid
    python preprocessing/create_dataset_video.py --dataset custom --class_name grid --separate
    python preprocessing/create_dataset_video.py --dataset wfdd --class_name yellow_cloth --enhance
    python preprocessing/create_dataset_video.py --dataset custom --class_name grid --test_types good hole spot
    python preprocessing/create_dataset_video.py --dataset custom --class_name grid --resize_method largest
    python preprocessing/create_dataset_video.py --dataset custom --class_name grid --list_structure

Data: ``<data_path>/<class>/test/<type>/*`` (``--data_path`` defaults to ``datasets/<dataset>``).
Output: ``<output_dir>/<dataset>/<class>/<class>_all.mp4`` (all test types, ``good`` first, then
the defect types by name); with --test_types the chosen types in the order given, named
``<class>_<type1>+<type2>.mp4``; with --separate one ``<class>_<type>.mp4`` per type. Each
video gets a sidecar ``<video>.json`` (source image, label, ground-truth mask per frame).

--resize_method (frame size shared by all videos of a run):
  pad      letterbox every image, keeping its aspect ratio, into the largest width x height (default);
  largest  stretch every image to the largest width x height, no padding;
  fixed    resize every image to --size x --size.
--list_structure prints the test types with image counts and ground-truth availability, then exits.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from preprocessing.video_sources import (
    DEFAULT_OUTPUT_DIR, DEFAULT_SIZE, GENERATED_VIDEO_FPS, RESIZE_METHODS, FrameConfig, TypeFolder, class_test_dir,
    dataset_options, ensure_output_folder, format_structure, list_test_types, plan_frame_size, render_video,
    resolve_data_path, run_cli, select_types,
)
from utils import positive

LOGGER = logging.getLogger("create_dataset_video")


@dataclass(frozen=True)
class DatasetVideoOptions:
    """Command-line options of create_dataset_video."""

    dataset: str
    class_name: str
    data_path: Path | None = None
    output_dir: Path = Path(DEFAULT_OUTPUT_DIR)
    separate: bool = False
    enhance: bool = False
    test_types: tuple[str, ...] = ()
    resize_method: str = "pad"
    size: int = DEFAULT_SIZE
    fps: float = GENERATED_VIDEO_FPS
    list_structure: bool = False

    def video_dir(self) -> Path:
        """<output_dir>/<dataset>/<class>."""
        return self.output_dir / self.dataset / self.class_name


def plan_videos(opts: DatasetVideoOptions, types: Sequence[TypeFolder]) -> dict[str, list[TypeFolder]]:
    """Video file name -> the test types it shows."""
    if opts.separate:
        return {f"{opts.class_name}_{t.name}.mp4": [t] for t in types}
    suffix = "+".join(t.name for t in types) if opts.test_types else "all"
    return {f"{opts.class_name}_{suffix}.mp4": list(types)}


def create_dataset_videos(opts: DatasetVideoOptions) -> list[Path]:
    """Writes the videos (and sidecars) of one class; returns their paths (none for --list_structure)."""
    data_path = resolve_data_path(opts.dataset, opts.data_path)
    test_dir = class_test_dir(data_path, opts.class_name)
    all_types = list_test_types(test_dir)
    if opts.list_structure:
        click.echo(format_structure(opts.class_name, test_dir, all_types))
        return []
    types = select_types(all_types, opts.test_types)
    images = [image for t in types for image in t.images]
    ensure_output_folder(opts.video_dir())
    cfg = FrameConfig(frame_size=plan_frame_size(images, opts.resize_method, opts.size),
                      resize_method=opts.resize_method, enhance=opts.enhance, fps=opts.fps)
    outputs = []
    for name, video_types in plan_videos(opts, types).items():
        settings = {"tool": "create_dataset_video", "dataset": opts.dataset, "class_name": opts.class_name,
                    "data_path": str(data_path.resolve()), "test_types": [t.name for t in video_types]}
        output = opts.video_dir() / name
        render_video([image for t in video_types for image in t.images], output, cfg, settings)
        outputs.append(output)
    LOGGER.info("%d video(s) in %s", len(outputs), opts.video_dir())
    return outputs


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@dataset_options
@click.option("--separate", is_flag=True, help="One video per test type instead of one for all.")
@click.option("--enhance", is_flag=True, help="Mild CLAHE + unsharp-mask enhancement of every frame.")
@click.option("--test_types", type=str, multiple=True,
              help="Only these test types, in this order (e.g. --test_types good hole spot).")
@click.option("--resize_method", type=click.Choice(RESIZE_METHODS), default="pad", show_default=True,
              help="pad: letterbox into the largest size keeping aspect; largest: stretch to the largest size; "
                   "fixed: --size x --size.")
@click.option("--size", type=int, default=DEFAULT_SIZE, show_default=True, callback=positive,
              help="Frame side for --resize_method fixed (rounded up to even).")
@click.option("--fps", type=float, default=GENERATED_VIDEO_FPS, show_default=True, callback=positive)
@click.option("--list_structure", is_flag=True, help="Print the test types, image counts and ground truth; exit.")
def main(**kwargs: object) -> None:
    """Create videos from a dataset class's test images (test-video/<dataset>/<class>/)."""
    kwargs["test_types"] = tuple(kwargs["test_types"])
    create_dataset_videos(DatasetVideoOptions(**kwargs))


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 with a one-line error for bad input)."""
    return run_cli(main, argv, multi_value_flags=("--test_types",))


if __name__ == "__main__":
    sys.exit(cli())
