"""benchmarks/bench_fidelity.py: the comparison table's arithmetic and its one-line errors."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.helpers import REPO


SCRIPT = REPO / "benchmarks" / "bench_fidelity.py"


@pytest.fixture(scope="module")
def bench():
    """The benchmark script as a module (benchmarks/ is a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_fidelity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(image: float, pixel: float, pro: float, seconds: float) -> dict:
    return {"image_auroc": image, "pixel_auroc": pixel, "pixel_pro": pro, "seconds_per_epoch": seconds,
            "stages": {"all": seconds}}


def test_summary_deltas_in_points_and_speed_ratio(bench):
    runs = {
        0: {"official": {"a": _result(0.90, 0.80, 0.70, 30.0), "b": _result(0.80, 0.70, 0.60, 20.0)},
            "ours": {"a": _result(0.92, 0.85, 0.70, 10.0), "b": _result(0.70, 0.70, 0.65, 10.0)}},
        1: {"official": {"a": _result(0.90, 0.80, 0.70, 30.0), "b": _result(0.80, 0.70, 0.60, 20.0)},
            "ours": {"a": _result(0.88, 0.85, 0.70, 15.0), "b": _result(0.80, 0.70, 0.65, 10.0)}},
    }
    table, summary = bench.summarise(runs, ["a", "b"])
    # a: image deltas +2, -2 -> 0; b: -10, 0 -> -5; mean -2.5 points
    assert summary["image_auroc"] == pytest.approx(-2.5)
    assert summary["pixel_auroc"] == pytest.approx(2.5)
    assert summary["pixel_pro"] == pytest.approx(2.5)
    assert summary["worst_class_delta"]["image_auroc"] == pytest.approx(-5.0)
    # ratios: a 3x and 2x -> 2.5; b 2x and 2x -> 2; mean 2.25
    assert summary["ratio"] == pytest.approx(2.25)
    assert "| a | 0 | 90.0 / 80.0 / 70.0 | 92.0 / 85.0 / 70.0 | +2.0 / +5.0 / +0.0 | 30.0 / 10.0 | 3.00x |" in table


@pytest.mark.parametrize("args, needle", [
    (["--data_path", "/no/such/folder", "--aug_path", "/no/such/folder"], "--data_path"),
    (["--data_path", "/tmp"], "--aug_path"),
    (["--runner", "/no/such/runner.py"], "--runner"),
])
def test_bad_flags_exit_2_with_one_line(args, needle):
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert done.returncode == 2
    lines = [line for line in done.stderr.strip().splitlines() if line]
    assert needle in lines[-1] and "Traceback" not in done.stderr


def test_epochs_after_the_first_give_a_second_ratio(bench):
    def with_epochs(seconds: list[float]) -> dict:
        result = _result(0.9, 0.8, 0.7, sum(seconds) / len(seconds))
        result["steady_seconds_per_epoch"] = bench.steady(seconds)
        return result

    runs = {0: {"official": {"a": with_epochs([40.0, 30.0, 30.0])}, "ours": {"a": with_epochs([25.0, 10.0, 10.0])}}}
    table, summary = bench.summarise(runs, ["a"])
    assert summary["ratio"] == pytest.approx(100.0 / 3 / 15.0)  # all epochs: 33.3 s vs 15 s
    assert summary["steady_ratio"] == pytest.approx(3.0)  # epochs 2 and 3: 30 s vs 10 s
    assert "| 30.0 / 10.0 | 3.00x |" in table
    assert bench.steady([12.0]) is None  # one epoch: no steady figure, and no steady column values
    one = {0: {"official": {"a": with_epochs([40.0])}, "ours": {"a": with_epochs([20.0])}}}
    table, summary = bench.summarise(one, ["a"])
    assert "steady_ratio" not in summary and "| 2.00x | – | – |" in table
