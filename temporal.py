"""Training and scoring the ConvLSTM video autoencoder (methods/video_autoencoder.py) on videos.

Sources: a video file (read with video_io) or a frame folder (the output of
preprocessing/video_to_dataset.py: its train/ and test/ images put back in source-frame order with its
JSON; any other folder: its images in name order). Clips never cross from one source into another.

Held-out normal clips: the last `heldout` fraction of every training source's frames is kept out of
training; the threshold is the **largest** frame score over those held-out frames. The maximum, not a
quantile: the model is judged on "no alarm on a normal stretch", and the held-out stretch (some dozens to
hundreds of frames) is too short for a 99th percentile to differ much from its maximum; the false-alarm
rate on new normal video is measured and reported (benchmarks/bench_temporal.py).

Scoring a video: clips of `clip_len` frames every `clip_len // 2` frames (and one ending at the last frame),
so every frame is reconstructed about twice; a frame's error map is the mean of its clips' maps (and of the
predictions of it, for a composite model), and its score the mean of the largest `top_fraction` of that map.

The model file `convlstm.pth` (in the --model folder) holds the format, method "convlstm", the model
config, the training settings and sources, the weights, the threshold with the held-out score statistics,
and the timing; written atomically, read with weights_only=True.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

import utils
import video_io
from errors import UserError
from methods.base import CheckpointError
from methods.video_autoencoder import (
    METHOD, VideoAEConfig, VideoAutoencoder, clip_loss, error_maps, frame_scores, to_model_frames)

LOGGER = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "glass-toolkit-video/1"
MODEL_FILE = "convlstm.pth"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DATASET_JSON = "video_to_dataset.json"  # preprocessing/video_to_dataset.SIDECAR_NAME (a command; not imported)
READ_BATCH = 32


class TemporalError(UserError):
    """A bad temporal-model input or setting; one line naming the flag or file and the fix."""


@dataclass(frozen=True)
class TrainConfig:
    """How the autoencoder is trained (the data-independent settings a reused model must match)."""

    epochs: int = 4
    batch_size: int = 8
    lr: float = 3e-3
    seed: int = 0
    heldout: float = 0.2  # last fraction of each source's frames: threshold, not training

    def __post_init__(self) -> None:
        """Rejects settings that cannot train, naming the flag and the fix."""
        if self.epochs < 1:
            raise TemporalError(f"--epochs {self.epochs}: use at least 1")
        if self.batch_size < 1:
            raise TemporalError(f"--batch_size {self.batch_size}: use at least 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise TemporalError(f"--lr {self.lr}: use a positive learning rate, e.g. 0.001")
        if not 0 < self.heldout < 1:
            raise TemporalError(f"--heldout {self.heldout}: use a fraction in (0, 1), e.g. 0.2")


@dataclass
class TemporalModel:
    """A trained autoencoder with its threshold and what the checkpoint says about it."""

    net: VideoAutoencoder
    threshold: float
    train: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)


@dataclass
class VideoScores:
    """Per frame of a scored video: score, error map and reconstruction at the model size."""

    scores: np.ndarray  # (N,)
    errors: np.ndarray  # (N, h, w)
    reconstructions: np.ndarray  # (N, C, h, w) in [0, 1]
    seconds: float


# ---------------------------------------------------------------- sources

def iter_source(source: str | os.PathLike) -> Iterator[list[np.ndarray]]:
    """Batches of a video file's frames, or of a frame folder's images in temporal order (BGR uint8)."""
    path = Path(source)
    if path.is_dir():
        images = folder_images(path)
        return ([_read_image(image) for image in images[first:first + READ_BATCH]]
                for first in range(0, len(images), READ_BATCH))
    if not path.exists():
        raise TemporalError(f"{path}: no such video or frame folder; check the path")
    return video_io.iter_frames(path, READ_BATCH)


def read_model_frames(source: str | os.PathLike, cfg: VideoAEConfig) -> tuple[np.ndarray, tuple[int, int]]:
    """A source's frames at the model size (N, C, h, w) and the (width, height) of its frames, read in
    batches (the full-size frames are not kept)."""
    parts, size = [], None
    for batch in iter_source(source):
        shape = (batch[0].shape[1], batch[0].shape[0])
        if size is not None and shape != size:
            raise TemporalError(f"{source}: frames of {shape[0]}x{shape[1]} after frames of {size[0]}x{size[1]}; "
                                "use frames of one size")
        size = shape
        parts.append(to_model_frames(batch, cfg))
    if size is None:
        raise TemporalError(f"{source}: no frames; check the file")
    return np.concatenate(parts), size


def folder_images(folder: Path) -> list[Path]:
    """A frame folder's images in temporal order (video_to_dataset's JSON order when it has one)."""
    listing = folder / DATASET_JSON
    if listing.is_file():
        try:
            data = json.loads(listing.read_text(encoding="utf-8"))
            records = sorted((r["frame"], folder / r["image"]) for split in ("train", "test")
                             for r in data.get(split, []))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise TemporalError(f"{listing}: not a video_to_dataset listing ({type(err).__name__}); "
                                "re-create the folder with preprocessing/video_to_dataset.py") from None
        settings = data.get("settings", {}) if isinstance(data, dict) else {}
        if settings.get("jitter", 0):
            raise TemporalError(f"{folder}: made with --jitter {settings['jitter']} (each training frame moved by up "
                                "to that many pixels: the belt would seem to shake); re-create it with "
                                "preprocessing/video_to_dataset.py --every 1 --jitter 0 for temporal training")
        every = settings.get("every", 1)
        if every != 1:
            LOGGER.warning("%s keeps every %d-th frame: clips from it move %dx faster than the video; make it with "
                           "--every 1 for temporal training", folder, every, every)
        images = [image for _, image in records]
    else:
        images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise TemporalError(f"{folder}: no images; give a video or a folder of frames "
                            "(e.g. from preprocessing/video_to_dataset.py --every 1 --jitter 0)")
    return images


def _read_image(path: Path) -> np.ndarray:
    """One frame image as BGR uint8; TemporalError if unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise TemporalError(f"{path}: not a readable image; remove or replace it")
    return image


def split_heldout(frames: np.ndarray, fraction: float, span: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(training frames, held-out last `fraction`), each long enough for one clip (TemporalError otherwise)."""
    held = max(span, round(len(frames) * fraction))
    if len(frames) - held < span:
        raise TemporalError(f"{name}: {len(frames)} frames are too few for {span}-frame clips with "
                            f"{held} held out; use a longer video or a shorter --clip_len")
    return frames[:-held], frames[-held:]


# ---------------------------------------------------------------- training

def _clip_batches(sources: Sequence[np.ndarray], span: int, batch_size: int, generator: torch.Generator
                  ) -> Iterator[np.ndarray]:
    """Every clip start of every source once, shuffled, as batches (B, span, C, h, w); a batch holds clips of
    one frame size (sources of other sizes go into other batches)."""
    starts = [(s, i) for s, frames in enumerate(sources) for i in range(len(frames) - span + 1)]
    order = [starts[k] for k in torch.randperm(len(starts), generator=generator).tolist()]
    groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for s, i in order:
        groups.setdefault(sources[s].shape[1:], []).append((s, i))
    chunks = [group[first:first + batch_size] for group in groups.values()
              for first in range(0, len(group), batch_size)]
    for k in torch.randperm(len(chunks), generator=generator).tolist():
        yield np.stack([sources[s][i:i + span] for s, i in chunks[k]])


def fit(net: VideoAutoencoder, sources: Sequence[np.ndarray], cfg: TrainConfig, progress: bool = True
        ) -> list[float]:
    """Trains `net` on clips of the (model-size) frame arrays; returns the mean loss of every epoch."""
    utils.fix_seeds(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    span, length = net.cfg.span, net.cfg.clip_len
    total = sum(max(0, len(frames) - span + 1) for frames in sources) + len(sources)  # at most: one short per size
    losses = []
    net.train()
    for epoch in range(cfg.epochs):
        running, count = 0.0, 0
        batches = _clip_batches(sources, span, cfg.batch_size, generator)
        for batch in tqdm(batches, total=-(-total // cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                          disable=not progress, leave=False):
            clips = torch.from_numpy(batch)
            reconstruction, prediction = net(clips[:, :length])
            loss = clip_loss(reconstruction, clips[:, :length], prediction, clips[:, length:])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            running, count = running + loss.item() * len(batch), count + len(batch)
        losses.append(running / max(count, 1))
        LOGGER.info("epoch %d/%d: loss %.5f", epoch + 1, cfg.epochs, losses[-1])
    net.eval()
    return losses


def train(sources: Sequence[str | os.PathLike], cfg: VideoAEConfig | None = None,
          train_cfg: TrainConfig | None = None, progress: bool = True) -> tuple[TemporalModel, float]:
    """Trains on defect-free videos or frame folders; returns the model (threshold set on the held-out
    frames) and the training seconds (default settings where cfg or train_cfg is None)."""
    cfg, train_cfg = cfg or VideoAEConfig(), train_cfg or TrainConfig()
    if not sources:
        raise TemporalError("--train: give at least one defect-free video or frame folder")
    fitted, held = [], []
    for source in sources:
        frames, _ = read_model_frames(source, cfg)
        part, rest = split_heldout(frames, train_cfg.heldout, cfg.span, str(source))
        fitted.append(part)
        held.append(rest)
    utils.fix_seeds(train_cfg.seed)
    net = VideoAutoencoder(cfg)
    started = time.perf_counter()
    losses = fit(net, fitted, train_cfg, progress)
    seconds = time.perf_counter() - started
    heldout_scores = np.concatenate([score_frames(net, frames).scores for frames in held])
    threshold = float(heldout_scores.max())
    LOGGER.info("trained in %.1f s; threshold %.6g (largest of %d held-out frame scores)", seconds, threshold,
                len(heldout_scores))
    model = TemporalModel(
        net, threshold,
        train={**asdict(train_cfg), "sources": [Path(s).name for s in sources]},
        calibration={"rule": "max of held-out frame scores", "frames": int(len(heldout_scores)),
                     "mean": float(heldout_scores.mean()), "q99": float(np.quantile(heldout_scores, 0.99)),
                     "max": threshold},
        timing={"train_seconds": seconds, "losses": losses,
                "train_frames": int(sum(len(f) for f in fitted))})
    return model, seconds


# ---------------------------------------------------------------- scoring

def clip_starts(count: int, length: int) -> list[int]:
    """Starts of the scoring clips: every length // 2 frames, and one ending at the last frame."""
    if count < length:
        raise TemporalError(f"{count} frames: a video needs at least --clip_len {length} frames to be scored")
    step = max(1, length // 2)
    starts = list(range(0, count - length + 1, step))
    return starts if starts[-1] == count - length else [*starts, count - length]


@torch.no_grad()
def score_frames(net: VideoAutoencoder, frames: np.ndarray, batch_size: int = 8) -> VideoScores:
    """Scores model-size frames (N, C, h, w): per frame the mean error map of the clips (and predictions)
    covering it, its score, and its mean reconstruction."""
    net.eval()
    cfg = net.cfg
    started = time.perf_counter()
    count = len(frames)
    error_sum = np.zeros((count, *frames.shape[2:]), np.float32)
    recon_sum = np.zeros_like(frames)
    error_n = np.zeros(count, np.int32)
    recon_n = np.zeros(count, np.int32)
    starts = clip_starts(count, cfg.clip_len)
    tensor = torch.from_numpy(frames)
    for first in range(0, len(starts), batch_size):
        batch_starts = starts[first:first + batch_size]
        clips = torch.stack([tensor[s:s + cfg.clip_len] for s in batch_starts])
        reconstruction, prediction = net(clips)
        errors = error_maps(reconstruction, clips).numpy()
        for k, start in enumerate(batch_starts):
            window = slice(start, start + cfg.clip_len)
            error_sum[window] += errors[k]
            error_n[window] += 1
            recon_sum[window] += reconstruction[k].numpy()
            recon_n[window] += 1
            if prediction is not None:
                future = min(cfg.predict_frames, count - window.stop)
                if future > 0:
                    target = tensor[window.stop:window.stop + future]
                    error_sum[window.stop:window.stop + future] += error_maps(prediction[k, :future], target).numpy()
                    error_n[window.stop:window.stop + future] += 1
    errors = error_sum / error_n[:, None, None]
    scores = frame_scores(torch.from_numpy(errors), cfg.top_fraction).numpy().astype(np.float64)
    reconstructions = recon_sum / recon_n[:, None, None, None]
    return VideoScores(scores, errors, reconstructions, time.perf_counter() - started)


def score_video(model: TemporalModel, video: str | os.PathLike) -> tuple[VideoScores, tuple[int, int]]:
    """A video's (or frame folder's) frame scores and its frame (width, height)."""
    frames, size = read_model_frames(video, model.net.cfg)
    if len(frames) < model.net.cfg.clip_len:
        raise TemporalError(f"{video}: {len(frames)} frames; the model scores clips of {model.net.cfg.clip_len}, "
                            "give a longer video")
    return score_frames(model.net, frames), size


def temporal_truth(sidecar: dict[str, Any] | None, count: int) -> list[bool] | None:
    """Per frame, whether the sidecar says its motion is abnormal: `temporal_anomaly` of each frame, all
    False for a conveyor video made without a motion profile (constant motion), else None (unknown)."""
    if not sidecar:
        return None
    frames = sidecar.get("frames", [])
    if len(frames) != count:
        LOGGER.warning("sidecar lists %d frames, the video has %d: no truth used", len(frames), count)
        return None
    if all(isinstance(f, dict) and "temporal_anomaly" in f for f in frames):
        return [bool(f["temporal_anomaly"]) for f in frames]
    if sidecar.get("settings", {}).get("generator") == "create_conveyor_video":
        return [False] * count
    return None


def detection_metrics(scores: np.ndarray, flagged: np.ndarray, truth: Sequence[bool], margin: int = 0
                      ) -> dict[str, Any]:
    """Frame AUROC (None with one class only), false-alarm rate on the normal frames (and on those more than
    `margin` frames from any abnormal one: a clip overlapping an event spreads its error that far), recall on
    the abnormal frames."""
    from sklearn.metrics import roc_auc_score

    abnormal = np.asarray(truth, bool)
    normal = ~abnormal
    near = np.convolve(abnormal, np.ones(2 * margin + 1), mode="same") > 0 if margin else abnormal
    far = normal & ~near
    return {
        "frame_auroc": float(roc_auc_score(abnormal, scores)) if normal.any() and abnormal.any() else None,
        "false_alarm_rate": float(flagged[normal].mean()) if normal.any() else None,
        "false_alarm_rate_far": float(flagged[far].mean()) if far.any() else None,
        "recall": float(flagged[abnormal].mean()) if abnormal.any() else None,
        "normal_frames": int(normal.sum()), "abnormal_frames": int(abnormal.sum()),
    }


def evaluate_video(model: TemporalModel, video_path: str | os.PathLike) -> dict[str, Any]:
    """Scores a video against its sidecar truth: frame_auroc, false_alarm_rate, recall, ms_per_frame, flagged."""
    scored, _ = score_video(model, video_path)
    count = len(scored.scores)
    flagged = scored.scores > model.threshold
    truth = temporal_truth(video_io.read_sidecar(video_path), count)
    margin = model.net.cfg.clip_len
    metrics = detection_metrics(scored.scores, flagged, truth, margin) if truth is not None else {}
    return {"frames": count, "flagged": int(flagged.sum()), "threshold": model.threshold,
            "ms_per_frame": 1000 * scored.seconds / count, **metrics}


# ---------------------------------------------------------------- checkpoint

def checkpoint_state(model: TemporalModel) -> dict[str, Any]:
    """What convlstm.pth holds."""
    return {"format": CHECKPOINT_FORMAT, "method": METHOD, "net": model.net.cfg.to_dict(), "train": model.train,
            "weights": model.net.state_dict(), "threshold": model.threshold, "calibration": model.calibration,
            "timing": model.timing}


def save_model(model: TemporalModel, folder: str | os.PathLike) -> Path:
    """Writes folder/convlstm.pth atomically; returns its path."""
    path = Path(folder) / MODEL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    utils.atomic_torch_save(checkpoint_state(model), path)
    LOGGER.info("wrote %s", path)
    return path


def read_checkpoint(folder: str | os.PathLike) -> dict[str, Any]:
    """The checked contents of folder/convlstm.pth (CheckpointError naming the file and the fix)."""
    folder = Path(folder)
    path = folder / MODEL_FILE if folder.is_dir() or not folder.suffix else folder
    if not path.is_file():
        raise CheckpointError(f"{path}: no ConvLSTM model here; train one with --train VIDEO (or give the folder "
                              "a training run wrote)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files; all mean "unreadable"
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}); delete it and "
                              "train again") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT or data.get("method") != METHOD:
        raise CheckpointError(f"{path}: not a {METHOD} video model ({CHECKPOINT_FORMAT}); train one with --train")
    if not all(isinstance(data.get(key), dict) for key in ("net", "weights", "train")):
        raise CheckpointError(f"{path}: checkpoint is damaged (no net/weights/train); delete it and train again")
    return data


def load_model(folder: str | os.PathLike) -> TemporalModel:
    """The model saved in folder (or at that file)."""
    data = read_checkpoint(folder)
    net = VideoAutoencoder(VideoAEConfig.from_dict(data["net"]))
    try:
        net.load_state_dict(data["weights"])
    except RuntimeError as err:
        raise CheckpointError(f"{folder}: weights do not fit the stored config ({str(err).splitlines()[0]}); "
                              "delete it and train again") from None
    net.eval()
    return TemporalModel(net, float(data["threshold"]), data["train"], data.get("calibration", {}),
                         data.get("timing", {}))


def has_model(folder: str | os.PathLike) -> bool:
    """True when the folder holds a model file."""
    return (Path(folder) / MODEL_FILE).is_file()


def check_same_settings(folder: str | os.PathLike, cfg: VideoAEConfig, train_cfg: TrainConfig,
                        sources: Sequence[str | os.PathLike]) -> None:
    """A stored model must have been trained with these settings and sources (CheckpointError otherwise)."""
    data = read_checkpoint(folder)
    wanted = {"net": cfg.to_dict(), "train": {**asdict(train_cfg), "sources": [Path(s).name for s in sources]}}
    for key, value in wanted.items():
        if data[key] != value:
            raise CheckpointError(f"{Path(folder) / MODEL_FILE}: was trained with different '{key}' settings; use "
                                  f"the same flags, another --model folder, or delete it to train again")
