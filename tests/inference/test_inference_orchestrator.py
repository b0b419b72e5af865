"""Orchestrator: finds trained models, ranks them on sample frames, tracks with the best fit."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import video_io
from inference import inference_orchestrator as orchestrator
from inference.engine import EngineConfig, InferenceEngine
from tests.helpers import write_tiny_mvtec

SIZE = 64


def stripes(rng: np.random.Generator) -> np.ndarray:
    """High-contrast diagonal stripes: nothing like the toy textures."""
    period = int(rng.integers(6, 10))
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    band = (((x + y) // (period // 2)) % 2).astype(np.uint8) * 200 + 20
    return np.dstack([band, band // 2, 255 - band])


@pytest.fixture(scope="module")
def results(tiny_model, tmp_path_factory) -> Path:
    """A results folder with two trained models: the toy model and one trained on stripes."""
    import main

    root = tmp_path_factory.mktemp("orchestrator")
    results = root / "results"
    shutil.copytree(tiny_model.class_dir, results / "models" / "backbone_0" / "mvtec_toy")
    data, aug = write_tiny_mvtec(root / "stripes_data", classes=("stripes",))
    rng = np.random.default_rng(1)
    for path in sorted((data / "stripes").glob("*/good/*.png")):
        cv2.imwrite(str(path), stripes(rng))
    code = main.cli([
        "--results_path", str(results / "other"), "--seed", "3",
        "net", "-b", "efficientnet_lite0", "--pretrain_embed_dimension", "64", "--target_embed_dimension", "64",
        "--dsc_hidden", "32", "--meta_epochs", "2", "--step", "2",
        "dataset", "--batch_size", "4", "--num_workers", "0", "--resize", "64", "--imagesize", "64",
        "--fg", "0", "--distribution", "2", "-d", "stripes", "mvtec", str(data), str(aug),
    ])
    assert code == 0
    return results


@pytest.fixture(scope="module")
def toy_video(tiny_model, tmp_path_factory) -> Path:
    """10 frames of the toy product's defect-free test images."""
    good = sorted((tiny_model.data_path / "toy" / "test" / "good").glob("*.png"))
    path = tmp_path_factory.mktemp("video") / "toy.mp4"
    with video_io.AtomicVideoWriter(path, 10.0, (SIZE, SIZE)) as writer:
        for index in range(10):
            writer.write(cv2.imread(str(good[index % len(good)])))
    return path


def test_finds_every_trained_model(results):
    found = orchestrator.find_models(results)
    assert [p.name for p in found] == ["mvtec_toy", "mvtec_stripes"]  # sorted by path: models/ < other/
    assert found[1] == results / "other" / "models" / "backbone_0" / "mvtec_stripes"


def test_list_models_prints_each_model(results, capsys):
    assert orchestrator.cli(["--list_models", "--results_path", str(results)]) == 0
    out = capsys.readouterr().out
    assert "mvtec_toy" in out and "mvtec_stripes" in out and "efficientnet_lite0" in out


def test_describe_reads_method_size_and_the_engines_thresholds(tiny_model, torch_engine, tmp_path):
    row = orchestrator.describe(tiny_model.class_dir)
    assert (row["class_name"], row["method"], row["backbone"], row["imagesize"]) == (
        "mvtec_toy", "glass", "efficientnet_lite0", 64)
    assert row["image_threshold"] == pytest.approx(torch_engine.threshold)
    assert row["pixel_threshold"] == pytest.approx(torch_engine.info.pixel_threshold)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ckpt_best_1.pth").write_bytes(b"not a checkpoint")
    row = orchestrator.describe(broken)
    assert row["backbone"] == "?" and "not a readable checkpoint" in row["error"] and "method" not in row


def test_sample_frames_are_spread_over_the_whole_video(toy_video):
    samples = video_io.sample_frames(toy_video, 4)
    assert [index for index, _ in samples] == [0, 3, 6, 9]
    assert all(frame.shape == (SIZE, SIZE, 3) for _, frame in samples)
    assert [i for i, _ in video_io.sample_frames(toy_video, 50)] == list(range(10))  # never more than there are


def test_ranks_by_median_sample_score_and_tracks_with_the_lowest(results, toy_video, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = orchestrator.cli(["--video_path", str(toy_video), "--results_path", str(results), "--sample_frames", "5",
                             "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    selection = json.loads(next(tmp_path.rglob("model_selection.json")).read_text())
    ranking = selection["ranking"]
    assert sorted(r["class_name"] for r in ranking) == ["mvtec_stripes", "mvtec_toy"]
    assert ranking[0]["median_score"] <= ranking[1]["median_score"]
    assert selection["selected"] == ranking[0] and f"selected {ranking[0]['class_name']}" in out
    assert selection["sample_frames"] == [0, 2, 4, 7, 9]
    # the ranking's numbers are each engine's own scores on those frames
    frames = [frame for _, frame in video_io.sample_frames(toy_video, 5)]
    for entry in ranking:
        engine = InferenceEngine.from_config(EngineConfig(entry["class_dir"], device="cpu"))
        scores = engine.image_scores(frames)
        assert entry["mean_score"] == pytest.approx(np.mean(scores), abs=1e-6)
        assert entry["max_score"] == pytest.approx(np.max(scores), abs=1e-6)
        assert entry["median_score"] == pytest.approx(np.median(scores), abs=1e-6)
        normal = orchestrator.normal_scores(Path(entry["class_dir"]))
        assert entry["normality"] == pytest.approx((np.median(scores) - normal.mean()) / normal.std(), rel=1e-5)
    # then tracking ran with the chosen model, into its organized output folder
    report_path = next(tmp_path.rglob("tracking_report.json"))
    report = json.loads(report_path.read_text())
    assert report["model"]["class_name"] == ranking[0]["class_name"] and report["performance"]["frames"] == 10
    assert report_path.parents[2] == tmp_path / "output" / ranking[0]["class_name"]


def test_a_broken_model_is_skipped_and_listed(results, toy_video, tmp_path, monkeypatch, capsys):
    broken = tmp_path / "results"
    shutil.copytree(results, broken)
    (broken / "models" / "backbone_0" / "mvtec_toy" / "ckpt_best_1.pth").write_bytes(b"garbage")
    monkeypatch.chdir(tmp_path)
    code = orchestrator.cli(["--video_path", str(toy_video), "--results_path", str(broken), "--sample_frames", "3",
                             "--device", "cpu", "--no_organized_output", "--output_path", str(tmp_path / "o.mp4")])
    assert code == 0
    out = capsys.readouterr().out
    assert "selected mvtec_stripes" in out and "skipped" in out
    selection = json.loads((tmp_path / "o_selection.json").read_text())
    skipped = selection["ranking"][-1]
    assert skipped["class_name"] == "mvtec_toy" and "ckpt_best_1.pth" in skipped["error"]
    assert selection["selected"]["class_name"] == "mvtec_stripes"


@pytest.mark.parametrize("case, needle", [
    ("no video", "--video_path"),
    ("missing results", "--results_path"),
    ("no models", "no trained model"),
    ("unreadable video", "broken.mp4"),
    ("bad sample count", "--sample_frames"),
    ("bad device", "--device"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(results, toy_video, tmp_path, monkeypatch, capsys,
                                                            case, needle):
    monkeypatch.chdir(tmp_path)
    argv = ["--video_path", str(toy_video), "--results_path", str(results), "--device", "cpu"]
    if case == "no video":
        argv = ["--results_path", str(results)]
    elif case == "missing results":
        argv[3] = str(tmp_path / "nowhere")
    elif case == "no models":
        (tmp_path / "empty_results").mkdir()
        argv[3] = str(tmp_path / "empty_results")
    elif case == "unreadable video":
        (tmp_path / "broken.mp4").write_bytes(b"nope" * 50)
        argv[1] = str(tmp_path / "broken.mp4")
    elif case == "bad sample count":
        argv += ["--sample_frames", "0"]
    elif case == "bad device":
        argv[-1] = "tpu"
    before = sorted(tmp_path.rglob("*"))
    code = orchestrator.cli(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("flags, needle", [
    (["--max_frames", "0"], "--max_frames"),
    (["--output_path", "out.avi"], "--output_path"),
    (["--display"], "--display"),
])
def test_tracking_flags_are_checked_before_any_model_scores(results, toy_video, tmp_path, monkeypatch, capsys,
                                                            flags, needle):
    def never(*args):
        raise AssertionError("a model was loaded before the flags were checked")

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(orchestrator, "score_model", never)
    code = orchestrator.cli(["--video_path", str(toy_video), "--results_path", str(results), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_rank_goes_by_the_median_so_defect_frames_do_not_count_against_the_right_model():
    """The fitting model scores the few defect frames high (mean up) but the many normal ones low (median down)."""
    fitting = orchestrator.ModelScore("a", "a", mean_score=0.79, median_score=0.717, max_score=0.99)
    other = orchestrator.ModelScore("b", "b", mean_score=0.76, median_score=0.727, max_score=0.97)
    broken = orchestrator.ModelScore("c", "c", error="corrupt")
    assert [s.class_name for s in orchestrator.rank([other, broken, fitting])] == ["a", "b", "c"]


@pytest.fixture(scope="module")
def method_results(fitted_methods, tmp_path_factory) -> Path:
    """A results folder holding only the PatchCore, PaDiM, DRAEM and autoencoder models
    (models/<method>/backbone_0/mvtec_toy)."""
    results = tmp_path_factory.mktemp("method_results") / "results"
    shutil.copytree(fitted_methods.results / "models", results / "models")
    return results


def test_models_of_every_method_are_found_and_listed(method_results, capsys):
    found = orchestrator.find_models(method_results)
    methods = ("ae", "draem", "padim", "patchcore")
    assert found == [method_results / "models" / m / "backbone_0" / "mvtec_toy" for m in methods]
    assert orchestrator.cli(["--list_models", "--results_path", str(method_results)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "mvtec_toy" in line]
    assert len(lines) == 4
    for line in lines:  # backbone and size read from each checkpoint, not an error
        backbone = "none" if any(f"/{m}/" in line for m in ("ae", "draem")) else "efficientnet_lite0"
        assert f" {backbone} " in line and " 64 " in line and "(" not in line, line


def test_orchestrator_ranks_and_tracks_with_method_models(method_results, fitted_methods, tmp_path, monkeypatch):
    good = sorted((fitted_methods.data_path / "toy" / "test" / "good").glob("*.png"))
    video = tmp_path / "toy.mp4"
    with video_io.AtomicVideoWriter(video, 10.0, (SIZE, SIZE)) as writer:
        for index in range(6):
            writer.write(cv2.imread(str(good[index % len(good)])))
    monkeypatch.chdir(tmp_path)
    code = orchestrator.cli(["--video_path", str(video), "--results_path", str(method_results), "--sample_frames", "3",
                             "--device", "cpu", "--backend", "torch"])
    assert code == 0
    selection = json.loads(next(tmp_path.rglob("model_selection.json")).read_text())
    ranking = selection["ranking"]
    assert sorted(Path(r["class_dir"]).parts[-3] for r in ranking) == ["ae", "draem", "padim", "patchcore"]
    assert all(r["error"] is None for r in ranking)
    frames = [frame for _, frame in video_io.sample_frames(video, 3)]
    for entry in ranking:
        engine = InferenceEngine.from_config(EngineConfig(entry["class_dir"], device="cpu", backend="torch"))
        assert entry["median_score"] == pytest.approx(np.median(engine.image_scores(frames)), abs=1e-6)
        assert entry["normality"] is not None  # the held-out calibration scores of the checkpoint
    report = json.loads(next(tmp_path.rglob("tracking_report.json")).read_text())
    assert report["settings"]["class_dir"] == ranking[0]["class_dir"]
    assert report["model"]["method"] == Path(ranking[0]["class_dir"]).parts[-3]
