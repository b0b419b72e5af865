"""Perlin-noise masks for GLASS local anomaly synthesis (LAS).

A LAS mask is the union, the intersection or the first of two thresholded,
randomly rotated Perlin noise maps (probability 1/3 each), optionally restricted
to the foreground. Rotation uses OpenCV (the reference's imgaug does not import
under NumPy 2). All randomness comes from the caller's ``numpy.random.Generator``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

MAX_ROTATION_DEG = 90.0


def _fade(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic fade curve 6t^5 - 15t^4 + 10t^3."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D gradient noise with res[0] x res[1] lattice cells over an image of `shape`, values in about [-1, 1]."""
    # Hand-written: no maintained NumPy-2 library offers seeded, lattice-resolution Perlin noise
    # on arbitrary (non power-of-two) image shapes; this evaluates the lattice per pixel, so any
    # shape works without the reference's "shape divisible by res" restriction.
    height, width = shape
    res_y, res_x = res
    angles = 2.0 * math.pi * rng.random((res_y + 1, res_x + 1))
    grad_y, grad_x = np.cos(angles), np.sin(angles)

    pos_y = np.arange(height) * (res_y / height)
    pos_x = np.arange(width) * (res_x / width)
    cell_y, cell_x = np.floor(pos_y).astype(int), np.floor(pos_x).astype(int)
    frac_y, frac_x = (pos_y - cell_y)[:, None], (pos_x - cell_x)[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        """Dot product of the corner gradient with the offset from that corner."""
        rows, cols = cell_y + dy, cell_x + dx
        return grad_y[rows][:, cols] * (frac_y - dy) + grad_x[rows][:, cols] * (frac_x - dx)

    n00, n10, n01, n11 = corner(0, 0), corner(1, 0), corner(0, 1), corner(1, 1)
    fade_y, fade_x = _fade(frac_y), _fade(frac_x)
    top = n00 + fade_y * (n10 - n00)
    bottom = n01 + fade_y * (n11 - n01)
    return (math.sqrt(2.0) * (top + fade_x * (bottom - top))).astype(np.float32)


def rotate_map(values: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate a 2-D float map about its centre (bilinear, zeros outside)."""
    height, width = values.shape
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), angle_deg, 1.0)
    return cv2.warpAffine(
        values.astype(np.float32), matrix, (width, height),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0,
    )


def thresholded_perlin(
    shape: tuple[int, int], rng: np.random.Generator, min_scale: int, max_scale: int, threshold: float
) -> np.ndarray:
    """One Perlin map (lattice 2^k per axis, k in [min_scale, max_scale)), rotated in [-90, 90] deg, as 0/1."""
    res = (2 ** int(rng.integers(min_scale, max_scale)), 2 ** int(rng.integers(min_scale, max_scale)))
    noise = perlin_noise(shape, res, rng)
    noise = rotate_map(noise, float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)))
    return (noise > threshold).astype(np.float32)


def perlin_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    fg: np.ndarray | None = None,
    min_scale: int = 0,
    max_scale: int = 6,
    threshold: float = 0.5,
) -> np.ndarray:
    """One LAS mask (float32 0/1 of `shape`): union / intersection / first of two Perlin maps, times `fg`."""
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"perlin_mask: shape must be two positive ints, got {shape!r}")
    if not 0 <= min_scale < max_scale:
        raise ValueError(f"perlin_mask: need 0 <= min_scale < max_scale, got {min_scale}, {max_scale}")
    first = thresholded_perlin(shape, rng, min_scale, max_scale, threshold)
    second = thresholded_perlin(shape, rng, min_scale, max_scale, threshold)
    choice = rng.random()
    if choice > 2.0 / 3.0:
        mask = np.maximum(first, second)
    elif choice > 1.0 / 3.0:
        mask = first * second
    else:
        mask = first
    if fg is not None:
        if fg.shape != tuple(shape):
            raise ValueError(f"perlin_mask: fg shape {fg.shape} differs from mask shape {tuple(shape)}")
        mask = mask * (fg > 0)
    return mask.astype(np.float32)


def max_pool_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """Max-pool a 2-D mask by `factor` (non-overlapping windows, remainder rows/cols dropped like max_pool2d)."""
    if factor < 1:
        raise ValueError(f"max_pool_mask: factor must be >= 1, got {factor}")
    out_h, out_w = mask.shape[0] // factor, mask.shape[1] // factor
    cropped = mask[: out_h * factor, : out_w * factor]
    return cropped.reshape(out_h, factor, out_w, factor).max(axis=(1, 3))


def las_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    downsampling: int,
    fg: np.ndarray | None = None,
    max_draws: int = 1000,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw Perlin masks until the pooled (feature-grid) mask is non-empty; returns (mask, pooled mask)."""
    if fg is not None and not np.any(fg > 0):
        raise ValueError("las_mask: the foreground mask is empty, no LAS mask can be drawn inside it")
    for _ in range(max_draws):
        mask = perlin_mask(shape, rng, fg)
        pooled = max_pool_mask(mask, downsampling)
        if pooled.any():
            return mask, pooled
    raise ValueError(f"las_mask: no non-empty mask in {max_draws} draws (foreground too small?)")
