"""End-to-end CLI: train, test from the model directory alone, determinism, resume, bad input."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch

import glass
import main
from datasets.registry import build_dataset
from model import load_checkpoint, resolve_class_dir
from methods.registry import load_trained_model
from tests.helpers import REPO, dataset_args, interrupt_second_epoch, net_args, write_tiny_mvtec



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

    interrupt_second_epoch(monkeypatch)
    code = main.cli(["--results_path", str(tmp_path / "cut"), "--seed", "3", *net_args(2),
                     *dataset_args(*tiny_mvtec)])
    assert code == 130  # Ctrl-C
    class_dir = tmp_path / "cut/models/backbone_0/mvtec_toy"
    assert load_checkpoint(class_dir / "ckpt.pth")["epoch"] == 1
    assert not list(class_dir.glob("ckpt_best_*.pth"))
    monkeypatch.undo()  # training works again
    resumed = read_results(train(tmp_path, tiny_mvtec, "cut"))
    assert resumed == uninterrupted


def test_resume_with_other_augmentation_exits_2_naming_the_flag(tmp_path, tiny_mvtec, monkeypatch, capsys):
    interrupt_second_epoch(monkeypatch)
    run = ["--results_path", str(tmp_path / "cut"), "--seed", "3", *net_args(2)]
    assert main.cli([*run, *dataset_args(*tiny_mvtec)]) == 130
    latest = tmp_path / "cut/models/backbone_0/mvtec_toy/ckpt.pth"
    before = latest.read_bytes()
    monkeypatch.undo()
    capsys.readouterr()
    assert main.cli([*run, *dataset_args(*tiny_mvtec, "--hflip", "0.5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--hflip 0.0 -> 0.5" in err[0] and str(latest) in err[0], err
    assert latest.read_bytes() == before  # the interrupted run is kept, to resume with the same flags


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


@pytest.mark.parametrize("value", ["-0.1", "1", "1.5", "abc", "nan"])
def test_bad_holdout_exits_2_naming_the_flag(tmp_path, tiny_mvtec, capsys, value):
    code = main.cli(["--results_path", str(tmp_path / "r"), *net_args(1),
                     *dataset_args(*tiny_mvtec, "--holdout", value)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "--holdout" in err[0], err
    assert not (tmp_path / "r" / "models").exists()


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


@pytest.mark.parametrize("choice,mean,std", [
    (None, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),                 # default: the backbone's own (TF-Lite)
    ("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # the reference's
    ("backbone", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
])
def test_normalization_is_recorded_and_used_for_testing(tmp_path, tiny_mvtec, choice, mean, std):
    extra = () if choice is None else ("--normalization", choice)
    results = train(tmp_path, tiny_mvtec, "run", *extra)
    class_dir = results / "models" / "backbone_0" / "mvtec_toy"
    stored = load_checkpoint(class_dir / "ckpt_best_1.pth")
    assert tuple(stored["net"]["mean"]) == mean and tuple(stored["net"]["std"]) == std
    timing = stored["timing"]  # seconds per epoch for benchmarks/bench_fidelity.py
    assert timing["epochs"] == 2 and timing["train_seconds"] > 0
    assert len(timing["epoch_seconds"]) == 2 and sum(timing["epoch_seconds"]) <= timing["train_seconds"]
    assert 0 < sum(timing["stages"].values()) <= timing["train_seconds"] * 1.01


def test_bad_normalization_exits_2(tmp_path, tiny_mvtec, capsys):
    code = main.cli(["--results_path", str(tmp_path / "r"), *net_args(1, "--normalization", "tf"),
                     *dataset_args(*tiny_mvtec)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--normalization" in err[0]


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


def _plan(tmp_path: Path, cfg: main.data.DatasetConfig) -> dict[str, main.Job]:
    """main.plan_jobs of a training run (tiny efficientnet_lite0 net), by class."""
    opts = main.RunOptions(tmp_path / "results", (0,), 0, "group", "project", "test", "ckpt")
    net = main.NetOptions(("efficientnet_lite0",), (), 64, 64, 3, 2, 32, 1, glass.TrainConfig())
    return {job.classname: job for job in main.plan_jobs(opts, net, cfg, set())}


@pytest.mark.parametrize("name,distribution,wood,toothbrush", [
    ("mvtec", 0, 73, 73),  # round(64 * 329 / 288) replaces --resize 64, as the reference
    ("mvtec", 3, 73, 73),
    ("mvtec", 1, 73, 73),  # the reference trains these classes with it whatever run judged them
    ("mpdd", 0, 64, 64),  # MVTec AD's classes only
    ("custom", 0, 64, 64),
])
def test_planned_resize_per_class(tmp_path, caplog, name, distribution, wood, toothbrush):
    data, aug = write_tiny_mvtec(tmp_path, classes=("wood", "toothbrush", "toy"), n_train=2, n_good=1, n_bad=1)
    cfg = main.data.DatasetConfig(name, data, aug, ("wood", "toothbrush", "toy"), num_workers=0, resize=64,
                                  imagesize=64, fg=0, distribution=distribution)
    with caplog.at_level("INFO", logger="glass"):
        jobs = _plan(tmp_path, cfg)
    assert {c: job.net.resize for c, job in jobs.items()} == {"wood": wood, "toothbrush": toothbrush, "toy": 64}
    overrides = [r.getMessage() for r in caplog.records if "instead of --resize" in r.getMessage()]
    rule = "(round(imagesize * 329 / 288), the reference's rule for MVTec"
    assert overrides == ([f"{name}_wood: resize 73 instead of --resize 64 {rule} wood)",
                          f"{name}_toothbrush: resize 73 instead of --resize 64 {rule} toothbrush)"]
                         if wood == 73 else [])


def test_enlarged_classes_train_with_a_resize_below_imagesize(tmp_path):
    # The reference replaces --resize for these classes, so --resize 56 with --imagesize 64 runs there too.
    data, aug = write_tiny_mvtec(tmp_path, classes=("wood", "toothbrush"), n_train=2, n_good=1, n_bad=1)
    cfg = main.data.DatasetConfig("mvtec", data, aug, ("wood", "toothbrush"), num_workers=0, resize=56,
                                  imagesize=64, fg=0)
    jobs = _plan(tmp_path, cfg)
    assert {c: job.net.resize for c, job in jobs.items()} == {"wood": 73, "toothbrush": 73}
    sized = main.job_dataset_config(cfg, jobs["wood"])
    norm = jobs["wood"].net.mean, jobs["wood"].net.std
    assert sized.resize == 73
    assert build_dataset(sized, "wood", "test", *norm, seed=0, las=False)[0]["image"].shape[-2:] == (64, 64)


def test_enlarged_class_sees_the_centre_of_a_329_px_image(tmp_path):
    # 329 px images: the override (329 for a 288 crop) resizes nothing, and the centre crop of
    # 329 -> 288 starts at round(41 / 2) = 20, so every image and mask is exactly its [20:308] square.
    rng = np.random.default_rng(0)
    data, aug = tmp_path / "mvtec", tmp_path / "dtd"
    images = {}
    for classname in ("wood", "bottle"):
        images[classname] = rng.integers(0, 256, (3, 329, 329, 3), dtype=np.uint8)
        for path, image in zip(("train/good/000.png", "test/good/000.png", "test/hole/000.png"), images[classname]):
            PIL.Image.fromarray(image).save(_made(data / classname / path))
        mask = np.zeros((329, 329), np.uint8)
        mask[15:30, 100:200] = 255  # rows 15-19 fall outside the crop
        PIL.Image.fromarray(mask).save(_made(data / classname / "ground_truth/hole/000_mask.png"))
    PIL.Image.fromarray(images["wood"][0]).save(_made(aug / "a" / "0.jpg"))
    cfg = main.data.DatasetConfig("mvtec", data, aug, ("wood", "bottle"), num_workers=0, fg=0)  # --resize 288
    jobs = _plan(tmp_path, cfg)
    assert jobs["wood"].net.resize == 329 and jobs["bottle"].net.resize == 288
    mean, std = np.array(jobs["wood"].net.mean)[:, None, None], np.array(jobs["wood"].net.std)[:, None, None]

    def normalised(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((image[20:308, 20:308].transpose(2, 0, 1) / 255.0 - mean) / std).astype(np.float32))

    for classname, cropped in (("wood", True), ("bottle", False)):
        sized = main.job_dataset_config(cfg, jobs[classname])
        norm = jobs[classname].net.mean, jobs[classname].net.std
        train = build_dataset(sized, classname, "train", *norm, seed=0, las=True)[0]
        test = build_dataset(sized, classname, "test", *norm, seed=0, las=False)
        good, hole = sorted((test[0], test[1]), key=lambda item: item["is_anomaly"])
        for item, image in ((train, images[classname][0]), (good, images[classname][1]),
                            (hole, images[classname][2])):
            close = torch.allclose(item["image"], normalised(image), atol=1e-5)
            assert close == cropped, classname
        if cropped:
            expected_mask = np.zeros((288, 288), np.float32)
            expected_mask[0:10, 80:180] = 1
            assert torch.equal(hole["mask_gt"][0], torch.from_numpy(expected_mask))
            assert train["aug"].shape == (3, 288, 288)


def _made(path: Path) -> Path:
    """`path` with its folder created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_enlarged_class_checkpoint_records_its_resize(tmp_path, caplog, monkeypatch):
    data, aug = write_tiny_mvtec(tmp_path, classes=("wood",))
    results = tmp_path / "run"
    judged = []
    mean_image = main.distribution.mean_training_image
    monkeypatch.setattr(main.distribution, "mean_training_image",
                        lambda paths, **kw: judged.append(kw) or mean_image(paths, **kw))

    def dataset(*extra: str) -> list[str]:
        return ["dataset", "--batch_size", "4", "--num_workers", "0", *extra, "--fg", "0", "-d", "wood",
                "mvtec", str(data), str(aug)]

    with caplog.at_level("INFO", logger="glass"):
        code = main.cli(["--results_path", str(results), "--seed", "3", *net_args(1),
                         *dataset("--resize", "64", "--imagesize", "64", "--distribution", "1")])
    assert code == 0
    # Judged on the images of the reference's judge run (squashed to --resize, cropped to --imagesize),
    # trained and tested with the override, as the reference's training run.
    assert judged == [{"size": 64, "crop": 64}]
    assert sum("resize 73 instead of --resize 64" in r.getMessage() for r in caplog.records) == 1
    stored = load_checkpoint(results / "models/backbone_0/mvtec_wood/ckpt_best_0.pth")
    assert (stored["net"]["resize"], stored["net"]["imagesize"]) == (73, 64)
    first = read_results(results)["mvtec_wood"]
    # Testing reads the resize from the checkpoint. An explicit --resize does not conflict with it: as in
    # the reference, the class's override replaces any --resize.
    for extra in ((), ("--resize", "64", "--imagesize", "64"), ("--resize", "80", "--imagesize", "64")):
        assert main.cli(["--results_path", str(results), "--test", "test", *dataset(*extra)]) == 0, extra
        assert read_results(results)["mvtec_wood"] == first


def test_non_square_grayscale_faint_defects_train_and_test(tmp_path):
    # What users bring and the demo never makes: 96x72 grayscale frames of a busy texture, defects only
    # 12 grey levels brighter; the compiled closed-form GAS gradient runs in real training (--compile on).
    rng = np.random.default_rng(0)
    data, aug = tmp_path / "mvtec", tmp_path / "dtd" / "images"

    def frame() -> np.ndarray:
        return np.clip(rng.normal(128, 40, (72, 96)), 0, 255).astype(np.uint8)

    def save(path: Path, image: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        PIL.Image.fromarray(image).save(path)

    for i in range(6):
        save(data / "gray" / "train" / "good" / f"{i:03d}.png", frame())
        save(aug / "t" / f"t_{i}.jpg", frame())
    for i in range(3):
        save(data / "gray" / "test" / "good" / f"{i:03d}.png", frame())
        image, mask = frame(), np.zeros((72, 96), np.uint8)
        image[30:42, 40:52] = np.clip(image[30:42, 40:52].astype(int) + 12, 0, 255)
        mask[30:42, 40:52] = 255
        save(data / "gray" / "test" / "faint" / f"{i:03d}.png", image)
        save(data / "gray" / "ground_truth" / "faint" / f"{i:03d}_mask.png", mask)
    results = tmp_path / "run"
    code = main.cli(["--results_path", str(results), *net_args(2, "--compile", "on"),
                     "dataset", "--batch_size", "4", "--num_workers", "0", "--resize", "64", "--imagesize", "64",
                     "--fg", "0", "--distribution", "2", "-d", "gray", "mvtec", str(data), str(aug)])
    assert code == 0
    row = read_results(results)["mvtec_gray"]
    for name in ("image_auroc", "pixel_auroc", "pixel_pro"):
        assert 0.0 <= float(row[name]) <= 1.0
    stored = load_checkpoint(results / "models" / "backbone_0" / "mvtec_gray" / "ckpt_best_1.pth")
    assert stored["net"]["imagesize"] == 64 and stored["net"]["resize"] == 64
    model, _ = load_trained_model(results / "models" / "backbone_0" / "mvtec_gray")
    scores, maps, _ = model.predict(torch.zeros(1, 3, 64, 64))
    assert maps.shape == (1, 64, 64) and 0.0 <= scores[0] <= 1.0


def test_random_train_crops_train_and_are_recorded_in_the_checkpoint(tmp_path, tiny_mvtec):
    results = tmp_path / "random"
    code = main.cli(["--results_path", str(results), "--seed", "3", *net_args(1),
                     *dataset_args(*tiny_mvtec, "--train_crop", "random")])
    assert code == 0
    stored = load_checkpoint(results / "models" / "backbone_0" / "mvtec_toy" / "ckpt.pth")
    assert stored["meta"]["dataset_options"]["train_crop"] == "random" and stored["finished"]
    assert 0.0 <= float(read_results(results)["mvtec_toy"]["image_auroc"]) <= 1.0


@pytest.mark.parametrize("flag,value", [("--train_crop", "left"), ("--jpeg", "101"), ("--jpeg", "-5"),
                                        ("--blur", "9")])
def test_bad_train_crop_or_jpeg_exits_2_naming_the_flag(tmp_path, tiny_mvtec, capsys, flag, value):
    code = main.cli(["--results_path", str(tmp_path / "r"), *net_args(1), *dataset_args(*tiny_mvtec, flag, value)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and flag in err[-1], err
    assert not (tmp_path / "r" / "models").exists()


def test_centre_crop_share_known_answers():
    """The centred square's share of an image: whole for squares, 256/640 for 640x256 frames, either way up."""
    assert main.centre_crop_share(256, 256) == 1.0
    assert main.centre_crop_share(640, 256) == pytest.approx(0.4)
    assert main.centre_crop_share(256, 640) == pytest.approx(0.4)
    assert main.centre_crop_share(1280, 720) == pytest.approx(0.5625)


@pytest.mark.parametrize(("size", "crop", "warned"), [((640, 256), "centre", True), ((640, 256), "random", False),
                                                      ((300, 280), "centre", False),
                                                      ((1500, 1000), "centre", False)])
def test_centre_crop_warning_on_wide_training_images(tmp_path, caplog, size, crop, warned):
    """Wide training frames under the centre crop get a warning naming their size and --train_crop random."""
    image = tmp_path / "frame.png"
    PIL.Image.new("RGB", size).save(image)
    (tmp_path / "corrupt.png").write_bytes(b"not a png")
    train_set = SimpleNamespace(samples=[SimpleNamespace(image_path=image)])
    sized = SimpleNamespace(train_crop=crop, resize=256, imagesize=256)
    with caplog.at_level("WARNING", logger="glass"):
        main._warn_centre_crop("custom_line", train_set, sized)
    messages = [r.getMessage() for r in caplog.records]
    assert bool(messages) == warned
    if warned:
        assert "640x256" in messages[0] and "40 %" in messages[0] and "--train_crop random" in messages[0]
    # An unreadable first image is left to the dataset's own one-line error.
    corrupt = SimpleNamespace(samples=[SimpleNamespace(image_path=tmp_path / "corrupt.png")])
    main._warn_centre_crop("custom_line", corrupt, sized)
