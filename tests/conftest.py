"""Shared fixtures: tiny datasets written into tmp_path, the tiny trained model (helpers in tests/helpers.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

import common
from tests.helpers import TinyModel, write_tiny_mvtec

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
