"""ConvLSTM video autoencoder: a short clip of frames in, the clip reconstructed (and optionally the next frames
predicted) out; a frame's anomaly score is how badly the model reproduces it.

It sees what no per-image method can: motion. Trained on clips of a defect-free video it learns how the
surface normally moves; a belt that stops, jerks, reverses, an object crossing, a flickering light give
clips it cannot reproduce.

Architecture (Srivastava et al. 2015, "Unsupervised Learning of Video Representations using LSTMs", with
convolutional LSTMs, Shi et al. 2015): every frame goes through the same strided-conv `encoder` (down by 2
per layer); an encoder ConvLSTM reads the clip's feature maps in order; its final state is all the
decoders get (no frame goes past it, so the state must hold the clip's content *and* its motion): the
reconstruction ConvLSTM, started from that state without input, emits the clip in reverse order (the last
frame first, as in the paper: the nearest frame is the easiest start), and with `predict_frames > 0` a second
ConvLSTM from the same state predicts the frames after the clip (the paper's composite model). A shared
conv `decoder` (upsampling) turns each hidden map into a frame in [0, 1].

Standardised clips (`standardise`, default on): the network sees each clip at zero mean and unit variance
and its output is scaled back (errors stay in [0, 1] pixel units). Without it, on frames in [0, 1] with a
sigmoid output, a low-contrast brick belt collapsed to one constant grey reconstruction (frame AUROC 0.549
on the benchmark's stop + jerk, nothing flagged); standardised, 0.991.

Frames of any shape, grey or colour: `to_model_frames` converts to `channels` (grey by default: motion
needs no colour and grey is 3x cheaper) and resizes so the shorter side is `size` px, the longer side
rounded to a multiple of the encoder's stride (aspect kept to within half a stride; nothing cropped, so
the error map covers the whole frame and is resized back onto it).

Frame score (`frame_scores`): the mean of the largest `top_fraction` of the frame's per-pixel squared
errors (channels averaged): 1.0 is the frame's mean squared error (a stopped belt is wrong everywhere);
a smaller fraction favours a small object crossing the view.

Reconstruction only or composite? A static clip could be easy to reconstruct, so both were measured on the
conveyor benchmark (benchmarks/bench_temporal.py: 320x128 frames, trained 4 epochs at lr 0.003 on 400
frames; the test video's belt stops for 25 frames, then jerks for 5; false alarms on its 270 normal frames,
and on a new normal video):

    model (frames in [0, 1], sigmoid; gravel)   frame AUROC   false alarms   new video   ms/frame
    reconstruction only                         0.996         2.2 %          0.0 %       15
    composite, 4 predicted frames               1.000         3.7 %          0.0 %       24
    model (standardised clips; brick)
    reconstruction only                         0.991         2.6 %          0.3 %
    composite, 4 predicted frames               1.000         4.8 %          1.0 %

(the two gravel runs side by side, so their times compare; the brick times do not). Both separate the stop
and the jerk. Reconstruction alone is enough: the decoders see no frame, only the state, so a stopped clip
comes back smeared along the motion the model learned (visible in the side-by-side video). The composite
model's prediction errors spill into the frames after an event (more false alarms, also on new normal
video) and it costs about 60 % more per frame, so the default is reconstruction only (`predict_frames=0`);
`--predict_frames K` gives the composite model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from errors import UserError
from methods.base import ModelConfig

METHOD = "convlstm"
STD_FLOOR = 0.01  # a flat clip is not blown up: its standard deviation counts as at least this


class VideoModelError(UserError):
    """A bad video-autoencoder setting; one line naming the flag and the fix."""


@dataclass(frozen=True)
class VideoAEConfig(ModelConfig):
    """What the ConvLSTM autoencoder looks like and how it scores a frame."""

    clip_len: int = 8  # frames per clip
    size: int = 64  # shorter side of the frames the model sees, px
    channels: int = 1  # 1: grey, 3: colour (BGR)
    features: tuple[int, ...] = (16, 32)  # encoder conv channels; each layer halves the resolution
    hidden: int = 32  # ConvLSTM hidden channels
    kernel: int = 3  # ConvLSTM kernel size
    predict_frames: int = 0  # frames predicted after the clip (composite model); 0: reconstruction only
    top_fraction: float = 1.0  # frame score: mean of this largest fraction of the pixel errors
    standardise: bool = True  # the network works on each clip scaled to zero mean, unit variance

    def __post_init__(self) -> None:
        """Rejects settings that cannot make a model, naming the flag and the fix."""
        if self.clip_len < 2:
            raise VideoModelError(f"--clip_len {self.clip_len}: use at least 2 frames per clip")
        if self.channels not in (1, 3):
            raise VideoModelError(f"--channels {self.channels}: use 1 (grey) or 3 (colour)")
        if not self.features or min(self.features) < 1:
            raise VideoModelError(f"--features {','.join(map(str, self.features))}: give positive channel counts, "
                                  "e.g. 16,32")
        if self.size < 4 * self.stride:
            raise VideoModelError(f"--size {self.size}: use at least {4 * self.stride} px (4 cells of the "
                                  f"encoder's stride {self.stride})")
        if self.hidden < 1:
            raise VideoModelError(f"--hidden {self.hidden}: use a positive number of channels")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise VideoModelError(f"--kernel {self.kernel}: use an odd kernel size (3, 5)")
        if self.predict_frames < 0:
            raise VideoModelError(f"--predict_frames {self.predict_frames}: must not be negative")
        if not 0 < self.top_fraction <= 1:
            raise VideoModelError(f"--top_fraction {self.top_fraction}: use a fraction in (0, 1]")

    @property
    def stride(self) -> int:
        """Total downsampling of the encoder."""
        return 2 ** len(self.features)

    @property
    def span(self) -> int:
        """Frames one training sample needs: the clip and the frames predicted after it."""
        return self.clip_len + self.predict_frames


def model_size(width: int, height: int, cfg: VideoAEConfig) -> tuple[int, int]:
    """(width, height) the model sees a width x height frame at: shorter side cfg.size, both sides a multiple
    of the stride (the longer one rounded to the nearest)."""
    scale = cfg.size / min(width, height)
    size = cfg.size - cfg.size % cfg.stride

    def side(value: int) -> int:
        return size if value == min(width, height) else max(cfg.stride, round(value * scale / cfg.stride) * cfg.stride)

    return side(width), side(height)


def to_model_frames(frames: list[np.ndarray], cfg: VideoAEConfig) -> np.ndarray:
    """uint8 frames (HxW grey or HxWx3 BGR, all one shape) -> float32 (N, C, h, w) in [0, 1] at the model size."""
    height, width = frames[0].shape[:2]
    target = model_size(width, height, cfg)
    out = []
    for frame in frames:
        if frame.shape[:2] != (height, width):
            raise VideoModelError(f"frame of {frame.shape[1]}x{frame.shape[0]} among {width}x{height} frames; "
                                  "clips need frames of one size")
        if cfg.channels == 1 and frame.ndim == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        elif cfg.channels == 3 and frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        frame = cv2.resize(frame, target, interpolation=cv2.INTER_AREA)
        out.append(frame.reshape(target[1], target[0], -1).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32) / 255.0


class ConvLSTMCell(nn.Module):
    """One convolutional LSTM cell (Shi et al. 2015), written here: torch has no ConvLSTM (nn.LSTM is dense).

    Gates i, f, o, g from one conv over [input, hidden]; c' = f*c + i*g, h' = o*tanh(c'). `in_channels`
    0 makes an input-free cell (a decoder that runs on its state alone)."""

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3) -> None:
        """Input and hidden channels, odd kernel size (padding keeps the map size)."""
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor | None, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: input (B, in, H, W) or None, state (h, c) each (B, hidden, H, W) -> the new (h, c)."""
        h, c = state
        stacked = h if x is None else torch.cat([x, h], dim=1)
        i, f, o, g = torch.chunk(self.gates(stacked), 4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def zero_state(self, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero (h, c) for feature maps shaped like `reference` (B, *, H, W)."""
        zeros = reference.new_zeros(reference.shape[0], self.hidden, *reference.shape[2:])
        return zeros, zeros.clone()


def _encoder(cfg: VideoAEConfig) -> nn.Sequential:
    """Strided 3x3 convs, each halving the resolution."""
    layers: list[nn.Module] = []
    channels = cfg.channels
    for width in cfg.features:
        layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
        channels = width
    return nn.Sequential(*layers)


def _decoder(cfg: VideoAEConfig) -> nn.Sequential:
    """Upsample + 3x3 conv per encoder layer, back to the frame's channels (linear when standardised, else a
    sigmoid to [0, 1])."""
    layers: list[nn.Module] = []
    channels = cfg.hidden
    widths = [*reversed(cfg.features[:-1]), cfg.channels]
    for index, width in enumerate(widths):
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels, width, 3, padding=1)]
        if index < len(widths) - 1:
            layers.append(nn.LeakyReLU(0.2))
        elif not cfg.standardise:
            layers.append(nn.Sigmoid())
        channels = width
    return nn.Sequential(*layers)


class VideoAutoencoder(nn.Module):
    """Encoder -> ConvLSTM over the clip -> its state -> ConvLSTM decoder(s) -> frames (see the module docstring)."""

    method = METHOD

    def __init__(self, cfg: VideoAEConfig) -> None:
        """Builds the layers for cfg."""
        super().__init__()
        self.cfg = cfg
        self.encoder = _encoder(cfg)
        self.encode_lstm = ConvLSTMCell(cfg.features[-1], cfg.hidden, cfg.kernel)
        self.reconstruct_lstm = ConvLSTMCell(0, cfg.hidden, cfg.kernel)
        self.predict_lstm = ConvLSTMCell(0, cfg.hidden, cfg.kernel) if cfg.predict_frames else None
        self.decoder = _decoder(cfg)

    def _unroll(self, cell: ConvLSTMCell, state: tuple[torch.Tensor, torch.Tensor], steps: int) -> torch.Tensor:
        """Runs an input-free cell `steps` times from `state`; the hidden maps stacked (B, steps, hidden, h, w)."""
        outputs = []
        for _ in range(steps):
            state = cell(None, state)
            outputs.append(state[0])
        return torch.stack(outputs, dim=1)

    def _frames(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden maps (B, T, hidden, h, w) -> frames (B, T, C, H, W)."""
        batch, steps = hidden.shape[:2]
        frames = self.decoder(hidden.flatten(0, 1))
        return frames.view(batch, steps, *frames.shape[1:])

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Clip (B, T, C, H, W) in [0, 1] -> (its reconstruction, in order, (B, T, C, H, W); the predicted next
        predict_frames frames (B, K, C, H, W), or None), in the clip's units (standardised inside)."""
        batch, steps = clip.shape[:2]
        mean, std = torch.zeros(()), torch.ones(())
        if self.cfg.standardise:
            mean = clip.mean(dim=(1, 2, 3, 4), keepdim=True)
            std = clip.std(dim=(1, 2, 3, 4), keepdim=True).clamp_min(STD_FLOOR)
            clip = (clip - mean) / std
        features = self.encoder(clip.flatten(0, 1))
        features = features.view(batch, steps, *features.shape[1:])
        state = self.encode_lstm.zero_state(features[:, 0])
        for t in range(steps):
            state = self.encode_lstm(features[:, t], state)
        reconstruction = self._frames(self._unroll(self.reconstruct_lstm, state, steps)).flip(1) * std + mean
        prediction = None
        if self.predict_lstm is not None:
            prediction = self._frames(self._unroll(self.predict_lstm, state, self.cfg.predict_frames)) * std + mean
        return reconstruction, prediction


def clip_loss(reconstruction: torch.Tensor, clip: torch.Tensor, prediction: torch.Tensor | None = None,
              future: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error of the reconstruction, plus that of the prediction when there is one."""
    loss = F.mse_loss(reconstruction, clip)
    if prediction is not None and future is not None:
        loss = loss + F.mse_loss(prediction, future)
    return loss


def error_maps(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel squared error, channels averaged: (..., C, H, W) -> (..., H, W)."""
    return (output - target).pow(2).mean(dim=-3)


def frame_scores(errors: torch.Tensor, top_fraction: float = 1.0) -> torch.Tensor:
    """Error maps (..., H, W) -> per-map score: the mean of the largest `top_fraction` of the pixel errors."""
    flat = errors.flatten(-2)
    count = max(1, math.ceil(top_fraction * flat.shape[-1]))
    if count == flat.shape[-1]:
        return flat.mean(dim=-1)
    return flat.topk(count, dim=-1).values.mean(dim=-1)
