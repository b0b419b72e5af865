"""main.py fanned out: every class a Ray task on a local Ray instance, or one process per listed device; the
same results.csv as a sequential run, a class with corrupt data failing alone, a killed worker resuming."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

import main
import utils
from model import load_checkpoint
from tests.helpers import net_args, one_line_error, write_tiny_mvtec

CLASSES = ("a", "b")


def dataset_for(data: Path, aug: Path, *classes: str) -> list[str]:
    """The tiny dataset options (64 px, batch 4, no loader workers, manifold forced) for these classes."""
    picks = [arg for cls in classes for arg in ("-d", cls)]
    return ["dataset", "--batch_size", "4", "--num_workers", "0", "--resize", "64", "--imagesize", "64",
            "--fg", "0", "--distribution", "2", *picks, "mvtec", str(data), str(aug)]


def train(results: Path, data: Path, aug: Path, *global_flags: str, classes: tuple[str, ...] = CLASSES) -> int:
    """main.cli: the tiny GLASS (2 epochs, seed 3) on the classes into results."""
    return main.cli(["--results_path", str(results), "--seed", "3", *global_flags, *net_args(2),
                     *dataset_for(data, aug, *classes)])


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(data, aug, results) of the two classes trained one after the other in this process (no Ray)."""
    root = tmp_path_factory.mktemp("sequential")
    data, aug = write_tiny_mvtec(root, classes=CLASSES)
    results = root / "results"
    assert train(results, data, aug) == 0
    return data, aug, results


def rows(results: Path) -> dict[str, dict[str, str]]:
    """results.csv rows by class (the Mean row included)."""
    return {row["class"]: row for row in read_all(results / "results.csv")}


def read_all(path: Path) -> list[dict[str, str]]:
    """Every row of a CSV file."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_two_classes_on_ray_give_the_sequential_results_csv(ray_local, sequential, tmp_path):
    data, aug, expected = sequential
    results = tmp_path / "ray"
    assert train(results, data, aug, "--ray", "auto") == 0
    assert (results / "results.csv").read_bytes() == (expected / "results.csv").read_bytes()
    for cls in CLASSES:
        class_dir = results / "models" / "backbone_0" / f"mvtec_{cls}"
        assert load_checkpoint(class_dir / "ckpt.pth")["finished"]
        assert load_checkpoint(class_dir / "ckpt_best_1.pth")["timing"]["epochs"] == 2
        assert len(list((results / "eval" / "backbone_0" / f"mvtec_{cls}").glob("*.png"))) == 6
    assert not list(results.glob(".scale-out-*")), "the shared-filesystem token is removed"


def test_a_class_with_corrupt_data_fails_alone(ray_local, sequential, tmp_path, capsys):
    data, aug, expected = sequential
    results = tmp_path / "results"
    shutil.copytree(expected, results)  # a and b finished: a is only tested again
    bad_data = tmp_path / "mvtec"
    shutil.copytree(data, bad_data)
    shutil.copytree(bad_data / "b", bad_data / "bad")
    broken = bad_data / "bad" / "train" / "good" / "002.png"
    broken.write_bytes(broken.read_bytes()[:200])
    code = train(results, bad_data, aug, "--ray", "auto", classes=("a", "bad"))
    assert code == 2
    error = one_line_error(capsys)
    assert "1 of 2 jobs failed" in error and "mvtec_bad" in error and str(broken) in error
    table = rows(results)
    # the table gains the notes column while a row has a note; the other rows keep their values
    assert table["mvtec_a"] == {**rows(expected)["mvtec_a"], "notes": ""}
    assert table["mvtec_b"] == {**rows(expected)["mvtec_b"], "notes": ""}  # kept from before
    failed = table["mvtec_bad"]
    assert failed["notes"].startswith("failed: cannot decode image") and str(broken) in failed["notes"]
    assert all(failed[name] == "" for name in utils.METRIC_NAMES)
    assert table["Mean"]["image_auroc"] == rows(expected)["Mean"]["image_auroc"]  # the failed class is left out
    assert [r["class"] for r in utils.read_results_csv(results / "results.csv")] == ["mvtec_a", "mvtec_b",
                                                                                    "mvtec_bad"]
    assert not (results / "models" / "backbone_0" / "mvtec_bad").exists()


@pytest.mark.parametrize("sync", ["auto", "copy"])
def test_a_killed_worker_is_retried_and_resumes_from_its_checkpoint(ray_local, sequential, tmp_path, sync):
    data, aug, expected = sequential
    ray_local.write_text("")  # arms scale_out's fault injection: the first checkpoint's worker is SIGKILLed
    results = tmp_path / "results"
    # auto: the worker shares this filesystem and resumes from ckpt.pth in place; copy: the checkpoint reaches
    # the driver through the results store, and the retry fetches it
    assert train(results, data, aug, "--ray", "auto", "--ray_sync", sync, classes=("a",)) == 0
    assert not ray_local.exists(), "the worker was killed"
    assert rows(results)["mvtec_a"] == rows(expected)["mvtec_a"]
    final = load_checkpoint(results / "models" / "backbone_0" / "mvtec_a" / "ckpt_best_1.pth")
    assert final["timing"]["epochs"] == 1  # the retry trained the second epoch only: it resumed after the first
    assert len(list((results / "eval" / "backbone_0" / "mvtec_a").glob("*.png"))) == 6


def test_gpu_list_spreads_classes_over_one_process_per_device(sequential, tmp_path, monkeypatch):
    data, aug, expected = sequential
    monkeypatch.setattr(main, "gpu_devices", lambda gpu: ["cpu"] * len(gpu))  # two "devices" on this CPU
    results = tmp_path / "devices"
    assert train(results, data, aug, "--gpu", "0", "1") == 0
    assert (results / "results.csv").read_bytes() == (expected / "results.csv").read_bytes()


def test_jobs_are_started_by_their_number_of_training_images(tmp_path):
    data, aug = write_tiny_mvtec(tmp_path, classes=("small", "large"), n_train=3)
    good = data / "large" / "train" / "good"
    for index in range(3, 20):  # 20 images, 8 of them held out for calibration: 12 to train on
        shutil.copy(good / "000.png", good / f"{index:03d}.png")
    cfg = main.data.DatasetConfig("mvtec", data, aug, ("small", "large", "missing"), num_workers=0, resize=64,
                                  imagesize=64, fg=0, holdout=0.1)
    opts = main.RunOptions(tmp_path / "results", (0,), 0, "group", "project", "test", "ckpt")
    net = main.NetOptions(("efficientnet_lite0",), (), 64, 64, 3, 2, 32, 1, main.TrainConfig())
    jobs = main.plan_jobs(opts, net, cfg, set(), validate=False)  # the missing class fails in its own job
    tasks = [main.class_task(job, opts, cfg) for job in jobs]
    assert [task.cost for task in tasks] == [3.0, 12.0, 0.0]
    assert [tasks[index].name for index in main.scale_out.start_order(tasks)] == [
        "mvtec_large backbone_0", "mvtec_small backbone_0", "mvtec_missing backbone_0"]


def test_gpu_list_without_cuda_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(main.torch.cuda, "is_available", lambda: False)
    data, aug = write_tiny_mvtec(tmp_path, classes=("a",), n_train=2, n_good=1, n_bad=1)
    assert train(tmp_path / "r", data, aug, "--gpu", "0", "1", classes=("a",)) == 2
    error = one_line_error(capsys)
    assert "--gpu 0 1" in error and "CUDA is not available" in error
    assert not (tmp_path / "r").exists()


def test_ray_client_address_is_refused_in_one_line(tmp_path, capsys):
    data, aug = write_tiny_mvtec(tmp_path, classes=("a",), n_train=2, n_good=1, n_bad=1)
    assert train(tmp_path / "r", data, aug, "--ray", "ray://head:10001", classes=("a",)) == 2
    assert "Ray Client" in one_line_error(capsys)


def test_expand_gpu_list_reads_the_reference_spelling():
    assert main.expand_gpu_list(["--gpu", "0", "1", "--seed", "2", "net", "-b", "x"]) == [
        "--gpu", "0", "--gpu", "1", "--seed", "2", "net", "-b", "x"]
    assert main.expand_gpu_list(["--seed", "1", "dataset", "-d", "2", "3"]) == ["--seed", "1", "dataset", "-d", "2",
                                                                                 "3"]
    assert main.expand_gpu_list(["--gpu", "0", "net"]) == ["--gpu", "0", "net"]
