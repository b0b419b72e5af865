"""Synthetic conveyor video: a real texture photo moving under a fixed camera, with painted defects.

The surface is a bundled scikit-image photo at the demo dataset's scale (the frame's shorter side
shows DEMO_CROP_FRACTION of the photo's, as a demo training image does, so a demo model sees
normal texture), mirrored end to end into a long strip one frame high, with synthetic defects
painted on it. The camera window slides `speed` pixels per frame along the strip, so the surface
moves right to left through the frame and every defect crosses the view.

    python preprocessing/create_conveyor_video.py --texture brick --speed 4 --defects 4
    python preprocessing/create_conveyor_video.py --preset wide

`--preset wide` is the acceptance scenario, the same as

    python preprocessing/create_conveyor_video.py --width 640 --height 256 --texture gravel \
        --speed 6 --defects 8 --pairs 2 --edge_defects 2 \
        --defect_types hole,branching_crack,faint_stain,contamination,stain,scratch,crack

A belt motion profile makes a test video for temporal anomalies (what no per-image method sees):

    python preprocessing/create_conveyor_video.py --width 320 --height 128 --texture gravel --speed 3 \
        --defects 0 --frames 300 --stop_at 150 --stop_frames 25 --jerk_frames 5 --jerk_speed 18

`--stop_at F --stop_frames N`: the belt stands still from frame F for N frames (frames F..F+N-1 repeat
frame F-1); `--jerk_frames M --jerk_speed S`: right after the stop it moves S px/frame for M frames
(default S: fast enough to catch up the stop's lag); `--reverse_at F --reverse_frames N`: it runs
backwards (-speed) for N frames. Without these flags the belt moves `speed` px every frame, as it
always did, and the sidecar has no motion fields (so earlier sidecars are unchanged).

What a real line adds to the surface the model was trained on: `--surface first_half` / `second_half`
make the belt of one half of the photo (along the motion) only; the halves share no texture, so a
model trained on a recording of one half meets surface it has never seen on the other (without it,
every video of a texture shows the same surface). `--noise S` adds camera noise (standard deviation S
grey levels, drawn anew for every frame, seeded by the video's settings and the frame index).
`--quilt T` lays the surface from random T x T crops of the photo (part), maybe mirrored, cross-faded at
their overlaps (seeded by `--surface_seed`, default `--seed`): a belt that never repeats, as a real one,
so a long training recording sees many arrangements and a test video with another surface seed meets
new ones (without it the surface repeats every two photo widths). It suits random textures (gravel,
grass); a regular pattern (brick) comes out jumbled, its rows broken at the crops' seams.

(8 defects on busy gravel; the first two pairs pass the view together, so two defects are in view
at once; the last two touch the top and the bottom frame edge; among them a branching crack and a
faint stain); flags given with a preset override its values. Frames are `--width` x `--height`
(`--size S` is the square shortcut), both even (MP4). Defects are painted in tiles one frame high
and min(height, width) wide (half the frame width less `speed` for a pair), one tile group per
view width with a clear view between groups, before the first and after the last.
`--defect_types` takes the simulator's types (preprocessing/defect_simulator.py) plus
`branching_crack` (a crack with 2-3 branches) and `faint_stain` (a stain at about a third of
the usual contrast).

The sidecar `<video>.mp4.json` is the ground truth a tracking run is scored against. Surface
(strip) coordinates: x along the motion, y across it; a frame shows strip columns
[offset, offset + width) and all rows, so strip_x = frame_x + offset and strip_y = frame_y.
Boxes are [x1, y1, x2, y2] with x2/y2 exclusive.

    video, fps, width, height       file name, frame rate, frame size in pixels
    num_frames                      number of frames
    speed_px_per_frame              surface motion per frame in pixels (an integer)
    direction                       "right_to_left": surface features move towards smaller frame x
    motion_px_per_frame             [dx, dy] of the surface in the frame per frame, [-speed, 0]
    strip                           {"width", "height"} of the surface strip in pixels
    settings                        the ConveyorConfig it was made with
    frames[]                        per frame: index, source, label, is_defect, offset (strip x of
                                    frame x 0), defects[] (defect_id, visible_area_pixels and box
                                    in frame coordinates of the part in view); with a motion
                                    profile also motion ("normal", "stop", "jerk" or "reverse": how
                                    the belt moved from the previous frame to this one),
                                    temporal_anomaly (motion != "normal") and step_px (that move)
    motion_profile                  only with a motion profile: its settings (stop_at, stop_frames,
                                    jerk_frames, jerk_speed, reverse_at, reverse_frames) and the
                                    number of temporal_anomaly frames
    defects[]                       per defect:
      defect_id, defect_type        1-based id (the frames' defect_id), conveyor defect type
      area_pixels                   true mask area on the surface
      box, centroid                 bounding box and centroid [x, y] in strip coordinates
      placement                     "interior", "edge_top" or "edge_bottom"
      group                         defects of one group pass the view together (a pair)
      first_visible_frame, last_visible_frame   first/last frame showing any part of it
      first_full_frame, last_full_frame         first/last frame showing all of it (null if none)
"""
from __future__ import annotations

import json
import logging
import sys
import zlib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from types import MappingProxyType
from collections.abc import Mapping, Sequence

import click
import cv2
import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

import utils
import video_io
from errors import UserError
from preprocessing.defect_simulator import ALL_DEFECT_TYPES, DefectParams, simulate_defect
from preprocessing.make_demo_dataset import CLASS_PHOTOS, load_photo

LOGGER = logging.getLogger(__name__)

DEMO_CROP_FRACTION = 0.75  # the demo dataset crops this fraction of the photo's short side
# --surface: which columns (fractions of the photo's width, along the motion) the belt is made of. The
# halves share no texture, so a model trained on a recording of one half meets new surface on the other.
SURFACE_PARTS: Mapping[str, tuple[float, float]] = MappingProxyType({
    "whole": (0.0, 1.0), "first_half": (0.0, 0.5), "second_half": (0.5, 1.0)})

# Conveyor-only defect types: a simulator type with its own size/strength ranges.
DEFECT_VARIANTS: Mapping[str, tuple[str, DefectParams]] = MappingProxyType({
    "branching_crack": ("crack", DefectParams(crack_branches=(2, 3))),
    "faint_stain": ("stain", DefectParams(stain_strength=(0.2, 0.3), stain_radius=(0.08, 0.12))),
})
CONVEYOR_DEFECT_TYPES = ALL_DEFECT_TYPES + tuple(DEFECT_VARIANTS)
DEFAULT_DEFECT_TYPES = ("hole", "stain", "contamination", "crack")
PRESETS: Mapping[str, Mapping[str, object]] = MappingProxyType({
    "wide": MappingProxyType({
        "width": 640, "height": 256, "texture": "gravel", "speed": 6, "defects": 8, "pairs": 2,
        "edge_defects": 2,
        "defect_types": ("hole", "branching_crack", "faint_stain", "contamination", "stain", "scratch", "crack"),
    }),
})
MIN_TILE = 16  # the simulator's smallest image side
EDGE_TOLERANCE_PX = 3  # an edge defect's box ends at most this far from the frame edge
MIN_QUILT = 16  # the smallest --quilt tile side
EDGE_CUT = 0.25  # an edge defect runs up to this fraction of its height beyond the frame edge
_ATTEMPTS = 10
_EIGHT = np.ones((3, 3), bool)


class ConveyorError(UserError):
    """A bad conveyor setting; one line naming the flag and the fix."""


@dataclass(frozen=True)
class ConveyorConfig:
    """What the conveyor video shows (width/height None: `size`, a square frame)."""

    texture: str = "brick"
    size: int = 256
    speed: int = 4
    defects: int = 4
    seed: int = 0
    fps: float = 25.0
    defect_types: tuple[str, ...] = DEFAULT_DEFECT_TYPES
    width: int | None = None
    height: int | None = None
    edge_defects: int = 0
    pairs: int = 0
    frames: int | None = None  # at least this many frames (a longer strip); None: as the defects need
    surface: str = "whole"  # the part of the photo the belt is made of (SURFACE_PARTS)
    noise: float = 0.0  # camera noise: standard deviation in grey levels, drawn anew for every frame
    quilt: int = 0  # > 0: the surface is quilted from random quilt x quilt crops of the photo part (never repeats)
    surface_seed: int | None = None  # the quilt's random crops (None: seed)

    def __post_init__(self) -> None:
        """Rejects settings that cannot make a video, naming the flag and the fix."""
        if self.texture not in CLASS_PHOTOS:
            raise ConveyorError(f"--texture {self.texture}: unknown; use one of {', '.join(CLASS_PHOTOS)}")
        for flag, value in (("--width", self.width), ("--height", self.height)):
            if value is not None:
                _check_side(flag, value)
        if self.width is None or self.height is None:
            _check_side("--size", self.size)
        if not 1 <= self.speed <= self.frame_width // 2:
            raise ConveyorError(f"--speed {self.speed}: use 1 to {self.frame_width // 2} pixels per frame "
                                f"(at most half the frame width)")
        if self.defects < 0:
            raise ConveyorError(f"--defects {self.defects}: must not be negative")
        if self.fps <= 0:
            raise ConveyorError(f"--fps {self.fps}: must be positive")
        if self.surface not in SURFACE_PARTS:
            raise ConveyorError(f"--surface {self.surface}: unknown; use one of {', '.join(SURFACE_PARTS)}")
        if not 0.0 <= self.noise <= 64.0:
            raise ConveyorError(f"--noise {self.noise}: use 0 to 64 grey levels")
        if self.quilt and not MIN_QUILT <= self.quilt <= self.frame_height:
            raise ConveyorError(f"--quilt {self.quilt}: use 0 (off) or a tile side from {MIN_QUILT} to the frame "
                                f"height ({self.frame_height})")
        if self.frames is not None and self.frames < 1:
            raise ConveyorError(f"--frames {self.frames}: use a positive number of frames (or leave it out)")
        unknown = [name for name in self.defect_types if name not in CONVEYOR_DEFECT_TYPES]
        if unknown or not self.defect_types:
            raise ConveyorError(f"--defect_types {','.join(unknown) or '(none)'}: unknown; "
                                f"use some of {','.join(CONVEYOR_DEFECT_TYPES)}")
        if not 0 <= self.edge_defects <= self.defects:
            raise ConveyorError(f"--edge_defects {self.edge_defects}: use 0 to {self.defects} (at most --defects)")
        if not 0 <= 2 * self.pairs <= self.defects:
            raise ConveyorError(f"--pairs {self.pairs}: use 0 to {self.defects // 2} (two defects each, "
                                f"at most --defects in all)")
        if self.pairs and self.pair_tile < MIN_TILE:
            raise ConveyorError(f"--pairs {self.pairs}: a {self.frame_width} px wide frame at --speed {self.speed} "
                                f"leaves {self.pair_tile} px per defect; use a --width of at least "
                                f"{2 * MIN_TILE + self.speed} or a lower --speed")

    @property
    def frame_width(self) -> int:
        """Frame width in pixels (along the motion)."""
        return self.size if self.width is None else self.width

    @property
    def frame_height(self) -> int:
        """Frame height in pixels (across the motion)."""
        return self.size if self.height is None else self.height

    @property
    def single_tile(self) -> int:
        """Width of the strip tile a lone defect is painted in."""
        return min(self.frame_height, self.frame_width)

    @property
    def pair_tile(self) -> int:
        """Width of each of a pair's two side-by-side tiles (both fit the view with a frame to spare)."""
        return min(self.frame_height, (self.frame_width - self.speed) // 2)


def _check_side(flag: str, value: int) -> None:
    """A frame side must be even (MP4) and at least 32 pixels."""
    if value < 32 or value % 2:
        raise ConveyorError(f"{flag} {value}: use an even number of at least 32 pixels (MP4 frames are even)")


@dataclass(frozen=True)
class MotionProfile:
    """How the belt moves frame to frame: constant `speed` but for a stop, the jerk after it, a reversal."""

    stop_at: int | None = None
    stop_frames: int = 0
    jerk_frames: int = 0
    jerk_speed: int | None = None  # None: fast enough to catch up the stop's lag
    reverse_at: int | None = None
    reverse_frames: int = 0

    def __post_init__(self) -> None:
        """Rejects events that cannot happen, naming the flag and the fix."""
        for flag, value in (("--stop_at", self.stop_at), ("--reverse_at", self.reverse_at)):
            if value is not None and value < 1:
                raise ConveyorError(f"{flag} {value}: use a frame index of at least 1")
        for flag, value in (("--stop_frames", self.stop_frames), ("--jerk_frames", self.jerk_frames),
                            ("--reverse_frames", self.reverse_frames)):
            if value < 0:
                raise ConveyorError(f"{flag} {value}: must not be negative")
        if (self.stop_at is None) != (self.stop_frames == 0):
            raise ConveyorError("--stop_at and --stop_frames: give both (a frame and a positive count) or neither")
        if (self.reverse_at is None) != (self.reverse_frames == 0):
            raise ConveyorError("--reverse_at and --reverse_frames: give both (a frame and a positive count) "
                                "or neither")
        if self.jerk_frames and self.stop_at is None:
            raise ConveyorError(f"--jerk_frames {self.jerk_frames}: the jerk follows a stop; give --stop_at and "
                                f"--stop_frames too")
        if self.jerk_speed is not None and self.jerk_speed < 1:
            raise ConveyorError(f"--jerk_speed {self.jerk_speed}: use a positive number of pixels per frame")
        if self.stop_at is not None and self.reverse_at is not None:
            stop = (self.stop_at, self.stop_at + self.stop_frames + self.jerk_frames)
            back = (self.reverse_at, self.reverse_at + self.reverse_frames)
            if stop[0] < back[1] and back[0] < stop[1]:
                raise ConveyorError(f"--reverse_at {self.reverse_at}: overlaps the stop and jerk (frames "
                                    f"{stop[0]}..{stop[1] - 1}); move it")

    @property
    def constant(self) -> bool:
        """True when the belt moves at constant speed throughout (no event)."""
        return self.stop_at is None and self.reverse_at is None

    def jerk_step(self, speed: int) -> int:
        """Pixels per frame during the jerk: --jerk_speed, or enough to catch up the stop's lag."""
        if self.jerk_speed is not None:
            return self.jerk_speed
        return speed + -(-speed * self.stop_frames // max(self.jerk_frames, 1))

    def motion(self, index: int) -> str:
        """How the belt moved from frame index-1 to frame index."""
        if self.stop_at is not None:
            jerk_at = self.stop_at + self.stop_frames
            if self.stop_at <= index < jerk_at:
                return "stop"
            if jerk_at <= index < jerk_at + self.jerk_frames:
                return "jerk"
        if self.reverse_at is not None and self.reverse_at <= index < self.reverse_at + self.reverse_frames:
            return "reverse"
        return "normal"

    def step(self, index: int, speed: int) -> int:
        """Strip pixels the camera window moves from frame index-1 to frame index."""
        return {"normal": speed, "stop": 0, "jerk": self.jerk_step(speed), "reverse": -speed}[self.motion(index)]

    def last_event_frame(self) -> int:
        """The last frame index with an event (0 when constant)."""
        ends = [0]
        if self.stop_at is not None:
            ends.append(self.stop_at + self.stop_frames + self.jerk_frames - 1)
        if self.reverse_at is not None:
            ends.append(self.reverse_at + self.reverse_frames - 1)
        return max(ends)

    def describe(self, speed: int) -> dict:
        """The profile's settings as the sidecar holds them."""
        return {**asdict(self), "speed": speed, "jerk_step": self.jerk_step(speed) if self.jerk_frames else None}


def window_offsets(cfg: ConveyorConfig, motion: MotionProfile, length: int) -> list[int]:
    """Strip x of every frame's left edge until the window would leave the strip (frame 0 at 0)."""
    width = cfg.frame_width
    offsets = [0]
    while True:
        following = offsets[-1] + motion.step(len(offsets), cfg.speed)
        if following < 0:
            raise ConveyorError(f"--reverse_at {motion.reverse_at}: the belt would run back past the start of the "
                                f"surface; reverse later or for fewer --reverse_frames")
        if following + width > length:
            return offsets
        offsets.append(following)


def strip_length(cfg: ConveyorConfig, motion: MotionProfile) -> int:
    """Strip length for the defects, --frames and every motion event (all inside the video)."""
    _, length = defect_slots(cfg)
    wanted = max(cfg.frames or 0, motion.last_event_frame() + 1 if not motion.constant else 0)
    if wanted:
        reach, offset = 0, 0
        for index in range(1, wanted):
            offset += motion.step(index, cfg.speed)
            reach = max(reach, offset)
        length = max(length, cfg.frame_width + reach)
    return length


@dataclass(frozen=True)
class DefectSlot:
    """Where one defect is painted: a strip tile (columns left..left+width) and its placement."""

    defect_id: int
    defect_type: str
    left: int
    width: int
    group: int
    placement: str  # "interior", "edge_top" or "edge_bottom"


@dataclass(frozen=True)
class PaintedDefect:
    """One defect painted on the strip (strip coordinates, boxes x2/y2 exclusive)."""

    defect_id: int
    defect_type: str
    area_pixels: int
    box: tuple[int, int, int, int]
    centroid: tuple[float, float]
    placement: str
    group: int


def _groups(cfg: ConveyorConfig) -> list[list[int]]:
    """Defect indices by group: the first `pairs` groups hold two defects, the rest one."""
    paired = [[2 * g, 2 * g + 1] for g in range(cfg.pairs)]
    return paired + [[index] for index in range(2 * cfg.pairs, cfg.defects)]


def _placement(cfg: ConveyorConfig, index: int) -> str:
    """The last `edge_defects` defects sit at the frame edge, top and bottom in turn."""
    first_edge = cfg.defects - cfg.edge_defects
    if index < first_edge:
        return "interior"
    return "edge_top" if (index - first_edge) % 2 == 0 else "edge_bottom"


def defect_slots(cfg: ConveyorConfig) -> tuple[list[DefectSlot], int]:
    """Every defect's tile and placement, and the strip length: a clear view between groups and at both ends."""
    width = cfg.frame_width
    cursor = width + cfg.single_tile // 2
    slots = []
    for group, members in enumerate(_groups(cfg)):
        tile = cfg.pair_tile if len(members) == 2 else cfg.single_tile
        for k, index in enumerate(members):
            slots.append(DefectSlot(index + 1, cfg.defect_types[index % len(cfg.defect_types)],
                                    cursor + k * tile, tile, group, _placement(cfg, index)))
        cursor += len(members) * tile + width
    length = cursor + width - cfg.single_tile // 2
    if cfg.frames is not None:  # a longer recording: more surface after the last defect
        length = max(length, width + (cfg.frames - 1) * cfg.speed)
    return slots, length


def _mirror_tile(image: np.ndarray, length: int, axis: int) -> np.ndarray:
    """The image and its mirror image in turn along `axis` until at least `length` long."""
    count = -(-length // image.shape[axis])
    return np.concatenate([image if i % 2 == 0 else np.flip(image, axis) for i in range(count)], axis=axis)


def surface_photo(cfg: ConveyorConfig) -> np.ndarray:
    """The texture photo at the demo scale (the frame's shorter side shows DEMO_CROP_FRACTION of its shorter
    side), cut to the --surface part; RGB."""
    photo = load_photo(CLASS_PHOTOS[cfg.texture])
    scale = min(cfg.frame_height, cfg.frame_width) / round(min(photo.shape[:2]) * DEMO_CROP_FRACTION)
    photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    first, last = SURFACE_PARTS[cfg.surface]
    return photo[:, int(round(first * photo.shape[1])):int(round(last * photo.shape[1]))]


def build_strip(cfg: ConveyorConfig, motion: MotionProfile = MotionProfile()) -> np.ndarray:
    """The surface: the photo (its --surface part) at the demo scale, mirrored end to end (and across if
    short), or quilted from its random crops (--quilt); RGB, frame-high."""
    photo = surface_photo(cfg)
    height = cfg.frame_height
    if cfg.quilt:
        seed = cfg.seed if cfg.surface_seed is None else cfg.surface_seed
        return quilt_surface(photo, (height, strip_length(cfg, motion)), cfg.quilt, np.random.default_rng(seed))
    photo = _mirror_tile(photo, height, axis=0)
    top = (photo.shape[0] - height) // 2
    band = photo[top:top + height]
    length = strip_length(cfg, motion)
    return np.ascontiguousarray(_mirror_tile(band, length, axis=1)[:, :length])


def quilt_surface(photo: np.ndarray, shape: tuple[int, int], tile: int, rng: np.random.Generator) -> np.ndarray:
    """A surface of `shape` (h, w) quilted from random tile x tile crops of the photo (each maybe mirrored),
    laid at a step of 3/4 tile and cross-faded over their overlaps (a weight that ramps down to each
    crop's edges), so that no stretch of it repeats and the seams are soft.

    Written here rather than taken from a library: scikit-image and OpenCV have no texture quilting; a
    cross-fade is enough for a belt whose statistics, not seams, matter."""
    if photo.shape[0] < tile or photo.shape[1] < tile:  # a photo part narrower than a tile: mirror it wider
        photo = _mirror_tile(_mirror_tile(photo, tile, axis=0), tile, axis=1)
    step = max(1, tile * 3 // 4)
    ramp = np.minimum(np.arange(tile) + 1.0, np.arange(tile, 0, -1.0))
    weight = np.outer(np.minimum(ramp, tile - step), np.minimum(ramp, tile - step))[..., None]
    height, width = shape
    total = np.zeros((height + tile, width + tile, 3), np.float64)
    weights = np.zeros((height + tile, width + tile, 1), np.float64)
    for y in range(0, height, step):
        for x in range(0, width, step):
            top = int(rng.integers(0, photo.shape[0] - tile + 1))
            left = int(rng.integers(0, photo.shape[1] - tile + 1))
            crop = photo[top:top + tile, left:left + tile]
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            if rng.random() < 0.5:
                crop = crop[::-1]
            total[y:y + tile, x:x + tile] += crop * weight
            weights[y:y + tile, x:x + tile] += weight
    quilted = total[:height, :width] / weights[:height, :width]
    return np.ascontiguousarray(np.clip(np.rint(quilted), 0, 255).astype(np.uint8))


def skeleton_points(mask: np.ndarray) -> tuple[int, int]:
    """Skeleton pixels of a mask with 3+ skeleton neighbours (branch points) and with one (end points)."""
    skeleton = skeletonize(mask > 0)
    neighbours = ndimage.convolve(skeleton.astype(np.int32), _EIGHT.astype(np.int32), mode="constant") - 1
    return int(np.count_nonzero(skeleton & (neighbours >= 3))), int(np.count_nonzero(skeleton & (neighbours == 1)))


def _is_branched(mask: np.ndarray) -> bool:
    """One 8-connected piece whose skeleton branches into at least three ends."""
    if ndimage.label(mask, structure=_EIGHT)[1] != 1:
        return False
    branches, ends = skeleton_points(mask)
    return branches > 0 and ends >= 3


def render_defect(tile: np.ndarray, defect_type: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One defect of a conveyor type on an RGB tile: (image, bool mask), redrawn until it shows (and branches)."""
    base, params = DEFECT_VARIANTS.get(defect_type, (defect_type, DefectParams()))
    for _ in range(_ATTEMPTS):
        image, mask = simulate_defect(tile, base, rng, params)
        mask = mask > 0
        if mask.any() and (defect_type != "branching_crack" or _is_branched(mask)):
            return image, mask
    if not mask.any():
        raise ConveyorError(f"--defect_types {defect_type}: the simulator drew no {defect_type} on a "
                            f"{tile.shape[1]}x{tile.shape[0]} tile; use larger frames or another type")
    LOGGER.warning("no branching crack in %d draws on a %dx%d tile; kept a plain crack", _ATTEMPTS,
                   tile.shape[1], tile.shape[0])
    return image, mask


def _paint_interior(strip: np.ndarray, labels: np.ndarray, slot: DefectSlot, rng: np.random.Generator) -> None:
    """Paints a defect wherever the simulator puts it inside its tile."""
    tile = strip[:, slot.left:slot.left + slot.width]
    image, mask = render_defect(tile, slot.defect_type, rng)
    tile[mask] = image[mask]
    labels[:, slot.left:slot.left + slot.width][mask] = slot.defect_id


def _paint_at_edge(strip: np.ndarray, labels: np.ndarray, slot: DefectSlot, rng: np.random.Generator) -> bool:
    """Paints a defect touching the top or bottom frame edge (part may run beyond it); False if it failed.

    The defect is drawn once to learn its rows, then drawn again from the same random state on
    the surface shifted across the motion (mirrored beyond the strip) so that it reaches the edge.
    """
    height = strip.shape[0]
    columns = np.s_[:, slot.left:slot.left + slot.width]
    surface = np.pad(strip[columns], ((height, height), (0, 0), (0, 0)), mode="symmetric")
    top = slot.placement == "edge_top"
    for _ in range(_ATTEMPTS):
        cut = rng.uniform(0.0, EDGE_CUT)
        state = rng.bit_generator.state
        rows = np.flatnonzero(render_defect(strip[columns], slot.defect_type, rng)[1].any(axis=1))
        beyond = int(cut * (rows[-1] + 1 - rows[0]))
        shift = -beyond - int(rows[0]) if top else height - 1 + beyond - int(rows[-1])  # strip row of tile row 0
        rng.bit_generator.state = state
        image, mask = render_defect(surface[height + shift:2 * height + shift], slot.defect_type, rng)
        inside = slice(max(0, -shift), min(height, height - shift))  # tile rows on the strip
        seen = np.flatnonzero(mask[inside].any(axis=1)) + inside.start + shift
        if seen.size and (seen[0] <= EDGE_TOLERANCE_PX if top else seen[-1] >= height - 1 - EDGE_TOLERANCE_PX):
            on_strip = slice(inside.start + shift, inside.stop + shift)
            strip[columns][on_strip][mask[inside]] = image[inside][mask[inside]]
            labels[columns][on_strip][mask[inside]] = slot.defect_id
            return True
    return False


def paint_defects(strip: np.ndarray, cfg: ConveyorConfig) -> tuple[np.ndarray, np.ndarray, list[PaintedDefect]]:
    """Paints cfg.defects defects in their slots; returns (strip, label map, defects measured on the map)."""
    rng = np.random.default_rng(cfg.seed)
    labels = np.zeros(strip.shape[:2], np.int32)
    strip = strip.copy()
    slots, _ = defect_slots(cfg)
    placed = []
    for slot in slots:
        if slot.placement != "interior" and not _paint_at_edge(strip, labels, slot, rng):
            LOGGER.warning("defect %d (%s) could not be placed at the frame edge; painted inside the view",
                           slot.defect_id, slot.defect_type)
            slot = replace(slot, placement="interior")
        if slot.placement == "interior":
            _paint_interior(strip, labels, slot, rng)
        placed.append(slot)
    return strip, labels, measure_defects(labels, placed)


def measure_defects(labels: np.ndarray, slots: Sequence[DefectSlot]) -> list[PaintedDefect]:
    """Area, box and centroid of every painted defect, from the label map."""
    ids = [slot.defect_id for slot in slots]
    boxes = ndimage.find_objects(labels, max_label=max(ids, default=0))
    areas = ndimage.sum_labels(np.ones(labels.shape, np.int64), labels, ids) if ids else []
    centroids = ndimage.center_of_mass(np.ones(labels.shape), labels, ids) if ids else []
    painted = []
    for slot, area, (cy, cx) in zip(slots, areas, centroids):
        rows, cols = boxes[slot.defect_id - 1]
        painted.append(PaintedDefect(slot.defect_id, slot.defect_type, int(area),
                                     (cols.start, rows.start, cols.stop, rows.stop),
                                     (round(float(cx), 2), round(float(cy), 2)), slot.placement, slot.group))
    return painted


def frame_records(labels: np.ndarray, cfg: ConveyorConfig, motion: MotionProfile = MotionProfile()) -> list[dict]:
    """Per frame: window offset, the visible defects (frame coordinates) and, with a profile, the true motion."""
    width = cfg.frame_width
    boxes = [(defect_id, box) for defect_id, box in enumerate(ndimage.find_objects(labels), 1) if box is not None]
    records = []
    for index, offset in enumerate(window_offsets(cfg, motion, labels.shape[1])):
        visible = []
        for defect_id, (rows, cols) in boxes:
            start, stop = max(cols.start, offset), min(cols.stop, offset + width)
            if start >= stop:
                continue
            crop = labels[rows, start:stop] == defect_id
            found = ndimage.find_objects(crop.astype(np.int32))
            if not found:
                continue
            ys, xs = found[0]
            x1, y1 = start - offset + xs.start, rows.start + ys.start
            visible.append({"defect_id": defect_id, "visible_area_pixels": int(np.count_nonzero(crop)),
                            "box": [x1, y1, x1 + xs.stop - xs.start, y1 + ys.stop - ys.start]})
        label = "defect" if visible else "good"
        records.append({"index": index, "source": f"strip[{offset}:{offset + width}]", "label": label,
                        "is_defect": bool(visible), "offset": offset, "defects": visible})
        if not motion.constant:
            kind = motion.motion(index) if index else "normal"
            records[-1].update(motion=kind, temporal_anomaly=kind != "normal",
                               step_px=motion.step(index, cfg.speed) if index else 0)
    return records


def _visibility(defect: PaintedDefect, records: Sequence[dict]) -> dict:
    """First/last frame showing any part and all of a defect (None when never whole)."""
    seen = [(r["index"], v["visible_area_pixels"]) for r in records for v in r["defects"]
            if v["defect_id"] == defect.defect_id]
    whole = [index for index, area in seen if area == defect.area_pixels]
    return {"first_visible_frame": seen[0][0] if seen else None, "last_visible_frame": seen[-1][0] if seen else None,
            "first_full_frame": whole[0] if whole else None, "last_full_frame": whole[-1] if whole else None}


def with_noise(frame: np.ndarray, cfg: ConveyorConfig, index: int) -> np.ndarray:
    """The frame as a camera with cfg.noise grey levels of noise records it (seeded by all the settings and
    the frame index: two videos made with different settings get different noise)."""
    if cfg.noise == 0.0:
        return frame
    settings = zlib.crc32(json.dumps(asdict(cfg), sort_keys=True).encode())
    rng = np.random.default_rng([settings, index])
    noisy = frame.astype(np.float32) + rng.normal(0.0, cfg.noise, frame.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def create_conveyor_video(output: Path, cfg: ConveyorConfig, motion: MotionProfile = MotionProfile()) -> dict:
    """Writes the video and its ground-truth sidecar; returns the sidecar data."""
    if motion.jerk_frames and not 1 <= motion.jerk_step(cfg.speed) <= cfg.frame_width // 2:
        raise ConveyorError(f"--jerk_speed {motion.jerk_step(cfg.speed)}: use 1 to {cfg.frame_width // 2} pixels per "
                            f"frame (at most half the frame width; more --jerk_frames need less speed)")
    strip, labels, painted = paint_defects(build_strip(cfg, motion), cfg)
    records = frame_records(labels, cfg, motion)
    width, height = cfg.frame_width, cfg.frame_height
    bgr = cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)
    with video_io.AtomicVideoWriter(output, cfg.fps, (width, height)) as writer:
        for record in records:
            frame = bgr[:, record["offset"]:record["offset"] + width]
            writer.write(np.ascontiguousarray(with_noise(frame, cfg, record["index"])))
    data = {
        "video": output.name, "fps": cfg.fps, "width": width, "height": height, "num_frames": len(records),
        "speed_px_per_frame": cfg.speed, "direction": "right_to_left",
        "motion_px_per_frame": [-float(cfg.speed), 0.0],
        "strip": {"width": int(strip.shape[1]), "height": int(strip.shape[0])},
        "settings": {**asdict(cfg), "generator": "create_conveyor_video"},
        "frames": records,
        "defects": [{**asdict(d), **_visibility(d, records)} for d in painted],
    }
    if not motion.constant:
        data["motion_profile"] = {**motion.describe(cfg.speed),
                                  "anomalous_frames": sum(r["temporal_anomaly"] for r in records)}
    data = json.loads(json.dumps(data))  # as the sidecar holds it (tuples become lists)
    video_io.write_sidecar(output, data)
    LOGGER.info("wrote %s: %d frames of %dx%d, %d defects, %d px/frame", output, len(records), width, height,
                len(painted), cfg.speed)
    return data


def stop_and_jerk_videos(folder: Path, base: ConveyorConfig, train_frames: int, test_frames: int,
                         jerk_frames: int = 5) -> dict[str, Path]:
    """The temporal-anomaly benchmark's videos of one conveyor (`base`: texture, size, speed, fps; no defects):
    "train", a defect-free recording of train_frames; "stop_jerk", test_frames in which the belt stops for one
    second (fps frames) half-way and then jerks forward to catch up (other seed); "normal", a new defect-free
    recording of test_frames (another seed). Videos already in the folder are kept."""
    stop = MotionProfile(stop_at=test_frames // 2, stop_frames=round(base.fps), jerk_frames=jerk_frames)
    videos = {"train": (replace(base, defects=0, frames=train_frames), MotionProfile()),
              "stop_jerk": (replace(base, defects=0, frames=test_frames, seed=base.seed + 1), stop),
              "normal": (replace(base, defects=0, frames=test_frames, seed=base.seed + 2), MotionProfile())}
    paths = {}
    for name, (cfg, motion) in videos.items():
        paths[name] = folder / f"{cfg.texture}_{name}.mp4"
        if not paths[name].exists():
            folder.mkdir(parents=True, exist_ok=True)
            create_conveyor_video(paths[name], cfg, motion)
    return paths


def _split_types(text: str) -> tuple[str, ...]:
    """Comma-separated defect types as a tuple (blanks dropped)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _with_preset(ctx: click.Context, preset: Mapping[str, object], values: dict) -> dict:
    """The preset's values for the flags left at their defaults (--size alone keeps frames square).

    The preset's pairs and edge defects shrink to fit a --defects given on the command line.
    """
    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT

    merged = dict(values)
    for key, value in preset.items():
        if not given(key) and not (given("size") and key in ("width", "height")):
            merged[key] = value
    if given("defects"):
        if not given("pairs"):
            merged["pairs"] = min(merged["pairs"], merged["defects"] // 2)
        if not given("edge_defects"):
            merged["edge_defects"] = min(merged["edge_defects"], merged["defects"])
    return merged


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help="Named scenario (wide: 640x256 gravel, 8 defects, pairs, edge defects, 6 px/frame); "
                   "other flags override it.")
@click.option("--texture", default="brick", show_default=True, help="Bundled photo: brick, gravel or grass.")
@click.option("--size", default=256, show_default=True, help="Square frame side in pixels.")
@click.option("--width", type=int, default=None, help="Frame width in pixels, along the motion [--size].")
@click.option("--height", type=int, default=None, help="Frame height in pixels, across the motion [--size].")
@click.option("--speed", default=4, show_default=True, help="Surface motion in pixels per frame.")
@click.option("--defects", default=4, show_default=True, help="Number of painted defects.")
@click.option("--defect_types", default=",".join(DEFAULT_DEFECT_TYPES), show_default=True,
              help=f"Comma-separated types used in turn, from {','.join(CONVEYOR_DEFECT_TYPES)}.")
@click.option("--edge_defects", default=0, show_default=True,
              help="How many defects (the last ones) touch the top/bottom frame edge, in turn.")
@click.option("--pairs", default=0, show_default=True,
              help="How many pairs of defects (the first ones) are in view at once.")
@click.option("--frames", type=int, default=None,
              help="At least this many frames (a longer recording, e.g. a defect-free one to train on with "
                   "--defects 0); default: as long as the defects need.")
@click.option("--stop_at", type=int, default=None, help="Frame at which the belt stops (with --stop_frames).")
@click.option("--stop_frames", default=0, show_default=True, help="How many frames the belt stands still.")
@click.option("--jerk_frames", default=0, show_default=True,
              help="After the stop, how many frames the belt jerks forward at --jerk_speed.")
@click.option("--jerk_speed", type=int, default=None,
              help="Pixels per frame during the jerk [enough to catch up the stop's lag].")
@click.option("--reverse_at", type=int, default=None, help="Frame at which the belt runs backwards.")
@click.option("--reverse_frames", default=0, show_default=True, help="How many frames it runs backwards.")
@click.option("--surface", type=click.Choice(list(SURFACE_PARTS)), default="whole", show_default=True,
              help="Part of the photo the belt is made of (along the motion); the halves share no texture: "
                   "record on one, test on the other for surface the model has never seen.")
@click.option("--noise", type=float, default=0.0, show_default=True,
              help="Camera noise: standard deviation in grey levels, new in every frame.")
@click.option("--quilt", default=0, show_default=True,
              help="Tile side: quilt the surface from random crops of the photo (part) so that it never repeats "
                   "(0: the photo mirrored end to end).")
@click.option("--surface_seed", type=int, default=None, help="Seed of the quilt's crops [--seed].")
@click.option("--seed", default=0, show_default=True)
@click.option("--fps", default=25.0, show_default=True)
@click.option("--output", default=None,
              help="Video file [test-video/conveyor_[<preset>_]<texture>/conveyor_[<preset>_]<texture>.mp4].")
@click.pass_context
def _command(ctx: click.Context, preset: str | None, output: str | None, defect_types: str, **values) -> None:
    """Write a synthetic conveyor video with ground truth."""
    values["defect_types"] = _split_types(defect_types)
    motion = MotionProfile(**{name: values.pop(name) for name in [f.name for f in fields(MotionProfile)]})
    if preset:
        values = _with_preset(ctx, PRESETS[preset], values)
    cfg = ConveyorConfig(**values)
    name = f"conveyor_{preset}_{cfg.texture}" if preset else f"conveyor_{cfg.texture}"
    path = Path(output) if output else Path("test-video") / name / f"{name}.mp4"
    data = create_conveyor_video(path, cfg, motion)
    events = f", {data['motion_profile']['anomalous_frames']} frames of abnormal motion" if not motion.constant else ""
    click.echo(f"{path}: {data['num_frames']} frames of {data['width']}x{data['height']}, "
               f"{len(data['defects'])} defects, {cfg.speed} px/frame{events}")


def cli(argv: Sequence[str] | None = None) -> int:
    """Runs the command; user errors print one line and return 2."""
    return utils.run_command(_command, argv, "choose a writable --output")


if __name__ == "__main__":
    sys.exit(cli())
