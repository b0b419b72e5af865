"""onnx/ort.py: heatmaps and scores CSV from an ONNX file, one-line errors, run as a command."""
from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import cv2
import numpy as np

from inference import onnx_export
from tests.helpers import ONNX_TOLERANCE, REPO, one_line_error


def test_ort_script_writes_heatmaps_and_csv_for_a_folder(ort_script, exports, tiny_model, torch_engine, tmp_path):
    test_dir = tiny_model.data_path / "toy" / "test"
    out = tmp_path / "heatmaps"
    assert ort_script.cli(["--onnx", str(exports["fold"]), "--image", str(test_dir), "--output", str(out)]) == 0
    with open(out / "scores.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    sources = sorted(test_dir.rglob("*.png"))
    assert [row["image"] for row in rows] == [p.relative_to(test_dir).as_posix() for p in sources]
    expected = torch_engine.predict([cv2.imread(str(p)) for p in sources])
    for row, want in zip(rows, expected):
        assert abs(float(row["score"]) - want.score) <= ONNX_TOLERANCE
        assert int(row["is_defect"]) == int(want.is_defect)
        assert abs(float(row["threshold"]) - torch_engine.threshold) < 1e-6
        panel = cv2.imread(str(out / row["heatmap"]))
        assert panel.shape == (64, 128, 3)  # original | overlay
    assert not list(out.rglob(".*.tmp"))


def test_ort_script_single_image_and_threshold_override(ort_script, exports, tiny_model, tmp_path):
    image = sorted((tiny_model.data_path / "toy" / "test" / "blob").glob("*.png"))[0]
    out = tmp_path / "one" / "heatmap.png"
    args = ["--onnx", str(exports["pool"]), "--image", str(image), "--output", str(out)]
    assert ort_script.cli([*args, "--threshold", "0"]) == 0
    rows = list(csv.DictReader(open(out.with_suffix(".csv"), newline="")))
    assert len(rows) == 1 and rows[0]["is_defect"] == "1" and rows[0]["heatmap"] == "heatmap.png"
    assert cv2.imread(str(out)).shape == (64, 128, 3)
    assert ort_script.cli([*args, "--threshold", "1"]) == 0
    assert list(csv.DictReader(open(out.with_suffix(".csv"), newline="")))[0]["is_defect"] == "0"
    assert ort_script.cli([*args, "--threshold", "1.5"]) == 2


def test_ort_script_with_a_bad_model_or_no_readable_image_leaves_no_output_folder(ort_script, exports, tmp_path,
                                                                                     capsys):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((64, 64, 3), 128, np.uint8))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not a protobuf" * 20)
    shutil.copy(onnx_export.sidecar_path(exports["fold"]), onnx_export.sidecar_path(corrupt))
    out = tmp_path / "out" / "heatmaps"
    for model, needle in ((tmp_path / "missing.onnx", "missing.onnx"), (corrupt, "corrupt.onnx")):
        for output in (out, out / "one.png"):  # a folder of images, one image
            image = images if output == out else images / "a.png"
            assert ort_script.cli(["--onnx", str(model), "--image", str(image), "--output", str(output)]) == 2
            assert needle in one_line_error(capsys)
            assert not (tmp_path / "out").exists()
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "b.png").write_bytes(b"not a png")
    assert ort_script.cli(["--onnx", str(exports["fold"]), "--image", str(unreadable), "--output", str(out)]) == 2
    assert "no readable image" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_ort_script_runs_as_a_command(exports, tiny_model, tmp_path):
    """As users run it: python onnx/ort.py (the script folder first on sys.path must not shadow onnx)."""
    image = sorted((tiny_model.data_path / "toy" / "test" / "good").glob("*.png"))[0]
    done = subprocess.run([sys.executable, str(REPO / "onnx" / "ort.py"), "--onnx", str(exports["fold"]),
                           "--image", str(image)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "heatmap.png").is_file() and (tmp_path / "heatmap.csv").is_file()  # the defaults
