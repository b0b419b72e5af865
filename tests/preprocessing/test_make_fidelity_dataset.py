"""Tests for preprocessing.make_fidelity_dataset (layout, masks, determinism, textures, CLI) and the
extra defect types of preprocessing.defect_simulator that it uses."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from preprocessing.defect_simulator import DEFECT_TYPES, EXTRA_DEFECT_TYPES, DefectParams, simulate_defect
from preprocessing.make_demo_dataset import CLASS_PHOTOS as DEMO_CLASS_PHOTOS
from preprocessing.make_demo_dataset import random_view
from preprocessing.make_fidelity_dataset import (
    CLASS_PHOTOS,
    DEFECTS,
    MARKER_NAME,
    TEXTURE_PHOTOS,
    FidelityDatasetConfig,
    build_fidelity_dataset,
    is_complete,
    load_class_photo,
    main,
)
from tests.helpers import REPO

KINDS = {kind.label: kind for kind in DEFECTS}
LABELS = sorted(KINDS)
TINY = FidelityDatasetConfig(classes=("moon", "cell"), n_train=2, n_test_good=2, n_test_defect=len(DEFECTS),
                             size=64, textures_per_category=1)


def _contents(root: Path) -> dict[str, bytes]:
    """Every file under root: relative POSIX path -> bytes."""
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny build shared by the read-only tests."""
    output = tmp_path_factory.mktemp("fidelity")
    result = build_fidelity_dataset(output, TINY)
    assert result.built and result.mvtec_root == output / "mvtec"
    assert result.dtd_images == output / "dtd" / "images"
    return output


def test_defaults_match_the_benchmark_settings() -> None:
    config = FidelityDatasetConfig()
    assert (config.n_train, config.n_test_good, config.n_test_defect, config.size) == (80, 30, 60, 256)
    assert len(config.classes) >= 4 and len(DEFECTS) == 6
    assert config.n_test_defect // len(DEFECTS) == 10
    assert not {spec.loader for spec in CLASS_PHOTOS.values()} & set(DEMO_CLASS_PHOTOS.values())
    # Two demo types at other sizes, and new shapes.
    assert {kind.defect_type for kind in DEFECTS} & set(DEFECT_TYPES)
    assert {kind.defect_type for kind in DEFECTS} >= set(EXTRA_DEFECT_TYPES)


def test_mvtec_layout_and_counts(tiny_build: Path) -> None:
    assert sorted(p.name for p in (tiny_build / "mvtec").iterdir()) == sorted(TINY.classes)
    for root in (tiny_build / "mvtec" / name for name in TINY.classes):
        train = sorted((root / "train" / "good").iterdir())
        assert [p.name for p in train] == ["000.png", "001.png"]
        assert [p.name for p in sorted((root / "test" / "good").iterdir())] == ["000.png", "001.png"]
        assert cv2.imread(str(train[0])).shape == (64, 64, 3)
        assert sorted(p.name for p in (root / "test").iterdir() if p.name != "good") == LABELS
        assert sorted(p.name for p in (root / "ground_truth").iterdir()) == LABELS
        for label in LABELS:
            assert [p.name for p in (root / "test" / label).iterdir()] == ["000.png"]
            assert [p.name for p in (root / "ground_truth" / label).iterdir()] == ["000_mask.png"]
        first, second = (cv2.imread(str(p)) for p in train)
        assert not np.array_equal(first, second)  # distinct views, not copies


def test_masks_are_binary_non_empty_and_match_their_images(tiny_build: Path) -> None:
    for name in TINY.classes:
        root = tiny_build / "mvtec" / name
        for label in LABELS:
            image = cv2.imread(str(root / "test" / label / "000.png"))
            mask = cv2.imread(str(root / "ground_truth" / label / "000_mask.png"), cv2.IMREAD_UNCHANGED)
            assert mask.dtype == np.uint8 and mask.shape == image.shape[:2] == (64, 64)
            assert set(np.unique(mask)) == {0, 255}, f"{name}/{label}: mask not 0/255 or empty"
            assert np.count_nonzero(mask) < mask.size * 0.5, f"{name}/{label}: mask covers most of the image"


def test_marker_lists_every_file(tiny_build: Path) -> None:
    recorded = json.loads((tiny_build / MARKER_NAME).read_text())
    assert set(recorded["files"]) == set(_contents(tiny_build)) - {MARKER_NAME}
    assert recorded["settings"]["dataset"] == "fidelity"
    assert is_complete(tiny_build, TINY)


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, tiny_build: Path) -> None:
    build_fidelity_dataset(tmp_path / "again", TINY)
    assert _contents(tmp_path / "again") == _contents(tiny_build)
    build_fidelity_dataset(tmp_path / "other", replace(TINY, seed=1, classes=("moon",)))
    for path in ("mvtec/moon/train/good/000.png", "mvtec/moon/test/bump/000.png", "dtd/images/brick/brick_000.jpg"):
        assert (tmp_path / "other" / path).read_bytes() != (tiny_build / path).read_bytes()


def test_each_class_has_its_own_random_stream(tmp_path: Path, tiny_build: Path) -> None:
    build_fidelity_dataset(tmp_path / "cell_only", replace(TINY, classes=("cell",)))
    alone = {k: v for k, v in _contents(tmp_path / "cell_only").items() if k.startswith("mvtec/")}
    together = {k: v for k, v in _contents(tiny_build).items() if k.startswith("mvtec/cell/")}
    assert alone == together


def test_texture_folder_holds_only_other_photos(tiny_build: Path) -> None:
    texture_root = tiny_build / "dtd" / "images"
    assert {p.name for p in texture_root.iterdir()} == set(TEXTURE_PHOTOS)
    for category in TEXTURE_PHOTOS:
        (only,) = (texture_root / category).iterdir()
        assert only.name == f"{category}_000.jpg" and cv2.imread(str(only)).shape == (64, 64, 3)
    class_loaders = {spec.loader for spec in CLASS_PHOTOS.values()}
    assert not set(TEXTURE_PHOTOS.values()) & class_loaders
    assert not set(TEXTURE_PHOTOS) & set(CLASS_PHOTOS)


def test_class_regions_avoid_the_black_retina_border() -> None:
    retina = load_class_photo("retina")
    assert np.mean(retina.max(axis=2) < 30) == 0  # no black border pixel in the region used
    for name in CLASS_PHOTOS:
        photo = load_class_photo(name)
        assert photo.dtype == np.uint8 and photo.ndim == 3 and min(photo.shape[:2]) >= 256


@pytest.fixture(scope="module")
def crops() -> dict[str, np.ndarray]:
    """One 96 px crop of every class photo."""
    rng = np.random.default_rng(0)
    return {name: random_view(load_class_photo(name), 96, spec.crop_fraction, 0.0, rng)
            for name, spec in CLASS_PHOTOS.items()}


@pytest.mark.parametrize("kind", DEFECTS, ids=lambda kind: kind.label)
def test_defects_change_pixels_only_where_the_mask_says(crops: dict[str, np.ndarray], kind) -> None:
    for name, crop in crops.items():
        original = crop.copy()
        defective, mask = simulate_defect(crop, kind.defect_type, np.random.default_rng(4), kind.params)
        np.testing.assert_array_equal(crop, original)  # input untouched
        assert defective.shape == crop.shape and set(np.unique(mask)) == {0, 255}
        changed = np.any(defective != crop, axis=2)
        inside = mask > 0
        assert not np.any(changed & ~inside), f"{name}/{kind.label}: pixels changed outside the mask"
        # The mask is (nearly) the changed pixels, not a loose halo around them.
        assert changed[inside].mean() > 0.75, f"{name}/{kind.label}: mask much larger than the change"
        area = inside.mean()
        assert kind.params.min_area_fraction <= area <= kind.params.max_area_fraction


@pytest.mark.parametrize("defect_type", EXTRA_DEFECT_TYPES)
def test_extra_types_are_deterministic(crops: dict[str, np.ndarray], defect_type: str) -> None:
    crop = crops["ihc"]
    first = simulate_defect(crop, defect_type, np.random.default_rng(9))
    again = simulate_defect(crop, defect_type, np.random.default_rng(9))
    other = simulate_defect(crop, defect_type, np.random.default_rng(10))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_sizes_differ_from_the_demo(crops: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(1)
    small = [np.count_nonzero(simulate_defect(crops["moon"], "hole", rng, KINDS["small_hole"].params)[1])
             for _ in range(4)]
    demo = [np.count_nonzero(simulate_defect(crops["moon"], "hole", rng)[1]) for _ in range(4)]
    large = [np.count_nonzero(simulate_defect(crops["moon"], "stain", rng, KINDS["large_stain"].params)[1])
             for _ in range(4)]
    assert max(small) < min(demo) and max(demo) < min(large)


def test_min_visible_change_trims_the_faint_fringe_only(crops: dict[str, np.ndarray]) -> None:
    large = replace(KINDS["large_stain"].params, max_area_fraction=0.5, min_visible_change=0.0)
    full = simulate_defect(crops["cell"], "stain", np.random.default_rng(0), large)
    trimmed = simulate_defect(crops["cell"], "stain", np.random.default_rng(0),
                              replace(large, min_visible_change=3.0))
    inside = trimmed[1] > 0
    assert np.all(full[1][inside] > 0) and 0 < np.count_nonzero(inside) < np.count_nonzero(full[1])
    np.testing.assert_array_equal(trimmed[0][inside], full[0][inside])  # same defect where it is kept
    assert not np.any(np.any(trimmed[0] != crops["cell"], axis=2) & ~inside)
    with pytest.raises(ValueError, match="min_visible_change"):
        DefectParams(min_visible_change=-1.0)


def test_complete_build_is_skipped_and_force_rebuilds(tmp_path: Path) -> None:
    config = replace(TINY, classes=("cell",), n_test_defect=1)
    output = tmp_path / "fid"
    assert build_fidelity_dataset(output, config).built
    sample = output / "mvtec" / "cell" / "train" / "good" / "001.png"
    stamp = sample.stat().st_mtime_ns
    assert not build_fidelity_dataset(output, config).built
    assert sample.stat().st_mtime_ns == stamp
    sample.unlink()
    assert not is_complete(output, config)
    assert build_fidelity_dataset(output, config).built and sample.is_file()
    assert build_fidelity_dataset(output, config, force=True).built
    assert not is_complete(output, replace(config, n_train=3))


def test_bad_settings_raise_value_error() -> None:
    with pytest.raises(ValueError, match="--classes"):
        FidelityDatasetConfig(classes=("brick",))
    with pytest.raises(ValueError, match="--classes"):
        FidelityDatasetConfig(classes=("moon", "moon"))
    with pytest.raises(ValueError, match="--test_defect"):
        FidelityDatasetConfig(n_test_defect=0)
    with pytest.raises(ValueError, match="--size"):
        FidelityDatasetConfig(size=16)
    with pytest.raises(ValueError, match="--seed"):
        FidelityDatasetConfig(seed=-1)
    with pytest.raises(ValueError, match="defects"):
        FidelityDatasetConfig(defects=(DEFECTS[0], DEFECTS[0]))


def test_cli_builds_a_subset(tmp_path: Path) -> None:
    output = tmp_path / "cli"
    args = ["--output", str(output), "--classes", "retina", "--train", "1", "--test_good", "1",
            "--test_defect", "2", "--size", "48", "--textures", "1"]
    assert main(args) == 0
    assert sorted(p.name for p in (output / "mvtec").iterdir()) == ["retina"]
    assert (output / "mvtec" / "retina" / "test" / DEFECTS[1].label / "000.png").is_file()


@pytest.mark.parametrize(("args", "flag"), [
    (["--train", "0"], "--train"),
    (["--test_good", "-2"], "--test_good"),
    (["--classes", "brick"], "--classes"),
    (["--size", "abc"], "--size"),
    (["--seed", "-1"], "--seed"),
    (["--test_defect", "1.5"], "--test_defect"),
])
def test_cli_bad_flag_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        args: list[str], flag: str) -> None:
    assert main(["--output", str(tmp_path / "bad"), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0]
    assert not (tmp_path / "bad").exists()


def test_script_exits_2_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "preprocessing" / "make_fidelity_dataset.py"),
                             "--output", str(tmp_path / "bad"), "--train", "0"],
                            capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: --train") and "Traceback" not in result.stderr
