"""Synthetic conveyor video: a real texture photo moving under a fixed camera, with painted defects.

The surface is a bundled scikit-image photo at the demo dataset's scale (so a demo model sees
normal texture), mirrored end to end into a long strip, with synthetic defects painted at even
spacing. The camera window slides `speed` pixels per frame, so every defect crosses the view.
The sidecar JSON holds the ground truth a tracking run can be checked against: the true motion
per frame, every defect's area, and which defects each frame shows where.

    python preprocessing/create_conveyor_video.py --texture brick --speed 4 --defects 4
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import click
import cv2
import numpy as np

import utils
import video_io
from preprocessing.defect_simulator import DEFECT_TYPES, simulate_defect
from preprocessing.make_demo_dataset import CLASS_PHOTOS, load_photo

LOGGER = logging.getLogger(__name__)

DEMO_CROP_FRACTION = 0.75  # the demo dataset crops this fraction of the photo's short side


class ConveyorError(ValueError):
    """A bad conveyor setting; one line naming the flag and the fix."""


@dataclass(frozen=True)
class ConveyorConfig:
    """What the conveyor video shows."""

    texture: str = "brick"
    size: int = 256
    speed: int = 4
    defects: int = 4
    seed: int = 0
    fps: float = 25.0
    defect_types: tuple[str, ...] = ("hole", "stain", "contamination", "crack")

    def __post_init__(self) -> None:
        if self.texture not in CLASS_PHOTOS:
            raise ConveyorError(f"--texture {self.texture}: unknown; use one of {', '.join(CLASS_PHOTOS)}")
        if self.size < 32 or self.size % 2:
            raise ConveyorError(f"--size {self.size}: use an even number of at least 32 pixels (MP4 frames are even)")
        if not 1 <= self.speed <= self.size // 2:
            raise ConveyorError(f"--speed {self.speed}: use 1 to {self.size // 2} pixels per frame")
        if self.defects < 0:
            raise ConveyorError(f"--defects {self.defects}: must not be negative")
        if self.fps <= 0:
            raise ConveyorError(f"--fps {self.fps}: must be positive")
        unknown = sorted(set(self.defect_types) - set(DEFECT_TYPES))
        if unknown or not self.defect_types:
            raise ConveyorError(f"defect_types {','.join(unknown)}: unknown; use some of {', '.join(DEFECT_TYPES)}")


@dataclass(frozen=True)
class PaintedDefect:
    """One defect painted on the strip (strip coordinates, boxes x2/y2 exclusive)."""

    defect_id: int
    defect_type: str
    area_pixels: int
    box: tuple[int, int, int, int]


def build_strip(cfg: ConveyorConfig) -> np.ndarray:
    """The surface: the photo at the demo scale, mirrored end to end (RGB, size rows)."""
    photo = load_photo(CLASS_PHOTOS[cfg.texture])
    scale = cfg.size / round(min(photo.shape[:2]) * DEMO_CROP_FRACTION)
    photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    top = (photo.shape[0] - cfg.size) // 2
    band = photo[top:top + cfg.size]
    # One defect per view width, a clear view before the first and after the last.
    length = cfg.size * (2 * cfg.defects + 2)
    tiles = [band if i % 2 == 0 else band[:, ::-1] for i in range(length // band.shape[1] + 1)]
    return np.ascontiguousarray(np.concatenate(tiles, axis=1)[:, :length])


def paint_defects(strip: np.ndarray, cfg: ConveyorConfig) -> tuple[np.ndarray, np.ndarray, list[PaintedDefect]]:
    """Paints cfg.defects defects at even spacing; returns (strip, label map, defects)."""
    rng = np.random.default_rng(cfg.seed)
    labels = np.zeros(strip.shape[:2], np.int32)
    painted: list[PaintedDefect] = []
    strip = strip.copy()
    for index in range(cfg.defects):
        left = cfg.size * (2 * index + 1) + cfg.size // 2
        tile = strip[:, left:left + cfg.size]
        defect_type = cfg.defect_types[index % len(cfg.defect_types)]
        image, mask = simulate_defect(tile, defect_type, rng)
        inside = mask > 0
        strip[:, left:left + cfg.size] = image
        labels[:, left:left + cfg.size][inside] = index + 1
        ys, xs = np.nonzero(inside)
        box = (int(xs.min()) + left, int(ys.min()), int(xs.max()) + left + 1, int(ys.max()) + 1)
        painted.append(PaintedDefect(index + 1, defect_type, int(inside.sum()), box))
    return strip, labels, painted


def frame_records(labels: np.ndarray, cfg: ConveyorConfig) -> list[dict]:
    """Per frame: window offset, true motion and the visible defects (frame coordinates)."""
    records = []
    for index, offset in enumerate(range(0, labels.shape[1] - cfg.size + 1, cfg.speed)):
        window = labels[:, offset:offset + cfg.size]
        visible = []
        for defect_id in np.unique(window[window > 0]):
            ys, xs = np.nonzero(window == defect_id)
            visible.append({"defect_id": int(defect_id), "visible_area_pixels": int(xs.size),
                            "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]})
        label = "defect" if visible else "good"
        records.append({"index": index, "source": f"strip[{offset}:{offset + cfg.size}]", "label": label,
                        "is_defect": bool(visible), "offset": offset, "defects": visible})
    return records


def create_conveyor_video(output: Path, cfg: ConveyorConfig) -> dict:
    """Writes the video and its ground-truth sidecar; returns the sidecar data."""
    strip, labels, painted = paint_defects(build_strip(cfg), cfg)
    records = frame_records(labels, cfg)
    bgr = cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)
    with video_io.AtomicVideoWriter(output, cfg.fps, (cfg.size, cfg.size)) as writer:
        for record in records:
            writer.write(np.ascontiguousarray(bgr[:, record["offset"]:record["offset"] + cfg.size]))
    data = {
        "video": output.name, "fps": cfg.fps, "width": cfg.size, "height": cfg.size, "frames": records,
        "settings": {**asdict(cfg), "generator": "create_conveyor_video"},
        "motion_px_per_frame": [-float(cfg.speed), 0.0],
        "defects": [asdict(d) for d in painted],
    }
    data = json.loads(json.dumps(data))  # as the sidecar holds it (tuples become lists)
    video_io.write_sidecar(output, data)
    LOGGER.info("wrote %s: %d frames, %d defects, %d px/frame", output, len(records), len(painted), cfg.speed)
    return data


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--texture", default="brick", show_default=True, help="Bundled photo: brick, gravel or grass.")
@click.option("--size", default=256, show_default=True, help="Frame side in pixels.")
@click.option("--speed", default=4, show_default=True, help="Surface motion in pixels per frame.")
@click.option("--defects", default=4, show_default=True, help="Number of painted defects.")
@click.option("--seed", default=0, show_default=True)
@click.option("--fps", default=25.0, show_default=True)
@click.option("--output", default=None, help="Video file [test-video/conveyor_<texture>/conveyor_<texture>.mp4].")
def _command(texture: str, size: int, speed: int, defects: int, seed: int, fps: float, output: str | None) -> None:
    """Write a synthetic conveyor video with ground truth."""
    cfg = ConveyorConfig(texture, size, speed, defects, seed, fps)
    name = f"conveyor_{texture}"
    path = Path(output) if output else Path("test-video") / name / f"{name}.mp4"
    data = create_conveyor_video(path, cfg)
    click.echo(f"{path}: {len(data['frames'])} frames, {len(data['defects'])} defects, {speed} px/frame")


def cli(argv: Sequence[str] | None = None) -> int:
    """Runs the command; user errors print one line and return 2."""
    return utils.run_command(_command, argv, (ConveyorError, video_io.VideoError), "choose a writable --output")


if __name__ == "__main__":
    sys.exit(cli())
