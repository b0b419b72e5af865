"""Shared test helpers: tiny datasets, the trained tiny model's description, command lines, clips.

Plain functions and classes imported by the test modules (`from tests.helpers import ...`);
the fixtures built from them are in conftest.py.
"""
from __future__ import annotations

import csv
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

import video_io

REPO = Path(__file__).resolve().parents[1]  # the repository root (scripts are run from there by path)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour texture (uint8 HxWx3)."""
    noise = rng.normal(0.5, 0.15, (size // 4, size // 4, 3)).astype(np.float32)
    image = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def write_tiny_mvtec(root: Path, classes=("toy",), n_train=6, n_good=3, n_bad=3, size=64, seed=0) -> tuple[Path, Path]:
    """Writes an MVTec-layout dataset (dark square defects) and a DTD-style texture folder."""
    rng = np.random.default_rng(seed)
    data = root / "mvtec"
    for cls in classes:
        for i in range(n_train):
            _write(data / cls / "train" / "good" / f"{i:03d}.png", _texture(rng, size))
        for i in range(n_good):
            _write(data / cls / "test" / "good" / f"{i:03d}.png", _texture(rng, size))
        for i in range(n_bad):
            image = _texture(rng, size)
            mask = np.zeros((size, size), np.uint8)
            y, x = rng.integers(8, size - 24, 2)
            image[y:y + 14, x:x + 14] = (20, 20, 200)
            mask[y:y + 14, x:x + 14] = 255
            _write(data / cls / "test" / "blob" / f"{i:03d}.png", image)
            _write(data / cls / "ground_truth" / "blob" / f"{i:03d}_mask.png", mask)
    aug = root / "dtd" / "images"
    for category in ("a", "b"):
        for i in range(2):
            _write(aug / category / f"{category}_{i}.jpg", _texture(rng, size))
    return data, aug


def _write(path: Path, image: np.ndarray) -> None:
    """Writes an RGB or gray uint8 image, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), image)


@dataclass(frozen=True)
class TinyModel:
    """A trained tiny model directory as the video and export commands take it."""

    model_path: Path  # results/models/backbone_0
    class_name: str  # mvtec_toy
    class_dir: Path
    data_path: Path  # the MVTec-layout data it was trained on


# ---------------------------------------------------------------- the one-pass methods (PatchCore, PaDiM)

METHOD_CLASS = "mvtec_toy"
PATCHCORE_ARGS = ("patchcore", "-b", "efficientnet_lite0", "-le", "blocks.2", "-le", "blocks.4", "--coreset", "0.5")
PADIM_ARGS = ("padim", "-b", "efficientnet_lite0", "-le", "blocks.1", "-le", "blocks.2", "--features", "20")
DRAEM_ARGS = ("draem", "--recon_width", "4", "--disc_width", "4", "--epochs", "2", "--lr", "0.001")
AE_ARGS = ("ae", "--width", "4", "--latent", "16", "--epochs", "2")
METHOD_ARGS = {"patchcore": PATCHCORE_ARGS, "padim": PADIM_ARGS, "draem": DRAEM_ARGS, "ae": AE_ARGS}


@dataclass(frozen=True)
class FittedMethods:
    """One results folder holding a tiny fitted PatchCore, PaDiM, DRAEM and autoencoder class model (the
    `fitted_methods` fixture)."""

    results: Path  # the --results_path both were fitted into
    data_path: Path  # the MVTec-layout data (16 training images: 8 fitted on, 8 held out)
    aug_path: Path

    def model_path(self, method: str) -> Path:
        """results/models/<method>/backbone_0."""
        return self.results / "models" / method / "backbone_0"

    def class_dir(self, method: str) -> Path:
        """results/models/<method>/backbone_0/mvtec_toy."""
        return self.model_path(method) / METHOD_CLASS

    def tiny_model(self, method: str) -> TinyModel:
        """The method's model as the video commands take it."""
        return TinyModel(self.model_path(method), METHOD_CLASS, self.class_dir(method), self.data_path)


def interrupt_second_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes training die (Ctrl-C) during its second epoch, after ckpt.pth of the first was written."""
    import glass

    original = glass.GLASS._train_epoch
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(glass.GLASS, "_train_epoch", interrupted)


def write_scrolling_clip(tiny_model: TinyModel, path: Path, frames: int, shift: int = 2) -> Path:
    """An MP4 of the fixture's first defective test image scrolling left by `shift` px per frame."""
    import video_io

    image = cv2.imread(str(tiny_model.data_path / "toy" / "test" / "blob" / "000.png"))
    height, width = image.shape[:2]
    with video_io.AtomicVideoWriter(path, 10.0, (width, height)) as writer:
        for index in range(frames):
            writer.write(np.ascontiguousarray(np.roll(image, -shift * index, axis=1)))
    return path


def net_args(epochs: int = 2, *extra: str) -> list[str]:
    """A tiny efficientnet_lite0 GLASS (small dims, 2 ascent steps)."""
    return ["net", "-b", "efficientnet_lite0", "--pretrain_embed_dimension", "64", "--target_embed_dimension", "64",
            "--dsc_hidden", "32", "--meta_epochs", str(epochs), "--step", "2", *extra]


def dataset_args(data: Path, aug: Path, *extra: str) -> list[str]:
    """64 px images, batch 4, no workers, manifold forced."""
    return ["dataset", "--batch_size", "4", "--num_workers", "0", "--resize", "64", "--imagesize", "64",
            "--fg", "0", "--distribution", "2", *extra, "-d", "toy", "mvtec", str(data), str(aug)]


# ---------------------------------------------------------------- the 8-frame clip of tests/inference/conftest.py

CLIP_SOURCES = ["good/000", "blob/000", "good/001", "blob/001", "good/002", "blob/002", "good/000", "good/001"]
CLIP_FRAMES = len(CLIP_SOURCES)
CLIP_SIZE = 64


def model_args(tiny_model: TinyModel, *extra: str) -> list[str]:
    """--model_path/--class_name/--device of the tiny model plus extra flags."""
    return ["--model_path", str(tiny_model.model_path), "--class_name", tiny_model.class_name, "--device", "cpu",
            "--batch_size", "3", *extra]


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def frame_count(path: Path) -> int:
    """Frames in a video, counted by decoding it."""
    return video_io.probe_video(path, exact=True).frame_count


def write_unreadable(folder: Path) -> Path:
    """A file named like a video (`broken.mp4`) holding no video."""
    path = folder / "broken.mp4"
    path.write_bytes(b"not a video at all" * 100)
    return path


def files_under(folder: Path) -> list[Path]:
    """Every file below a folder (empty if the folder does not exist)."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ---------------------------------------------------------------- ONNX export and runtime

ONNX_TOLERANCE = 1e-4  # max |ONNX - PyTorch| patch score


def load_onnx_script(name: str) -> ModuleType:
    """Loads onnx/<name>.py by path (the onnx/ folder is a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location(f"glass_onnx_script_{name}", REPO / "onnx" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def real_frames(tiny_model) -> list[np.ndarray]:
    """The fixture's test images and scikit-image photos resized to the model's 64 px (BGR uint8)."""
    import skimage.data

    frames = [cv2.imread(str(p)) for p in sorted((tiny_model.data_path / "toy" / "test").rglob("*.png"))]
    for name in ("brick", "grass", "gravel", "coffee", "chelsea", "astronaut"):
        photo = getattr(skimage.data, name)()
        photo = cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR) if photo.ndim == 2 else cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)
        frames.append(cv2.resize(photo, (64, 64), interpolation=cv2.INTER_AREA))
    return frames


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err)
    return errors[0]


# ---------------------------------------------------------------- size analysis

def rect_map(shape: tuple[int, int], boxes: list[tuple[int, int, int, int]], value: float = 1.0) -> np.ndarray:
    """Zero float32 map with filled rectangles (x1, y1, x2, y2 exclusive)."""
    out = np.zeros(shape, np.float32)
    for x1, y1, x2, y2 in boxes:
        out[y1:y2, x1:x2] = value
    return out


# ---------------------------------------------------------------- the video creation scripts (tests/preprocessing)

def frames_of(video: Path) -> list[np.ndarray]:
    """All decoded frames of a video."""
    return [frame for batch in video_io.iter_frames(video, batch_size=4) for frame in batch]


def labels_of(sidecar: dict) -> list[str]:
    """Frame labels of a sidecar."""
    return [frame["label"] for frame in sidecar["frames"]]


def assert_sidecar_matches_sources(sidecar: dict) -> None:
    """Every frame's label is its source image's folder, indices run 0..n-1, defects have their mask."""
    for i, frame in enumerate(sidecar["frames"]):
        assert frame["index"] == i
        source = Path(frame["source"])
        assert source.is_file() and source.parent.name == frame["label"]
        assert frame["is_defect"] == (frame["label"] != "good")
        if frame["is_defect"]:
            assert Path(frame["mask"]).name == f"{source.stem}_mask.png"
        else:
            assert frame["mask"] is None


def assert_frames_show_sources(video: Path, sidecar: dict) -> None:
    """Each decoded frame is closest to its own (resized) source image among all the video's sources."""
    size = (sidecar["width"], sidecar["height"])
    sources = {f["source"]: cv2.resize(cv2.imread(f["source"]), size) for f in sidecar["frames"]}
    names = list(sources)
    for frame, record in zip(frames_of(video), sidecar["frames"]):
        errors = [np.abs(frame.astype(int) - sources[n].astype(int)).mean() for n in names]
        assert names[int(np.argmin(errors))] == record["source"]


def assert_user_error(capsys: pytest.CaptureFixture, code: int, *needles: str) -> None:
    """Exit code 2 and exactly one 'error:' line on stderr naming the needles."""
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]
