"""benchmarks/crosscheck_anomalib.py: our run at an anomalib row's settings, the table, the seed means,
one-line errors."""
from __future__ import annotations

import csv
import importlib.util
import io
import pytest

import errors
from tests.helpers import REPO, write_tiny_mvtec

SCRIPT = REPO / "benchmarks" / "crosscheck_anomalib.py"
FIELDS = ("method", "class", "image_auroc", "pixel_auroc", "backbone", "layers", "image_size", "mean", "std",
          "coreset", "num_neighbors", "padim_features", "seed", "padim_channels")


@pytest.fixture(scope="module")
def crosscheck():
    """The script as a module (benchmarks/ is a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location("crosscheck_anomalib", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reference_row(method: str, seed: int, image: float, channels: str = "") -> dict[str, str]:
    return {"method": method, "class": "toy", "image_auroc": str(image), "pixel_auroc": "0.9",
            "backbone": "tf_efficientnet_lite0", "layers": "blocks.2 blocks.4", "image_size": "64",
            "mean": "0.485 0.456 0.406", "std": "0.229 0.224 0.225", "coreset": "0.5" if method == "patchcore" else "",
            "num_neighbors": "9" if method == "patchcore" else "", "padim_features": "20" if method == "padim" else "",
            "seed": str(seed), "padim_channels": channels}


def _write_reference(path, rows) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue())


def test_our_rows_at_anomalib_settings_with_seed_means(tmp_path, crosscheck):
    data, _ = write_tiny_mvtec(tmp_path)
    channels = " ".join(str(c) for c in range(0, 40, 2))  # 20 of blocks.2's channels, in anomalib's order
    first, second = tmp_path / "s0.csv", tmp_path / "s1.csv"
    _write_reference(first, [_reference_row("patchcore", 0, 1.0), _reference_row("padim", 0, 0.5, channels)])
    _write_reference(second, [_reference_row("patchcore", 1, 0.0)])
    out = tmp_path / "out"
    assert crosscheck.main(["--anomalib_csv", str(first), str(second), "--data", str(data),
                            "--output", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO((out / "crosscheck_anomalib.csv").read_text())))
    assert [(r["method"], r["channels"], r["seed"]) for r in rows] == [
        ("patchcore", "all", "0"), ("padim", "ours", "0"), ("padim", "anomalib's", "0"), ("patchcore", "all", "1"),
        ("patchcore", "all", "mean")]
    for row in rows:
        ours, reference = float(row["ours_image_auroc"]), float(row["anomalib_image_auroc"])
        assert 0 <= ours <= 100 and float(row["image_delta"]) == pytest.approx(ours - reference, abs=0.011)
        assert row["within_1"] == str(abs(ours - reference) <= 1.0)
    mean = rows[-1]
    assert float(mean["anomalib_image_auroc"]) == 50.0
    assert float(mean["ours_image_auroc"]) == pytest.approx(
        (float(rows[0]["ours_image_auroc"]) + float(rows[3]["ours_image_auroc"])) / 2, abs=0.011)


@pytest.mark.parametrize("problem", ["missing_csv", "not_reference", "missing_data"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, crosscheck, problem):
    reference = tmp_path / "ref.csv"
    if problem == "not_reference":
        reference.write_text("a,b\n1,2\n")
    elif problem == "missing_data":
        _write_reference(reference, [_reference_row("patchcore", 0, 1.0)])
    data = tmp_path / "missing" if problem == "missing_data" else tmp_path
    argv = ["--anomalib_csv", str(reference), "--data", str(data), "--output", str(tmp_path / "out")]
    assert errors.run_script(lambda: crosscheck.main(argv)) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and ("--anomalib_csv" in lines[0] or "--data" in lines[0])
    assert not (tmp_path / "out").exists()
