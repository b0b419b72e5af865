"""The offline demo end to end (slow: about 10 minutes on 2 cores; run with `pytest -m slow`)."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_run_demo_reaches_image_auroc_090_on_every_class(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "DEMO_ROOT": str(tmp_path / "demo_data"),
           "RESULTS": str(tmp_path / "results")}
    proc = subprocess.run(["bash", "shell/run-demo.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=3600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "results" / "results.csv", newline="") as handle:
        rows = {row["class"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"mvtec_brick", "mvtec_gravel", "mvtec_grass", "Mean"}
    for name in ("mvtec_brick", "mvtec_gravel", "mvtec_grass"):
        assert float(rows[name]["image_auroc"]) >= 0.90, rows[name]
        assert rows[name]["selection"] == "last"
    assert "image_auroc" in proc.stdout  # the table is printed
