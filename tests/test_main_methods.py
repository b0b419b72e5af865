"""The CLI's methods beside GLASS (`patchcore`, `padim`, `draem`, `ae`): fit or train and test, test the stored
models, bad values."""
from __future__ import annotations

import logging
import shutil

import pytest
import torch

import main
from model import load_checkpoint
from tests.helpers import (AE_ARGS, DRAEM_ARGS, METHOD_ARGS, METHOD_CLASS, PADIM_ARGS, PATCHCORE_ARGS, dataset_args,
                           read_csv, write_tiny_mvtec)

METRICS = ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "pixel_pro")


def rows_by_method(results) -> dict[tuple[str, str], dict[str, str]]:
    return {(row["method"], row["class"]): row for row in read_csv(results / "results.csv")}


@pytest.mark.parametrize("method", ["draem", "ae"])
def test_a_pixel_method_trains_for_its_epochs_and_tests(fitted_methods, method):
    results = fitted_methods.results
    class_dir = results / "models" / method / "backbone_0" / METHOD_CLASS
    assert sorted(p.name for p in class_dir.iterdir()) == ["ckpt_best_2.pth"]  # named by its epochs
    stored = load_checkpoint(class_dir / "ckpt_best_2.pth")
    assert stored["method"] == method and stored["epoch"] == 2 and stored["selection"] == "last"
    assert stored["net"]["imagesize"] == 64 and "backbone" not in stored["net"]
    assert stored["net"]["epochs"] == 2 and stored["net"]["mean"] == [0.0, 0.0, 0.0]
    curve = stored["timing"]["fit"]["loss"]
    assert len(curve) == 2 and all(value > 0 for value in curve)
    assert len(stored["calibration"]["images"]) == 8
    pictures = sorted(p.name for p in (results / "eval" / method / "backbone_0" / METHOD_CLASS).glob("*.png"))
    assert len(pictures) == 6
    row = rows_by_method(results)[(method, METHOD_CLASS)]
    assert row["epoch"] == "2"
    for name in METRICS:  # 2 epochs of a 4-channel network: a number, not yet a detector
        assert 0.0 <= float(row[name]) <= 1.0, name


@pytest.mark.parametrize("method", ["patchcore", "padim"])
def test_a_method_command_fits_tests_and_writes_its_own_folders(fitted_methods, method):
    results = fitted_methods.results
    class_dir = results / "models" / method / "backbone_0" / METHOD_CLASS
    assert sorted(p.name for p in class_dir.iterdir()) == ["ckpt_best_1.pth"]
    stored = load_checkpoint(class_dir / "ckpt_best_1.pth")
    assert stored["method"] == method and stored["epoch"] == 1 and stored["selection"] == "last"
    assert stored["net"]["backbone"] == "efficientnet_lite0" and stored["net"]["imagesize"] == 64
    assert stored["net"]["layers"] == (["blocks.2", "blocks.4"] if method == "patchcore" else ["blocks.1", "blocks.2"])
    assert stored["net"]["coreset" if method == "patchcore" else "features"] == (0.5 if method == "patchcore" else 20)
    assert stored["train"] == {"seed": 0} and stored["meta"]["train_images"] == 8
    assert len(stored["calibration"]["images"]) == 8
    pictures = sorted(p.name for p in (results / "eval" / method / "backbone_0" / METHOD_CLASS).glob("*.png"))
    assert len(pictures) == 6 and pictures[0] == "001_blob_000.png"
    assert not (results / "models" / "backbone_0").exists()  # GLASS's folder stays untouched
    row = rows_by_method(results)[(method, METHOD_CLASS)]
    assert row["epoch"] == "1" and row["selection"] == "last"
    for name in METRICS:
        assert 0.5 < float(row[name]) <= 1.0, name  # dark squares on smooth textures: found by both methods
    assert rows_by_method(results)[(method, "Mean")]["image_auroc"] == row["image_auroc"]


def test_test_only_run_tests_the_stored_models_of_every_method(fitted_methods, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(fitted_methods.results / "models", results / "models")
    code = main.cli(["--results_path", str(results), "--test", "test", "dataset", "--num_workers", "0", "--fg", "0",
                     "-d", "toy", "mvtec", str(fitted_methods.data_path), str(fitted_methods.aug_path)])
    assert code == 0
    rows, fitted_rows = rows_by_method(results), rows_by_method(fitted_methods.results)
    assert set(rows) == {(m, c) for m in METHOD_ARGS for c in (METHOD_CLASS, "Mean")}
    for key, row in rows.items():  # the stored models give the numbers they gave when fitted
        assert {name: row[name] for name in METRICS} == {name: fitted_rows[key][name] for name in METRICS}
    for method in METHOD_ARGS:
        assert len(list((results / "eval" / method / "backbone_0" / METHOD_CLASS).glob("*.png"))) == 6

    (results / "results.csv").unlink()
    code = main.cli(["--results_path", str(results), "--test", "test", *PADIM_ARGS,
                     *dataset_args(fitted_methods.data_path, fitted_methods.aug_path)])
    assert code == 0 and set(rows_by_method(results)) == {("padim", METHOD_CLASS), ("padim", "Mean")}


def test_running_the_same_command_again_tests_the_fitted_model_without_fitting(fitted_methods, tmp_path, monkeypatch):
    results = tmp_path / "results"
    shutil.copytree(fitted_methods.results / "models" / "patchcore", results / "models" / "patchcore")
    checkpoint = results / "models" / "patchcore" / "backbone_0" / METHOD_CLASS / "ckpt_best_1.pth"
    before = checkpoint.read_bytes()
    from methods.patchcore import PatchCoreModel

    monkeypatch.setattr(PatchCoreModel, "fit", lambda *args, **kwargs: pytest.fail("fitted again"))
    code = main.cli(["--results_path", str(results), "--seed", "0", *PATCHCORE_ARGS,
                     *dataset_args(fitted_methods.data_path, fitted_methods.aug_path)])
    assert code == 0 and checkpoint.read_bytes() == before
    row = rows_by_method(results)[("patchcore", METHOD_CLASS)]
    assert row["image_auroc"] == rows_by_method(fitted_methods.results)[("patchcore", METHOD_CLASS)]["image_auroc"]


@pytest.mark.parametrize("args,needles", [
    (["patchcore", "-b", "efficientnet_lite0", "--coreset", "0"], ["--coreset", "(0, 1]"]),
    (["patchcore", "-b", "efficientnet_lite0", "--coreset", "1.5"], ["--coreset", "1.5"]),
    (["patchcore", "-b", "efficientnet_lite0", "-le", "blocks.9"], ["-le blocks.9", "blocks.2"]),
    (["patchcore", "-b", "efficientnet_lite0", "--patchsize", "2"], ["--patchsize"]),
    (["patchcore", "-b", "efficientnet_lite0", "--neighbours", "0"], ["--neighbours"]),
    (["padim", "-b", "no_such_backbone"], ["no_such_backbone"]),
    # lite0's default PaDiM layers blocks.1, blocks.2, blocks.4 have 24 + 40 + 112 channels
    (["padim", "-b", "efficientnet_lite0", "--features", "10000"], ["--features", "10000", "176 channels"]),
    ([*PADIM_ARGS[:-1], "65"], ["--features", "65", "64 channels", "blocks.1, blocks.2"]),
    (["padim", "-b", "efficientnet_lite0", "--covariance", "diagonal"], ["--covariance"]),
    ([*PATCHCORE_ARGS, *PADIM_ARGS], ["one method command per run"]),
    ([*DRAEM_ARGS, "--score_window", "20"], ["--score_window", "odd"]),
    ([*DRAEM_ARGS, "--anomaly_probability", "1.5"], ["--anomaly_probability", "1.5"]),
    ([*DRAEM_ARGS, "--epochs", "0"], ["--epochs"]),
    ([*DRAEM_ARGS, "--crop", "100"], ["--crop", "multiple of 32"]),
    ([*AE_ARGS, "--tile", "24"], ["--tile", "multiple of 16"]),
    ([*AE_ARGS, "--tile", "48"], ["--imagesize 64", "multiple of 48"]),
    ([*AE_ARGS, "--error", "l1"], ["--error"]),
    (["draem", "-b", "efficientnet_lite0"], ["-b"]),
    (["net", "-b", "efficientnet_lite0", *PATCHCORE_ARGS], ["one method command per run"]),
])
def test_bad_method_values_exit_2_with_one_line_naming_the_flag(fitted_methods, tmp_path, capsys, args, needles):
    code = main.cli(["--results_path", str(tmp_path / "r"), *args,
                     *dataset_args(fitted_methods.data_path, fitted_methods.aug_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    for needle in needles:
        assert needle in err[0], err[0]
    assert not (tmp_path / "r" / "models").exists()



@pytest.mark.parametrize("method", ["patchcore", "padim"])
def test_non_square_grayscale_busy_frames_with_a_low_contrast_defect(tmp_path, method):
    """What users bring and the demo never makes: 96x72 grayscale frames of busy noise (std 40 grey levels),
    a 12x12 defect 60 grey levels brighter (1.5 std), held-out calibration on 8 of 16 training images."""
    import numpy as np
    import PIL.Image

    rng = np.random.default_rng(0)
    data, aug = tmp_path / "mvtec", tmp_path / "dtd" / "images"

    def frame() -> np.ndarray:
        return np.clip(rng.normal(128, 40, (72, 96)), 0, 255).astype(np.uint8)

    def save(path, image) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        PIL.Image.fromarray(image).save(path)

    for i in range(16):
        save(data / "gray" / "train" / "good" / f"{i:03d}.png", frame())
    save(aug / "t" / "t_0.jpg", frame())
    for i in range(4):
        save(data / "gray" / "test" / "good" / f"{i:03d}.png", frame())
        image, mask = frame(), np.zeros((72, 96), np.uint8)
        y, x = rng.integers(8, 52), rng.integers(8, 76)
        image[y:y + 12, x:x + 12] = np.clip(image[y:y + 12, x:x + 12].astype(int) + 60, 0, 255)
        mask[y:y + 12, x:x + 12] = 255
        save(data / "gray" / "test" / "bright" / f"{i:03d}.png", image)
        save(data / "gray" / "ground_truth" / "bright" / f"{i:03d}_mask.png", mask)
    results = tmp_path / "results"
    args = PATCHCORE_ARGS if method == "patchcore" else PADIM_ARGS
    code = main.cli(["--results_path", str(results), *args, "dataset", "--num_workers", "0", "--resize", "64",
                     "--imagesize", "64", "-d", "gray", "mvtec", str(data), str(aug)])
    assert code == 0
    row = rows_by_method(results)[(method, "mvtec_gray")]
    # Measured: pixel AUROC 0.96 (PatchCore) / 0.98 (PaDiM), PRO 0.86 / 0.98, image AUROC 0.94 / 0.75.
    assert float(row["pixel_auroc"]) >= 0.9 and float(row["pixel_pro"]) >= 0.8
    assert float(row["image_auroc"]) > 0.5
    stored = load_checkpoint(results / "models" / method / "backbone_0" / "mvtec_gray" / "ckpt_best_1.pth")
    assert stored["calibration"]["source"] == "heldout" and len(stored["calibration"]["images"]) == 8


def script_commands(path) -> dict[str, list[str]]:
    """The main.py command line of a shell script, split into its chained commands (name -> flags)."""
    import shlex

    text = path.read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if "main.py" in line)
    tokens = shlex.split(line)[shlex.split(line).index("main.py") + 1:]
    commands, current = {"main": []}, "main"
    for token in tokens:
        if token in ("net", "patchcore", "padim", "draem", "ae", "dataset"):
            current = token
            commands[current] = []
        else:
            commands[current].append(token)
    return commands


def test_the_draem_mvtec_script_runs_the_papers_defaults():
    from pathlib import Path

    commands = script_commands(Path(main.__file__).parent / "shell" / "run-draem-mvtec.sh")
    given = main.draem.make_context("draem", list(commands["draem"])).params
    defaults = main.draem.make_context("draem", []).params
    assert given == defaults and given["epochs"] == 700 and given["recon_width"] == 128
    flags = commands["dataset"][:commands["dataset"].index("${flags[@]}")]  # then the class flags and paths
    dataset = main.dataset.make_context("dataset", [*flags, "-d", "x", "mvtec", "d", "a"]).params
    assert (dataset["imagesize"], dataset["batch_size"], dataset["fg"]) == (256, 8, 0)


@pytest.mark.parametrize(("method", "warned"), [("padim", True), ("patchcore", False)])
def test_random_train_crops_warn_padim_only(tmp_path, method, warned, caplog):
    data, aug = write_tiny_mvtec(tmp_path)
    args = PADIM_ARGS if method == "padim" else PATCHCORE_ARGS
    with caplog.at_level(logging.WARNING):
        code = main.cli(["--results_path", str(tmp_path / "r"), "--seed", "0", *args,
                         *dataset_args(data, aug, "--train_crop", "random")])
    assert code == 0
    messages = [r.getMessage() for r in caplog.records if "--train_crop random" in r.getMessage()]
    assert len(messages) == (1 if warned else 0) and (not warned or "per-position" in messages[0])


def test_an_interrupted_pixel_method_training_resumes_to_the_uninterrupted_model(fitted_methods, tmp_path,
                                                                                 monkeypatch):
    """Ctrl-C after DRAEM's first epoch: exit 130, its training state kept in ckpt.pth; the same command again
    resumes and ends with the weights, loss curve and row of the uninterrupted run (fitted_methods)."""
    from methods import pixel

    results = tmp_path / "results"
    command = ["--results_path", str(results), "--seed", "0", *DRAEM_ARGS,
               *dataset_args(fitted_methods.data_path, fitted_methods.aug_path)]
    save = pixel.utils.atomic_torch_save

    def stop_after_first_epoch(state, path):
        save(state, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(pixel.utils, "atomic_torch_save", stop_after_first_epoch)
    assert main.cli(command) == 130
    class_dir = results / "models" / "draem" / "backbone_0" / METHOD_CLASS
    assert sorted(p.name for p in class_dir.iterdir()) == ["ckpt.pth"]
    monkeypatch.setattr(pixel.utils, "atomic_torch_save", save)
    assert main.cli(command) == 0
    assert sorted(p.name for p in class_dir.iterdir()) == ["ckpt_best_2.pth"]
    resumed = load_checkpoint(class_dir / "ckpt_best_2.pth")
    whole = load_checkpoint(fitted_methods.class_dir("draem") / "ckpt_best_2.pth")
    assert resumed["timing"]["fit"]["loss"] == whole["timing"]["fit"]["loss"]
    assert all(torch.equal(resumed["weights"][name], whole["weights"][name]) for name in whole["weights"])
    row, expected = rows_by_method(results)[("draem", METHOD_CLASS)], rows_by_method(fitted_methods.results)[
        ("draem", METHOD_CLASS)]
    assert all(row[name] == expected[name] for name in METRICS)
