"""Shared fixtures: tiny datasets written into tmp_path, the tiny trained model (helpers in tests/helpers.py)."""
from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

pytest.register_assert_rewrite("tests.helpers")  # its assert_* helpers report like asserts in tests

import common  # noqa: E402
from tests.helpers import (  # noqa: E402
    METHOD_ARGS, FittedMethods, TinyModel, dataset_args, load_onnx_script, write_tiny_mvtec)

if TYPE_CHECKING:
    from inference.engine import InferenceEngine

common.keep_freed_memory()  # as the CLI does: large CPU temporaries are reused, not page-faulted again


@pytest.fixture
def tiny_mvtec(tmp_path: Path) -> tuple[Path, Path]:
    """(data_path, aug_path) of a one-class MVTec-layout dataset with 64 px images."""
    return write_tiny_mvtec(tmp_path)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A tiny efficientnet_lite0 GLASS model (64 px, dims 64, 2 epochs), trained once per session."""
    import main  # imported here: the fixture module stays light for tests that do not train

    root = tmp_path_factory.mktemp("tiny_model")
    data, aug = write_tiny_mvtec(root)
    results = root / "results"
    code = main.cli([
        "--results_path", str(results), "--seed", "3",
        "net", "-b", "efficientnet_lite0", "--pretrain_embed_dimension", "64", "--target_embed_dimension", "64",
        "--dsc_hidden", "32", "--meta_epochs", "2", "--step", "2",
        "dataset", "--batch_size", "4", "--num_workers", "0", "--resize", "64", "--imagesize", "64",
        "--fg", "0", "--distribution", "2", "-d", "toy", "mvtec", str(data), str(aug),
    ])
    assert code == 0
    model_path = results / "models" / "backbone_0"
    return TinyModel(model_path, "mvtec_toy", model_path / "mvtec_toy", data)


@pytest.fixture(scope="session")
def fitted_methods(tmp_path_factory: pytest.TempPathFactory) -> FittedMethods:
    """A tiny PatchCore and PaDiM (efficientnet_lite0, 64 px), DRAEM and autoencoder (2 epochs, narrow networks)
    fitted once per session by the CLI into one results folder, on 16 training images (8 fitted on, 8 held out
    for the score scale and the thresholds)."""
    import main

    root = tmp_path_factory.mktemp("fitted_methods")
    data, aug = write_tiny_mvtec(root, n_train=16)
    results = root / "results"
    for method in METHOD_ARGS:
        code = main.cli(["--results_path", str(results), "--seed", "0", *METHOD_ARGS[method], *dataset_args(data, aug)])
        assert code == 0, method
    return FittedMethods(results, data, aug)


@pytest.fixture(scope="session")
def torch_engine(tiny_model: TinyModel) -> InferenceEngine:
    """The tiny model's PyTorch engine on CPU (the reference the ONNX files are checked against)."""
    from inference.engine import EngineConfig, InferenceEngine

    return InferenceEngine.from_config(EngineConfig(str(tiny_model.model_path), tiny_model.class_name, device="cpu"))


@pytest.fixture(scope="session")
def exports(tiny_model, tmp_path_factory) -> dict[str, Path]:
    """The tiny model exported twice: fold form with a dynamic batch, pool form with a fixed batch of 2."""
    from inference import onnx_export

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


@pytest.fixture(scope="module")
def pth2onnx() -> ModuleType:
    """onnx/pth2onnx.py loaded as a module (onnx/ is a script folder)."""
    return load_onnx_script("pth2onnx")


@pytest.fixture(scope="module")
def ort_script() -> ModuleType:
    """onnx/ort.py loaded as a module."""
    return load_onnx_script("ort")


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory: pytest.TempPathFactory):
    """A local Ray instance (2 CPUs, no dashboard) for one test module, shut down after it; yields the file its
    workers watch (scale_out.KILL_ONCE_ENV): a test that creates it has the next worker reporting a checkpoint
    killed once."""
    import ray

    import scale_out

    marker = tmp_path_factory.mktemp("ray") / "kill-once"
    # address="local": a new instance even when `ray start` left /tmp/ray/ray_current_cluster behind
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {scale_out.KILL_ONCE_ENV: str(marker)}})
    yield marker
    ray.shutdown()
