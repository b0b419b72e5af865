"""End-to-end CLI: train, test from the model directory alone, determinism, resume, bad input."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import glass
import main
from model import load_checkpoint, load_trained_model, resolve_class_dir

REPO = Path(__file__).resolve().parents[1]


def net_args(epochs: int = 2, *extra: str) -> list[str]:
    """A tiny efficientnet_lite0 GLASS (small dims, 2 ascent steps)."""
    return ["net", "-b", "efficientnet_lite0", "--pretrain_embed_dimension", "64", "--target_embed_dimension", "64",
            "--dsc_hidden", "32", "--meta_epochs", str(epochs), "--step", "2", *extra]


def dataset_args(data: Path, aug: Path, *extra: str) -> list[str]:
    """64 px images, batch 4, no workers, manifold forced."""
    return ["dataset", "--batch_size", "4", "--num_workers", "0", "--resize", "64", "--imagesize", "64",
            "--fg", "0", "--distribution", "2", *extra, "-d", "toy", "mvtec", str(data), str(aug)]


def read_results(results: Path) -> dict[str, dict[str, str]]:
    """results.csv rows by class."""
    with open(results / "results.csv", newline="") as handle:
        return {row["class"]: row for row in csv.DictReader(handle)}


def train(tmp_path: Path, tiny_mvtec, name: str, *net_extra: str) -> Path:
    """Trains the tiny model into tmp_path/name and returns the results folder."""
    results = tmp_path / name
    code = main.cli(["--results_path", str(results), "--seed", "3", *net_args(2, *net_extra),
                     *dataset_args(*tiny_mvtec)])
    assert code == 0
    return results


def test_train_then_test_from_model_directory_alone(tmp_path, tiny_mvtec):
    results = train(tmp_path, tiny_mvtec, "run")
    class_dir = results / "models" / "backbone_0" / "mvtec_toy"
    assert (class_dir / "ckpt.pth").is_file() and (class_dir / "ckpt_best_1.pth").is_file()
    assert any((class_dir / "tb").iterdir())
    rows = read_results(results)
    assert set(rows) == {"mvtec_toy", "Mean"}
    assert rows["mvtec_toy"]["selection"] == "last" and rows["mvtec_toy"]["epoch"] == "1"
    for name in ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "pixel_pro"):
        assert 0.0 <= float(rows["mvtec_toy"][name]) <= 1.0
    assert len(list((results / "eval" / "backbone_0" / "mvtec_toy").glob("*.png"))) == 6

    stored = load_checkpoint(class_dir / "ckpt_best_1.pth")
    assert stored["net"]["backbone"] == "efficientnet_lite0" and stored["net"]["imagesize"] == 64
    assert stored["train_scores"].shape == (6,)
    assert 0.0 <= float(stored["train_scores"].min()) <= float(stored["train_scores"].max()) <= 1.0

    first = rows["mvtec_toy"]
    (results / "results.csv").unlink()
    # No `net` command: the model directory alone defines the model, image size and normalisation.
    code = main.cli(["--results_path", str(results), "--test", "test", "dataset", "--num_workers", "0", "--fg", "0",
                     "-d", "toy", "mvtec", str(tiny_mvtec[0]), str(tiny_mvtec[1])])
    assert code == 0
    again = read_results(results)["mvtec_toy"]
    assert again == first


def test_same_seed_same_numbers(tmp_path, tiny_mvtec):
    a = read_results(train(tmp_path, tiny_mvtec, "a"))
    b = read_results(train(tmp_path, tiny_mvtec, "b"))
    assert a == b
    ckpt_a = load_checkpoint(tmp_path / "a/models/backbone_0/mvtec_toy/ckpt_best_1.pth")
    ckpt_b = load_checkpoint(tmp_path / "b/models/backbone_0/mvtec_toy/ckpt_best_1.pth")
    for key, value in ckpt_a["weights"]["discriminator"].items():
        assert (value == ckpt_b["weights"]["discriminator"][key]).all()


def test_resume_after_interruption_gives_the_same_final_scores(tmp_path, tiny_mvtec, monkeypatch):
    uninterrupted = read_results(train(tmp_path, tiny_mvtec, "whole"))

    original = glass.GLASS._train_epoch
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # dies during the second epoch, after ckpt.pth of the first
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(glass.GLASS, "_train_epoch", interrupted)
    code = main.cli(["--results_path", str(tmp_path / "cut"), "--seed", "3", *net_args(2),
                     *dataset_args(*tiny_mvtec)])
    assert code == 130  # Ctrl-C
    class_dir = tmp_path / "cut/models/backbone_0/mvtec_toy"
    assert load_checkpoint(class_dir / "ckpt.pth")["epoch"] == 1
    assert not list(class_dir.glob("ckpt_best_*.pth"))
    monkeypatch.setattr(glass.GLASS, "_train_epoch", original)
    resumed = read_results(train(tmp_path, tiny_mvtec, "cut"))
    assert resumed == uninterrupted


def test_finished_class_is_not_trained_again(tmp_path, tiny_mvtec, monkeypatch):
    results = train(tmp_path, tiny_mvtec, "run")

    def fail(*args, **kwargs):
        raise AssertionError("training ran again")

    monkeypatch.setattr(glass.GLASS, "_train_epoch", fail)
    assert train(tmp_path, tiny_mvtec, "run") == results


def test_test_best_selection_is_labelled(tmp_path, tiny_mvtec):
    rows = read_results(train(tmp_path, tiny_mvtec, "best", "--select", "test-best"))
    assert rows["mvtec_toy"]["selection"] == "test-best"
    assert rows["Mean"]["selection"] == "test-best"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["net", "-b", "no_such_backbone"], "no_such_backbone"),
        (["net", "-b", "efficientnet_lite0", "-le", "layer9"], "layer9"),
        (["net", "--radius", "1.5"], "--radius"),
        (["net", "-b", "efficientnet_lite0", "--patchsize", "2"], "--patchsize"),
    ],
)
def test_bad_net_flags_exit_2_with_one_line(tmp_path, tiny_mvtec, capsys, args, needle):
    code = main.cli(["--results_path", str(tmp_path / "r"), *args, *dataset_args(*tiny_mvtec)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and needle in err[0]


def test_bad_dataset_values_exit_2(tmp_path, tiny_mvtec, capsys):
    data, aug = tiny_mvtec
    cases = [
        (dataset_args(tmp_path / "missing", aug), "missing"),
        (["dataset", "--imagesize", "72", "--resize", "72", "--fg", "0", "-d", "toy", "mvtec", str(data), str(aug)],
         "--imagesize"),
        (["dataset", "--fg", "0", "-d", "nope", "mvtec", str(data), str(aug)], "nope"),
    ]
    for args, needle in cases:
        code = main.cli(["--results_path", str(tmp_path / "r"), *net_args(1), *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, args
        assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "r" / "models").exists() or not list((tmp_path / "r" / "models").rglob("*.pth"))


def test_test_only_rejects_conflicting_imagesize_and_missing_model(tmp_path, tiny_mvtec, capsys):
    data, aug = tiny_mvtec
    code = main.cli(["--results_path", str(tmp_path / "none"), "--test", "test", "dataset", "--fg", "0",
                     "-d", "toy", "mvtec", str(data), str(aug)])
    assert code == 2 and "no trained model" in capsys.readouterr().err
    results = train(tmp_path, tiny_mvtec, "run")
    code = main.cli(["--results_path", str(results), "--test", "test", "dataset", "--imagesize", "128",
                     "--resize", "128", "--fg", "0", "-d", "toy", "mvtec", str(data), str(aug)])
    assert code == 2 and "--imagesize 128" in capsys.readouterr().err


def test_script_error_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "main.py", "net", "-b", "nope", "dataset", "-d", "x", "mvtec", str(tmp_path), str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error:")


def test_train_backbone_and_hypersphere_run_and_reload(tmp_path, tiny_mvtec):
    results = tmp_path / "tb"
    code = main.cli(["--results_path", str(results), *net_args(1, "--train_backbone"),
                     *dataset_args(*tiny_mvtec, "--distribution", "3")])  # the later value wins
    assert code == 0
    stored = load_checkpoint(results / "models/backbone_0/mvtec_toy/ckpt_best_0.pth")
    assert stored["svd"] == 1 and "backbone" in stored["weights"]
    first = read_results(results)["mvtec_toy"]
    assert main.cli(["--results_path", str(results), "--test", "test", "dataset", "--num_workers", "0", "--fg", "0",
                     "-d", "toy", "mvtec", str(tiny_mvtec[0]), str(tiny_mvtec[1])]) == 0
    assert read_results(results)["mvtec_toy"] == first


def test_model_directory_loads_for_inference(tmp_path, tiny_mvtec):
    results = train(tmp_path, tiny_mvtec, "run")
    class_dir = resolve_class_dir(results / "models" / "backbone_0", "mvtec_toy")
    model, stored = load_trained_model(class_dir)
    assert stored["epoch"] == 1 and not model.training
    scores, maps, patches = model.predict(torch.zeros(2, 3, 64, 64))
    assert scores.shape == (2,) and maps.shape == (2, 64, 64) and patches.shape == (2, 8, 8)
    assert 0.0 <= scores.min() <= scores.max() <= 1.0


def test_unwritable_results_path_exits_2(tmp_path, tiny_mvtec, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main.cli(["--results_path", str(blocker), *net_args(1), *dataset_args(*tiny_mvtec)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--results_path" in err[0]
    assert blocker.read_text() == "not a folder"
