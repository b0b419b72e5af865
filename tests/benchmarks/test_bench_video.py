"""benchmarks/bench_video.py: one timed tracking run per frame size, with and without surface averaging."""
from __future__ import annotations

import importlib.util

import pytest

from tests.helpers import REPO

SCRIPT = REPO / "benchmarks" / "bench_video.py"


@pytest.fixture
def bench(monkeypatch):
    """The benchmark script as a module (benchmarks/ is a script folder; it imports its sibling bench_onnx)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_video", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(text: str) -> list[list[str]]:
    """The cells of the Markdown table's body rows."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


@pytest.mark.parametrize(("window", "thin"), [(1, ["image"]), (5, ["image", "map"])])
def test_table_row_per_size_with_frames_fps_and_the_true_motion(bench, tiny_model, capsys, window, thin):
    """A 96x64 and a 64x96 conveyor (1 px/frame): one row each (and each --frame_regions), the asked frames
    timed, a positive FPS, stage times that add up to no more than the frame time, and the measured belt motion
    within 0.3 px of the truth (the motion estimate does not depend on the model); with --surface_window 5 the
    averaging path."""
    code = bench.main(["--models", "lite0", "--backends", "torch", "--model_path", str(tiny_model.model_path),
                       "--class_name", tiny_model.class_name, "--texture", "gravel", "--sizes", "96x64", "64x96",
                       "--frames", "12", "--batch_size", "4", "--surface_window", str(window), "--frame_regions",
                       *thin])
    assert code == 0
    rows = _rows(capsys.readouterr().out)
    assert [(row[3], row[4]) for row in rows] == [(t, size) for size in ("96x64", "64x96") for t in thin]
    for row in rows:
        model, weights, backend, _, _, frames, fps, *stages = row
        assert (backend, frames) == ("torch", "12") and weights.startswith("trained")
        assert float(fps) > 0
        decode, score, render, write = (float(v) for v in stages[:4])
        assert min(decode, score, render, write) >= 0 and 1000.0 / float(fps) >= 0.9 * (decode + score + render + write)
        found, painted = (int(v) for v in row[-2].split(" / "))
        assert 0 <= found and 0 <= painted <= 4
        dx, true_dx = (float(v) for v in row[-1].split(" / "))
        assert true_dx == -1.0 and abs(dx - true_dx) < 0.3


def test_frame_size_parses_and_rejects_with_the_flag(bench):
    assert bench.frame_size("320x256") == (320, 256) and bench.frame_size("1280X720") == (1280, 720)
    with pytest.raises(SystemExit, match="--sizes 320-256"):
        bench.frame_size("320-256")
