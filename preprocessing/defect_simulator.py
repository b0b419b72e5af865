"""Realistic synthetic surface defects (scratch, crack, hole, stain, contamination; fibre, smudge, patch, bump).

These defects are deliberately different from GLASS's own training-time synthesis
(Perlin-masked texture blending, LAS): they are thin strokes, branching cracks,
shaded cavities, soft discolourations and small foreign particles, drawn with
OpenCV so that a demo test set measures generalisation rather than memorisation.
The extra types (``EXTRA_DEFECT_TYPES``, used by the fidelity benchmark dataset) add
long hairs, faint hazy smears, misplaced pieces of the same surface and dents/bulges
that exist only as shading; the classic five (``DEFECT_TYPES``) are unchanged.

Every function takes and returns uint8 RGB images; the returned mask (uint8 0/255)
is the support of the defect, and no pixel outside it is changed.

Drawing (anti-aliased lines and polygons, blurs, distance transforms) is OpenCV's; the
defect geometry itself (irregular blobs, jagged random walks, shading) is generated here
because no library offers defect-shaped primitives.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType

import cv2
import numpy as np

from errors import UserError, first_line
from paths import IMAGE_SUFFIXES

LOGGER = logging.getLogger(__name__)

# The classic types: the demo dataset's and the CLI's default.
DEFECT_TYPES = ("scratch", "crack", "hole", "stain", "contamination")
# Further shapes (thin hair, faint smear, misplaced texture piece, shading-only dent/bulge).
EXTRA_DEFECT_TYPES = ("fibre", "smudge", "patch", "bump")
ALL_DEFECT_TYPES = DEFECT_TYPES + EXTRA_DEFECT_TYPES

# Supersampling factor for OpenCV drawing: sub-pixel coordinates via `shift` bits.
_SHIFT_BITS = 4
_SHIFT_SCALE = 1 << _SHIFT_BITS
# Alpha below this is dropped (and the rest rescaled) so soft edges end inside the mask.
_ALPHA_FLOOR = 0.08
_MAX_ATTEMPTS = 30

Range = tuple[float, float]


class DefectError(UserError):
    """Bad defect request (unknown type, bad image, bad parameters)."""


@dataclass(frozen=True)
class DefectParams:
    """Size/strength ranges; lengths are fractions of the image's shorter side."""

    scratch_length: Range = (0.3, 0.65)
    scratch_width: Range = (0.01, 0.018)
    scratch_strength: Range = (0.7, 0.95)
    scratch_bend: Range = (0.0, 0.25)
    crack_length: Range = (0.3, 0.55)
    crack_width: Range = (0.01, 0.02)
    crack_strength: Range = (0.7, 0.9)
    crack_branches: tuple[int, int] = (1, 3)
    hole_radius: Range = (0.045, 0.085)
    hole_depth: Range = (0.7, 0.88)
    stain_radius: Range = (0.06, 0.1)
    stain_strength: Range = (0.6, 0.9)
    particle_count: tuple[int, int] = (5, 12)
    particle_radius: Range = (0.01, 0.024)
    cluster_radius: Range = (0.05, 0.12)
    fibre_length: Range = (0.4, 0.85)
    fibre_width: Range = (0.004, 0.008)
    fibre_strength: Range = (0.75, 0.95)
    smudge_radius: Range = (0.06, 0.11)
    smudge_strength: Range = (0.6, 0.9)
    patch_size: Range = (0.1, 0.2)
    patch_scale: Range = (1.2, 1.7)
    bump_radius: Range = (0.04, 0.09)
    bump_depth: Range = (0.3, 0.6)
    min_area_fraction: float = 0.001
    max_area_fraction: float = 0.05
    # Grey levels: when > 0, the faint fringe where the (smoothed) change stays below it is dropped.
    min_visible_change: float = 0.0

    def __post_init__(self) -> None:
        """Reject empty or inverted ranges."""
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                low, high = value
                if not 0 <= low <= high:
                    raise DefectError(f"DefectParams.{field.name}={value}: need 0 <= low <= high")
        if not 0 <= self.min_area_fraction < self.max_area_fraction <= 1:
            raise DefectError("DefectParams: need 0 <= min_area_fraction < max_area_fraction <= 1")
        if not 0 <= self.min_visible_change < 255:
            raise DefectError(f"DefectParams.min_visible_change={self.min_visible_change}: need 0 <= value < 255")


def _uniform(rng: np.random.Generator, bounds: Range) -> float:
    """One float drawn uniformly from a (low, high) range."""
    return float(rng.uniform(bounds[0], bounds[1]))


def _integer(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    """One integer drawn uniformly from an inclusive (low, high) range."""
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _fixed(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates as OpenCV fixed-point int32 (for `shift`)."""
    return np.round(points * _SHIFT_SCALE).astype(np.int32)


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency noise in [0, 1] (blurred white noise, min-max scaled)."""
    noise = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), max(sigma, 0.5))
    low, high = float(noise.min()), float(noise.max())
    return (noise - low) / (high - low + 1e-8)


def _random_point(shape: tuple[int, int], margin: float, rng: np.random.Generator) -> np.ndarray:
    """A random (x, y) point at least `margin` pixels from the border (when possible)."""
    height, width = shape
    mx, my = min(margin, width / 2 - 1), min(margin, height / 2 - 1)
    return np.array([rng.uniform(mx, width - 1 - mx), rng.uniform(my, height - 1 - my)])


def _blob(shape: tuple[int, int], centre: np.ndarray, radius: float, irregularity: float,
          rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased irregular filled blob (radius modulated by random harmonics) in [0, 1]."""
    angles = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    profile = np.ones_like(angles)
    for harmonic in range(2, 7):
        amplitude = irregularity * rng.uniform(0.3, 1.0) / harmonic ** 0.7
        profile += amplitude * np.sin(harmonic * angles + rng.uniform(0, 2 * np.pi))
    profile = np.clip(profile, 0.35, None) * radius
    points = centre + np.stack([np.cos(angles), np.sin(angles)], axis=1) * profile[:, None]
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, [_fixed(points)], 255, cv2.LINE_AA, _SHIFT_BITS)
    return canvas.astype(np.float32) / 255.0


def _draw_path(canvas: np.ndarray, points: np.ndarray, widths: np.ndarray, values: np.ndarray) -> None:
    """Draw a polyline segment by segment with per-segment width and intensity (max-composited)."""
    for index in range(len(points) - 1):
        layer = np.zeros_like(canvas)
        cv2.line(layer, tuple(_fixed(points[index])), tuple(_fixed(points[index + 1])),
                 float(values[index]), max(1, int(round(widths[index]))), cv2.LINE_AA, _SHIFT_BITS)
        np.maximum(canvas, layer, out=canvas)


def _taper(count: int, rng: np.random.Generator) -> np.ndarray:
    """Intensity profile along a stroke: fades at both ends, slightly uneven in between."""
    position = np.linspace(0, 1, count)
    envelope = np.sin(np.pi * np.clip(position, 0.02, 0.98)) ** 0.35
    wobble = 0.8 + 0.2 * np.interp(position, np.linspace(0, 1, 6), rng.uniform(0, 1, 6))
    return envelope * wobble


def _blend(image: np.ndarray, target: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-blend `target` over `image` (float32 HxWx3) with an HxW alpha."""
    return image + (target - image) * alpha[..., None]


def _stroke_ends(shape: tuple[int, int], length: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random start/end points of a straight stroke of about `length` that stays inside the image."""
    height, width = shape
    margin = 0.06 * min(shape)
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    half = np.abs(direction) * length / 2
    room = np.array([width - 1, height - 1]) - 2 * margin
    half = half * min(1.0, float(np.min(room / np.maximum(2 * half, 1e-6))))  # shorten if it cannot fit
    low = margin + half
    high = np.array([width - 1, height - 1]) - margin - half
    middle = rng.uniform(low, np.maximum(low, high))
    offset = direction * np.linalg.norm(half) if np.any(half) else direction
    return middle - offset, middle + offset


def _scratch(image: np.ndarray, rng: np.random.Generator, params: DefectParams) -> tuple[np.ndarray, np.ndarray]:
    """A thin curved groove: bright reflecting core with dark edges (or a dark scuff), tapered."""
    shape = image.shape[:2]
    short = min(shape)
    length = _uniform(rng, params.scratch_length) * short
    start, end = _stroke_ends(shape, length, rng)
    chord = end - start
    normal = np.array([-chord[1], chord[0]]) / (np.linalg.norm(chord) + 1e-6)
    bend = _uniform(rng, params.scratch_bend) * rng.choice([-1.0, 1.0])
    control = (start + end) / 2 + normal * bend * np.linalg.norm(chord)
    t = np.linspace(0, 1, int(np.clip(length / 3, 8, 64)))[:, None]
    curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t ** 2 * end
    width = max(1.0, _uniform(rng, params.scratch_width) * short)
    taper = _taper(len(curve), rng)
    core = np.zeros(shape, np.float32)
    _draw_path(core, curve, np.full(len(curve), width), taper)
    strength = _uniform(rng, params.scratch_strength)
    if rng.random() < 0.65:  # groove: light reflected by the core, shadowed edges
        edges = np.zeros(shape, np.float32)
        _draw_path(edges, curve, np.full(len(curve), width + 2), taper)
        edges = np.clip(edges - core, 0, 1)
        core = cv2.GaussianBlur(core, (0, 0), 0.5)
        bright = np.clip(rng.uniform(205, 235) + 0.25 * (image - 128), 0, 255)
        target = np.where((core >= edges)[..., None], bright, image * 0.3)
        return target, np.maximum(core, 0.8 * edges) * strength
    core = cv2.GaussianBlur(core, (0, 0), 0.6)  # dark scuff
    return image * rng.uniform(0.1, 0.3), core * strength


def _walk(start: np.ndarray, heading: float, length: float, step: float,
          rng: np.random.Generator) -> np.ndarray:
    """Jagged random walk that keeps a general heading (a crack path)."""
    points = [start]
    drift = 0.0
    for _ in range(max(2, int(length / step))):
        drift = float(np.clip(drift + rng.normal(0, 0.35), -0.7, 0.7))
        direction = heading + drift + rng.normal(0, 0.25)
        points.append(points[-1] + step * rng.uniform(0.6, 1.4) * np.array([np.cos(direction), np.sin(direction)]))
    return np.array(points)


def _crack(image: np.ndarray, rng: np.random.Generator, params: DefectParams) -> tuple[np.ndarray, np.ndarray]:
    """A dark jagged line with thinner side branches, thinning towards its tips."""
    shape = image.shape[:2]
    short = min(shape)
    length = _uniform(rng, params.crack_length) * short
    step = max(2.0, 0.025 * short)
    start = _random_point(shape, 0.1 * short, rng)
    to_centre = np.array(shape[::-1]) / 2 - start
    heading = np.arctan2(to_centre[1], to_centre[0]) + rng.uniform(-0.9, 0.9)  # stay mostly inside
    width = max(1.0, _uniform(rng, params.crack_width) * short)
    alpha = np.zeros(shape, np.float32)
    trunk = _walk(start, heading, length, step, rng)
    # Thickest near the middle of the trunk, thinning to hairlines at both tips.
    trunk_widths = width * (0.35 + 0.65 * np.sin(np.pi * np.linspace(0, 1, len(trunk))))
    _draw_path(alpha, trunk, trunk_widths, np.ones(len(trunk)))
    for _ in range(_integer(rng, params.crack_branches)):
        origin = int(rng.integers(1, len(trunk) - 1))
        side = rng.choice([-1.0, 1.0])
        branch = _walk(trunk[origin], heading + side * rng.uniform(0.5, 1.1),
                       length * rng.uniform(0.2, 0.45), step, rng)
        branch_widths = trunk_widths[origin] * np.linspace(0.8, 0.3, len(branch))
        _draw_path(alpha, branch, branch_widths, np.ones(len(branch)))
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.5) * _uniform(rng, params.crack_strength)
    target = image * rng.uniform(0.05, 0.2)
    return target, alpha


def _outward_normal(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Unit outward normal field (HxWx2, x then y) of a soft mask."""
    smooth = cv2.GaussianBlur(mask, (0, 0), sigma)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    norm = np.sqrt(gx ** 2 + gy ** 2) + 1e-6
    return np.stack([-gx / norm, -gy / norm], axis=-1)


def _cavity_colour(image: np.ndarray, cavity: np.ndarray, facing: np.ndarray, radius: float,
                   depth: float, rng: np.random.Generator) -> np.ndarray:
    """Inside of a hole: a dark grainy floor, darkest mid-way, and a lit crescent of inner wall."""
    inside = cv2.distanceTransform((cavity > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    depth_profile = np.clip(inside / (0.7 * radius), 0, 1)
    grain = 0.8 + 0.4 * _smooth_noise(cavity.shape, max(1.0, 0.1 * radius), rng)
    floor_level = (1 - depth) * 80 * (1 - 0.6 * depth_profile) * grain
    floor = 0.08 * image + floor_level[..., None]  # a trace of the surface texture remains
    # The inner wall whose inside faces the light (the side away from the lit rim) is lit.
    wall_band = np.clip(1 - inside / (0.25 * radius), 0, 1) * (cavity > 0.5)
    wall_light = np.clip(-facing, 0, 1) * wall_band
    return floor + (image * 0.7 - floor) * (0.5 * wall_light)[..., None]


def _hole(image: np.ndarray, rng: np.random.Generator, params: DefectParams) -> tuple[np.ndarray, np.ndarray]:
    """A dark irregular cavity: shadowed floor, a lit far wall, and a lit/shaded raised rim."""
    shape = image.shape[:2]
    short = min(shape)
    radius = max(2.0, _uniform(rng, params.hole_radius) * short)
    centre = _random_point(shape, 1.6 * radius, rng)
    cavity = _blob(shape, centre, radius, 0.25, rng)
    rim_width = max(1, int(round(0.25 * radius)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim_width + 1, 2 * rim_width + 1))
    outer = cv2.GaussianBlur(cv2.dilate(cavity, kernel), (0, 0), 0.4 * rim_width)
    rim = np.clip(outer - cavity, 0, 1)
    light = rng.uniform(0, 2 * np.pi)
    light_dir = np.array([np.cos(light), np.sin(light)], np.float32)
    facing = _outward_normal(cavity, 0.3 * radius) @ light_dir  # +1: outer side faces the light
    cavity_colour = _cavity_colour(image, cavity, facing, radius, _uniform(rng, params.hole_depth), rng)
    rim_colour = np.clip(image * (1 + 0.5 * facing)[..., None] + 25 * facing[..., None], 0, 255)
    target = np.where((cavity >= rim)[..., None], cavity_colour, rim_colour)
    alpha = np.maximum(cavity, 0.85 * rim)
    return target, alpha


_STAIN_TINTS = (
    (0.85, 0.55, 0.3),   # rust
    (0.6, 0.45, 0.3),    # coffee / dirt
    (0.3, 0.3, 0.36),    # oil
    (1.0, 0.85, 0.45),   # dried water / yellowing
    (0.5, 0.78, 0.42),   # mould
)


def _stain(image: np.ndarray, rng: np.random.Generator, params: DefectParams) -> tuple[np.ndarray, np.ndarray]:
    """A soft-edged, unevenly dense discoloured blob with a slightly darker rim."""
    shape = image.shape[:2]
    short = min(shape)
    radius = max(2.0, _uniform(rng, params.stain_radius) * short)
    centre = _random_point(shape, 1.3 * radius, rng)
    body = _blob(shape, centre, radius, 0.4, rng)
    soft = cv2.GaussianBlur(body, (0, 0), 0.25 * radius)
    edge = np.clip(body - cv2.GaussianBlur(body, (0, 0), 0.12 * radius), 0, 1)  # coffee-ring edge
    density = 0.65 + 0.35 * _smooth_noise(shape, 0.3 * radius, rng)
    alpha = np.clip(soft * density + 1.5 * edge * soft, 0, 1) * _uniform(rng, params.stain_strength)
    tint = np.array(_STAIN_TINTS[int(rng.integers(len(_STAIN_TINTS)))], np.float32)
    # Tinting the luminance keeps the surface texture visible under the stain.
    target = image * tint + 40 * (tint - tint.mean())
    return np.clip(target, 0, 255), alpha


def _particle_colour(rng: np.random.Generator) -> np.ndarray:
    """A foreign colour: soot, dust, or a saturated hue."""
    kind = rng.random()
    if kind < 0.35:
        return np.full(3, rng.uniform(10, 40), np.float32)
    if kind < 0.55:
        return np.full(3, rng.uniform(225, 250), np.float32)
    hsv = np.array([[[rng.integers(0, 180), rng.integers(150, 256), rng.integers(140, 256)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(3).astype(np.float32)


def _contamination(image: np.ndarray, rng: np.random.Generator,
                   params: DefectParams) -> tuple[np.ndarray, np.ndarray]:
    """A cluster of small foreign particles (and sometimes a fibre) of foreign colours."""
    shape = image.shape[:2]
    short = min(shape)
    spread = _uniform(rng, params.cluster_radius) * short
    centre = _random_point(shape, 1.2 * spread, rng)
    target = image.copy()
    alpha = np.zeros(shape, np.float32)
    base_colour = _particle_colour(rng)
    pieces: list[np.ndarray] = []
    for _ in range(_integer(rng, params.particle_count)):
        radius = max(1.0, _uniform(rng, params.particle_radius) * short)
        where = np.clip(centre + rng.normal(0, spread / 2, 2), 0, np.array(shape[::-1]) - 1)
        pieces.append(_blob(shape, where, radius, 0.35, rng))
    if rng.random() < 0.4:  # a hair / fibre
        fibre = np.zeros(shape, np.float32)
        start = np.clip(centre + rng.normal(0, spread / 2, 2), 0, np.array(shape[::-1]) - 1)
        path = _walk(start, rng.uniform(0, 2 * np.pi), rng.uniform(0.08, 0.16) * short,
                     max(2.0, 0.02 * short), rng)
        _draw_path(fibre, path, np.ones(len(path)), np.ones(len(path)))
        pieces.append(fibre)
    # Particles sit on the surface: opaque bodies with a little shading grain.
    grain = (0.85 + 0.3 * _smooth_noise(shape, 1.0, rng))[..., None]
    for piece in pieces:
        colour = np.clip(base_colour * rng.uniform(0.8, 1.2) + rng.normal(0, 12, 3), 0, 255)
        shaded = colour * grain
        target = _blend(target, shaded.astype(np.float32), piece)
        alpha = np.maximum(alpha, piece)
    # `target` already carries each particle's own coverage; alpha only marks the support.
    return target, (alpha > 0).astype(np.float32)


def _smooth_curve(start: np.ndarray, heading: float, length: float, step: float,
                  rng: np.random.Generator) -> np.ndarray:
    """A smoothly bending path (a hair): the heading drifts with a low-pass random turn rate."""
    count = max(3, int(length / step))
    turns = np.convolve(rng.normal(0, 0.3, count + 8), np.ones(9) / 9, mode="valid")[:count]
    headings = heading + np.cumsum(turns)
    steps = step * np.stack([np.cos(headings), np.sin(headings)], axis=1)
    return np.vstack([start[None], start + np.cumsum(steps, axis=0)])


def _fibre(image: np.ndarray, rng: np.random.Generator, params: DefectParams) -> tuple[np.ndarray, np.ndarray]:
    """A long thin hair or lint fibre: a smooth 1-2 px curve, dark on light surfaces and light on dark ones."""
    shape = image.shape[:2]
    short = min(shape)
    start = _random_point(shape, 0.15 * short, rng)
    to_centre = np.array(shape[::-1]) / 2 - start
    heading = np.arctan2(to_centre[1], to_centre[0]) + rng.uniform(-1.0, 1.0)
    path = _smooth_curve(start, heading, _uniform(rng, params.fibre_length) * short, max(1.5, 0.01 * short), rng)
    width = max(1.0, _uniform(rng, params.fibre_width) * short)
    alpha = np.zeros(shape, np.float32)
    _draw_path(alpha, path, np.full(len(path), width), _taper(len(path), rng))
    level = rng.uniform(10, 50) if image.mean() > 100 else rng.uniform(200, 245)
    colour = np.clip(level + rng.normal(0, 6, 3), 0, 255).astype(np.float32)
    return np.broadcast_to(colour, image.shape), alpha * _uniform(rng, params.fibre_strength)


def _visible(image: np.ndarray, target: np.ndarray, alpha: np.ndarray, threshold: float,
             sigma: float) -> np.ndarray:
    """`alpha` kept only where the change it makes, smoothed, reaches `threshold` grey levels (a solid region)."""
    change = np.abs(target - image).max(axis=2) * alpha
    return np.where(cv2.GaussianBlur(change, (0, 0), sigma) >= threshold, alpha, 0).astype(np.float32)


def _smudge(image: np.ndarray, rng: np.random.Generator, params: DefectParams) -> tuple[np.ndarray, np.ndarray]:
    """A faint hazy smear: locally blurred, lower in contrast and a little brighter or darker, soft-edged."""
    shape = image.shape[:2]
    short = min(shape)
    radius = max(3.0, _uniform(rng, params.smudge_radius) * short)
    centre = _random_point(shape, 1.2 * radius, rng)
    soft = cv2.GaussianBlur(_blob(shape, centre, radius, 0.45, rng), (0, 0), 0.3 * radius)
    density = 0.7 + 0.3 * _smooth_noise(shape, 0.3 * radius, rng)
    alpha = soft * density * _uniform(rng, params.smudge_strength)
    blurred = cv2.GaussianBlur(image, (0, 0), max(1.0, 0.1 * radius))
    flattened = blurred + 0.4 * (cv2.GaussianBlur(image, (0, 0), radius) - blurred)
    mean = float(image.mean())
    brighter = bool(rng.random() < 0.5) if 50 <= mean <= 205 else mean < 50  # a haze must show on the surface
    target = np.clip(flattened + (1 if brighter else -1) * rng.uniform(10, 18), 0, 255)
    # The mask is where the smear really shows (at least 3 grey levels), not its faint halo.
    return target, _visible(image, target, alpha, 3.0, max(1.0, 0.25 * radius))


def _patch(image: np.ndarray, rng: np.random.Generator, params: DefectParams) -> tuple[np.ndarray, np.ndarray]:
    """A piece of the same surface from elsewhere, pasted rotated and magnified (a misplaced patch)."""
    shape = image.shape[:2]
    side = max(4.0, _uniform(rng, params.patch_size) * min(shape))
    centre = _random_point(shape, 0.6 * side, rng)
    source = _random_point(shape, 0.6 * side, rng)
    matrix = cv2.getRotationMatrix2D((float(source[0]), float(source[1])), rng.uniform(30, 330),
                                     _uniform(rng, params.patch_scale))
    matrix[:, 2] += centre - source  # source point -> patch centre
    moved = cv2.warpAffine(image, matrix, (shape[1], shape[0]), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT_101)
    corners = cv2.boxPoints(((float(centre[0]), float(centre[1])), (side, side * rng.uniform(0.6, 1.0)),
                             rng.uniform(0, 180)))
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, [_fixed(corners)], 255, cv2.LINE_AA, _SHIFT_BITS)
    alpha = canvas.astype(np.float32) / 255.0
    # A piece that barely differs from where it lands (flat on flat), measured against the
    # surface's own contrast, is no defect: return none, so that it is redrawn.
    if np.abs(moved - image).max(axis=2)[alpha > 0.5].mean() < max(2.0, 0.6 * float(image.mean(axis=2).std())):
        return moved, np.zeros(shape, np.float32)
    return moved, alpha


def _bump(image: np.ndarray, rng: np.random.Generator, params: DefectParams) -> tuple[np.ndarray, np.ndarray]:
    """A dent or bulge with no colour of its own: only shading from an oblique light, lit on one side."""
    shape = image.shape[:2]
    radius = max(3.0, _uniform(rng, params.bump_radius) * min(shape))
    centre = _random_point(shape, 1.1 * radius, rng)
    tilt, aspect = rng.uniform(0, np.pi), rng.uniform(0.55, 1.0)
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    dx, dy = xs - centre[0], ys - centre[1]
    along = (dx * np.cos(tilt) + dy * np.sin(tilt)) / radius
    across = (dy * np.cos(tilt) - dx * np.sin(tilt)) / (radius * aspect)
    inside = along ** 2 + across ** 2 < 1
    height = np.where(inside, (1 - along ** 2 - across ** 2) ** 2, 0)  # smooth, flat at its border
    slope_y, slope_x = np.gradient(height)
    light = rng.uniform(0, 2 * np.pi)
    shade = slope_x * np.cos(light) + slope_y * np.sin(light)
    shade = (shade / (np.abs(shade).max() + 1e-6) * rng.choice([-1.0, 1.0])).astype(np.float32)  # dent or bulge
    delta = _uniform(rng, params.bump_depth) * shade[..., None] * (0.5 * image + 40)
    return np.clip(image + delta, 0, 255), inside.astype(np.float32)


_Generator = Callable[[np.ndarray, np.random.Generator, DefectParams], tuple[np.ndarray, np.ndarray]]
# Each generator returns (target colours, alpha): the defect is `image + (target - image) * alpha`.
_GENERATORS: Mapping[str, _Generator] = MappingProxyType({
    "scratch": _scratch,
    "crack": _crack,
    "hole": _hole,
    "stain": _stain,
    "contamination": _contamination,
    "fibre": _fibre,
    "smudge": _smudge,
    "patch": _patch,
    "bump": _bump,
})


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Validate an uint8 image and return it as HxWx3."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise DefectError("simulate_defect: image must be a uint8 numpy array (HxW or HxWx3)")
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise DefectError(f"simulate_defect: image shape {image.shape} is not HxW or HxWx3")


def _render(image: np.ndarray, defect_type: str, rng: np.random.Generator,
            params: DefectParams) -> tuple[np.ndarray, np.ndarray]:
    """One attempt: the defective image and its mask (changes only inside the mask)."""
    original = image.astype(np.float32)
    target, alpha = _GENERATORS[defect_type](original, rng, params)
    alpha = np.clip((alpha - _ALPHA_FLOOR) / (1 - _ALPHA_FLOOR), 0, 1)
    if params.min_visible_change > 0:
        alpha = _visible(original, target, alpha, params.min_visible_change, max(1.0, 0.02 * min(image.shape[:2])))
    mask = alpha > 0
    blended = np.clip(np.round(_blend(original, target.astype(np.float32), alpha)), 0, 255).astype(np.uint8)
    defective = np.where(mask[..., None], blended, image)
    return defective, mask.astype(np.uint8) * 255


def simulate_defect(image: np.ndarray, defect_type: str, rng: np.random.Generator,
                    params: DefectParams = DefectParams()) -> tuple[np.ndarray, np.ndarray]:
    """Add one synthetic defect; return (defective uint8 HxWx3 image, uint8 HxW mask 0/255)."""
    if defect_type not in _GENERATORS:
        raise DefectError(f"defect type {defect_type!r} is unknown; choose from {', '.join(ALL_DEFECT_TYPES)}")
    rgb = _as_rgb(image)
    if min(rgb.shape[:2]) < 16:
        raise DefectError(f"simulate_defect: image {rgb.shape[:2]} is too small; need at least 16x16 pixels")
    area = rgb.shape[0] * rgb.shape[1]
    result = _render(rgb, defect_type, rng, params)
    # Redraw the geometry (same rng stream, so still deterministic) until the area fits.
    for _ in range(_MAX_ATTEMPTS):
        fraction = np.count_nonzero(result[1]) / area
        if params.min_area_fraction <= fraction <= params.max_area_fraction:
            break
        result = _render(rgb, defect_type, rng, params)
    return result


def _defect_folder(input_dir: Path, output_dir: Path, types: Sequence[str], seed: int,
                   params: DefectParams) -> int:
    """Write one defect per input image (types in turn) in MVTec test/ground_truth layout."""
    images = sorted(p for p in input_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DefectError(f"--input {input_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    rng = np.random.default_rng(seed)
    for index, path in enumerate(images):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DefectError(f"--input: cannot read image {path}; remove or fix it")
        defect_type = types[index % len(types)]
        defective, mask = simulate_defect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), defect_type, rng, params)
        image_dir = output_dir / "test" / defect_type
        mask_dir = output_dir / "ground_truth" / defect_type
        image_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(image_dir / f"{path.stem}.png"), cv2.cvtColor(defective, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(mask_dir / f"{path.stem}_mask.png"), mask)
    return len(images)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Add synthetic defects to every image of a folder "
                                                 "(writes OUTPUT/test/<type>/ and OUTPUT/ground_truth/<type>/).")
    parser.add_argument("--input", required=True, type=Path, help="folder of defect-free images")
    parser.add_argument("--output", required=True, type=Path, help="output folder")
    parser.add_argument("--types", nargs="+", default=list(DEFECT_TYPES),
                        help=f"defect types, used in turn (from: {', '.join(ALL_DEFECT_TYPES)})")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 on bad input)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parse_args(argv)
    try:
        unknown = [name for name in args.types if name not in ALL_DEFECT_TYPES]
        if unknown:
            raise DefectError(f"--types: unknown {', '.join(unknown)}; choose from {', '.join(ALL_DEFECT_TYPES)}")
        if not args.input.is_dir():
            raise DefectError(f"--input {args.input}: not a folder; give a folder of images")
        count = _defect_folder(args.input, args.output, args.types, args.seed, DefectParams())
    except UserError as error:
        print(f"error: {first_line(error)}", file=sys.stderr)
        return 2
    LOGGER.info("wrote %d defective images and masks to %s", count, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
