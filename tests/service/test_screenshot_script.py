"""docs/make_service_screenshot.py (README's picture of the page): bad input is a one-line error, exit 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_missing_image_is_a_one_line_error(tmp_path: Path) -> None:
    """A missing --image stops before any service or browser starts."""
    done = subprocess.run([sys.executable, str(REPO / "docs" / "make_service_screenshot.py"), "--results_path",
                           str(tmp_path), "--model_id", "models/x", "--image", str(tmp_path / "no.png")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {tmp_path / 'no.png'}: file not found"
