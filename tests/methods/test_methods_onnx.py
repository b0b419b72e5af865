"""ONNX export of PatchCore, PaDiM, DRAEM and autoencoder class models, and the engine running them in ONNX
Runtime and in PyTorch."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from inference import onnx_export
from inference.engine import EngineConfig, InferenceEngine
from methods.registry import load_trained_model
from tests.helpers import ONNX_TOLERANCE

METHODS = ("patchcore", "padim", "draem", "ae")
TWO_OUTPUTS = ("patchcore", "draem")  # an image-score grid beside the patch scores
GRIDS = {"patchcore": [8, 8], "padim": [16, 16], "draem": [16, 16], "ae": [16, 16]}  # of a 64 px training view


@pytest.fixture(scope="module")
def exported(fitted_methods, tmp_path_factory) -> dict[str, Path]:
    """Each method's class model exported with a dynamic batch (into a folder of its own)."""
    folder = tmp_path_factory.mktemp("method_exports")
    return {method: onnx_export.export_onnx(fitted_methods.class_dir(method), folder / f"{method}.onnx",
                                            dynamic_batch=True)[0] for method in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_export_writes_the_methods_graph_and_sidecar(exported, method):
    graph = onnx.load(str(exported[method])).graph
    outputs = [output.name for output in graph.output]
    assert [i.name for i in graph.input] == ["images"]
    assert outputs == (["patch_scores", "image_grid"] if method in TWO_OUTPUTS else ["patch_scores"])
    description = json.loads(exported[method].with_suffix(".onnx.json").read_text())
    assert description["method"] == method and description["form"] == method
    assert description["format"] == onnx_export.EXPORT_FORMAT and description["max_abs_diff_vs_torch"] <= 1e-4
    assert description["grid"] == GRIDS[method]


@pytest.mark.parametrize("method", METHODS)
def test_onnx_outputs_equal_torch_on_a_non_square_batch(fitted_methods, exported, method):
    net, _ = load_trained_model(fitted_methods.class_dir(method))
    width = 128 if method == "ae" else 96  # the autoencoder's inputs are whole 64 px tiles
    images = torch.randn(3, 3, 64, width, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        patch, image = net.score_grids(images)
    session = ort.InferenceSession(str(exported[method]), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images.numpy()})
    expected = [patch.numpy(), image.numpy()] if method in TWO_OUTPUTS else [patch.numpy()]
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.shape == b.shape == ((3, 8, 12) if method == "patchcore" else (3, 16, width // 4))
        assert np.abs(a - b).max() <= ONNX_TOLERANCE
    if method in TWO_OUTPUTS:  # the second output matters: the image score is not the patch peak
        assert not np.allclose(got[0], got[1])


def frames_of_several_shapes(data_path: Path) -> list[list[np.ndarray]]:
    """Batches of one shape each: non-square colour frames (landscape, portrait) and gray frames."""
    images = [cv2.imread(str(p)) for p in sorted((data_path / "toy" / "test").rglob("*.png"))]
    wide = [cv2.resize(np.hstack([a, b]), (150, 80)) for a, b in zip(images, images[1:])]
    tall = [np.ascontiguousarray(np.vstack([a, b])[:, :50]) for a, b in zip(images, images[2:])]
    gray = [cv2.cvtColor(cv2.resize(a, (90, 70)), cv2.COLOR_BGR2GRAY) for a in images[:2]]
    return [wide, tall, gray]


@pytest.mark.parametrize("method", METHODS)
def test_engine_gives_the_same_scores_and_maps_with_onnx_and_torch(fitted_methods, exported, method):
    class_dir = str(fitted_methods.class_dir(method))
    torch_engine = InferenceEngine.from_config(EngineConfig(class_dir, device="cpu", backend="torch", batch_size=3))
    onnx_engine = InferenceEngine.from_config(EngineConfig(class_dir, device="cpu", backend="onnx", batch_size=3,
                                                           onnx_path=str(exported[method])))
    assert (torch_engine.backend_name, onnx_engine.backend_name) == ("torch", "onnx")
    assert onnx_engine.info == torch_engine.info
    for frames in frames_of_several_shapes(fitted_methods.data_path):
        expected, got = torch_engine.predict(frames), onnx_engine.predict(frames)
        for frame, a, b in zip(frames, got, expected):
            assert a.anomaly_map.shape == b.anomaly_map.shape == frame.shape[:2]
            assert abs(a.score - b.score) <= ONNX_TOLERANCE and 0 <= a.score < 1
            assert np.abs(a.anomaly_map - b.anomaly_map).max() <= ONNX_TOLERANCE
        if method == "patchcore":  # the image score is the reweighted grid's, at the patch peak
            for result, (patch, image_grid) in zip(got, onnx_engine.score_grids(frames)):
                assert result.score == pytest.approx(float(image_grid.flat[np.argmax(patch)]), abs=1e-7)
                assert result.score < float(patch.max())
        if method == "draem":  # the image score is the window-averaged map's maximum
            for result, (_, image_grid) in zip(got, onnx_engine.score_grids(frames)):
                assert result.score == pytest.approx(float(image_grid.max()), abs=1e-7)


def test_the_engines_onnx_backend_exports_a_patchcore_folder_on_first_use(fitted_methods, tmp_path):
    class_dir = tmp_path / "mvtec_toy"
    shutil.copytree(fitted_methods.class_dir("patchcore"), class_dir)
    engine = InferenceEngine.from_config(EngineConfig(str(class_dir), device="cpu", backend="onnx"))
    assert (class_dir / onnx_export.ONNX_FILE_NAME).is_file() and engine.info.method == "patchcore"
    assert engine.backend.outputs == ["patch_scores", "image_grid"]


def test_patchcore_batches_are_split_to_bound_the_distance_matrix(fitted_methods, exported, monkeypatch, caplog):
    """ONNX Runtime holds patches x memory bank distances at once: a batch runs in parts whose distances fit
    the budget, with the scores of one run; an input too large for the budget alone runs alone, warned once."""
    from inference import onnx_runtime

    net, _ = load_trained_model(fitted_methods.class_dir("patchcore"))
    bank = len(net.head.memory_bank)
    description = json.loads(exported["patchcore"].with_suffix(".onnx.json").read_text())
    assert description["memory_bank_rows"] == bank > 0
    assert json.loads(exported["padim"].with_suffix(".onnx.json").read_text())["memory_bank_rows"] is None
    backend = onnx_runtime.OnnxBackend(exported["patchcore"])
    images = np.random.default_rng(2).normal(size=(5, 3, 64, 96)).astype(np.float32)
    whole = backend.score_grids(images)
    runs: list[int] = []
    run = backend._run
    monkeypatch.setattr(backend, "_run", lambda batch: runs.append(len(batch)) or run(batch))
    per_image = (64 // 8) * (96 // 8) * bank * 4 * onnx_runtime.DISTANCE_COPIES
    monkeypatch.setattr(onnx_runtime, "DISTANCE_BUDGET_BYTES", 2 * per_image)
    parts = backend.score_grids(images)
    assert runs == [2, 2, 1]
    for a, b in zip(parts, whole):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    monkeypatch.setattr(onnx_runtime, "DISTANCE_BUDGET_BYTES", per_image // 2)
    runs.clear()
    with caplog.at_level("WARNING", logger="inference.onnx_runtime"):
        backend.score_grids(images[:3])
        backend.score_grids(images[:2])
    assert runs == [1, 1, 1, 1, 1]
    warnings = [r.getMessage() for r in caplog.records if "memory-bank patches" in r.getMessage()]
    assert len(warnings) == 1 and "96x64" in warnings[0] and "--backend torch" in warnings[0]
