"""A conveyor video as a camera on a real line sees it: light that drifts and flickers, uneven light, a shaking
mount, motion blur, dropped frames.

    python benchmarks/relight_video.py VIDEO --drift 0.15 --flicker 0.03 --vignette 0.3 --shake 1 --output OUT.mp4

`preprocessing/create_conveyor_video.py` lights every frame alike and holds the camera still. Real lines do
neither: daylight and lamps drift (`--drift F`: the light's gain moves by up to +-F along a sine of `--period`
frames, default one cycle over the video), mains-powered lamps and exposure control flicker (`--flicker F`: a
gain drawn per frame in 1 +- F), lamps light the middle of the view more than its edges (`--vignette V`: the
gain falls to 1 - V at the frame's corners) and a mount on a running machine vibrates (`--shake A`: every
frame moved by a whole number of pixels drawn in -A..A across the motion, the border mirrored) and an exposure
long enough for the belt to travel while the shutter is open smears the surface along the motion (`--motion_blur
L`: each frame the mean of the surface over L pixels of travel, a box of L pixels along the motion; L = the
belt's pixels per frame is a shutter open the whole frame interval), a lens slightly out of focus blurs every
direction alike (`--defocus S`: a Gaussian of S pixels' standard deviation), and a camera or link under load misses
frames (`--drop P`: each frame but the first lost with probability P; the belt moves on meanwhile), and a camera,
recorder or link that compresses the stream harder than the training footage was leaves blocky, ringing frames
(`--jpeg Q`: each frame JPEG-compressed at quality Q, 1-100, the 8x8-block DCT of H.264's and MPEG-4's intra frames,
after the light and the shake; 0: not compressed). The sidecar
`<output>.json` keeps the ground truth (each frame's boxes moved by that frame's shake; the frames renumbered
without the dropped ones, each defect's first and last frames with them; the defects' surface boxes, positions
and areas unchanged: the physical defects) and records the settings under "relight". Write `.avi` to compare
light alone: its frames are stored losslessly (FFV1), while `.mp4` encodes the decoded frames a second time, and
that second encoding's blocks alone move a model's scores at borderline surface spots. A line set up from
footage of a steady camera under steady light and run on such footage should flag no more frames and find the
same defects (README, "Light and vibration").
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

import errors
import preprocess
import utils
import video_io


@dataclass(frozen=True)
class Relight:
    """How the light and the mount change the frames (0 everywhere: the frames as they are)."""

    drift: float = 0.0  # amplitude of the slow gain change (fraction)
    period: int = 0  # frames per cycle of the drift (0: the video's length)
    flicker: float = 0.0  # amplitude of the per-frame gain (fraction)
    vignette: float = 0.0  # gain lost at the frame's corners (fraction)
    shake: int = 0  # largest per-frame displacement across the motion (pixels)
    seed: int = 0
    motion_blur: int = 0  # belt travel while the shutter is open (pixels along the motion; 0 or 1: none)
    drop: float = 0.0  # probability that the camera misses a frame (the first is always kept)
    jpeg: int = 0  # JPEG quality each frame is compressed at (1-100; 0: none)
    defocus: float = 0.0  # standard deviation of the lens's blur (pixels; 0: in focus)

    def validate(self) -> None:
        """Raises UserError naming the flag of the first value out of range."""
        for flag, value, high in (("--drift", self.drift, 0.5), ("--flicker", self.flicker, 0.5),
                                  ("--vignette", self.vignette, 0.9)):
            if not 0.0 <= value <= high:
                raise errors.UserError(f"{flag} {value}: use 0 to {high}")
        if self.period < 0:
            raise errors.UserError(f"--period {self.period}: use a positive number of frames (0: the video's length)")
        if not 0 <= self.shake <= 16:
            raise errors.UserError(f"--shake {self.shake}: use 0 to 16 pixels")
        if not 0 <= self.motion_blur <= 64:
            raise errors.UserError(f"--motion_blur {self.motion_blur}: use 0 to 64 pixels of belt travel")
        if not 0.0 <= self.drop <= 0.5:
            raise errors.UserError(f"--drop {self.drop}: use 0 to 0.5 (the share of frames the camera misses)")
        if not 0.0 <= self.defocus <= 8.0:
            raise errors.UserError(f"--defocus {self.defocus}: use 0 to 8 pixels (the blur's standard deviation)")
        if not 0 <= self.jpeg <= 100:
            raise errors.UserError(f"--jpeg {self.jpeg}: use a JPEG quality of 1 to 100 (0: no compression)")


def frame_gains(cfg: Relight, frames: int) -> np.ndarray:
    """Each frame's global light gain: the drift's sine times the flicker's draw."""
    period = cfg.period or max(frames, 1)
    index = np.arange(frames)
    drift = 1.0 + cfg.drift * np.sin(2.0 * np.pi * index / period)
    flicker = 1.0 + np.random.default_rng([cfg.seed, 1]).uniform(-cfg.flicker, cfg.flicker, frames)
    return drift * flicker


def frame_shakes(cfg: Relight, frames: int) -> np.ndarray:
    """Each frame's displacement across the motion, in whole pixels."""
    return np.random.default_rng([cfg.seed, 2]).integers(-cfg.shake, cfg.shake + 1, frames)


def kept_frames(cfg: Relight, frames: int) -> np.ndarray:
    """Per frame, whether the camera delivers it: each lost with probability cfg.drop (seeded), the first kept."""
    keep = np.random.default_rng([cfg.seed, 3]).random(frames) >= cfg.drop
    keep[:1] = True
    return keep


def vignette_gain(cfg: Relight, width: int, height: int) -> np.ndarray:
    """Per-pixel gain (height, width, 1) of uneven light: 1 at the centre, 1 - vignette at the corners."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((xs - (width - 1) / 2) / (width / 2)) ** 2 + ((ys - (height - 1) / 2) / (height / 2)) ** 2
    return (1.0 - cfg.vignette * r2 / 2.0)[..., None]  # r2 is 2 at the corners


def across_motion_axis(truth: dict) -> int:
    """0 when the shake moves frames along x (the belt moves along y), 1 along y."""
    dx, dy = (abs(float(v)) for v in truth.get("motion_px_per_frame", [1.0, 0.0]))
    return 0 if dy > dx else 1


def blur_along_motion(frame: np.ndarray, length: int, axis: int) -> np.ndarray:
    """The frame averaged over `length` pixels along the motion (a box along y for axis 0, along x for axis 1:
    `axis` is the across-motion axis of across_motion_axis), borders mirrored; length 0 or 1: as it is."""
    if length <= 1:
        return frame
    size = (1, length) if axis == 0 else (length, 1)  # OpenCV's ksize is (width, height)
    return cv2.blur(frame, size, borderType=cv2.BORDER_REFLECT_101)


def compress_frame(frame: np.ndarray, quality: int) -> np.ndarray:
    """The frame after a JPEG round trip at `quality` (0: unchanged)."""
    return frame if quality == 0 else preprocess.jpeg_round_trip(frame, quality)


def defocus_frame(frame: np.ndarray, sigma: float) -> np.ndarray:
    """The frame through a lens out of focus: a Gaussian blur of `sigma` pixels (0: unchanged)."""
    return frame if sigma == 0 else preprocess.defocus(frame, sigma)


def shift_frame(frame: np.ndarray, shift: int, axis: int) -> np.ndarray:
    """The frame moved by `shift` pixels along x (axis 0) or y (axis 1), the uncovered border mirrored."""
    if shift == 0:
        return frame
    dx, dy = (shift, 0) if axis == 0 else (0, shift)
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(frame, matrix, (frame.shape[1], frame.shape[0]), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_REFLECT_101)


class LosslessWriter:
    """Writes an .avi of FFV1 (lossless) frames that appears at `path` only once every frame is written."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        """Target path, frame rate and (width, height)."""
        self.path, self.partial = path, path.with_name(f".{path.stem}.partial.avi")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*"FFV1"), fps, size)
        if not self.writer.isOpened():
            raise video_io.VideoError(f"cannot write {path} (FFV1): this OpenCV has no FFV1 encoder; write .mp4")

    def __enter__(self) -> LosslessWriter:
        return self

    def write(self, frame: np.ndarray) -> None:
        """Appends one BGR frame."""
        self.writer.write(frame)

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        self.writer.release()
        if kind is None:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)


def video_writer(output: Path, fps: float, size: tuple[int, int]) -> LosslessWriter | video_io.AtomicVideoWriter:
    """A lossless writer for .avi (the relit frames exactly, so that only the light differs from the source's
    decoded frames), else the project's MP4 writer (a second lossy encoding, whose blocks a model may see)."""
    if output.suffix.lower() == ".avi":
        return LosslessWriter(output, fps, size)
    return video_io.AtomicVideoWriter(output, fps, size)


def relit_truth(truth: dict, cfg: Relight, shakes: np.ndarray, keep: np.ndarray, video_name: str) -> dict:
    """The sidecar of the relit video: each frame's boxes moved by its shake, the frames the camera missed left
    out and the rest renumbered (each defect's first and last frames with them), the settings recorded."""
    relit = copy.deepcopy(truth)
    relit["video"] = video_name
    relit["relight"] = asdict(cfg)
    axis = across_motion_axis(truth)
    for frame, shift in zip(relit["frames"], shakes, strict=False):
        for seen in frame.get("defects", []):
            box = [int(v) for v in seen["box"]]
            box[axis], box[axis + 2] = box[axis] + int(shift), box[axis + 2] + int(shift)
            seen["box"] = box
    if keep.all():
        return relit
    kept = np.flatnonzero(keep[:len(relit["frames"])])
    relit["frames"] = [relit["frames"][old] for old in kept]
    for new, frame in enumerate(relit["frames"]):
        frame["index"] = new
    relit["num_frames"] = len(relit["frames"])
    for defect in relit.get("defects", []):
        for first, last in (("first_visible_frame", "last_visible_frame"), ("first_full_frame", "last_full_frame")):
            if defect.get(first) is None:
                continue
            start = int(np.searchsorted(kept, defect[first], side="left"))  # the first kept frame at or after it
            stop = int(np.searchsorted(kept, defect[last], side="right")) - 1  # the last kept at or before it
            defect[first], defect[last] = (start, stop) if start <= stop else (None, None)
    return relit


class _Dropping:
    """A writer that passes on only the frames the camera delivered (by the order they come in)."""

    def __init__(self, writer: LosslessWriter | video_io.AtomicVideoWriter, keep: np.ndarray) -> None:
        self.writer, self.keep, self.index, self.written = writer, keep, 0, 0

    def write(self, frame: np.ndarray) -> None:
        """Writes the frame unless the camera missed it."""
        if self.index >= len(self.keep) or self.keep[self.index]:
            self.writer.write(frame)
            self.written += 1
        self.index += 1


def relight_video(video: Path, cfg: Relight, output: Path) -> int:
    """Writes the relit video and its sidecar; returns the number of frames."""
    truth = video_io.conveyor_truth(video)
    info = video_io.probe_video(video)
    frames = int(truth.get("num_frames") or info.frame_count)
    gains, shakes, keep = frame_gains(cfg, frames), frame_shakes(cfg, frames), kept_frames(cfg, frames)
    light = vignette_gain(cfg, info.width, info.height)
    axis = across_motion_axis(truth)

    def relight(frame: np.ndarray, index: int) -> np.ndarray:
        step = min(index, frames - 1)
        # The shutter integrates the moving surface first; the lens's vignetting and the light then scale it.
        sharp = blur_along_motion(frame.astype(np.float32), cfg.motion_blur, axis)
        lit = defocus_frame(sharp, cfg.defocus) * (light * np.float32(gains[step]))
        moved = shift_frame(np.clip(np.rint(lit), 0, 255).astype(np.uint8), int(shakes[step]), axis)
        return compress_frame(moved, cfg.jpeg)

    with video_writer(output, info.fps, (info.width, info.height)) as writer:
        delivered = _Dropping(writer, keep)
        video_io.replay_video(video, delivered, relight)
    utils.atomic_write_text(Path(str(output) + ".json"),
                            json.dumps(relit_truth(truth, cfg, shakes, keep, output.name)))
    return delivered.written


def main(argv: list[str] | None = None) -> int:
    """Command line: VIDEO [--drift F] [--flicker F] [--vignette V] [--shake A] [--motion_blur L] [--drop P]
    [--defocus S] [--jpeg Q] --output OUT.mp4."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", type=Path, help="a conveyor video with its sidecar VIDEO.json")
    parser.add_argument("--drift", type=float, default=0.0, help="slow light change: gain 1 +- F along a sine")
    parser.add_argument("--period", type=int, default=0, help="frames per drift cycle (0: the video's length)")
    parser.add_argument("--flicker", type=float, default=0.0, help="per-frame light gain drawn in 1 +- F")
    parser.add_argument("--vignette", type=float, default=0.0, help="gain lost at the frame corners")
    parser.add_argument("--shake", type=int, default=0, help="per-frame displacement across the motion (px)")
    parser.add_argument("--motion_blur", type=int, default=0,
                        help="belt travel while the shutter is open (px along the motion; 0: none)")
    parser.add_argument("--drop", type=float, default=0.0,
                        help="share of frames the camera misses (each but the first lost with this probability)")
    parser.add_argument("--defocus", type=float, default=0.0,
                        help="lens out of focus: Gaussian blur of S px standard deviation (0: in focus)")
    parser.add_argument("--jpeg", type=int, default=0,
                        help="JPEG quality each frame is compressed at (1-100: lower is blockier; 0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, required=True,
                        help="the relit video: .avi (lossless FFV1: only the light differs) or .mp4 (encoded again)")
    args = parser.parse_args(argv)
    cfg = Relight(args.drift, args.period, args.flicker, args.vignette, args.shake, args.seed, args.motion_blur,
                  args.drop, args.jpeg, args.defocus)

    def run() -> None:
        cfg.validate()
        count = relight_video(args.video, cfg, args.output)
        print(f"{args.output}: {count} frames relit ({', '.join(f'{k} {v}' for k, v in asdict(cfg).items() if v)})")

    return errors.run_script(run)


if __name__ == "__main__":
    sys.exit(main())
