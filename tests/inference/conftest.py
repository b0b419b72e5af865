"""Fixtures of the inference tests: the 8-frame clip of the tiny model's test images."""
from __future__ import annotations

from pathlib import Path

import cv2
import pytest

import video_io
from tests.helpers import CLIP_SIZE, CLIP_SOURCES


@pytest.fixture(scope="module")
def clip(tiny_model, tmp_path_factory) -> Path:
    """An 8-frame 64 px MP4 of the tiny model's test images (3 defective) with its sidecar JSON."""
    folder = tmp_path_factory.mktemp("clip")
    path = folder / "clip.mp4"
    test_dir = tiny_model.data_path / "toy" / "test"
    records = []
    with video_io.AtomicVideoWriter(path, 10.0, (CLIP_SIZE, CLIP_SIZE)) as writer:
        for index, name in enumerate(CLIP_SOURCES):
            source = test_dir / f"{name}.png"
            writer.write(cv2.imread(str(source)))
            label = name.split("/")[0]
            records.append(video_io.FrameRecord(index, str(source), label, label != "good"))
    video_io.write_sidecar(path, video_io.make_sidecar(path, 10.0, (CLIP_SIZE, CLIP_SIZE), records, {"test": True}))
    return path
