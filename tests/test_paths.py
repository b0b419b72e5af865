"""paths.py: image suffixes, a file's JSON sidecar, output folders checked writable before any work."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import paths
from datasets.base import list_images, load_image


def test_sidecar_is_the_file_name_plus_json(tmp_path):
    assert paths.sidecar_path(tmp_path / "clip.mp4") == tmp_path / "clip.mp4.json"
    assert paths.sidecar_path("models/glass.onnx") == Path("models/glass.onnx.json")


def test_webp_images_are_listed_and_read(tmp_path):
    image = np.full((8, 12, 3), (10, 20, 30), np.uint8)  # BGR
    assert cv2.imwrite(str(tmp_path / "a.webp"), image, [cv2.IMWRITE_WEBP_QUALITY, 101])  # 101: lossless
    cv2.imwrite(str(tmp_path / "b.PNG"), image)
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in list_images(tmp_path)] == ["a.webp", "b.PNG"]
    assert np.asarray(load_image(tmp_path / "a.webp", "RGB")).tolist() == [[[30, 20, 10]] * 12] * 8  # RGB


def test_make_writable_folder_returns_the_folders_it_created(tmp_path):
    (tmp_path / "kept").mkdir()
    target = tmp_path / "kept" / "new" / "deeper"
    assert paths.make_writable_folder(target) == [target, target.parent]
    assert target.is_dir() and list(target.iterdir()) == []  # the probe file leaves nothing behind
    assert paths.make_writable_folder(target) == []  # already there


def test_make_writable_folder_fails_with_oserror_and_leaves_nothing(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        paths.make_writable_folder(tmp_path / "file" / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_make_writable_folder_refuses_a_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(PermissionError):
            paths.make_writable_folder(locked)
    finally:
        locked.chmod(0o700)


def test_remove_empty_folders_keeps_folders_with_files(tmp_path):
    full, empty = tmp_path / "full", tmp_path / "full" / "empty"
    empty.mkdir(parents=True)
    (full / "result.csv").write_text("x")
    paths.remove_empty_folders([full, empty, tmp_path / "never_made"])
    assert full.is_dir() and not empty.exists()
