"""methods/pixel.py: the pixel methods' training loop keeps its state between epochs, resumes exactly, and
fitting.fit_class hands each epoch's state on."""
from __future__ import annotations

import cv2
import numpy as np
import torch

import fitting
import utils
from methods.draem import DraemConfig, DraemModel
from model import LATEST_NAME


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


def test_fit_class_reports_each_epochs_state_as_it_is_written(tmp_path):
    """fit_class hands every epoch's ckpt.pth to checkpoint_saved while the file holds that epoch (scale_out
    sends it to the driver then), and removes it once the final checkpoint is written."""
    class_dir = tmp_path / "toy"
    seen: list[tuple[str, int]] = []

    def saved(path):
        state = torch.load(path, map_location="cpu", weights_only=True)
        seen.append((path.name, int(state["epoch"])))

    paths = []
    for index in range(8):  # the images the thresholds are calibrated on: 4 held out, 4 as the training images
        path = tmp_path / f"good_{index}.png"
        cv2.imwrite(str(path), np.random.default_rng(index).integers(120, 140, (32, 32, 3), dtype=np.uint8))
        paths.append(path)
    training = loader()
    training.dataset.image_paths = paths[4:]
    final = fitting.fit_class(model(), training, class_dir, torch.device("cpu"), seed=0, heldout=paths[:4],
                              checkpoint_saved=saved)
    assert seen == [(LATEST_NAME, epoch) for epoch in (1, 2, 3, 4)]
    assert final.name == "ckpt_best_4.pth" and final.is_file() and not (class_dir / LATEST_NAME).exists()
