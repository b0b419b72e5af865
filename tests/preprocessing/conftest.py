"""Fixtures of the preprocessing tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_tiny_mvtec


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """<tmp>/mvtec holding class 'toy' (test: good x3, blob x3 with masks; 64 px)."""
    return write_tiny_mvtec(tmp_path)[0]
