"""methods/pixel.py: the pixel methods' training loop keeps its state between epochs and resumes exactly."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import utils
from methods import pixel
from methods.base import CheckpointError
from methods.draem import DraemConfig, DraemModel


class Squares(torch.utils.data.Dataset):
    """Eight 32 px images with a painted square as the synthetic anomaly (what DRAEM's loss reads)."""

    def __init__(self) -> None:
        rng = torch.Generator().manual_seed(1)
        self.images = 0.5 + 0.1 * torch.rand(8, 3, 32, 32, generator=rng)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        mask = torch.zeros(32, 32)
        mask[4 + index:12 + index, 8:20] = 1
        image = self.images[index]
        return {"image": image, "aug": torch.where(mask > 0, torch.ones_like(image), image), "mask": mask}


def loader() -> torch.utils.data.DataLoader:
    """Shuffled batches of 4 from a seeded generator (as the CLI's loaders)."""
    generator = torch.Generator().manual_seed(0)
    return torch.utils.data.DataLoader(Squares(), batch_size=4, shuffle=True, generator=generator)


def model() -> DraemModel:
    """A 4-channel DRAEM, seeded; 4 epochs (the learning rate drops after epochs 3 and 4's start)."""
    torch.manual_seed(0)
    return DraemModel(DraemConfig(imagesize=32, resize=32, recon_width=4, disc_width=4, epochs=4, lr=1e-2))


HEADER = {"method": "draem", "train": {"seed": 0}}


def test_an_interrupted_training_resumes_to_the_same_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Stopped after epoch 2 (Ctrl-C while its state is written), then run again: the same loss curve and
    weights as one uninterrupted run (same seed, same machine: same numbers)."""
    utils.fix_seeds(0)
    whole = model()
    expected = whole.fit_loader(loader(), seed=0)

    latest = tmp_path / "ckpt.pth"
    save = utils.atomic_torch_save
    saved: list[int] = []

    def stop_after_two(state: dict, path: Path) -> None:
        save(state, path)
        saved.append(state["epoch"])
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(pixel.utils, "atomic_torch_save", stop_after_two)
    utils.fix_seeds(0)
    with pytest.raises(KeyboardInterrupt):
        model().fit_loader(loader(), seed=0, latest=latest, header=HEADER)
    assert saved == [1, 2] and latest.is_file()

    utils.fix_seeds(123)  # a new process: other global random states, restored from the file
    resumed = model()
    heard: list[Path] = []
    facts = resumed.fit_loader(loader(), seed=0, latest=latest, header=HEADER, after_epoch=heard.append)
    assert saved == [1, 2, 3, 4] and heard == [latest, latest]  # told of each save (scale_out sends the file)
    assert facts["loss"] == expected["loss"] and len(facts["loss"]) == 4
    mine, theirs = resumed.weights(), whole.weights()
    assert all(torch.equal(mine[name], theirs[name]) for name in theirs)


def test_a_training_state_of_other_settings_or_a_broken_file_is_one_line(tmp_path: Path):
    latest = tmp_path / "ckpt.pth"
    first = model()
    first.cfg = DraemConfig(imagesize=32, resize=32, recon_width=4, disc_width=4, epochs=1, lr=1e-2)
    first.fit_loader(loader(), seed=0, latest=latest, header=HEADER)
    with pytest.raises(CheckpointError, match="other settings or data") as caught:
        model().fit_loader(loader(), seed=0, latest=latest, header={**HEADER, "train": {"seed": 1}})
    assert "\n" not in str(caught.value) and "delete" in str(caught.value)
    latest.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable training state"):
        model().fit_loader(loader(), seed=0, latest=latest, header=HEADER)
