"""benchmarks/scale_out_model.py: longest-first packing with known answers, the per-class time formula, the table."""
from __future__ import annotations

import importlib.util
import sys

import pytest

import errors
from tests.helpers import REPO

SCRIPT = REPO / "benchmarks" / "scale_out_model.py"


@pytest.fixture(scope="module")
def model():
    """The script as a module (benchmarks/ is a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location("scale_out_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look the module up there
    spec.loader.exec_module(module)
    return module


def test_longest_first_packing_known_answers(model):
    times = {"a": 7.0, "b": 5.0, "c": 4.0, "d": 3.0, "e": 1.0}
    packed = model.pack_longest_first(times, 2)
    assert packed == [["a", "d"], ["b", "c", "e"]] and model.makespan(times, packed) == 10.0  # optimal here
    # LPT's textbook miss: 3+3 | 2+2+2 takes 6, longest first takes 7 (what scale_out's start order gives)
    times = {"p": 3.0, "q": 3.0, "r": 2.0, "s": 2.0, "t": 2.0}
    assert model.makespan(times, model.pack_longest_first(times, 2)) == 7.0
    assert model.pack_longest_first(times, 8)[5:] == [[], [], []]  # more devices than jobs: some idle


def test_batches_and_class_seconds_follow_the_training_loop(model):
    costs = model.Costs(s_per_batch=1.0, s_per_image=0.5, epochs=2)
    assert model.batches_per_epoch(391, costs) == 44  # hazelnut: 39 held out, 352 in batches of 8
    assert model.batches_per_epoch(60, costs) == 7  # toothbrush: 8 held out, 52
    assert model.batches_per_epoch(1000, costs) == 50  # --limit 392: the batch that passes 392 is the last
    # 20 images: 8 held out, 12 train in 2 batches; 4 test images every epoch; 24 images once
    assert model.class_seconds(20, 4, costs) == 2 * (2 * 1.0 + 4 * 0.5) + 24 * 0.5


def test_table_says_it_is_a_model_with_speedups_within_the_bound(model, capsys):
    assert model.main([]) == 0
    out = capsys.readouterr().out
    assert "A MODEL, NOT A MEASUREMENT" in out and "hazelnut" in out
    rows = [line.split() for line in out.splitlines() if line.strip().split(" ")[0] in ("1", "4", "8")]
    assert [row[0] for row in rows] == ["1", "4", "8"]
    for row in rows:
        devices, wall, bound, speedup = int(row[0]), float(row[1]), float(row[2]), float(row[3].rstrip("x"))
        assert bound <= wall and 1.0 <= speedup <= devices


def test_measured_times_from_a_csv_and_a_bad_one(model, tmp_path, capsys):
    good = tmp_path / "times.csv"
    good.write_text("class,seconds\nx,7200\ny,3600\nz,3600\n")
    assert model.main(["--times", str(good), "--devices", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "      2            2.0" in out  # x alone, y + z together: 2 h
    bad = tmp_path / "bad.csv"
    bad.write_text("name,hours\nx,2\n")
    assert errors.run_script(lambda: model.main(["--times", str(bad)])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]
