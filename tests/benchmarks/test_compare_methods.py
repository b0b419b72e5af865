"""benchmarks/compare_methods.py: the table, the chart, model reuse and one-line errors on tiny data; the
slow test compares the five methods on one demo class (shell/run-compare.sh)."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

import errors
from tests.helpers import REPO, read_csv, write_tiny_mvtec

SCRIPT = REPO / "benchmarks" / "compare_methods.py"
CLASSES = ("toy", "toy2")
METHODS = ("glass", "patchcore", "padim", "draem", "ae")
COLUMNS = ["method", "class", "image_auroc", "pixel_auroc", "pixel_pro", "train_seconds", "ms_per_image", "model_mb"]
TINY = ["--imagesize", "64", "--resize", "64", "--batch_size", "4", "--num_workers", "0",
        "--glass_epochs", "1", "--glass_dims", "64", "--glass_hidden", "32", "--glass_step", "2",
        "--coreset", "0.5", "--padim_layers", "blocks.1", "blocks.2", "--features", "16",
        "--draem_epochs", "1", "--draem_width", "4", "--draem_crop", "32",
        "--ae_epochs", "1", "--ae_width", "4", "--ae_latent", "16",
        "--timing_images", "3", "--warmup", "1", "--repeats", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def compare():
    """The script as a module (benchmarks/ is a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location("compare_methods", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> tuple[Path, Path]:
    """(MVTec root, texture folder) of two tiny classes."""
    return write_tiny_mvtec(tmp_path_factory.mktemp("compare_data"), classes=CLASSES)


@pytest.fixture(scope="module")
def compared(compare, tiny_data) -> Path:
    """The output folder of one in-process comparison of the five methods on the two tiny classes."""
    data, _ = tiny_data
    output = data.parent / "compare"
    assert compare.main(["--data", str(data), "--output", str(output), "--in_process", *TINY]) == 0
    return output


def checkpoints(output: Path) -> dict[str, tuple[int, int]]:
    """(mtime_ns, bytes) of every selected checkpoint below an output folder."""
    return {str(p.relative_to(output)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(output.rglob("ckpt_best_*.pth"))}


def test_table_has_a_row_per_method_and_class_plus_a_mean_per_method(compared):
    rows = read_csv(compared / "comparison.csv")
    assert list(rows[0]) == COLUMNS
    assert [(r["method"], r["class"]) for r in rows] == (
        [(m, c) for m in METHODS for c in CLASSES] + [(m, "Mean") for m in METHODS])
    for row in rows:
        for metric in ("image_auroc", "pixel_auroc", "pixel_pro"):
            assert 0.0 <= float(row[metric]) <= 1.0, row
        for column in ("train_seconds", "ms_per_image", "model_mb"):
            assert float(row[column]) > 0, row
    for method in METHODS:
        own = [r for r in rows if r["method"] == method]
        for column in COLUMNS[2:]:  # the mean row is the mean of the class rows (to rounding)
            mean = sum(float(r[column]) for r in own[:-1]) / len(CLASSES)
            assert float(own[-1][column]) == pytest.approx(mean, abs=0.051), (method, column)
    for method in ("patchcore", "padim"):  # the tiny defects are plain dark-red squares
        assert float(next(r for r in rows if r["method"] == method)["image_auroc"]) >= 0.9


def test_metrics_are_main_pys_and_sizes_the_checkpoints(compared):
    rows = {(r["method"], r["class"]): r for r in read_csv(compared / "comparison.csv")}
    for method in METHODS:
        results = {r["class"]: r for r in read_csv(compared / method / "results.csv")}
        for name in CLASSES:
            row = rows[(method, name)]
            assert row["image_auroc"] == results[f"mvtec_{name}"]["image_auroc"]
            assert row["pixel_pro"] == results[f"mvtec_{name}"]["pixel_pro"]
            tag = "backbone_0" if method == "glass" else f"{method}/backbone_0"  # pixel methods: one "backbone"
            (ckpt,) = (compared / method / "models" / tag / f"mvtec_{name}").glob("ckpt_best_*.pth")
            assert float(row["model_mb"]) == pytest.approx(ckpt.stat().st_size / 1e6, abs=0.001)


def test_chart_and_markdown_are_written(compared):
    image = cv2.imread(str(compared / "comparison.png"))
    assert image is not None and image.shape[0] >= 400 and image.shape[1] >= 800
    assert image.std() > 10  # bars, not a blank canvas
    markdown = (compared / "comparison.md").read_text()
    assert "| **padim** | **Mean** |" in markdown and "efficientnet_lite0" in markdown


def test_rerun_reuses_the_models_and_fresh_refits(compare, compared, tiny_data, tmp_path):
    data, _ = tiny_data
    output = tmp_path / "compare"
    shutil.copytree(compared, output)
    before = checkpoints(output)
    assert len(before) == len(METHODS) * len(CLASSES)
    assert compare.main(["--data", str(data), "--output", str(output), "--in_process", *TINY]) == 0
    assert checkpoints(output) == before
    rows = read_csv(output / "comparison.csv")
    assert [r["image_auroc"] for r in rows] == [r["image_auroc"] for r in read_csv(compared / "comparison.csv")]
    assert compare.main(["--data", str(data), "--output", str(output), "--in_process", "--fresh",
                         "--methods", "padim", "--classes", "toy", *TINY]) == 0
    after = checkpoints(output)
    refitted = [name for name in before if name.startswith("padim/") and "/mvtec_toy/" in name]
    assert len(refitted) == 1 and after[refitted[0]] != before[refitted[0]]
    kept = {name: value for name, value in before.items() if not name.startswith("padim/")}
    assert {name: value for name, value in after.items() if name not in refitted} == kept  # padim/ was deleted
    assert [(r["method"], r["class"]) for r in read_csv(output / "comparison.csv")] == [("padim", "toy"),
                                                                                        ("padim", "Mean")]


def test_rerun_with_other_settings_stops_with_one_line_naming_fresh(compare, compared, tiny_data, capsys, tmp_path):
    data, _ = tiny_data
    output = tmp_path / "compare"
    shutil.copytree(compared / "padim", output / "padim")
    before = checkpoints(output)
    other = [*TINY[:TINY.index("--features")], "--features", "8", *TINY[TINY.index("--features") + 2:]]
    argv = ["--data", str(data), "--output", str(output), "--in_process", "--methods", "padim", *other]
    assert errors.run_script(lambda: compare.main(argv)) == 2
    shown = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(shown) == 1 and "different 'net' settings" in shown[0] and "--fresh" in shown[0], shown
    assert checkpoints(output) == before  # nothing overwritten


@pytest.mark.parametrize("args, needle", [
    (["--data", "/no/such/folder"], "--data"),
    (["--classes", "nope"], "--classes nope"),
    (["--methods", "glass", "svm"], "--methods"),
    (["--glass_epochs", "0"], "--glass_epochs"),
    (["--draem_epochs", "0"], "--draem_epochs"),
    (["--ae_width", "x"], "--ae_width"),
    (["--methods", "draem", "--aug", "/no/such/textures"], "draem need a texture folder"),
    (["--features", "-3"], "--features"),
    (["--coreset", "1.5"], "--coreset"),
    (["--imagesize", "256", "--resize", "128"], "--resize"),
    (["--padim_layers", "layer9"], "layer9"),
    (["--aug", "/no/such/textures"], "--aug"),
    (["--methods", "convlstm", "--temporal_texture", "marble"], "--temporal_texture marble"),
])
def test_bad_flags_exit_2_with_one_line(compare, tiny_data, capsys, tmp_path, args, needle):
    data, _ = tiny_data
    argv = ["--data", str(data), "--output", str(tmp_path / "out"), *args]
    if args[0] == "--data":
        argv = [*args, "--output", str(tmp_path / "out")]
    assert errors.run_script(lambda: compare.main(argv)) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert not (tmp_path / "out").exists()  # stopped before any work


def test_bad_setting_caught_by_main_py_is_one_line_with_exit_2(compare, tiny_data, capsys, tmp_path):
    data, _ = tiny_data
    argv = ["--data", str(data), "--output", str(tmp_path / "out"), "--methods", "padim", "--imagesize", "72",
            "--resize", "72", "--in_process"]
    assert errors.run_script(lambda: compare.main(argv)) == 2
    shown = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert shown == ["error: main.py padim: --imagesize 72 is not divisible by 16, the stride of "
                     "efficientnet_lite0's layer blocks.4; use e.g. 64"]


def test_default_subprocess_run_logs_main_py_and_reports_its_error_in_one_line(tiny_data, tmp_path):
    data, _ = tiny_data
    output = tmp_path / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), "--data", str(data), "--output", str(output),
                           "--methods", "patchcore", "--coreset", "0.5", "--imagesize", "72", "--resize", "72"],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: main.py patchcore: --imagesize 72") and str(output / "patchcore" / "run.log") \
        in lines[-1]
    assert [line for line in lines if line.startswith("error")] == [lines[-1]]
    log = (output / "patchcore" / "run.log").read_text()
    assert log.startswith("$ ") and "main.py --seed 0 --test ckpt" in log and "error: --imagesize 72" in log


def test_temporal_table_scores_the_stop_and_jerk_video_and_reuses_the_model(compare, tmp_path):
    data, _ = write_tiny_mvtec(tmp_path / "data", classes=("gravel",))  # a class named as the conveyor's photo
    output = tmp_path / "out"
    argv = ["--data", str(data), "--output", str(output), "--in_process", "--methods", "padim", "convlstm", *TINY,
            "--temporal_size", "96", "64", "--temporal_frames", "80", "48", "--temporal_epochs", "1"]
    assert compare.main(argv) == 0
    rows = read_csv(output / "temporal.csv")
    assert [r["method"] for r in rows] == ["convlstm", "padim"]
    for row in rows:
        assert 0 <= float(row["frame_auroc"]) <= 1 and 0 <= float(row["false_alarm_rate"]) <= 1, row
        assert 0 <= float(row["recall"]) <= 1 and float(row["ms_per_frame"]) > 0, row
    assert float(rows[0]["train_seconds"]) > 0 and "| convlstm |" in (output / "temporal.md").read_text()
    sidecar = (output / "convlstm" / "videos" / "gravel_stop_jerk.mp4.json").read_text()
    assert '"temporal_anomaly": true' in sidecar
    model = output / "convlstm" / "model" / "convlstm.pth"
    before = model.stat().st_mtime_ns
    assert compare.main(argv) == 0 and model.stat().st_mtime_ns == before  # reused
    assert read_csv(output / "temporal.csv")[0]["frame_auroc"] == rows[0]["frame_auroc"]


@pytest.mark.slow
def test_run_compare_on_one_demo_class(tmp_path):
    """shell/run-compare.sh on the demo's brick (GLASS shortened to 3 epochs; DRAEM and the autoencoder at their
    CPU demo settings): PatchCore, PaDiM and DRAEM reach image AUROC >= 0.9, and the table and chart are
    complete."""
    env = {**os.environ, "PYTHON": sys.executable, "DEMO_ROOT": str(tmp_path / "demo_data"),
           "RESULTS": str(tmp_path / "compare"), "CLASSES": "brick"}
    done = subprocess.run(["bash", "shell/run-compare.sh", "--glass_epochs", "3"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {(r["method"], r["class"]): r for r in read_csv(tmp_path / "compare" / "comparison.csv")}
    assert set(rows) == {(m, c) for m in METHODS for c in ("brick", "Mean")}
    for method in ("patchcore", "padim", "draem"):
        assert float(rows[(method, "brick")]["image_auroc"]) >= 0.9, rows[(method, "brick")]
    for row in rows.values():
        assert all(float(row[c]) > 0 for c in ("train_seconds", "ms_per_image", "model_mb")), row
    assert cv2.imread(str(tmp_path / "compare" / "comparison.png")) is not None
    assert "Comparison (" in done.stdout
