"""Tests for the manifold/hypersphere judge and the distribution table."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import pytest
from skimage import data

from datasets.base import DatasetError
from datasets.distribution import (
    HYPERSPHERE,
    MANIFOLD,
    bright_frequencies,
    circle_area,
    classify_points,
    judge_distribution,
    mean_training_image,
    read_table,
    resolve_svd,
    write_table,
)

SIZE = 288


def _mean(images: list[np.ndarray]) -> np.ndarray:
    """uint8 mean of a list of HxWx3 images."""
    return (np.stack(images).astype(np.float64).mean(axis=0)).astype(np.uint8)


def brick_texture_mean(count: int = 8, seed: int = 0) -> np.ndarray:
    """Mean of randomly shifted crops of a brick texture: what a texture class averages to."""
    brick = data.brick()
    rng = np.random.default_rng(seed)
    crops = []
    for y, x in rng.integers(0, brick.shape[0] - SIZE, size=(count, 2)):
        crops.append(np.repeat(brick[y:y + SIZE, x:x + SIZE, None], 3, axis=2))
    return _mean(crops)


def centred_object_mean(count: int = 6, seed: int = 0) -> np.ndarray:
    """Mean of jittered copies of a dark ring ('bottle seen from above') centred on a light background."""
    rng = np.random.default_rng(seed)
    images = []
    for dy, dx in rng.integers(-4, 5, size=(count, 2)):
        img = np.full((SIZE, SIZE, 3), 235, np.uint8)
        centre = (SIZE // 2 + int(dx), SIZE // 2 + int(dy))
        cv2.circle(img, centre, 75, (20, 20, 20), -1)
        cv2.circle(img, centre, 37, (235, 235, 235), -1)
        images.append(img)
    return _mean(images)


def test_texture_mean_is_manifold() -> None:
    assert judge_distribution(brick_texture_mean()) == MANIFOLD


def test_aligned_object_mean_is_hypersphere() -> None:
    assert judge_distribution(centred_object_mean()) == HYPERSPHERE


def test_flat_image_is_manifold_with_only_dc() -> None:
    flat = np.full((SIZE, SIZE, 3), 128, np.uint8)
    points = bright_frequencies(flat)
    np.testing.assert_array_equal(points, [[0, 0]])
    assert judge_distribution(flat) == MANIFOLD


def test_judge_accepts_any_size() -> None:
    small = cv2.resize(centred_object_mean(), (150, 150))
    assert judge_distribution(small) in (MANIFOLD, HYPERSPHERE)
    assert bright_frequencies(small).shape[1] == 2


def _disc_points(radius: float) -> np.ndarray:
    """All lattice offsets within `radius` of the origin."""
    r = int(np.ceil(radius))
    ys, xs = np.mgrid[-r:r + 1, -r:r + 1]
    keep = ys**2 + xs**2 <= radius**2
    return np.stack([ys[keep], xs[keep]], axis=1)


def test_rule_known_answers() -> None:
    assert classify_points(_disc_points(15)) == HYPERSPHERE  # dense, R > 12, n > 60
    assert classify_points(_disc_points(10)) == MANIFOLD  # dense but R <= 12
    ring = _disc_points(30)
    sparse = ring[::8]  # n ~ 350, R ~ 30, density ~ 1/8 < 0.21
    assert classify_points(sparse) == MANIFOLD
    cross = np.array([[0, x] for x in range(-40, 41)] + [[y, 0] for y in range(-40, 41) if y])
    assert classify_points(cross) == MANIFOLD  # thin cross: n=161, R=40, densities tiny
    assert classify_points(np.zeros((0, 2), int)) == MANIFOLD


def test_circle_area_counts_lattice_points_and_clips_like_reference() -> None:
    assert circle_area(0) == 1
    assert circle_area(1) == 5
    assert circle_area(2) == 13
    # A radius beyond the centre (144) is clipped on the top/left of the reference's index grid:
    # count row by row only the offsets >= -144.
    expected = 0
    for dy in range(-144, 201):
        half = int(np.floor(np.sqrt(200**2 - dy**2)))
        expected += half - max(-144, -half) + 1
    assert circle_area(200) == expected
    assert circle_area(200) < np.pi * 200**2 * 0.9


def test_mean_training_image(tmp_path: Path) -> None:
    dark = np.zeros((40, 60, 3), np.uint8)
    light = np.full((40, 60, 3), 200, np.uint8)
    light[:, :, 2] = 100
    paths = []
    for i, img in enumerate((dark, light)):
        paths.append(tmp_path / f"{i}.png")
        PIL.Image.fromarray(img).save(paths[-1])
    mean = mean_training_image(paths, size=32)
    assert mean.shape == (32, 32, 3) and mean.dtype == np.uint8
    np.testing.assert_array_equal(mean[..., 0], 100)
    np.testing.assert_array_equal(mean[..., 2], 50)
    assert mean_training_image([str(p) for p in paths], size=32, crop=16).shape == (16, 16, 3)


def test_mean_training_image_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no training images"):
        mean_training_image([])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=str(bad)):
        mean_training_image([bad])


def test_table_round_trip_is_atomic(tmp_path: Path) -> None:
    table = tmp_path / "sub" / "mvtec_distribution.csv"
    rows = {"mvtec_bottle": 1, "mvtec_carpet": 0, "mvtec_zipper": 1}
    write_table(table, rows)
    assert read_table(table) == rows
    assert table.read_text().splitlines()[0] == "Class,Distribution"
    write_table(table, {"mvtec_bottle": 0})
    assert read_table(table) == {"mvtec_bottle": 0}
    assert [p.name for p in table.parent.iterdir()] == [table.name], "no temporary files left behind"


def test_read_table_accepts_reference_extra_column(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("Class,Distribution,Foreground\nvisa_candle,1.0,1\nvisa_pcb1,0,0\n")
    assert read_table(table) == {"visa_candle": 1, "visa_pcb1": 0}


@pytest.mark.parametrize(("content", "match"), [
    ("Class,Verdict\nx,1\n", "needs columns"),
    ("Class,Distribution\nx,2\n", "expected 0"),
])
def test_read_table_errors(tmp_path: Path, content: str, match: str) -> None:
    table = tmp_path / "t.csv"
    table.write_text(content)
    with pytest.raises(DatasetError, match=match) as info:
        read_table(table)
    assert str(table) in str(info.value) and "\n" not in str(info.value)


def test_read_table_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="--distribution 1"):
        read_table(tmp_path / "missing.csv")


class _Judge:
    """Counting judge returning a fixed verdict."""

    def __init__(self, verdict: int) -> None:
        self.verdict = verdict
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.verdict


@pytest.fixture()
def table(tmp_path: Path) -> Path:
    path = tmp_path / "mvtec_distribution.csv"
    write_table(path, {"mvtec_bottle": 1, "mvtec_carpet": 0})
    return path


def test_mode0_reads_table(table: Path) -> None:
    judge = _Judge(0)
    svd, how = resolve_svd(0, table, "mvtec_bottle", judge)
    assert (svd, judge.calls) == (1, 0)
    assert "read from" in how and str(table) in how


def test_mode0_without_entry_falls_back_to_judge_and_saves(table: Path) -> None:
    judge = _Judge(1)
    svd, how = resolve_svd(0, table, "mvtec_screw", judge)
    assert (svd, judge.calls) == (1, 1)
    assert "fell back to the spectral judge" in how
    assert read_table(table) == {"mvtec_bottle": 1, "mvtec_carpet": 0, "mvtec_screw": 1}


def test_mode0_without_table_file_judges(tmp_path: Path) -> None:
    table = tmp_path / "none.csv"
    svd, how = resolve_svd(0, table, "wfdd_grid_cloth", _Judge(0))
    assert svd == 0 and "no entry" in how
    assert read_table(table) == {"wfdd_grid_cloth": 0}


def test_mode1_judges_and_overwrites_entry(table: Path) -> None:
    judge = _Judge(0)
    svd, how = resolve_svd(1, table, "mvtec_bottle", judge)
    assert (svd, judge.calls) == (0, 1)
    assert "spectral judge" in how
    assert read_table(table) == {"mvtec_bottle": 0, "mvtec_carpet": 0}


@pytest.mark.parametrize(("mode", "expected"), [(2, 0), (3, 1)])
def test_forced_modes_do_not_judge_or_touch_table(table: Path, mode: int, expected: int) -> None:
    before = table.read_text()
    judge = _Judge(1 - expected)
    svd, how = resolve_svd(mode, table, "mvtec_bottle", judge)
    assert (svd, judge.calls) == (expected, 0)
    assert f"--distribution {mode}" in how
    assert table.read_text() == before


@pytest.mark.parametrize(("key", "expected"), [("mvtec_bottle", 0), ("mvtec_carpet", 1)])
def test_mode4_is_opposite_of_table(table: Path, key: str, expected: int) -> None:
    judge = _Judge(1)
    svd, how = resolve_svd(4, table, key, judge)
    assert (svd, judge.calls) == (expected, 0)
    assert "opposite" in how


def test_mode4_without_entry_judges(table: Path) -> None:
    svd, how = resolve_svd(4, table, "mvtec_pill", _Judge(1))
    assert svd == 1 and "spectral judge" in how


def test_unknown_mode_raises(table: Path) -> None:
    with pytest.raises(DatasetError, match="--distribution"):
        resolve_svd(5, table, "mvtec_bottle", _Judge(1))
