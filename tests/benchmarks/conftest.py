"""Fixtures of the benchmark scripts' tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from preprocessing import create_conveyor_video as conveyor


@pytest.fixture(scope="module")
def belt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small 96x64 gravel conveyor with two painted defects, and its sidecar."""
    folder = tmp_path_factory.mktemp("belt")
    cfg = conveyor.ConveyorConfig(texture="gravel", size=64, speed=8, defects=2, seed=3, width=96)
    conveyor.create_conveyor_video(folder / "belt.mp4", cfg)
    return folder / "belt.mp4"
