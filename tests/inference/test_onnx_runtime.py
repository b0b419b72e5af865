"""inference.onnx_runtime: OnnxBackend scores as PyTorch does (batches, frame sizes), refuses bad files in one line."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from inference import onnx_export, onnx_runtime
from tests.helpers import ONNX_TOLERANCE, one_line_error, real_frames


@pytest.mark.parametrize("form", ["fold", "pool"])
def test_onnx_patch_scores_match_torch_on_real_images(form, exports, tiny_model, torch_engine):
    frames = real_frames(tiny_model)
    batch = torch_engine.preprocess(frames)
    backend = onnx_runtime.OnnxBackend(exports[form], threads=2)
    onnx_scores = backend.patch_scores(batch)
    torch_scores = torch_engine.backend.patch_scores(batch)
    assert onnx_scores.shape == torch_scores.shape == (len(frames), 8, 8)
    assert np.abs(onnx_scores - torch_scores).max() <= ONNX_TOLERANCE
    assert torch_scores.std() > 1e-3 and 0.0 <= torch_scores.min() and torch_scores.max() <= 1.0
    threshold = torch_engine.threshold
    np.testing.assert_array_equal(onnx_scores.max(axis=(1, 2)) >= threshold, torch_scores.max(axis=(1, 2)) >= threshold)
    assert backend.description["form"] == form


def test_dynamic_batch_accepts_1_and_5(exports, tiny_model, torch_engine):
    batch = torch_engine.preprocess(real_frames(tiny_model)[:5])
    backend = onnx_runtime.OnnxBackend(exports["fold"], threads=2)
    assert backend.fixed_batch is None
    five = backend.patch_scores(batch)
    one = backend.patch_scores(batch[2:3])
    assert five.shape == (5, 8, 8) and one.shape == (1, 8, 8)
    np.testing.assert_allclose(one[0], five[2], atol=1e-5)
    assert backend.patch_scores(batch[:0]).shape == (0, 8, 8)


def test_fixed_batch_file_splits_and_pads_other_batch_sizes(exports, tiny_model, torch_engine):
    batch = torch_engine.preprocess(real_frames(tiny_model)[:5])
    backend = onnx_runtime.OnnxBackend(exports["pool"], threads=1)
    assert backend.fixed_batch == 2
    scores = backend.patch_scores(batch)  # 5 = 2 + 2 + 1 (padded)
    assert scores.shape == (5, 8, 8)
    np.testing.assert_allclose(scores, torch_engine.backend.patch_scores(batch), atol=ONNX_TOLERANCE)
    with pytest.raises(onnx_export.OnnxModelError, match="multiples of 16"):
        backend.patch_scores(batch[:, :, :40])


@pytest.mark.parametrize("form", ["fold", "pool"])
def test_onnx_scores_whole_wide_frames_like_torch(form, exports, tiny_model, torch_engine):
    """Height and width are dynamic: a wide frame and a tall odd-sized one score as in PyTorch."""
    frame = real_frames(tiny_model)[0]
    wide = cv2.resize(frame, (200, 70), interpolation=cv2.INTER_CUBIC)
    tall = cv2.resize(frame, (66, 131), interpolation=cv2.INTER_CUBIC)
    backend = onnx_runtime.OnnxBackend(exports[form], threads=2)
    for image in (wide, tall):
        batch = torch_engine.preprocess([image] * 2)
        onnx_scores = backend.patch_scores(batch)
        assert onnx_scores.shape == (2, batch.shape[2] // 8, batch.shape[3] // 8)
        np.testing.assert_allclose(onnx_scores, torch_engine.backend.patch_scores(batch), atol=ONNX_TOLERANCE)


def test_corrupt_or_incomplete_onnx_files_give_one_line_errors(exports, tmp_path, ort_script, capsys):
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.full((64, 64, 3), 128, np.uint8))
    sidecar = onnx_export.sidecar_path(exports["fold"]).read_text()
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not a protobuf" * 20)
    onnx_export.sidecar_path(corrupt).write_text(sidecar)
    with pytest.raises(onnx_export.OnnxModelError, match="not a loadable ONNX model") as err:
        onnx_runtime.OnnxBackend(corrupt)
    assert "\n" not in str(err.value) and str(corrupt) in str(err.value)
    assert ort_script.cli(["--onnx", str(corrupt), "--image", str(image), "--output", str(tmp_path / "h.png")]) == 2
    assert "corrupt.onnx" in one_line_error(capsys)
    assert not (tmp_path / "h.png").exists()

    no_json = tmp_path / "no_json.onnx"
    shutil.copy(exports["fold"], no_json)
    with pytest.raises(onnx_export.OnnxModelError, match="description missing"):
        onnx_runtime.OnnxBackend(no_json)
    onnx_export.sidecar_path(no_json).write_text("{not json")
    with pytest.raises(onnx_export.OnnxModelError, match="unreadable model description"):
        onnx_runtime.OnnxBackend(no_json)
    onnx_export.sidecar_path(no_json).write_text(json.dumps({**json.loads(sidecar), "grid": "x"}))
    with pytest.raises(onnx_export.OnnxModelError, match="no_json.onnx.json"):
        onnx_runtime.OnnxBackend(no_json)
    missing = tmp_path / "missing.onnx"
    onnx_export.sidecar_path(missing).write_text(sidecar)
    with pytest.raises(onnx_export.OnnxModelError, match="ONNX model not found"):
        onnx_runtime.OnnxBackend(missing)
    with pytest.raises(onnx_export.OnnxModelError, match="--provider"):
        onnx_runtime.OnnxBackend(exports["fold"], provider="tpu")
    assert ort_script.cli(["--onnx", str(exports["fold"]), "--image", str(tmp_path / "nope.png")]) == 2
    assert "--image" in one_line_error(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where CUDA is missing")
def test_cuda_provider_without_cuda_is_a_one_line_error(exports):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(onnx_export.OnnxModelError, match="--provider cuda"):
        onnx_runtime.OnnxBackend(exports["fold"], provider="cuda")
