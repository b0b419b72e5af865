"""benchmarks/bench_temporal.py: the ConvLSTM autoencoder flags a belt that stops, then jerks (slow: trains on CPU)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO


@pytest.mark.slow
def test_convlstm_flags_a_stopped_then_jerking_belt(tmp_path):
    """A shortened benchmark run (gravel, fewer frames and epochs): frame AUROC >= 0.9 against the sidecar
    truth, at most 5 % false alarms on the normal frames of the test video and of a new normal video."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "benchmarks/bench_temporal.py", "--cases", "gravel", "--train_frames",
                           "300", "--test_frames", "200", "--epochs", "3", "--quiet", "--out", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {row["video"]: row for row in json.loads((tmp_path / "bench_temporal.json").read_text())}
    assert rows["stop_jerk"]["frame_auroc"] >= 0.9, rows
    assert rows["stop_jerk"]["false_alarm_rate"] <= 0.05 and rows["normal"]["false_alarm_rate"] <= 0.05, rows
    assert "| gravel 3 px/f | stop_jerk |" in done.stdout
