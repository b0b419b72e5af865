"""inference.backends: the ONNX backend gives the PyTorch maps."""
from __future__ import annotations

import cv2
import numpy as np

from inference import onnx_export
from inference.engine import EngineConfig, InferenceEngine
from tests.helpers import ONNX_TOLERANCE, real_frames


def test_engine_onnx_backend_gives_the_torch_maps(model_copy, tiny_model):
    frames = real_frames(tiny_model)
    frames[0] = cv2.resize(frames[0], (96, 80))  # maps come back at each frame's own size
    torch_results = InferenceEngine.from_config(EngineConfig(str(model_copy), tiny_model.class_name, device="cpu")) \
        .predict(frames)
    engine = InferenceEngine.from_config(EngineConfig(str(model_copy), tiny_model.class_name, device="cpu",
                                                      backend="onnx", batch_size=4))
    onnx_path = model_copy / tiny_model.class_name / "glass.onnx"
    assert onnx_path.is_file() and onnx_export.sidecar_path(onnx_path).is_file()
    onnx_results = engine.predict(frames)
    assert len(onnx_results) == len(torch_results)
    for got, want in zip(onnx_results, torch_results):
        assert got.anomaly_map.shape == want.anomaly_map.shape
        assert np.abs(got.anomaly_map - want.anomaly_map).max() <= ONNX_TOLERANCE
        assert abs(got.score - want.score) <= ONNX_TOLERANCE
        assert got.is_defect == want.is_defect
    assert onnx_results[0].anomaly_map.shape == (80, 96)
