"""fitting.py: the training state between epochs of a method trained for epochs, found again or refused."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import utils
from fitting import unfinished_training
from methods.base import CheckpointError
from model import CHECKPOINT_FORMAT

HEADER = {"format": CHECKPOINT_FORMAT, "method": "draem", "net": {"epochs": 4}, "train": {"seed": 0},
          "meta": {"heldout": ["a.png"]}}


def test_no_state_is_none_and_a_state_of_these_settings_comes_back(tmp_path: Path):
    latest = tmp_path / "ckpt.pth"
    assert unfinished_training(latest, HEADER) is None
    utils.atomic_torch_save({**HEADER, "epoch": 2, "loss": [0.5, 0.4], "weights": {"w": torch.ones(2)}}, latest)
    state = unfinished_training(latest, HEADER)
    assert state["epoch"] == 2 and torch.equal(state["weights"]["w"], torch.ones(2))


@pytest.mark.parametrize("key, value", [("train", {"seed": 1}), ("net", {"epochs": 5}),
                                        ("meta", {"heldout": ["b.png"]})])
def test_a_state_of_other_settings_or_data_is_one_line(tmp_path: Path, key: str, value: dict):
    latest = tmp_path / "ckpt.pth"
    utils.atomic_torch_save({**HEADER, "epoch": 1, "loss": [0.5], "weights": {}}, latest)
    with pytest.raises(CheckpointError, match=f"other '{key}' settings or data") as caught:
        unfinished_training(latest, {**HEADER, key: value})
    assert "\n" not in str(caught.value) and f"delete {tmp_path}" in str(caught.value)


def test_an_unreadable_state_is_one_line(tmp_path: Path):
    latest = tmp_path / "ckpt.pth"
    latest.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as caught:
        unfinished_training(latest, HEADER)
    assert "\n" not in str(caught.value)
