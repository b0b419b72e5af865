"""methods/pixel.py: the pixel methods' training loop keeps its state between epochs and resumes exactly."""
from __future__ import annotations

import torch

import utils
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


def test_an_interrupted_training_resumes_to_the_same_numbers():
    """The state given after epoch 2, given back to a new model (a new process: other global random states):
    the same loss curve and weights as one uninterrupted run (same seed, same machine: same numbers)."""
    utils.fix_seeds(0)
    whole = model()
    expected = whole.fit_loader(loader(), seed=0)

    states: list[dict] = []
    utils.fix_seeds(0)
    model().fit_loader(loader(), seed=0, on_epoch=states.append)
    assert [state["epoch"] for state in states] == [1, 2, 3, 4]
    assert states[-1]["loss"] == expected["loss"]

    utils.fix_seeds(123)
    resumed = model()
    heard: list[int] = []
    facts = resumed.fit_loader(loader(), seed=0, resume=states[1], on_epoch=lambda state: heard.append(state["epoch"]))
    assert heard == [3, 4]
    assert facts["loss"] == expected["loss"] and len(facts["loss"]) == 4
    mine, theirs = resumed.weights(), whole.weights()
    assert all(torch.equal(mine[name], theirs[name]) for name in theirs)
