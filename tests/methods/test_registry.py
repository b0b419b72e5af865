"""methods.registry with fitting: fit, save and load any method's class model; the checkpoint's method decides."""
from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import pytest
import torch

import fitting
from datasets import base as data
from datasets.registry import build_dataset
from inference import calibration
from inference.model_info import ModelInfo
from methods.base import CheckpointError
from methods.padim import PadimConfig, PadimModel
from methods.patchcore import PatchCoreConfig, PatchCoreModel
from methods.registry import METHODS, build_model, config_from_checkpoint, load_trained_model, method_of
from model import CHECKPOINT_FORMAT, GlassModel, NetConfig, load_checkpoint
from tests.helpers import write_tiny_mvtec

NORM = {"imagesize": 64, "resize": 64, "mean": (0.5,) * 3, "std": (0.5,) * 3}
CONFIGS = {
    "patchcore": PatchCoreConfig(backbone="efficientnet_lite0", layers=("blocks.2", "blocks.4"), coreset=0.1, **NORM),
    "padim": PadimConfig(backbone="efficientnet_lite0", layers=("blocks.1", "blocks.2"), features=16, **NORM),
}


@dataclasses.dataclass
class Fitted:
    """A model fitted by fitting.fit_class and what it was fitted with."""

    model: PatchCoreModel | PadimModel
    class_dir: Path
    heldout: list[Path]


@pytest.fixture(scope="module")
def data_cfg(tmp_path_factory) -> data.DatasetConfig:
    """16 training images of 64 px, 8 of them held out."""
    root = tmp_path_factory.mktemp("registry_data")
    data_path, aug = write_tiny_mvtec(root, n_train=16, n_good=1, n_bad=1)
    return data.DatasetConfig("mvtec", data_path, aug, ("toy",), batch_size=4, num_workers=0, resize=64,
                              imagesize=64, fg=0, holdout=0.1)


def fit(method: str, data_cfg: data.DatasetConfig, class_dir: Path, seed: int = 0, **changes) -> Fitted:
    cfg = dataclasses.replace(CONFIGS[method], **changes)
    model = build_model(cfg)
    clean = build_dataset(data_cfg, "toy", "train", cfg.mean, cfg.std, seed=0, las=False)
    loader = data.build_dataloader(clean, data_cfg, seed=0, shuffle=False)
    fitting.fit_class(model, loader, class_dir, torch.device("cpu"), seed, clean.heldout_paths, meta={"class": "toy"})
    return Fitted(model, class_dir, list(clean.heldout_paths))


@pytest.fixture(scope="module")
def fitted(data_cfg, tmp_path_factory) -> dict[str, Fitted]:
    root = tmp_path_factory.mktemp("registry_models")
    return {method: fit(method, data_cfg, root / method / "mvtec_toy") for method in CONFIGS}


@pytest.mark.parametrize("method", list(CONFIGS))
def test_fit_save_load_round_trip_gives_identical_score_grids(fitted, method):
    model = fitted[method].model
    loaded, stored = load_trained_model(fitted[method].class_dir)
    assert type(loaded) is type(model) is METHODS[method].model and loaded.cfg == model.cfg
    assert stored["method"] == method and stored["epoch"] == 1 and stored["train"] == {"seed": 0}
    assert stored["meta"]["heldout"] == [p.name for p in fitted[method].heldout] and len(stored["meta"]["heldout"]) == 8
    assert stored["calibration"]["source"] == "heldout"
    images = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        for a, b in zip(loaded.score_grids(images), model.score_grids(images)):
            assert a.shape == ((2, 8, 12) if method == "patchcore" else (2, 16, 24))
            assert torch.equal(a, b)
    info = ModelInfo.from_checkpoint(stored, "mvtec_toy", loaded.strides)
    assert info.method == method and info.imagesize == 64 and info.threshold == stored["calibration"]["image_threshold"]


def test_a_checkpoint_of_an_unknown_method_is_a_one_line_checkpoint_error(fitted, tmp_path):
    stored = load_checkpoint(fitted["patchcore"].class_dir / "ckpt_best_1.pth")
    path = tmp_path / "mvtec_toy" / "ckpt_best_1.pth"
    path.parent.mkdir()
    torch.save({**stored, "method": "fastflow"}, path)
    with pytest.raises(CheckpointError) as caught:
        load_trained_model(path.parent)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "'fastflow'" in message
    with pytest.raises(CheckpointError, match="fastflow"):
        config_from_checkpoint(load_checkpoint(path))


def test_a_glass_checkpoint_without_a_method_key_loads_as_glass(tmp_path):
    cfg = NetConfig(backbone="efficientnet_lite0", layers=("blocks.2", "blocks.4"), pretrain_embed_dimension=32,
                    target_embed_dimension=32, dsc_hidden=16, **NORM)
    net = GlassModel.build(cfg).eval()
    class_dir = tmp_path / "mvtec_toy"
    class_dir.mkdir()
    state = {"format": CHECKPOINT_FORMAT, "net": cfg.to_dict(), "weights": net.weights(), "epoch": 3}
    torch.save(state, class_dir / "ckpt_best_3.pth")  # as written before other methods existed: no "method"
    assert method_of(state) == "glass"
    loaded, stored = load_trained_model(class_dir)
    assert isinstance(loaded, GlassModel) and loaded.cfg == cfg and "method" not in stored
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(images), net(images))
    assert ModelInfo.from_checkpoint(stored, "mvtec_toy", loaded.strides).method == "glass"


def test_fitting_again_with_the_same_settings_keeps_the_checkpoint(fitted, data_cfg, monkeypatch):
    path = fitted["patchcore"].class_dir / "ckpt_best_1.pth"
    before = path.read_bytes()

    def no_refit(*args, **kwargs):
        raise AssertionError("fitted again")

    monkeypatch.setattr(PatchCoreModel, "fit", no_refit)
    model = build_model(CONFIGS["patchcore"])
    clean = build_dataset(data_cfg, "toy", "train", (0.5,) * 3, (0.5,) * 3, seed=0, las=False)
    again = fitting.fit_class(model, data.build_dataloader(clean, data_cfg, 0, shuffle=False), path.parent,
                              torch.device("cpu"), 0, clean.heldout_paths, meta={"class": "toy"})
    assert again == path and path.read_bytes() == before


@pytest.mark.parametrize("change", [{"seed": 1}, {"coreset": 0.2}])
def test_fitting_again_with_other_settings_names_the_file(fitted, data_cfg, monkeypatch, change):
    monkeypatch.setattr(PatchCoreModel, "fit", lambda *args, **kwargs: pytest.fail("fitted over another model"))
    path = fitted["patchcore"].class_dir / "ckpt_best_1.pth"
    before = path.read_bytes()
    seed = change.get("seed", 0)
    cfg = dataclasses.replace(CONFIGS["patchcore"], **{k: v for k, v in change.items() if k != "seed"})
    clean = build_dataset(data_cfg, "toy", "train", (0.5,) * 3, (0.5,) * 3, seed=0, las=False)
    with pytest.raises(CheckpointError, match=f"^{path}: was fitted with different '(net|train)' settings"):
        fitting.fit_class(build_model(cfg), data.build_dataloader(clean, data_cfg, 0, shuffle=False), path.parent,
                          torch.device("cpu"), seed, clean.heldout_paths)
    assert path.read_bytes() == before


def test_another_method_in_a_fitted_class_folder_is_refused(fitted, data_cfg):
    path = fitted["patchcore"].class_dir / "ckpt_best_1.pth"
    clean = build_dataset(data_cfg, "toy", "train", (0.5,) * 3, (0.5,) * 3, seed=0, las=False)
    with pytest.raises(CheckpointError, match=f"^{path}: was fitted with different 'method' settings"):
        fitting.fit_class(build_model(CONFIGS["padim"]), data.build_dataloader(clean, data_cfg, 0, shuffle=False),
                          path.parent, torch.device("cpu"), 0, clean.heldout_paths)


@pytest.mark.parametrize("method", list(CONFIGS))
def test_distance_scale_makes_the_largest_heldout_patch_score_one_half(fitted, method):
    model, heldout = copy.deepcopy(fitted[method].model), fitted[method].heldout
    stored_scale = float(load_checkpoint(fitted[method].class_dir / "ckpt_best_1.pth")["weights"]["scale"])
    assert float(model.head.scale) == stored_scale  # fit_class set it so
    model.head.scale = torch.tensor(123.0)  # whatever it was before
    scale = fitting.set_distance_scale(model, torch.device("cpu"), heldout, batch_size=3)
    assert float(model.head.scale) == pytest.approx(scale, rel=1e-6) == pytest.approx(stored_scale, rel=1e-4)
    engine = calibration.model_engine(model, torch.device("cpu"))
    grids = engine.patch_scores([calibration.read_frame(p) for p in heldout])
    assert max(float(g.max()) for g in grids) == pytest.approx(0.5, abs=1e-5)
    # scored whole, like the frames a video shows, not as the 64 px training crops
    assert grids[0].shape == ((8, 8) if method == "patchcore" else (16, 16))


def test_distance_scale_leaves_models_without_one_alone():
    net = GlassModel.build(NetConfig(backbone="efficientnet_lite0", layers=("blocks.2", "blocks.4"),
                                     pretrain_embed_dimension=32, target_embed_dimension=32, dsc_hidden=16, **NORM))
    assert math.isnan(fitting.set_distance_scale(net, torch.device("cpu"), ["never_read.png"]))
    padim = PadimModel.build(CONFIGS["padim"])
    assert math.isnan(fitting.set_distance_scale(padim, torch.device("cpu"), []))  # no images: nothing to measure
    assert float(padim.head.scale) == 1.0
