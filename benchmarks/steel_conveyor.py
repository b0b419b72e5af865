"""A second, independent conveyor: brushed steel under a fixed camera, defects drawn another way.

    python benchmarks/steel_conveyor.py --defects 0 --frames 600 --seed 0 --output normal.mp4
    python benchmarks/steel_conveyor.py --defects 8 --seed 2 --output defects.mp4     # + defects.mp4.json

`preprocessing/create_conveyor_video.py` is the toolkit's generator, and the tracking settings were developed
on its videos. This script shares none of its code or choices, so that the line workflow can be measured
on footage it was not developed on (as users' own cameras are):

* the belt is procedural brushed steel, not a photo: streaks along the motion, grain, mottling, sparse
  normal pits and bright flecks (the surface's own busy detail), a faint blue tint; every seed gives new surface;
* the camera moves a sub-pixel amount per frame (e.g. 5.4 px: bilinear resampling, every phase seen), its
  light falls off towards the corners (fixed in the frame while the belt moves) and it adds sensor noise;
* defects are drawn hard-edged (anti-aliased at 4x) as dent, branching crack, faint rust stain, scratch, pit
  cluster, spatter, oil stain, and a chip at the top or bottom edge; a defect's ground-truth mask is its drawn
  shape (coverage >= 0.5: what an inspector would outline), not every pixel it touched.

The sidecar `<video>.json` (written for every video) has what `inference/evaluate_tracking.py` reads: per defect
its id, type, placement, area in pixels, box in strip coordinates and first/last visible frame; per frame its offset.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

import errors
import video_io
from errors import UserError

LOGGER = logging.getLogger("steel_conveyor")
SUPERSAMPLE = 4  # defects are drawn at 4x and averaged down: anti-aliased edges, coverage per pixel
DEFECT_TYPES = ("dent", "branching_crack", "faint_rust", "scratch", "pit_cluster", "spatter", "oil_stain", "chip")


@dataclass(frozen=True)
class SteelConfig:
    """One video of the steel line."""

    width: int = 704
    height: int = 288
    speed: float = 5.4  # belt travel in pixels per frame (sub-pixel: every sampling phase occurs)
    frames: int | None = None  # default: long enough for the defects to pass, or 600 without defects
    defects: int = 8
    seed: int = 0
    fps: float = 25.0
    noise: float = 2.0  # sensor noise, grey levels
    vignette: float = 0.15  # light lost at the frame corners

    def validate(self) -> None:
        """Raises a one-line UserError for values that cannot make a video."""
        if self.width < 64 or self.height < 64:
            raise UserError("--width/--height: at least 64 pixels")
        if not 0.5 <= self.speed <= self.width / 4:
            raise UserError(f"--speed {self.speed}: use 0.5 to {self.width / 4:g} pixels per frame")
        if self.frames is not None and self.frames < 1:
            raise UserError("--frames must be at least 1")
        if not 0 <= self.defects <= len(DEFECT_TYPES):
            raise UserError(f"--defects must lie in 0..{len(DEFECT_TYPES)}")


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: tuple[float, float]) -> np.ndarray:
    """White noise blurred by an anisotropic Gaussian (sigma y, x), scaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return field / max(float(field.std()), 1e-6)


def steel_strip(rng: np.random.Generator, height: int, length: int) -> np.ndarray:
    """A brushed-steel belt, float32 RGB (height, length, 3) in grey levels."""
    grey = (135.0 + 12.0 * smooth_noise(rng, (height, length), (0.7, 30.0))   # brushing streaks along the motion
            + 5.0 * smooth_noise(rng, (height, length), (0.8, 0.8))           # grain
            + 9.0 * smooth_noise(rng, (height, length), (35.0, 60.0)))         # mottling
    for sign, density, contrast in ((-1, 1 / 2500, 30.0), (1, 1 / 5000, 25.0)):  # normal pits and flecks
        count = int(height * length * density)
        ys, xs = rng.integers(0, height, count), rng.integers(0, length, count)
        spots = np.zeros((height, length), np.float32)
        spots[ys, xs] = rng.uniform(0.5, 1.0, count) * contrast
        grey += sign * ndimage.gaussian_filter(spots, 0.9) * 2 * math.pi * 0.81  # a ~2 px spot of that contrast
    tint = np.array([0.97, 1.0, 1.04], np.float32)
    return grey[..., None] * tint


def _canvas(size: tuple[int, int]) -> np.ndarray:
    """A supersampled drawing canvas for a defect of size (height, width)."""
    return np.zeros((size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE), np.uint8)


def _coverage(canvas: np.ndarray) -> np.ndarray:
    """Per-pixel coverage in 0..1 of a supersampled canvas."""
    h, w = canvas.shape[0] // SUPERSAMPLE, canvas.shape[1] // SUPERSAMPLE
    return cv2.resize(canvas.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)


def _pts(points: np.ndarray) -> np.ndarray:
    """Canvas coordinates of pixel points (x, y) for cv2 drawing."""
    return np.round(points * SUPERSAMPLE).astype(np.int32).reshape(-1, 1, 2)


def _walk(rng: np.random.Generator, start: np.ndarray, angle: float, length: float, step: float = 4.0) -> np.ndarray:
    """A wandering polyline of the given length from start, heading about `angle`."""
    points = [start]
    for _ in range(int(length / step)):
        angle += rng.normal(0.0, 0.15)
        points.append(points[-1] + step * np.array([math.cos(angle), math.sin(angle)]))
    return np.array(points)


def _blob(rng: np.random.Generator, canvas: np.ndarray, centre: np.ndarray, radius: float, lobes: int) -> None:
    """An irregular blob: a disc with `lobes` overlapping discs around it."""
    cv2.circle(canvas, tuple(_pts(centre)[0, 0]), int(radius * SUPERSAMPLE), 255, -1, cv2.LINE_AA)
    for _ in range(lobes):
        angle, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0.4, 0.9) * radius
        lobe = centre + dist * np.array([math.cos(angle), math.sin(angle)])
        cv2.circle(canvas, tuple(_pts(lobe)[0, 0]), int(rng.uniform(0.5, 0.8) * radius * SUPERSAMPLE), 255, -1,
                   cv2.LINE_AA)


def _lines_canvas(lines: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, tuple[int, int]]:
    """A canvas holding polylines (points, width in px) drawn whole, with a margin; and its size."""
    every = np.concatenate([points for points, _ in lines])
    low, high = every.min(axis=0) - 6, every.max(axis=0) + 6
    size = (int(math.ceil(high[1] - low[1])), int(math.ceil(high[0] - low[0])))
    canvas = _canvas(size)
    for points, width in lines:
        cv2.polylines(canvas, [_pts(points - low)], False, 255, width * SUPERSAMPLE, cv2.LINE_AA)
    return canvas, size


def draw_defect(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A defect's coverage (h, w) in 0..1 and its colour change (h, w, 3) in grey levels, RGB."""
    if kind in ("branching_crack", "scratch"):
        if kind == "branching_crack":  # a dark wandering line 3 px wide with two branches
            trunk = _walk(rng, np.zeros(2), rng.normal(0, 0.2), 150)
            lines = [(trunk, 3)] + [(_walk(rng, trunk[at], rng.choice([-1, 1]) * rng.uniform(0.6, 1.1), 45), 3)
                                    for at in (len(trunk) // 3, 2 * len(trunk) // 3)]
        else:  # a bright curved line 3 px wide
            lines = [(_walk(rng, np.zeros(2), rng.uniform(-0.4, 0.4), 180), 3)]
        canvas, size = _lines_canvas(lines)
        shade = np.full((*size, 3), -65.0 if kind == "branching_crack" else 55.0, np.float32)
        return _coverage(canvas), _textured(shade, rng)
    size = {"pit_cluster": (70, 70), "oil_stain": (100, 100), "faint_rust": (100, 100)}.get(kind, (60, 60))
    canvas = _canvas(size)
    centre = np.array([size[1] / 2, size[0] / 2])
    shade = np.zeros((*size, 3), np.float32)
    if kind == "dent":  # a dark ellipse lit from the top left: a bright crescent on that side
        axes = (int(rng.uniform(20, 24) * SUPERSAMPLE), int(rng.uniform(13, 16) * SUPERSAMPLE))
        cv2.ellipse(canvas, tuple(_pts(centre)[0, 0]), axes, rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA)
        yy, xx = np.mgrid[:size[0], :size[1]]
        light = ((xx - centre[0]) + (yy - centre[1])) / 20.0
        shade[:] = np.where(light < -0.6, 30.0, -40.0)[..., None]
    elif kind == "faint_rust":  # a large blob of brown, a few grey levels from the steel
        _blob(rng, canvas, centre, 22, 5)
        shade[:] = (12.0, -1.0, -12.0)
    elif kind == "pit_cluster":  # a dozen dark pits within a few millimetres
        for _ in range(12):
            pit = centre + rng.uniform(-25, 25, 2)
            cv2.circle(canvas, tuple(_pts(pit)[0, 0]), int(rng.uniform(3, 5) * SUPERSAMPLE), 255, -1, cv2.LINE_AA)
        shade[:] = -55.0
    elif kind == "spatter":  # a bright bead
        _blob(rng, canvas, centre, 13, 3)
        shade[:] = 50.0
    elif kind == "oil_stain":  # a large dark stain
        _blob(rng, canvas, centre, 25, 6)
        shade[:] = -28.0
    elif kind == "chip":  # a dark notch (placed on the frame's top or bottom edge)
        _blob(rng, canvas, centre, 20, 2)
        shade[:] = -60.0
    else:
        raise UserError(f"defect type {kind}: unknown; use one of {', '.join(DEFECT_TYPES)}")
    return _coverage(canvas), _textured(shade, rng)


def _textured(shade: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A defect's colour change varied by 15 % from pixel to pixel (not flat inside)."""
    return shade * (1.0 + 0.15 * smooth_noise(rng, shade.shape[:2], (1.0, 1.0))[..., None])


@dataclass(frozen=True)
class Placed:
    """A defect painted on the strip: ground-truth mask box and area."""

    defect_id: int
    defect_type: str
    placement: str
    area_pixels: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in strip pixels, the ends exclusive (as create_conveyor_video)


def place_defects(strip: np.ndarray, labels: np.ndarray, cfg: SteelConfig, rng: np.random.Generator,
                  start: int) -> list[Placed]:
    """Paints cfg.defects defects along the strip from x = start, their ground-truth masks into labels (defect id
    per pixel); every other pair shares the view."""
    height, placed = strip.shape[0], []
    x = float(start)
    kinds = list(DEFECT_TYPES[:cfg.defects])
    rng.shuffle(kinds)
    for index, kind in enumerate(kinds):
        coverage, shade = draw_defect(kind, rng)
        h, w = coverage.shape
        placement = "interior"
        if kind == "chip":
            placement = "top_edge" if rng.random() < 0.5 else "bottom_edge"
            y0 = -h // 2 if placement == "top_edge" else height - h // 2
        elif index % 4 == 1:  # in view together with the previous one: the other half of the belt
            y0 = int(rng.uniform(0.55, 0.9) * (height - h)) if placed[-1].box[1] < height / 2 else \
                int(rng.uniform(0.0, 0.3) * (height - h))
            x -= w + cfg.width * 0.4
        else:
            y0 = int(rng.uniform(0.05, 0.95) * (height - h))
        x0 = int(x)
        top, bottom = max(y0, 0), min(y0 + h, height)
        cover = coverage[top - y0:bottom - y0]
        strip[top:bottom, x0:x0 + w] += cover[..., None] * shade[top - y0:bottom - y0]
        mask = cover >= 0.5
        labels[top:bottom, x0:x0 + w][mask] = index + 1
        ys, xs = np.nonzero(mask)
        box = (int(x0 + xs.min()), int(top + ys.min()), int(x0 + xs.max() + 1), int(top + ys.max() + 1))
        placed.append(Placed(index + 1, kind, placement, int(mask.sum()), box))
        x += w + cfg.width * 0.8
    return placed


def camera_light(cfg: SteelConfig) -> np.ndarray:
    """The share of light reaching each frame pixel: 1 at the centre, 1 - vignette at the corners."""
    yy, xx = np.mgrid[:cfg.height, :cfg.width].astype(np.float32)
    r2 = ((xx - cfg.width / 2) / (cfg.width / 2)) ** 2 + ((yy - cfg.height / 2) / (cfg.height / 2)) ** 2
    return (1.0 - cfg.vignette * r2 / 2.0)[..., None]


def frame_at(strip: np.ndarray, offset: float, cfg: SteelConfig, light: np.ndarray, index: int) -> np.ndarray:
    """The camera's BGR uint8 frame with the strip shifted by a (sub-pixel) offset."""
    x0 = int(math.floor(offset))
    window = strip[:, x0:x0 + cfg.width + 2]
    shift = np.float32([[1, 0, -(offset - x0)], [0, 1, 0]])
    view = cv2.warpAffine(window, shift, (cfg.width, cfg.height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)
    noise = np.random.default_rng((cfg.seed, index)).normal(0.0, cfg.noise, view.shape).astype(np.float32)
    rgb = np.clip(view * light + noise, 0, 255).astype(np.uint8)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


@dataclass
class Belt:
    """The painted belt of one video: RGB strip, ground-truth labels (defect id per pixel), defects, frame offsets."""

    strip: np.ndarray
    labels: np.ndarray
    defects: list[Placed]
    offsets: list[float]


def build_belt(cfg: SteelConfig) -> Belt:
    """The belt a video of cfg shows, defects painted, and where each frame starts on it."""
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    lead = 2 * cfg.width  # belt before the first defect
    defect_span = int(cfg.defects * (200 + cfg.width * 0.8))
    frames = cfg.frames or (600 if not cfg.defects else int((lead + defect_span) / cfg.speed) + 1)
    length = int(math.ceil(frames * cfg.speed)) + cfg.width + 4
    strip = steel_strip(rng, cfg.height, max(length, lead + defect_span + cfg.width))
    labels = np.zeros(strip.shape[:2], np.int32)
    placed = place_defects(strip, labels, cfg, rng, lead) if cfg.defects else []
    return Belt(strip, labels, placed, [i * cfg.speed for i in range(frames)])


def make_video(output: Path, cfg: SteelConfig) -> dict:
    """Writes the video and its ground-truth sidecar; returns the sidecar data."""
    belt = build_belt(cfg)
    strip, placed, offsets, frames = belt.strip, belt.defects, belt.offsets, len(belt.offsets)
    light = camera_light(cfg)
    with video_io.AtomicVideoWriter(output, cfg.fps, (cfg.width, cfg.height)) as writer:
        for index, offset in enumerate(offsets):
            writer.write(frame_at(strip, offset, cfg, light, index))
    defects = []
    for d in placed:
        seen = [i for i, o in enumerate(offsets) if d.box[2] > o and d.box[0] < o + cfg.width]
        full = [i for i in seen if d.box[0] >= offsets[i] and d.box[2] <= offsets[i] + cfg.width]
        defects.append({**asdict(d), "first_visible_frame": seen[0] if seen else None,
                        "last_visible_frame": seen[-1] if seen else None,
                        "first_full_frame": full[0] if full else None, "last_full_frame": full[-1] if full else None})
    data = {"video": output.name, "fps": cfg.fps, "width": cfg.width, "height": cfg.height, "num_frames": frames,
            "speed_px_per_frame": cfg.speed, "direction": "right_to_left",
            "settings": {**asdict(cfg), "generator": "benchmarks/steel_conveyor.py"},
            "frames": [{"index": i, "offset": o} for i, o in enumerate(offsets)], "defects": defects}
    data = json.loads(json.dumps(data))
    video_io.write_sidecar(output, data)
    LOGGER.info("wrote %s: %d frames of %dx%d, %d defects, %.2f px/frame", output, frames, cfg.width, cfg.height,
                len(placed), cfg.speed)
    return data


def main(argv: list[str] | None = None) -> int:
    """Command line: one video of the steel line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for field, default in ((f, getattr(SteelConfig, f)) for f in SteelConfig.__dataclass_fields__):
        kind = float if isinstance(default, float) else int
        parser.add_argument(f"--{field}", type=kind, default=default)
    parser.add_argument("--output", type=Path, required=True, help="the video (.mp4)")
    args = vars(parser.parse_args(argv))
    output = args.pop("output")
    data = make_video(output, SteelConfig(**args))
    for d in data["defects"]:
        print(f"{d['defect_id']} {d['defect_type']:<16} {d['placement']:<12} {d['area_pixels']:>6} px "
              f"frames {d['first_visible_frame']}-{d['last_visible_frame']}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(errors.run_script(main))
