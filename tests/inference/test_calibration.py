"""Held-out calibration: thresholds from defect-free images the model did not train on."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import main
from glass import GLASS, TrainConfig
from inference import calibration
from inference.engine import EngineConfig, InferenceEngine
from inference.model_info import ModelInfo
from model import CheckpointError, GlassModel, NetConfig, final_checkpoint_path, load_checkpoint
from methods.registry import load_trained_model
from tests.helpers import interrupt_second_epoch, write_tiny_mvtec

N_TRAIN = 20  # holds out max(8, round(0.1 * 20)) = 8, trains on 12


def _train(root: Path, data: Path, aug: Path, *extra: str) -> Path:
    """The tiny model of conftest (64 px, dims 64, 2 epochs) on `data`; returns its class directory."""
    code = main.cli([
        "--results_path", str(root), "--seed", "3",
        "net", "-b", "efficientnet_lite0", "--pretrain_embed_dimension", "64", "--target_embed_dimension", "64",
        "--dsc_hidden", "32", "--meta_epochs", "2", "--step", "2",
        "dataset", "--batch_size", "4", "--num_workers", "0", "--resize", "64", "--imagesize", "64",
        "--fg", "0", "--distribution", "2", *extra, "-d", "toy", "mvtec", str(data), str(aug),
    ])
    assert code == 0
    return root / "models" / "backbone_0" / "mvtec_toy"


@pytest.fixture(scope="module")
def heldout_run(tmp_path_factory):
    """(data path, aug path, class dir) of a tiny model trained on 20 images with the default --holdout."""
    root = tmp_path_factory.mktemp("calibration")
    data, aug = write_tiny_mvtec(root, n_train=N_TRAIN, n_good=2, n_bad=2)
    return data, aug, _train(root / "results", data, aug)


def _stored(class_dir: Path) -> dict:
    return load_checkpoint(final_checkpoint_path(class_dir))


# ---- rules -----------------------------------------------------------------------------------------

def test_leave_one_out_of_the_max_rule_flags_the_largest_only():
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    rate = calibration.leave_one_out_rate(list(scores), lambda s: calibration.image_threshold(np.array(s), "max"),
                                          float)
    assert rate == 0.25  # only the largest exceeds the max of the others
    assert math.isnan(calibration.leave_one_out_rate([0.5], max, float))


def test_calibrate_values_and_caps():
    maps = [np.full((32, 48), v, np.float32) for v in (0.2, 0.3, 0.4)]
    maps[1][5, 5] = 0.6
    summaries = [calibration.MapSummary.of(m) for m in maps]
    result = calibration.calibrate(np.array([0.5, 0.6, 0.7]), summaries, ["a.png", "b.png", "c.png"], "heldout",
                                   image_rule="max", pixel_rule="max")
    assert result["image_threshold"] == pytest.approx(0.7) and result["pixel_threshold"] == pytest.approx(0.6)
    assert result["false_alarm_rate"] == pytest.approx(1 / 3)
    assert result["pixel_false_alarm_rate"] == pytest.approx(1 / 3)  # b's peak is above the others' maxima
    assert result["images"] == ["a.png", "b.png", "c.png"] and result["source"] == "heldout"
    spread = calibration.calibrate(np.array([0.0, 0.99]), summaries[:2], ["a", "b"], "training")
    assert spread["image_threshold"] == calibration.MAX_THRESHOLD  # mean + 3 std above 1 is capped
    with pytest.raises(ValueError):
        calibration.calibrate(np.array([0.5]), summaries[:1], ["a"], "elsewhere")


def test_the_training_spread_floors_a_too_narrow_heldout_spread():
    heldout = np.array([0.50, 0.51, 0.49, 0.50])  # std 0.007: eight or fewer images can look this tight
    training = np.array([0.40, 0.50, 0.60, 0.45, 0.55])  # std 0.07
    flat = [calibration.MapSummary.of(np.full((8, 8), s, np.float32)) for s in heldout]
    result = calibration.calibrate(heldout, flat, list("abcd"), "heldout", training,
                                   [calibration.MapSummary.of(np.full((8, 8), s, np.float32)) for s in training])
    assert result["image_threshold"] == pytest.approx(0.5 + 3 * training.std())
    assert result["pixel_threshold"] == pytest.approx(0.5 + 3 * training.std(), rel=1e-6)
    tail = np.quantile(training, calibration.TAIL)  # 0.598: below 0.5 + 3 * 0.07, so the floor does not bind here
    assert result["train_spread"] == {"images": 5, "image_std": pytest.approx(training.std()),
                                      "map_max_std": pytest.approx(training.std(), rel=1e-6),
                                      "image_tail": pytest.approx(tail), "map_max_tail": pytest.approx(tail, rel=1e-6)}
    assert result["false_alarm_rate"] == 0.0
    wide = np.array([0.4, 0.6, 0.5, 0.5])  # its own spread is larger: the training spread changes nothing
    train = calibration.TrainingScores.of(training)
    assert calibration.image_threshold(wide, train=train) == pytest.approx(0.5 + 3 * wide.std())


def test_the_training_tail_floors_a_threshold_that_the_heldout_images_set_too_low():
    # 18 held-out frames that missed a rare look; 160 training frames of which 4 show it (at 0.65).
    heldout = np.linspace(0.56, 0.60, 18)
    training = np.r_[np.linspace(0.55, 0.61, 156), [0.65] * 4]
    train = calibration.TrainingScores.of(training)
    assert train.tail == pytest.approx(np.quantile(training, calibration.TAIL)) and train.tail == pytest.approx(0.65)
    previous = calibration.image_threshold(heldout, calibration.PREVIOUS, train)
    assert previous == pytest.approx(max(0.60, heldout.mean() + 3 * training.std()))
    assert previous < 0.65  # the earlier rule would flag every frame showing the look
    assert calibration.image_threshold(heldout, train=train) == pytest.approx(0.65)  # the chosen rule: the floor
    flat = [calibration.MapSummary.of(np.full((4, 4), v, np.float32)) for v in heldout]
    assert calibration.pixel_threshold(flat, train=train) == pytest.approx(0.65)
    # Without training images (source "training") there is no floor, and nothing in JSON is infinite.
    assert calibration.image_threshold(heldout) == pytest.approx(max(0.60, heldout.mean() + 3 * heldout.std()))
    alone = calibration.calibrate(heldout, flat, [str(i) for i in range(18)], "training")
    assert alone["train_spread"]["image_tail"] is None and alone["train_spread"]["images"] == 0


def test_map_summary_subsamples_large_maps_but_keeps_the_maximum():
    amap = np.zeros((1000, 1500), np.float32)
    amap[501, 733] = 0.9
    summary = calibration.MapSummary.of(amap)
    assert summary.maximum == pytest.approx(0.9) and summary.pixels.size <= calibration.MAP_SAMPLE


# ---- training --------------------------------------------------------------------------------------

def test_heldout_images_are_listed_scored_as_frames_and_calibrate_the_engine(heldout_run):
    data, _, class_dir = heldout_run
    stored = _stored(class_dir)
    cal = stored["calibration"]
    train_good = sorted(p.name for p in (data / "toy" / "train" / "good").iterdir())
    assert cal["source"] == "heldout"
    assert cal["images"] == stored["meta"]["heldout"] == [train_good[i] for i in (1, 3, 6, 8, 11, 13, 16, 18)]
    assert stored["meta"]["train_images"] == N_TRAIN - 8 and stored["train_scores"].shape == (N_TRAIN - 8,)
    assert 0.0 <= cal["image_threshold"] <= 1.0 and 0.0 <= cal["pixel_threshold"] <= 1.0
    assert 0.0 <= cal["false_alarm_rate"] <= 1.0 and 0.0 <= cal["pixel_false_alarm_rate"] <= 1.0
    assert cal["image_rule"] == calibration.IMAGE_RULE and cal["pixel_rule"] == calibration.PIXEL_RULE
    assert cal["image_threshold"] >= max(cal["image_scores"]) or cal["image_threshold"] == calibration.MAX_THRESHOLD

    engine = InferenceEngine.from_config(EngineConfig(str(class_dir), device="cpu", backend="torch"))
    frames = [cv2.imread(str(data / "toy" / "train" / "good" / name), cv2.IMREAD_COLOR) for name in cal["images"]]
    np.testing.assert_allclose(engine.image_scores(frames), cal["image_scores"], atol=1e-6)
    assert engine.threshold == pytest.approx(cal["image_threshold"])
    assert engine.info.pixel_threshold == pytest.approx(cal["pixel_threshold"])
    override = InferenceEngine.from_config(EngineConfig(str(class_dir), device="cpu", backend="torch",
                                                        threshold=0.25))
    assert override.threshold == 0.25 and override.info.pixel_threshold == pytest.approx(cal["pixel_threshold"])


def test_onnx_export_carries_both_thresholds(heldout_run, tmp_path):
    from inference import onnx_export

    _, _, class_dir = heldout_run
    cal = _stored(class_dir)["calibration"]
    onnx_path, _ = onnx_export.export_onnx(class_dir, tmp_path / "m.onnx", dynamic_batch=True)
    info, _ = onnx_export.read_model_description(onnx_path)
    assert info.threshold == pytest.approx(cal["image_threshold"])
    assert info.pixel_threshold == pytest.approx(cal["pixel_threshold"])


def test_same_seed_same_calibration(heldout_run, tmp_path):
    data, aug, class_dir = heldout_run
    again = _train(tmp_path / "again", data, aug)
    assert _stored(again)["calibration"] == _stored(class_dir)["calibration"]


def test_without_holdout_the_training_images_calibrate_and_say_so(heldout_run, tmp_path, caplog):
    data, aug, _ = heldout_run
    with caplog.at_level(logging.WARNING):
        class_dir = _train(tmp_path / "all", data, aug, "--holdout", "0")
    assert "held out" not in caplog.text  # --holdout 0 is a choice: no warning
    stored = _stored(class_dir)
    cal = stored["calibration"]
    assert cal["source"] == "training" and len(cal["images"]) == N_TRAIN and stored["meta"]["heldout"] == []
    assert 0.0 <= cal["false_alarm_rate"] <= 1.0


def test_too_few_images_hold_out_nothing_with_a_warning(tmp_path, caplog):
    data, aug = write_tiny_mvtec(tmp_path, n_good=1, n_bad=1)  # 6 training images < 2 x 8
    with caplog.at_level(logging.WARNING):
        class_dir = _train(tmp_path / "results", data, aug)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "held out" in r.getMessage()]
    assert len(warnings) == 1 and "optimistic" in warnings[0] and "add training images" in warnings[0]
    assert _stored(class_dir)["calibration"]["source"] == "training"


def test_old_checkpoint_without_calibration_falls_back_to_training_scores(heldout_run):
    _, _, class_dir = heldout_run
    net, data = load_trained_model(class_dir)
    del data["calibration"]
    info = ModelInfo.from_checkpoint(data, "old", net.extractor.strides)
    scores = data["train_scores"].numpy().astype(np.float64)
    expected = min(scores.mean() + 3 * scores.std(), 0.999)  # the 3-sigma fallback, written out
    assert info.threshold == pytest.approx(expected) and info.pixel_threshold == pytest.approx(expected)


def _tiny_glass(class_dir: Path, heldout: list[str]) -> GLASS:
    cfg = NetConfig(backbone="efficientnet_lite0", layers=("blocks.2", "blocks.4"), pretrain_embed_dimension=16,
                    target_embed_dimension=16, dsc_hidden=8, imagesize=64, resize=64)
    return GLASS(GlassModel.build(cfg, pretrained=False), TrainConfig(), torch.device("cpu"), class_dir, svd=0,
                 heldout=heldout)


def test_resume_requires_the_same_heldout_images(tmp_path):
    latest = tmp_path / "ckpt.pth"
    _tiny_glass(tmp_path, ["a/001.png", "a/005.png"])._save_latest(latest, 1, None, torch.Generator(), finished=False)
    assert _tiny_glass(tmp_path, ["b/001.png", "b/005.png"])._resume(latest, torch.Generator())["epoch"] == 1
    for other in ([], ["a/001.png", "a/006.png"]):
        with pytest.raises(CheckpointError, match="--holdout") as info:
            _tiny_glass(tmp_path, other)._resume(latest, torch.Generator())
        assert "\n" not in str(info.value)
    # A finished run (e.g. from before --holdout) is only tested again: its held-out list does not matter.
    _tiny_glass(tmp_path, [])._save_latest(latest, 2, None, torch.Generator(), finished=True)
    assert _tiny_glass(tmp_path, ["a/001.png"])._resume(latest, torch.Generator())["finished"]


def test_a_resumed_run_holds_out_the_same_images_and_calibrates_the_same(heldout_run, tmp_path, monkeypatch):
    data, aug, class_dir = heldout_run
    interrupt_second_epoch(monkeypatch)
    with pytest.raises(AssertionError):  # _train asserts exit code 0; Ctrl-C gives 130
        _train(tmp_path / "cut", data, aug)
    cut = tmp_path / "cut" / "models" / "backbone_0" / "mvtec_toy"
    assert load_checkpoint(cut / "ckpt.pth")["meta"]["heldout"] == _stored(class_dir)["meta"]["heldout"]
    monkeypatch.undo()  # training works again
    assert _stored(_train(tmp_path / "cut", data, aug))["calibration"] == _stored(class_dir)["calibration"]
