"""Faults around the results folder: results.csv is merged (other classes kept, concurrent runs take turns,
a killed run leaves a whole table), every output has the umask's mode, bad images stop before any folder."""
from __future__ import annotations

import csv
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import main
import utils
from datasets import distribution
from model import load_checkpoint
from tests.helpers import REPO, dataset_args, net_args, write_tiny_mvtec

HEADER = ",".join(utils.RESULTS_FIELDS)


def old_row(cls: str, value: str, selection: str = "last") -> str:
    return ",".join(["glass", cls, *[value] * len(utils.METRIC_NAMES), "3", selection])


def read_rows(results: Path) -> dict[str, dict[str, str]]:
    with open(results / "results.csv", newline="") as handle:
        return {row["class"]: row for row in csv.DictReader(handle)}


def assert_mean_consistent(rows: dict[str, dict[str, str]]) -> None:
    classes = [r for c, r in rows.items() if c != "Mean"]
    for name in utils.METRIC_NAMES:
        assert float(rows["Mean"][name]) == round(float(np.mean([float(r[name]) for r in classes])), 4)


def results_with_models(tmp_path: Path, tiny_model, classes: tuple[str, ...], **data_kw) -> tuple[Path, Path, Path]:
    """A results folder holding the session's tiny model once per class, and an MVTec dataset of those classes."""
    data, aug = write_tiny_mvtec(tmp_path, classes=classes, **data_kw)
    results = tmp_path / "results"
    for cls in classes:
        shutil.copytree(tiny_model.class_dir, results / "models" / "backbone_0" / f"mvtec_{cls}",
                        ignore=shutil.ignore_patterns("tb", "ckpt.pth"))
    return results, data, aug


def only_test_args(results: Path, data: Path, aug: Path, *classes: str) -> list[str]:
    picks = [arg for cls in classes for arg in ("-d", cls)]
    return ["--results_path", str(results), "--test", "test", "dataset", "--num_workers", "0", "--fg", "0",
            *picks, "mvtec", str(data), str(aug)]


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under folder with the bytes of its files."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


# (a) A test-only run of one class keeps the rows of the others.
def test_test_only_run_replaces_its_row_and_keeps_the_others(tmp_path, tiny_model):
    results, data, aug = results_with_models(tmp_path, tiny_model, ("x",))
    lines = [HEADER, old_row("mvtec_x", "0.1111"), old_row("mvtec_y", "0.2222", "test-best"),
             old_row("mvtec_z", "0.3333"), old_row("Mean", "0.2222").replace(",3,last", ",,mixed")]
    (results / "results.csv").write_text("\n".join(lines) + "\n")

    assert main.cli(only_test_args(results, data, aug, "x")) == 0
    text = (results / "results.csv").read_text().splitlines()
    assert text[0] == HEADER and [line.split(",")[1] for line in text[1:]] == ["mvtec_x", "mvtec_y", "mvtec_z",
                                                                               "Mean"]
    assert text[2:4] == lines[2:4]  # other classes byte for byte
    rows = read_rows(results)
    assert rows["mvtec_x"]["image_auroc"] != "0.1111" and rows["mvtec_x"]["epoch"] == "1"
    assert rows["mvtec_x"]["selection"] == "last" and rows["Mean"]["selection"] == "mixed"
    assert_mean_consistent(rows)


WRITER = """
import os, sys, time
import utils
path, prefix = sys.argv[1], sys.argv[2]
open(path + "." + prefix + ".ready", "w").close()
while not os.path.exists(path + ".go"):
    time.sleep(0.001)
for i in range(50):
    row = {"class": f"{prefix}_{i:02d}", "epoch": i, "selection": prefix}
    utils.update_results_csv(path, [{**row, **{m: i / 100 for m in utils.METRIC_NAMES}}])
    time.sleep(0.002)
"""


# (b) Two processes updating one table: every row of both survives and the file always parses.
def test_concurrent_writers_keep_every_row(tmp_path):
    path = tmp_path / "results.csv"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), prefix], cwd=REPO) for prefix in "ab"]
    try:
        deadline = time.monotonic() + 60
        while not all(Path(f"{path}.{p}.ready").exists() for p in "ab"):
            assert time.monotonic() < deadline and all(w.poll() is None for w in writers)
            time.sleep(0.01)
        Path(f"{path}.go").touch()
        reads = 0
        while any(w.poll() is None for w in writers):
            utils.read_results_csv(path)  # raises on a partial table
            reads += 1
        assert [w.returncode for w in writers] == [0, 0]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
    classes = [row["class"] for row in utils.read_results_csv(path)]
    assert sorted(classes) == sorted(f"{p}_{i:02d}" for p in "ab" for i in range(50))
    assert reads > 10
    rows = read_rows(tmp_path)
    assert rows["Mean"]["selection"] == "mixed"
    assert_mean_consistent(rows)


# (c) kill -9 during a three-class test run: the table is always whole and keeps the older rows.
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_killed_run_leaves_a_whole_table_with_the_old_rows(tmp_path, tiny_model, how):
    results, data, aug = results_with_models(tmp_path, tiny_model, ("a", "b", "c"), n_good=6, n_bad=6)
    old = [HEADER, old_row("mvtec_old", "0.5000"), old_row("Mean", "0.5000").replace(",3,", ",,")]
    (results / "results.csv").write_text("\n".join(old) + "\n")
    delay = random.uniform(0.0, 0.5 if how == "SIGKILL" else 0.2)  # while the second class runs
    proc = subprocess.Popen([sys.executable, "main.py", *only_test_args(results, data, aug, "a", "b", "c")], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while "mvtec_a" not in {r["class"] for r in utils.read_results_csv(results / "results.csv")}:
            assert proc.poll() is None and time.monotonic() < deadline, "the first class never got its row"
            time.sleep(0.005)
        time.sleep(delay)
    finally:
        proc.send_signal(getattr(signal, how))
        code = proc.wait(timeout=60)
    rows = read_rows(results)  # whole: parses, old row kept byte for byte, first class present
    if how == "SIGKILL":  # 0: a fast CPU finished the other two classes before the signal came
        assert code == -signal.SIGKILL or (code == 0 and {"mvtec_a", "mvtec_b", "mvtec_c"} <= set(rows)), (code, rows)
    elif code != 143:  # the signal came after the command (while the interpreter shut down, or after it exited)
        assert code in (0, -signal.SIGTERM) and {"mvtec_a", "mvtec_b", "mvtec_c"} <= set(rows), (code, rows)
    assert (results / "results.csv").read_text().splitlines()[1] == old[1], delay
    assert {"mvtec_old", "mvtec_a", "Mean"} <= set(rows) <= {"mvtec_old", "mvtec_a", "mvtec_b", "mvtec_c", "Mean"}
    assert_mean_consistent(rows)


# (d) One file mode for every output: the umask's.
def test_distribution_table_and_results_csv_have_the_umask_mode(tmp_path):
    for mask in (0o022, 0o027, 0o002):
        old = os.umask(mask)
        try:
            folder = tmp_path / f"u{mask:o}"
            distribution.write_table(folder / "mvtec_distribution.csv", {"mvtec_a": 1, "mvtec_b": 0})
            utils.update_results_csv(folder / "results.csv", [{"class": "mvtec_a", "epoch": 1, "selection": "last",
                                                              **{m: 0.5 for m in utils.METRIC_NAMES}}])
        finally:
            os.umask(old)
        for name in ("mvtec_distribution.csv", "results.csv"):
            assert stat.S_IMODE((folder / name).stat().st_mode) == 0o666 & ~mask, (name, oct(mask))
        # the table's format is unchanged (csv's \r\n line ends)
        assert (folder / "mvtec_distribution.csv").read_bytes() == b"Class,Distribution\r\nmvtec_a,1\r\nmvtec_b,0\r\n"
        assert distribution.read_table(folder / "mvtec_distribution.csv") == {"mvtec_a": 1, "mvtec_b": 0}


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# (e) A truncated image stops the run before any folder is created.
def test_truncated_training_image_stops_before_any_folder(tmp_path, capsys):
    data, aug = write_tiny_mvtec(tmp_path, n_train=10)
    bad = data / "toy" / "train" / "good" / "004.png"
    truncate(bad)
    results = tmp_path / "results"
    results.mkdir()
    (results / "results.csv").write_text("\n".join([HEADER, old_row("mvtec_other", "0.7000"),
                                                    old_row("Mean", "0.7000")]) + "\n")
    before = tree(results)
    for target in (results, tmp_path / "new_results"):
        code = main.cli(["--results_path", str(target), *net_args(1), *dataset_args(data, aug)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert len(err) == 1 and str(bad) in err[0] and "decode" in err[0], err
    assert tree(results) == before  # no models/ folder, the rows untouched
    assert not (tmp_path / "new_results").exists()


def test_truncated_test_image_or_mask_stops_a_test_run_before_any_folder(tmp_path, tiny_model, capsys):
    results, data, aug = results_with_models(tmp_path, tiny_model, ("x",))
    before = tree(results)
    for bad in (data / "x" / "test" / "blob" / "001.png", data / "x" / "ground_truth" / "blob" / "002_mask.png"):
        saved = bad.read_bytes()
        truncate(bad)
        assert main.cli(only_test_args(results, data, aug, "x")) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(bad) in err[0], err
        assert tree(results) == before  # no eval/ folder, no results.csv
        bad.write_bytes(saved)


def test_image_validation_decodes_every_file_of_the_class(tmp_path):
    data, aug = write_tiny_mvtec(tmp_path, n_train=20, n_good=3, n_bad=3)
    cfg = main.data.DatasetConfig("mvtec", data, aug, ("toy",), num_workers=0, resize=64, imagesize=64, fg=0)
    # 20 train/good (8 of them held out), 6 test images, 3 ground-truth masks
    assert main.validate_class_images(cfg, "toy", train=True) == 29
    assert main.validate_class_images(cfg, "toy", train=False) == 9
    bad = data / "toy" / "train" / "good" / "019.png"  # the last file: a held-out image
    truncate(bad)
    try:
        main.validate_class_images(cfg, "toy", train=True)
    except main.data.DatasetError as err:
        assert str(bad) in str(err)
    else:
        raise AssertionError("a truncated held-out image passed")


def _train_command(results: Path, data: Path, aug: Path, epochs: int) -> list[str]:
    return [sys.executable, "main.py", "--results_path", str(results), "--seed", "3", *net_args(epochs),
            *dataset_args(data, aug)]


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_killed_training_resumes_from_its_last_checkpoint(tmp_path, how):
    """SIGTERM (docker stop, systemd) is handled like Ctrl-C: exit 143; kill -9 cannot be handled. Either way
    ckpt.pth of the last finished epoch loads, and rerunning finishes the class with a results row."""
    data, aug = write_tiny_mvtec(tmp_path / "data")
    results = tmp_path / "results"
    command = _train_command(results, data, aug, epochs=12)
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    latest = results / "models" / "backbone_0" / "mvtec_toy" / "ckpt.pth"
    deadline = time.monotonic() + 120
    while not latest.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, f"training ended before it could be killed: {process.stderr.read()}"
    time.sleep(random.uniform(0.0, 0.5))
    process.send_signal(getattr(signal, how))
    code = process.wait(timeout=60)
    assert code == (143 if how == "SIGTERM" else -signal.SIGKILL)
    state = load_checkpoint(latest)
    assert 1 <= state["epoch"] < 12 and not state.get("finished")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming after epoch" in done.stderr
    assert "mvtec_toy" in read_rows(results)
