"""Tests for preprocessing.defect_simulator: masks, locality, area, determinism, errors, CLI."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from preprocessing.defect_simulator import DEFECT_TYPES, DefectParams, main, simulate_defect


@pytest.fixture(scope="module")
def surface() -> np.ndarray:
    """A real 128x128 RGB texture crop (bundled gravel photo)."""
    return np.ascontiguousarray(np.repeat(skimage.data.gravel()[100:228, 200:328, None], 3, axis=2))


@pytest.mark.parametrize("defect_type", DEFECT_TYPES)
def test_defect_changes_only_inside_a_bounded_mask(surface: np.ndarray, defect_type: str) -> None:
    original = surface.copy()
    defective, mask = simulate_defect(surface, defect_type, np.random.default_rng(3))
    assert defective.shape == surface.shape and defective.dtype == np.uint8
    assert mask.shape == surface.shape[:2] and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 255}
    np.testing.assert_array_equal(surface, original)  # input untouched
    changed = np.any(defective != surface, axis=2)
    inside = mask > 0
    assert not np.any(changed & ~inside), "pixels changed outside the mask"
    area = inside.mean()
    assert 0.001 <= area <= 0.05
    # Visible: most of the mask really changed, by a clear amount on average.
    assert changed[inside].mean() > 0.5
    difference = np.abs(defective.astype(int) - surface.astype(int)).max(axis=2)
    assert difference[inside].mean() > 10


@pytest.mark.parametrize("defect_type", DEFECT_TYPES)
def test_area_bounds_hold_over_many_draws(surface: np.ndarray, defect_type: str) -> None:
    rng = np.random.default_rng(11)
    small = cv2.resize(surface, (96, 96), interpolation=cv2.INTER_AREA)
    for _ in range(8):
        defective, mask = simulate_defect(small, defect_type, rng)
        fraction = np.count_nonzero(mask) / mask.size
        assert 0.001 <= fraction <= 0.05
        assert not np.any(np.any(defective != small, axis=2) & (mask == 0))


@pytest.mark.parametrize("defect_type", DEFECT_TYPES)
def test_same_seed_same_defect_other_seed_other_defect(surface: np.ndarray, defect_type: str) -> None:
    first = simulate_defect(surface, defect_type, np.random.default_rng(5))
    again = simulate_defect(surface, defect_type, np.random.default_rng(5))
    other = simulate_defect(surface, defect_type, np.random.default_rng(6))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_grayscale_input_gives_rgb_output(surface: np.ndarray) -> None:
    gray = np.ascontiguousarray(surface[..., 0])
    defective, mask = simulate_defect(gray, "stain", np.random.default_rng(0))
    assert defective.shape == (*gray.shape, 3)
    outside = mask == 0
    np.testing.assert_array_equal(defective[outside][:, 1], gray[outside])


def test_non_square_image_keeps_defect_in_bounds() -> None:
    image = np.full((80, 200, 3), 128, np.uint8)
    for defect_type in DEFECT_TYPES:
        defective, mask = simulate_defect(image, defect_type, np.random.default_rng(2))
        assert mask.shape == (80, 200) and np.count_nonzero(mask) > 0
        assert np.any(defective != image)


def test_bad_requests_raise_value_error(surface: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown"):
        simulate_defect(surface, "dent", rng)
    with pytest.raises(ValueError, match="uint8"):
        simulate_defect(surface.astype(np.float32), "hole", rng)
    with pytest.raises(ValueError, match="shape"):
        simulate_defect(surface[..., :2], "hole", rng)
    with pytest.raises(ValueError, match="too small"):
        simulate_defect(surface[:8, :8], "hole", rng)
    with pytest.raises(ValueError, match="hole_radius"):
        DefectParams(hole_radius=(0.2, 0.1))


def test_cli_writes_mvtec_style_defects(tmp_path: Path, surface: np.ndarray) -> None:
    source = tmp_path / "good"
    source.mkdir()
    for index in range(3):
        cv2.imwrite(str(source / f"img{index}.png"), np.roll(surface, 10 * index, axis=1))
    output = tmp_path / "out"
    assert main(["--input", str(source), "--output", str(output), "--types", "crack", "hole"]) == 0
    assert sorted(p.name for p in (output / "test" / "crack").iterdir()) == ["img0.png", "img2.png"]
    assert sorted(p.name for p in (output / "test" / "hole").iterdir()) == ["img1.png"]
    mask = cv2.imread(str(output / "ground_truth" / "hole" / "img1_mask.png"), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == surface.shape[:2] and mask.max() == 255


def test_cli_bad_input_exits_2(tmp_path: Path) -> None:
    assert main(["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--types", "dent"]) == 2
    assert main(["--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2  # no images
    assert main(["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "o")]) == 2
