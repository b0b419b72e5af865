"""Files and folders every command shares: which files are images, where a file's JSON sidecar lies,
and output folders checked writable before any work.

A module of its own (not utils, not video_io) because datasets, the ONNX scripts, the video
generators and the inference runner all need these, and none of them should import another's
module for them.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

# Suffixes (lower case) of the image files the toolkit reads; OpenCV and PIL both read all of them.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SIDECAR_SUFFIX = ".json"


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON file that describes a file, beside it: its name plus '.json' (clip.mp4 -> clip.mp4.json,
    glass.onnx -> glass.onnx.json)."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def make_writable_folder(folder: Path) -> list[Path]:
    """Creates `folder` (with its parents) and checks that a file can be written in it; returns the folders
    it created. OSError when either fails; the folders it created are removed again then."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        remove_empty_folders(missing)
        raise
    return missing


def remove_empty_folders(folders: Iterable[Path]) -> None:
    """Removes those of the folders that are empty, deepest first (others, and missing ones, stay as they are)."""
    for folder in sorted(set(folders), key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:  # not empty, or gone
            pass
