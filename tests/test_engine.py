"""The inference engine: same scores as the evaluation path, maps at frame resolution, errors."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import common
from inference.engine import (
    EngineConfig, EngineError, FrameResult, InferenceEngine, ModelInfo, default_threshold, resolve_device,
)
from model import CheckpointError, load_trained_model


def _test_frames(tiny_model) -> list[np.ndarray]:
    """The fixture dataset's test images as BGR frames (good first, then defective)."""
    test = tiny_model.data_path / "toy" / "test"
    paths = sorted((test / "good").glob("*.png")) + sorted((test / "blob").glob("*.png"))
    return [cv2.imread(str(p)) for p in paths]


@pytest.fixture(scope="module")
def engine(tiny_model) -> InferenceEngine:
    return InferenceEngine.from_config(EngineConfig(str(tiny_model.model_path), tiny_model.class_name, device="cpu"))


def test_scores_equal_the_model_on_dataset_preprocessing(engine, tiny_model):
    frames = _test_frames(tiny_model)
    net, _ = load_trained_model(tiny_model.class_dir)
    # What the dataset loader feeds the model: RGB in [0, 1], normalised with the backbone's mean/std.
    rgb = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]).astype(np.float32) / 255.0
    mean, std = np.array(engine.info.mean, np.float32), np.array(engine.info.std, np.float32)
    images = torch.from_numpy(((rgb - mean) / std).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        expected = net(images).numpy()
    got = engine.patch_scores(frames)
    assert got.shape == expected.shape == (len(frames), *engine.info.grid)
    np.testing.assert_allclose(got, expected, atol=1e-5)

    results = engine.predict(frames)
    assert all(isinstance(r, FrameResult) for r in results)
    np.testing.assert_allclose([r.score for r in results], expected.reshape(len(frames), -1).max(1), atol=1e-5)
    maps = common.anomaly_maps(expected, engine.info.imagesize)
    np.testing.assert_allclose(np.stack([r.anomaly_map for r in results]), maps, atol=1e-5)
    assert [r.is_defect for r in results] == [r.score >= engine.threshold for r in results]


def test_batch_size_does_not_change_results(tiny_model, engine):
    frames = _test_frames(tiny_model)
    one = InferenceEngine(engine.backend, engine.info, batch_size=1).patch_scores(frames)
    np.testing.assert_allclose(one, engine.patch_scores(frames), atol=1e-5)


def test_maps_come_back_at_frame_resolution(engine, tiny_model):
    frame = cv2.resize(_test_frames(tiny_model)[-1], (100, 80))
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    results = engine.predict([frame, gray])
    assert [r.anomaly_map.shape for r in results] == [(80, 100), (80, 100)]
    assert all(r.anomaly_map.dtype == np.float32 for r in results)
    assert all(0.0 <= r.anomaly_map.min() <= r.anomaly_map.max() <= r.score + 1e-6 for r in results)
    assert engine.predict([]) == []


def test_same_frames_same_numbers(engine, tiny_model):
    frames = _test_frames(tiny_model)
    first = [(r.score, r.anomaly_map) for r in engine.predict(frames)]
    second = [(r.score, r.anomaly_map) for r in engine.predict(frames)]
    for (s1, m1), (s2, m2) in zip(first, second):
        assert s1 == s2 and np.array_equal(m1, m2)


def test_default_threshold_is_the_3_sigma_limit_of_training_scores(engine, tiny_model):
    _, data = load_trained_model(tiny_model.class_dir)
    scores = data["train_scores"].numpy().astype(np.float64)
    assert engine.threshold == pytest.approx(scores.mean() + 3 * scores.std())
    assert default_threshold(np.array([0.2, 0.4])) == pytest.approx(0.3 + 3 * 0.1)
    assert default_threshold(np.array([0.9, 1.0])) == 0.999
    assert default_threshold(np.array([])) == 0.5
    override = InferenceEngine(engine.backend, engine.info, threshold=0.0)
    assert all(r.is_defect for r in override.predict(_test_frames(tiny_model)))


def test_model_info_round_trip_and_bad_description(engine):
    assert ModelInfo.from_dict(engine.info.to_dict(), "x.json") == engine.info
    broken = engine.info.to_dict()
    del broken["grid"]
    with pytest.raises(EngineError, match="x.json"):
        ModelInfo.from_dict(broken, "x.json")


@pytest.mark.parametrize("kwargs, flag", [
    ({"backend": "tensorrt"}, "--backend"),
    ({"batch_size": 0}, "--batch_size"),
    ({"threshold": 1.5}, "--threshold"),
    ({"device": "tpu"}, "--device"),
])
def test_bad_settings_name_the_flag(kwargs, flag):
    with pytest.raises(EngineError, match=flag) as info:
        EngineConfig("results/models/backbone_0", **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_says_so():
    with pytest.raises(EngineError, match="--device cpu"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_missing_model_and_wrong_class(tmp_path, tiny_model):
    with pytest.raises(CheckpointError, match="model directory not found"):
        InferenceEngine.from_config(EngineConfig(str(tmp_path / "nothing"), "mvtec_toy"))
    with pytest.raises(CheckpointError, match="mvtec_toy"):
        InferenceEngine.from_config(EngineConfig(str(tiny_model.model_path), "mvtec_nope"))


def test_bad_frames_are_refused(engine):
    with pytest.raises(EngineError, match="uint8"):
        engine.predict([np.zeros((64, 64, 3), np.float32)])
    with pytest.raises(EngineError, match="shape"):
        engine.predict([np.zeros((64, 64, 4), np.uint8)])


def test_onnx_provider_auto_falls_back_to_cpu_without_cuda_provider(monkeypatch):
    """--device auto on a CUDA machine with CPU-only onnxruntime runs ONNX on CPU; cuda asks for CUDA."""
    import onnxruntime

    from inference.engine import _onnx_provider

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert _onnx_provider("auto", torch.device("cuda")) == "cpu"
    assert _onnx_provider("cuda", torch.device("cuda")) == "cuda"  # OnnxBackend then says how to get it
    assert _onnx_provider("cpu", torch.device("cpu")) == "cpu"
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert _onnx_provider("auto", torch.device("cuda")) == "cuda"


def test_auto_backend_runs_onnx_on_cpu_and_falls_back_to_torch_when_export_fails(tiny_model, monkeypatch, caplog):
    from inference import onnx_backend

    frames = _test_frames(tiny_model)[:2]
    cfg = EngineConfig(str(tiny_model.model_path), tiny_model.class_name, device="cpu", backend="auto")
    auto = InferenceEngine.from_config(cfg)
    assert auto.backend_name == "onnx"
    torch_engine = InferenceEngine.from_config(EngineConfig(str(tiny_model.model_path), tiny_model.class_name,
                                                            device="cpu", backend="torch"))
    assert torch_engine.backend_name == "torch"
    np.testing.assert_allclose(auto.patch_scores(frames), torch_engine.patch_scores(frames), atol=1e-4)

    def unwritable(class_dir):
        raise PermissionError(13, "Permission denied", str(class_dir))

    monkeypatch.setattr(onnx_backend, "cached_export", unwritable)
    fallback = InferenceEngine.from_config(cfg)
    assert fallback.backend_name == "torch" and "running the checkpoint in PyTorch" in caplog.text
    with pytest.raises(PermissionError):  # asked for onnx explicitly: no fallback
        InferenceEngine.from_config(EngineConfig(str(tiny_model.model_path), tiny_model.class_name, device="cpu",
                                                 backend="onnx"))
