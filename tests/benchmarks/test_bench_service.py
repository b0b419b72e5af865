"""benchmarks/bench_service.py: a short load test of the started service on the tiny model."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import REPO


def test_a_short_load_test_answers_every_request(tiny_model, tmp_path):
    results = tiny_model.model_path.parent.parent
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "benchmarks/bench_service.py", "--results_path", str(results),
                           "--model_id", "models/backbone_0/mvtec_toy", "--images",
                           str(tiny_model.data_path / "toy" / "test"), "--clients", "1", "3", "--requests", "9",
                           "--backend", "torch", "--time_limit", "120", "--out", str(tmp_path / "rows.json")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [(r["clients"], r["requests"], r["errors"], r["left_out"]) for r in rows] == [(1, 9, 0, 0), (3, 9, 0, 0)]
    assert all(r["requests_per_s"] > 0 and 0 < r["p50_ms"] <= r["p95_ms"] for r in rows)
    assert "| clients | requests | errors | wall s | requests/s | p50 ms | p95 ms |" in done.stdout
    assert "| 3 | 9 | 0 |" in done.stdout


def test_a_missing_results_folder_is_one_line_and_exit_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "benchmarks/bench_service.py", "--results_path", str(tmp_path / "no"),
                           "--model_id", "x"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.strip() == f"error: --results_path {tmp_path / 'no'}: folder not found"
