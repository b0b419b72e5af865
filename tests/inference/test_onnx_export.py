"""ONNX export (onnx/pth2onnx.py, inference.onnx_export) and ONNX Runtime inference (inference.onnx_runtime, onnx/ort.py)."""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from inference import onnx_export, onnx_runtime
from inference.engine import EngineConfig, InferenceEngine
from inference.model_info import ModelInfo
from model import GlassModel, NetConfig, final_checkpoint_path, load_checkpoint, load_trained_model
from tests.helpers import REPO

TOLERANCE = 1e-4


def _script(name: str) -> ModuleType:
    """Loads onnx/<name>.py by path (the onnx/ folder is a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location(f"glass_onnx_script_{name}", REPO / "onnx" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pth2onnx() -> ModuleType:
    return _script("pth2onnx")


@pytest.fixture(scope="module")
def ort_script() -> ModuleType:
    return _script("ort")


def _real_frames(tiny_model) -> list[np.ndarray]:
    """The fixture's test images and scikit-image photos resized to the model's 64 px (BGR uint8)."""
    frames = [cv2.imread(str(p)) for p in sorted((tiny_model.data_path / "toy" / "test").rglob("*.png"))]
    for name in ("brick", "grass", "gravel", "coffee", "chelsea", "astronaut"):
        photo = getattr(skimage.data, name)()
        photo = cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR) if photo.ndim == 2 else cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)
        frames.append(cv2.resize(photo, (64, 64), interpolation=cv2.INTER_AREA))
    return frames


@pytest.fixture(scope="module")
def torch_engine(tiny_model) -> InferenceEngine:
    return InferenceEngine.from_config(EngineConfig(str(tiny_model.model_path), tiny_model.class_name, device="cpu"))


@pytest.fixture(scope="module")
def exports(tiny_model, tmp_path_factory) -> dict[str, Path]:
    """fold form with a dynamic batch, pool form with a fixed batch of 2."""
    folder = tmp_path_factory.mktemp("onnx_exports")
    fold, _ = onnx_export.export_onnx(tiny_model.class_dir, folder / "fold.onnx", dynamic_batch=True, form="fold")
    pool, _ = onnx_export.export_onnx(tiny_model.class_dir, folder / "pool.onnx", batch=2, form="pool")
    return {"fold": fold, "pool": pool}


@pytest.fixture
def model_copy(tiny_model, tmp_path) -> Path:
    """A private copy of the trained backbone folder (tests here may write into the class folder)."""
    root = tmp_path / "models" / "backbone_0"
    shutil.copytree(tiny_model.class_dir, root / tiny_model.class_name, ignore=shutil.ignore_patterns("tb"))
    return root


# ---------------------------------------------------------------------------------------------
# Exact reformulations (pure torch, no ONNX).
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels,size", [(40, 64), (512, 1024), (1024, 1024), (40, 1536), (112, 96), (7, 5)])
def test_pooling_conv_equals_unfold_then_adaptive_pooling(channels, size):
    x = torch.randn(2, channels, 5, 6, generator=torch.Generator().manual_seed(1))
    rows = F.unfold(x, kernel_size=3, padding=1).transpose(1, 2).reshape(-1, channels * 9)
    expected = F.adaptive_avg_pool1d(rows.unsqueeze(1), size).squeeze(1)
    with torch.no_grad():
        got = onnx_export.pooling_conv(channels, 3, size)(x).permute(0, 2, 3, 1).reshape(-1, size)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)
    matrix = torch.from_numpy(onnx_export.pool_matrix(channels * 9, size)).float()
    assert torch.allclose(rows @ matrix.T, expected, atol=1e-5)


@pytest.mark.parametrize("length,size", [(3072, 1536), (1024, 700), (96, 128)])
def test_channel_pool_equals_adaptive_pooling(length, size):
    x = torch.randn(2, length, 3, 4, generator=torch.Generator().manual_seed(2))
    rows = x.permute(0, 2, 3, 1).reshape(-1, length)
    expected = F.adaptive_avg_pool1d(rows.unsqueeze(1), size).squeeze(1)
    with torch.no_grad():
        got = onnx_export.channel_pool(length, size)(x).permute(0, 2, 3, 1).reshape(-1, size)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


def _random_net(backbone: str, layers: tuple[str, ...], pre_proj: int, dsc_layers: int, dims: tuple[int, int, int],
                seed: int) -> GlassModel:
    """Small random GLASS model in eval mode with non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    cfg = NetConfig(backbone=backbone, layers=layers, pretrain_embed_dimension=dims[0], target_embed_dimension=dims[1],
                    dsc_hidden=dims[2], dsc_layers=dsc_layers, pre_proj=pre_proj, imagesize=64, resize=64)
    net = GlassModel.build(cfg, pretrained=False).eval()
    for module in net.discriminator.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0, 0.3)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.2)
    return net


@pytest.mark.parametrize("backbone,layers,pre_proj,dsc_layers,dims", [
    # (the default pre_proj 1 / dsc_layers 2 is the trained tiny model, checked below)
    ("efficientnet_lite0", ("blocks.4", "blocks.2"), 0, 1, (100, 70, 8)),  # coarse layer first: grid 4x4
    ("resnet18", ("layer2", "layer3"), 2, 3, (96, 80, 24)),
])
def test_both_forms_equal_the_model(backbone, layers, pre_proj, dsc_layers, dims):
    net = _random_net(backbone, layers, pre_proj, dsc_layers, dims, seed=len(layers) + dims[0])
    images = onnx_export.verification_batch(64, batch=3) * 0.5
    with torch.no_grad():
        expected = net(images)
    assert expected.std() > 1e-3  # scores are not saturated: the comparison means something
    for form in ("pool", "fold"):
        module, chosen, geometry = onnx_export.build_export_module(net, form)
        assert chosen == form
        with torch.no_grad():
            got = module(images)
        assert got.shape == expected.shape == (3, *geometry.grid)
        assert float((got - expected).abs().max()) < 1e-5


def _kinds(module: torch.nn.Module) -> set[str]:
    return {type(m).__name__ for m in module.modules()}


def test_static_padding_copy_keeps_the_maps_and_the_original(tiny_model):
    net, _ = load_trained_model(tiny_model.class_dir)
    static = onnx_export.with_static_padding(net.extractor, 64)
    assert "Conv2dSame" in _kinds(net.extractor) and "Conv2dSame" not in _kinds(static)
    images = onnx_export.verification_batch(64)
    with torch.no_grad():
        for got, want in zip(static(images), net.extractor(images)):
            assert got.shape == want.shape and float((got - want).abs().max()) < 1e-5


def test_exported_pads_are_constants_onnxruntime_can_fuse(exports):
    import onnx

    graph = onnx.load(str(exports["fold"])).graph
    constants = {init.name for init in graph.initializer} | {
        out for node in graph.node if node.op_type == "Constant" for out in node.output}
    pads = [node for node in graph.node if node.op_type == "Pad"]
    assert pads and all(node.input[1] in constants for node in pads)
    # no run-time shape arithmetic in the backbone (the head reads the grid size for its one resize)
    assert not [node for node in graph.node if node.op_type == "Cast" and not node.name.startswith("/head/")]


def test_auto_form_is_the_one_with_fewer_multiply_adds():
    lite0 = onnx_export.HeadGeometry((40, 112), ((32, 32), (16, 16)), 3, 1536, 1536, 1024)
    wrn = onnx_export.HeadGeometry((512, 1024), ((36, 36), (18, 18)), 3, 1024, 1024, 1024)
    demo = onnx_export.HeadGeometry((40, 112), ((32, 32), (16, 16)), 3, 512, 512, 512)
    tiny = onnx_export.HeadGeometry((40, 112), ((8, 8), (4, 4)), 3, 64, 64, 32)
    macs = onnx_export.form_macs(lite0)
    # fold: one 3x3 conv per layer to the hidden width, at the layer's own resolution
    assert macs["fold"] == 1024 * (40 * 9 * 32 * 32 + 112 * 9 * 16 * 16) == 641_728_512
    # pool: grouped pooling convs (groups gcd(40, 1536) = 8, gcd(112, 1536) = 16), then the
    # 1536 -> 1024 head at every position of the 32x32 grid (3072 -> 1536 is a mean: no MACs)
    assert macs["pool"] == 1536 * 9 * (5 * 32 * 32 + 7 * 16 * 16) + 32 * 32 * 1536 * 1024 == 1_706_164_224
    assert onnx_export.form_macs(demo) == {"fold": 320_864_256, "pool": 300_285_952}
    assert onnx_export.form_macs(wrn) == {"fold": 9_172_942_848, "pool": 1_373_884_416}
    assert onnx_export.choose_form(lite0) == "fold"
    assert onnx_export.choose_form(demo) == "pool"  # fold: 7 % more multiply-adds
    assert onnx_export.choose_form(wrn) == "pool"
    assert onnx_export.choose_form(tiny) == "pool"
    assert onnx_export.choose_form(wrn, "fold") == "fold"
    with pytest.raises(onnx_export.OnnxModelError, match="--form"):
        onnx_export.choose_form(lite0, "matmul")


# ---------------------------------------------------------------------------------------------
# Exported files against PyTorch on real images.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["fold", "pool"])
def test_onnx_patch_scores_match_torch_on_real_images(form, exports, tiny_model, torch_engine):
    frames = _real_frames(tiny_model)
    batch = torch_engine.preprocess(frames)
    backend = onnx_runtime.OnnxBackend(exports[form], threads=2)
    onnx_scores = backend.patch_scores(batch)
    torch_scores = torch_engine.backend.patch_scores(batch)
    assert onnx_scores.shape == torch_scores.shape == (len(frames), 8, 8)
    assert np.abs(onnx_scores - torch_scores).max() <= TOLERANCE
    assert torch_scores.std() > 1e-3 and 0.0 <= torch_scores.min() and torch_scores.max() <= 1.0
    threshold = torch_engine.threshold
    np.testing.assert_array_equal(onnx_scores.max(axis=(1, 2)) >= threshold, torch_scores.max(axis=(1, 2)) >= threshold)
    assert backend.description["form"] == form


def test_dynamic_batch_accepts_1_and_5(exports, tiny_model, torch_engine):
    batch = torch_engine.preprocess(_real_frames(tiny_model)[:5])
    backend = onnx_runtime.OnnxBackend(exports["fold"], threads=2)
    assert backend.fixed_batch is None
    five = backend.patch_scores(batch)
    one = backend.patch_scores(batch[2:3])
    assert five.shape == (5, 8, 8) and one.shape == (1, 8, 8)
    np.testing.assert_allclose(one[0], five[2], atol=1e-5)
    assert backend.patch_scores(batch[:0]).shape == (0, 8, 8)


def test_fixed_batch_file_splits_and_pads_other_batch_sizes(exports, tiny_model, torch_engine):
    batch = torch_engine.preprocess(_real_frames(tiny_model)[:5])
    backend = onnx_runtime.OnnxBackend(exports["pool"], threads=1)
    assert backend.fixed_batch == 2
    scores = backend.patch_scores(batch)  # 5 = 2 + 2 + 1 (padded)
    assert scores.shape == (5, 8, 8)
    np.testing.assert_allclose(scores, torch_engine.backend.patch_scores(batch), atol=TOLERANCE)
    with pytest.raises(onnx_export.OnnxModelError, match="multiples of 16"):
        backend.patch_scores(batch[:, :, :40])


@pytest.mark.parametrize("form", ["fold", "pool"])
def test_onnx_scores_whole_wide_frames_like_torch(form, exports, tiny_model, torch_engine):
    """Height and width are dynamic: a wide frame and a tall odd-sized one score as in PyTorch."""
    frame = _real_frames(tiny_model)[0]
    wide = cv2.resize(frame, (200, 70), interpolation=cv2.INTER_CUBIC)
    tall = cv2.resize(frame, (66, 131), interpolation=cv2.INTER_CUBIC)
    backend = onnx_runtime.OnnxBackend(exports[form], threads=2)
    for image in (wide, tall):
        batch = torch_engine.preprocess([image] * 2)
        onnx_scores = backend.patch_scores(batch)
        assert onnx_scores.shape == (2, batch.shape[2] // 8, batch.shape[3] // 8)
        np.testing.assert_allclose(onnx_scores, torch_engine.backend.patch_scores(batch), atol=TOLERANCE)


def test_sidecar_describes_the_model(exports, tiny_model):
    data = json.loads(onnx_export.sidecar_path(exports["pool"]).read_text())
    ckpt = load_checkpoint(final_checkpoint_path(tiny_model.class_dir))
    expected = ModelInfo.from_checkpoint(ckpt, tiny_model.class_name, (8, 16))
    assert ModelInfo.from_dict(data, "sidecar") == expected
    assert data["imagesize"] == 64 and data["grid"] == [8, 8] and data["sigma"] == 4.0
    assert data["mean"] == list(ckpt["net"]["mean"]) and data["std"] == list(ckpt["net"]["std"])
    assert 0.0 < data["threshold"] < 1.0
    assert data["batch"] == 2 and data["opset"] == 17 and data["form"] == "pool"
    assert data["input_name"] == "images" and data["output_name"] == "patch_scores"
    assert data["input_shape"] == [2, 3, "height", "width"] and data["output_shape"] == [2, "height/8", "width/8"]
    assert data["resize"] == 64 and data["stride"] == 8 and data["pad_to"] == 16 and data["input_multiple"] == 16
    assert data["source_checkpoint"] == final_checkpoint_path(tiny_model.class_dir).name
    assert data["max_abs_diff_vs_torch"] <= TOLERANCE
    assert set(data["form_macs"]) == {"pool", "fold"} and min(data["form_macs"].values()) > 0
    dynamic = json.loads(onnx_export.sidecar_path(exports["fold"]).read_text())
    assert dynamic["batch"] == "dynamic" and dynamic["input_shape"][0] == "batch"


# ---------------------------------------------------------------------------------------------
# Engine backend and export cache.
# ---------------------------------------------------------------------------------------------

def test_engine_onnx_backend_gives_the_torch_maps(model_copy, tiny_model):
    frames = _real_frames(tiny_model)
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
        assert np.abs(got.anomaly_map - want.anomaly_map).max() <= TOLERANCE
        assert abs(got.score - want.score) <= TOLERANCE
        assert got.is_defect == want.is_defect
    assert onnx_results[0].anomaly_map.shape == (80, 96)


def test_cached_export_reuses_a_fresh_file_and_redoes_a_stale_one(model_copy, tiny_model):
    """Freshness is by content: a touched checkpoint with the same bytes keeps the export; a different
    checkpoint copied over it with old times and the same name (cp -p, rsync -a, tar) is exported again,
    and the engine then scores with the new weights."""
    class_dir = model_copy / tiny_model.class_name
    path = onnx_export.cached_export(class_dir)
    stamp = path.stat().st_mtime_ns
    assert onnx_export.cached_export(class_dir) == path and path.stat().st_mtime_ns == stamp
    checkpoint = final_checkpoint_path(class_dir)
    later = path.stat().st_mtime + 10
    os.utime(checkpoint, (later, later))  # newer file time, same bytes: still fresh
    onnx_export.cached_export(class_dir)
    assert path.stat().st_mtime_ns == stamp

    frames = _real_frames(tiny_model)[:3]
    before = np.stack(InferenceEngine.from_config(EngineConfig(str(class_dir), device="cpu", backend="onnx"))
                      .patch_scores(frames))
    data = load_checkpoint(checkpoint)
    tail = data["weights"]["discriminator"]["tail.0.weight"]
    data["weights"]["discriminator"]["tail.0.weight"] = -tail  # another model under the same name ...
    torch.save(data, checkpoint)
    earlier = path.stat().st_mtime - 100
    os.utime(checkpoint, (earlier, earlier))  # ... with file times older than the export (cp -p)
    assert path.stat().st_mtime > checkpoint.stat().st_mtime
    after_onnx = np.stack(InferenceEngine.from_config(EngineConfig(str(class_dir), device="cpu", backend="onnx"))
                          .patch_scores(frames))
    after_torch = np.stack(InferenceEngine.from_config(EngineConfig(str(class_dir), device="cpu", backend="torch"))
                           .patch_scores(frames))
    np.testing.assert_allclose(after_onnx, after_torch, atol=TOLERANCE)
    assert np.abs(after_onnx - before).max() > 0.01
    description = json.loads(onnx_export.sidecar_path(path).read_text())
    assert description["batch"] == "dynamic"
    assert description["source_checkpoint_sha256"] == onnx_export.file_sha256(checkpoint)


# ---------------------------------------------------------------------------------------------
# Bad input: one-line errors, exit code 2.
# ---------------------------------------------------------------------------------------------

def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err)
    return errors[0]


def test_pth2onnx_bad_model_dir_and_options_exit_2(pth2onnx, tiny_model, tmp_path, capsys):
    assert pth2onnx.cli(["--model_path", str(tmp_path / "missing"), "--class_name", "x"]) == 2
    assert "model directory not found" in _one_line_error(capsys)
    assert pth2onnx.cli(["--model_path", str(tiny_model.model_path), "--class_name", "mvtec_nope"]) == 2
    assert "mvtec_toy" in _one_line_error(capsys)
    args = ["--model_path", str(tiny_model.model_path), "--class_name", tiny_model.class_name]
    assert pth2onnx.cli([*args, "--batch", "2", "--dynamic_batch"]) == 2
    assert "--dynamic_batch" in _one_line_error(capsys)
    assert pth2onnx.cli([*args, "--opset", "9", "--output", str(tmp_path / "m.onnx")]) == 2
    assert "--opset 9" in _one_line_error(capsys)
    assert pth2onnx.cli([*args, "--form", "dense"]) == 2
    _one_line_error(capsys)
    assert pth2onnx.cli([*args, "--batch", "0", "--output", str(tmp_path / "b0.onnx")]) == 2
    assert "--batch" in _one_line_error(capsys)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert pth2onnx.cli([*args, "--output", str(blocker / "m.onnx")]) == 2
    assert "writable --output" in _one_line_error(capsys)
    assert not list(tmp_path.glob("*.onnx*"))


def test_pth2onnx_cli_writes_model_and_sidecar(pth2onnx, tiny_model, tmp_path, caplog):
    out = tmp_path / "sub" / "m.onnx"
    args = ["--model_path", str(tiny_model.class_dir), "--output", str(out), "--dynamic_batch", "--simplify"]
    assert pth2onnx.cli(args) == 0
    assert out.is_file() and onnx_export.sidecar_path(out).is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx", "m.onnx.json"]  # no temp files left
    simplified = json.loads(onnx_export.sidecar_path(out).read_text())["simplified"]
    if importlib.util.find_spec("onnxsim") is None:
        assert not simplified and "onnxsim is not installed" in caplog.text
    import onnx

    onnx.checker.check_model(onnx.load(str(out)))


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
    assert "corrupt.onnx" in _one_line_error(capsys)
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
    assert "--image" in _one_line_error(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where CUDA is missing")
def test_cuda_provider_without_cuda_is_a_one_line_error(exports):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(onnx_export.OnnxModelError, match="--provider cuda"):
        onnx_runtime.OnnxBackend(exports["fold"], provider="cuda")


# ---------------------------------------------------------------------------------------------
# onnx/ort.py
# ---------------------------------------------------------------------------------------------

def test_ort_script_writes_heatmaps_and_csv_for_a_folder(ort_script, exports, tiny_model, torch_engine, tmp_path):
    test_dir = tiny_model.data_path / "toy" / "test"
    out = tmp_path / "heatmaps"
    assert ort_script.cli(["--onnx", str(exports["fold"]), "--image", str(test_dir), "--output", str(out)]) == 0
    with open(out / "scores.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    sources = sorted(test_dir.rglob("*.png"))
    assert [row["image"] for row in rows] == [p.relative_to(test_dir).as_posix() for p in sources]
    expected = torch_engine.predict([cv2.imread(str(p)) for p in sources])
    for row, want in zip(rows, expected):
        assert abs(float(row["score"]) - want.score) <= TOLERANCE
        assert int(row["is_defect"]) == int(want.is_defect)
        assert abs(float(row["threshold"]) - torch_engine.threshold) < 1e-6
        panel = cv2.imread(str(out / row["heatmap"]))
        assert panel.shape == (64, 128, 3)  # original | overlay
    assert not list(out.rglob(".*.tmp"))


def test_ort_script_single_image_and_threshold_override(ort_script, exports, tiny_model, tmp_path):
    image = sorted((tiny_model.data_path / "toy" / "test" / "blob").glob("*.png"))[0]
    out = tmp_path / "one" / "heatmap.png"
    args = ["--onnx", str(exports["pool"]), "--image", str(image), "--output", str(out)]
    assert ort_script.cli([*args, "--threshold", "0"]) == 0
    rows = list(csv.DictReader(open(out.with_suffix(".csv"), newline="")))
    assert len(rows) == 1 and rows[0]["is_defect"] == "1" and rows[0]["heatmap"] == "heatmap.png"
    assert cv2.imread(str(out)).shape == (64, 128, 3)
    assert ort_script.cli([*args, "--threshold", "1"]) == 0
    assert list(csv.DictReader(open(out.with_suffix(".csv"), newline="")))[0]["is_defect"] == "0"
    assert ort_script.cli([*args, "--threshold", "1.5"]) == 2


def test_ort_script_with_a_bad_model_or_no_readable_image_leaves_no_output_folder(ort_script, exports, tmp_path,
                                                                                     capsys):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((64, 64, 3), 128, np.uint8))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not a protobuf" * 20)
    shutil.copy(onnx_export.sidecar_path(exports["fold"]), onnx_export.sidecar_path(corrupt))
    out = tmp_path / "out" / "heatmaps"
    for model, needle in ((tmp_path / "missing.onnx", "missing.onnx"), (corrupt, "corrupt.onnx")):
        for output in (out, out / "one.png"):  # a folder of images, one image
            image = images if output == out else images / "a.png"
            assert ort_script.cli(["--onnx", str(model), "--image", str(image), "--output", str(output)]) == 2
            assert needle in _one_line_error(capsys)
            assert not (tmp_path / "out").exists()
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "b.png").write_bytes(b"not a png")
    assert ort_script.cli(["--onnx", str(exports["fold"]), "--image", str(unreadable), "--output", str(out)]) == 2
    assert "no readable image" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_ort_script_runs_as_a_command(exports, tiny_model, tmp_path):
    """As users run it: python onnx/ort.py (the script folder first on sys.path must not shadow onnx)."""
    image = sorted((tiny_model.data_path / "toy" / "test" / "good").glob("*.png"))[0]
    done = subprocess.run([sys.executable, str(REPO / "onnx" / "ort.py"), "--onnx", str(exports["fold"]),
                           "--image", str(image)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "heatmap.png").is_file() and (tmp_path / "heatmap.csv").is_file()  # the defaults


def test_an_export_that_dies_midway_is_never_used(model_copy, tiny_model, monkeypatch, caplog):
    """The old description goes before the new model is written: an export killed in between leaves a model
    without a description, which is refused (PyTorch runs meanwhile) and exported again next time."""
    class_dir = model_copy / tiny_model.class_name
    path = onnx_export.cached_export(class_dir)
    checkpoint = final_checkpoint_path(class_dir)
    data = load_checkpoint(checkpoint)
    data["weights"]["discriminator"]["tail.0.weight"] = -data["weights"]["discriminator"]["tail.0.weight"]
    torch.save(data, checkpoint)  # retrained: the export is stale

    def dies(target, payload):
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr(onnx_export.utils, "atomic_write_bytes", dies)
    frames = _real_frames(tiny_model)[:2]
    engine = InferenceEngine.from_config(EngineConfig(str(class_dir), device="cpu", backend="auto"))
    assert engine.backend_name == "torch" and "running the checkpoint in PyTorch" in caplog.text
    assert path.is_file() and not onnx_export.sidecar_path(path).exists()  # old model, no description
    monkeypatch.undo()
    again = InferenceEngine.from_config(EngineConfig(str(class_dir), device="cpu", backend="onnx"))
    np.testing.assert_allclose(np.stack(again.patch_scores(frames)), np.stack(engine.patch_scores(frames)),
                               atol=TOLERANCE)
    assert json.loads(onnx_export.sidecar_path(path).read_text())["source_checkpoint_sha256"] == \
        onnx_export.file_sha256(checkpoint)
