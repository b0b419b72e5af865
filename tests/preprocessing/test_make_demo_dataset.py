"""Tests for preprocessing.make_demo_dataset (layout, determinism, skip/rebuild) and the shell scripts."""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from preprocessing.make_demo_dataset import (
    CLASS_PHOTOS,
    MARKER_NAME,
    TEXTURE_PHOTOS,
    DemoDatasetConfig,
    build_demo_dataset,
    is_complete,
    main,
)
from tests.helpers import REPO

SHELL_SCRIPTS = ("run-mvtec.sh", "run-visa.sh", "run-mpdd.sh", "run-wfdd.sh", "run-mad-man.sh",
                 "run-mad-sys.sh", "run-custom.sh", "run-custom-training.sh", "run-demo.sh")
TINY = DemoDatasetConfig(classes=("brick", "grass"), n_train=3, n_test_good=2, n_test_defect=3, size=64,
                         textures_per_category=2)


def _files(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file under root."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny build shared by the read-only tests."""
    output = tmp_path_factory.mktemp("demo")
    result = build_demo_dataset(output, TINY)
    assert result.built and result.mvtec_root == output / "mvtec"
    return output


def test_mvtec_layout_is_complete(tiny_build: Path) -> None:
    for name in TINY.classes:
        root = tiny_build / "mvtec" / name
        train = sorted((root / "train" / "good").glob("*.png"))
        good = sorted((root / "test" / "good").glob("*.png"))
        assert len(train) == 3 and len(good) == 2
        assert cv2.imread(str(train[0])).shape == (64, 64, 3)
        defect_dirs = sorted(p.name for p in (root / "test").iterdir() if p.name != "good")
        assert defect_dirs == sorted(TINY.defect_types[:3])
        defective = sorted((root / "test").glob("[!g]*/*.png"))
        assert len(defective) == 3
        for image_path in defective:
            mask_path = root / "ground_truth" / image_path.parent.name / f"{image_path.stem}_mask.png"
            mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
            assert mask is not None, f"missing {mask_path}"
            assert mask.shape == (64, 64) and set(np.unique(mask)) == {0, 255}
        # Training images are distinct views, not copies.
        first, second = (cv2.imread(str(p)) for p in train[:2])
        assert not np.array_equal(first, second)


def test_dtd_folder_holds_other_photos(tiny_build: Path) -> None:
    images = tiny_build / "dtd" / "images"
    assert sorted(p.name for p in images.iterdir()) == sorted(TEXTURE_PHOTOS)
    for category in TEXTURE_PHOTOS:
        jpgs = sorted((images / category).glob("*.jpg"))
        assert len(jpgs) == 2
        assert cv2.imread(str(jpgs[0])).shape == (64, 64, 3)
    assert not set(TEXTURE_PHOTOS.values()) & set(CLASS_PHOTOS.values())


def test_marker_lists_every_file(tiny_build: Path) -> None:
    recorded = json.loads((tiny_build / MARKER_NAME).read_text())
    on_disk = set(_files(tiny_build)) - {MARKER_NAME}
    assert set(recorded["files"]) == on_disk
    assert is_complete(tiny_build, TINY)


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, tiny_build: Path) -> None:
    build_demo_dataset(tmp_path / "again", TINY)
    assert _files(tmp_path / "again") == _files(tiny_build)
    other = replace(TINY, seed=1, classes=("brick",))
    build_demo_dataset(tmp_path / "other", other)
    path = "mvtec/brick/train/good/000.png"
    assert (tmp_path / "other" / path).read_bytes() != (tiny_build / path).read_bytes()


def test_complete_build_is_skipped_and_incomplete_rebuilt(tmp_path: Path) -> None:
    output = tmp_path / "demo"
    assert build_demo_dataset(output, TINY).built
    sample = output / "mvtec" / "grass" / "train" / "good" / "001.png"
    stamp = sample.stat().st_mtime_ns
    assert not build_demo_dataset(output, TINY).built
    assert sample.stat().st_mtime_ns == stamp
    sample.unlink()  # a lost file makes the build incomplete
    assert not is_complete(output, TINY)
    assert build_demo_dataset(output, TINY).built and sample.is_file()
    (output / MARKER_NAME).unlink()  # an interrupted build has no marker
    assert build_demo_dataset(output, TINY).built
    assert build_demo_dataset(output, TINY, force=True).built
    bigger = replace(TINY, n_train=4)
    assert not is_complete(output, bigger)
    assert build_demo_dataset(output, bigger).built
    assert len(list((output / "mvtec" / "brick" / "train" / "good").glob("*.png"))) == 4


def test_rebuild_leaves_unrelated_files_alone(tmp_path: Path) -> None:
    output = tmp_path / "demo"
    keep = output / "notes.txt"
    output.mkdir()
    keep.write_text("mine")
    build_demo_dataset(output, TINY)
    build_demo_dataset(output, TINY, force=True)
    assert keep.read_text() == "mine"


def test_bad_settings_raise_value_error() -> None:
    with pytest.raises(ValueError, match="--classes"):
        DemoDatasetConfig(classes=("carpet",))
    with pytest.raises(ValueError, match="--train"):
        DemoDatasetConfig(n_train=0)
    with pytest.raises(ValueError, match="--size"):
        DemoDatasetConfig(size=16)


def test_cli_builds_and_rejects_bad_flags(tmp_path: Path) -> None:
    output = tmp_path / "cli"
    args = ["--output", str(output), "--classes", "gravel", "--train", "2", "--test_good", "1",
            "--test_defect", "1", "--size", "48", "--textures", "1"]
    assert main(args) == 0
    assert (output / "mvtec" / "gravel" / "test" / "scratch" / "000.png").is_file()
    assert main(["--output", str(tmp_path / "bad"), "--classes", "carpet"]) == 2
    assert main(["--output", str(tmp_path / "bad"), "--test_defect", "0"]) == 2


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shell_script_is_valid_bash(script: str) -> None:
    path = REPO / "shell" / script
    text = path.read_text()
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert "\ndatapath=" in text and "\naugpath=" in text
    assert 'cd "$(dirname "$0")/.."' in text
    assert "main.py" in text
