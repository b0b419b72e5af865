"""Tests for the Perlin LAS mask generator."""

from __future__ import annotations

import numpy as np
import pytest

import perlin


def test_mask_shape_dtype_binary() -> None:
    mask = perlin.perlin_mask((288, 288), np.random.default_rng(0))
    assert mask.shape == (288, 288)
    assert mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}


@pytest.mark.parametrize("shape", [(300, 217), (97, 131), (1, 1), (5, 64)])
def test_non_power_of_two_shapes(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    for _ in range(5):
        mask = perlin.perlin_mask(shape, rng)
        assert mask.shape == shape
        assert set(np.unique(mask)) <= {0.0, 1.0}


def test_coverage_over_many_draws() -> None:
    rng = np.random.default_rng(2)
    coverage = np.array([perlin.perlin_mask((96, 96), rng).mean() for _ in range(150)])
    assert (coverage == 0).mean() < 0.5, "most masks should not be empty"
    assert (coverage > 0).sum() > 50
    assert coverage.max() < 1.0, "a mask never covers the whole image (rotation leaves zero corners)"
    assert 0.01 < coverage.mean() < 0.4


def test_same_seed_same_mask_other_seed_differs() -> None:
    first = [perlin.perlin_mask((64, 80), np.random.default_rng(7)) for _ in range(2)]
    np.testing.assert_array_equal(first[0], first[1])
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(8)
    draws_a = np.stack([perlin.perlin_mask((64, 80), rng_a) for _ in range(5)])
    draws_b = np.stack([perlin.perlin_mask((64, 80), rng_b) for _ in range(5)])
    assert not np.array_equal(draws_a, draws_b)


def test_zero_foreground_gives_zero_mask() -> None:
    rng = np.random.default_rng(3)
    for _ in range(10):
        assert perlin.perlin_mask((64, 64), rng, fg=np.zeros((64, 64), np.float32)).sum() == 0


def test_mask_stays_inside_foreground() -> None:
    fg = np.zeros((64, 64), np.float32)
    fg[16:48, 8:40] = 1
    rng = np.random.default_rng(4)
    total = 0.0
    for _ in range(30):
        mask = perlin.perlin_mask((64, 64), rng, fg=fg)
        assert mask[fg == 0].sum() == 0
        total += mask.sum()
    assert total > 0


def test_foreground_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="fg shape"):
        perlin.perlin_mask((32, 32), np.random.default_rng(0), fg=np.ones((16, 16)))


@pytest.mark.parametrize("kwargs", [{"min_scale": 3, "max_scale": 3}, {"min_scale": -1}])
def test_bad_scales_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="min_scale"):
        perlin.perlin_mask((32, 32), np.random.default_rng(0), **kwargs)


class _FixedChoice:
    """Stand-in generator whose random() returns a fixed value (the combination draw)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(("choice", "expected"), [(0.9, "union"), (0.5, "intersection"), (0.1, "first")])
def test_combination_rule(monkeypatch: pytest.MonkeyPatch, choice: float, expected: str) -> None:
    first = np.array([[1, 1, 0, 0]], np.float32)
    second = np.array([[0, 1, 1, 0]], np.float32)
    maps = iter([first, second])
    monkeypatch.setattr(perlin, "thresholded_perlin", lambda *args: next(maps))
    mask = perlin.perlin_mask((1, 4), _FixedChoice(choice))
    want = {"union": [[1, 1, 1, 0]], "intersection": [[0, 1, 0, 0]], "first": [[1, 1, 0, 0]]}[expected]
    np.testing.assert_array_equal(mask, np.array(want, np.float32))


def test_noise_is_zero_on_lattice_points_and_bounded() -> None:
    rng = np.random.default_rng(6)
    noise = perlin.perlin_noise((64, 96), (4, 8), rng)
    assert noise.shape == (64, 96)
    lattice = noise[::16, ::12]  # 64/4 and 96/8 pixels per cell
    np.testing.assert_allclose(lattice, 0.0, atol=1e-6)
    assert np.abs(noise).max() <= 1.5
    assert noise.std() > 0.05


def test_noise_scale_controls_frequency() -> None:
    rng = np.random.default_rng(9)
    coarse = perlin.perlin_noise((128, 128), (1, 1), rng)
    fine = perlin.perlin_noise((128, 128), (32, 32), rng)
    roughness = [np.abs(np.diff(n, axis=1)).mean() for n in (coarse, fine)]
    assert roughness[1] > 5 * roughness[0]


def test_rotate_map_quarter_turn() -> None:
    left_half = np.zeros((31, 31), np.float32)
    left_half[:, :15] = 1
    np.testing.assert_array_equal(perlin.rotate_map(left_half, 0.0), left_half)
    rotated = perlin.rotate_map(left_half, 90.0)
    # OpenCV's positive angle is counter-clockwise: the left half moves to the bottom.
    assert rotated[20:, 5:26].min() == pytest.approx(1.0)
    assert rotated[:15].max() == pytest.approx(0.0)


def test_max_pool_mask_known_answer() -> None:
    mask = np.zeros((8, 8), np.float32)
    mask[1, 6] = 1
    mask[5, 2] = 1
    np.testing.assert_array_equal(perlin.max_pool_mask(mask, 4), np.array([[0, 1], [1, 0]], np.float32))
    assert perlin.max_pool_mask(np.ones((9, 10)), 4).shape == (2, 2)


def test_las_mask_pooled_non_empty_and_consistent() -> None:
    rng = np.random.default_rng(10)
    fg = np.zeros((64, 64), np.float32)
    fg[40:44, 40:44] = 1  # tiny foreground: forces redraws
    for _ in range(10):
        mask, pooled = perlin.las_mask((64, 64), rng, 8, fg)
        assert pooled.shape == (8, 8)
        assert pooled.max() == 1
        np.testing.assert_array_equal(pooled, perlin.max_pool_mask(mask, 8))
        assert mask[fg == 0].sum() == 0


def test_las_mask_empty_foreground_raises() -> None:
    with pytest.raises(ValueError, match="foreground mask is empty"):
        perlin.las_mask((32, 32), np.random.default_rng(0), 8, np.zeros((32, 32)))
