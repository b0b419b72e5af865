"""datasets.registry: every dataset name has its folder layout."""
from __future__ import annotations

from datasets.base import DATASET_NAMES
from datasets.mvtec import mvtec_samples
from datasets.registry import LAYOUTS
from datasets.visa import visa_samples


def test_every_dataset_name_has_its_folder_layout() -> None:
    assert set(LAYOUTS) == set(DATASET_NAMES)
    assert LAYOUTS["visa"] is visa_samples
    assert all(LAYOUTS[name] is mvtec_samples for name in ("mvtec", "mpdd", "wfdd", "mad-man", "mad-sys", "custom"))
