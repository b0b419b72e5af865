"""inference.onnx_export: exact reformulations, both head forms, the sidecar, the export cache."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inference import onnx_export
from inference.engine import EngineConfig, InferenceEngine
from inference.model_info import ModelInfo
from model import GlassModel, NetConfig, final_checkpoint_path, load_checkpoint
from methods.registry import load_trained_model
from tests.helpers import ONNX_TOLERANCE, real_frames


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
    assert data["max_abs_diff_vs_torch"] <= ONNX_TOLERANCE
    assert set(data["form_macs"]) == {"pool", "fold"} and min(data["form_macs"].values()) > 0
    dynamic = json.loads(onnx_export.sidecar_path(exports["fold"]).read_text())
    assert dynamic["batch"] == "dynamic" and dynamic["input_shape"][0] == "batch"


def test_cached_export_from_before_memory_bank_rows_is_made_again_once(model_copy, tiny_model):
    """An export whose description lacks memory_bank_rows (made before the key existed) is exported again;
    then it is fresh. A GLASS model has no memory bank: the key is null."""
    class_dir = model_copy / tiny_model.class_name
    path = onnx_export.cached_export(class_dir)
    sidecar = onnx_export.sidecar_path(path)
    description = json.loads(sidecar.read_text())
    assert description["memory_bank_rows"] is None
    del description["memory_bank_rows"]
    sidecar.write_text(json.dumps(description))
    stamp = path.stat().st_mtime_ns
    onnx_export.cached_export(class_dir)
    assert "memory_bank_rows" in json.loads(sidecar.read_text()) and path.stat().st_mtime_ns != stamp
    stamp = path.stat().st_mtime_ns
    onnx_export.cached_export(class_dir)
    assert path.stat().st_mtime_ns == stamp


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

    frames = real_frames(tiny_model)[:3]
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
    np.testing.assert_allclose(after_onnx, after_torch, atol=ONNX_TOLERANCE)
    assert np.abs(after_onnx - before).max() > 0.01
    description = json.loads(onnx_export.sidecar_path(path).read_text())
    assert description["batch"] == "dynamic"
    assert description["source_checkpoint_sha256"] == onnx_export.file_sha256(checkpoint)


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
    frames = real_frames(tiny_model)[:2]
    engine = InferenceEngine.from_config(EngineConfig(str(class_dir), device="cpu", backend="auto"))
    assert engine.backend_name == "torch" and "running the checkpoint in PyTorch" in caplog.text
    assert path.is_file() and not onnx_export.sidecar_path(path).exists()  # old model, no description
    monkeypatch.undo()
    again = InferenceEngine.from_config(EngineConfig(str(class_dir), device="cpu", backend="onnx"))
    np.testing.assert_allclose(np.stack(again.patch_scores(frames)), np.stack(engine.patch_scores(frames)),
                               atol=ONNX_TOLERANCE)
    assert json.loads(onnx_export.sidecar_path(path).read_text())["source_checkpoint_sha256"] == \
        onnx_export.file_sha256(checkpoint)
