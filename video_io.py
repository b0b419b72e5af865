"""Video files for inspection runs: probing, batched frame reading, atomic MP4 writing, sidecar JSON.

Videos are read and written with OpenCV (FFmpeg backend); written files are MP4 with the
``mp4v`` (MPEG-4 part 2) codec, which every OpenCV build can encode. MPEG-4 stores frames in
4:2:0 chroma, so the encoded width and height are even: for an odd frame size the writer adds
one replicated pixel column/row on the right/bottom (OpenCV's encoder would otherwise silently
crop one), so the video decodes at the size rounded up to even.

A *sidecar* is a small JSON file beside a video (``clip.mp4`` -> ``clip.mp4.json``) that says
which source image and label every frame holds, so that a run on the video can be scored::

    {"video": "clip.mp4", "fps": 10.0, "width": 256, "height": 256,
     "frames": [{"index": 0, "source": "/data/grid/test/good/000.png", "label": "good",
                 "is_defect": false, "mask": null}, ...],
     "settings": {...}}

Every bad input (missing file, not a video, a video without frames, a folder that cannot be
written, a frame of the wrong size) raises :class:`VideoError` (a ValueError) with a one-line
message naming the file and what to do.
"""
from __future__ import annotations

import json
import logging
import math
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

# FFmpeg prints its own demuxer errors ("moov atom not found") on stderr before OpenCV reports a
# failed open; VideoError already says what is wrong, so FFmpeg is kept quiet (AV_LOG_QUIET). The
# variable is read when OpenCV first uses FFmpeg, hence before cv2 does any video work; a value the
# user set (e.g. for debugging) is kept.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402 - after the FFmpeg log setting above
import numpy as np  # noqa: E402

from utils import atomic_write_text  # noqa: E402

LOGGER = logging.getLogger(__name__)

FOURCC = "mp4v"
VIDEO_SUFFIX = ".mp4"
SIDECAR_SUFFIX = ".json"
DEFAULT_FPS = 25.0  # used when a container does not state its frame rate


class VideoError(ValueError):
    """Bad video input or output; the one-line message names the file and the fix."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds: frame rate, frame count (as the container states it) and frame size."""

    path: Path
    fps: float
    frame_count: int
    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), the order OpenCV's writer takes."""
        return self.width, self.height


@dataclass(frozen=True)
class FrameRecord:
    """One sidecar frame entry: which source image a video frame shows, its label and ground-truth mask."""

    index: int
    source: str
    label: str
    is_defect: bool
    mask: str | None = None  # ground-truth mask of a defective source image, when the dataset has one

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the sidecar keys."""
        return asdict(self)


def _open_capture(path: Path) -> cv2.VideoCapture:
    """An opened capture of an existing video file (VideoError if missing or not decodable)."""
    if not path.exists():
        raise VideoError(f"video {path} does not exist; check the path")
    if not path.is_file():
        raise VideoError(f"video {path} is not a file; pass a video file such as clip.mp4")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"cannot open video {path}: not a video OpenCV/FFmpeg can decode; "
                         f"re-encode it as MP4 (H.264 or MPEG-4)")
    return capture


def _count_frames(capture: cv2.VideoCapture) -> int:
    """Frames left in a capture, counted by grabbing (no colour conversion)."""
    count = 0
    while capture.grab():
        count += 1
    return count


def probe_video(path: str | os.PathLike, exact: bool = False) -> VideoInfo:
    """Frame rate, frame count and size of a video; VideoError if it is missing, unreadable or has no frames.

    The frame count is the container's figure unless it is missing or `exact` is set; then the
    frames are counted by decoding the whole file.
    """
    path = Path(path)
    capture = _open_capture(path)
    try:
        ok, first = capture.read()
        if not ok or first is None:
            raise VideoError(f"video {path} holds no readable frames; re-create or re-encode it")
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        if not math.isfinite(fps) or fps <= 0:
            LOGGER.warning("video %s states no frame rate; assuming %.0f fps", path, DEFAULT_FPS)
            fps = DEFAULT_FPS
        stated = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        if exact or not math.isfinite(stated) or stated < 1:
            frame_count = 1 + _count_frames(capture)
        else:
            frame_count = int(round(stated))
        height, width = first.shape[:2]
    finally:
        capture.release()
    return VideoInfo(path=path, fps=fps, frame_count=frame_count, width=int(width), height=int(height))


def iter_frames(path: str | os.PathLike, batch_size: int = 1, check: bool = True) -> Iterator[list[np.ndarray]]:
    """Yields the video's frames (BGR uint8, HxWx3) in lists of `batch_size`; the last list may be shorter.

    The video is checked (probe_video) when this is called, so a bad file fails before any
    frame is asked for (check=False: the caller has probed it already). Reading goes on until the decoder stops, whatever frame count the
    container states.
    """
    if batch_size < 1:
        raise VideoError(f"batch_size {batch_size}: must be at least 1")
    path = Path(path)
    if check:
        probe_video(path)
    return _read_batches(path, batch_size)


def _read_batches(path: Path, batch_size: int) -> Iterator[list[np.ndarray]]:
    """Generator behind iter_frames (the capture is released when it ends or is closed)."""
    capture = _open_capture(path)
    try:
        batch: list[np.ndarray] = []
        while True:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            batch.append(frame)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
    finally:
        capture.release()


def sample_frames(path: str | os.PathLike, count: int) -> list[tuple[int, np.ndarray]]:
    """Up to `count` frames spread evenly over the whole video, as (frame index, BGR frame)."""
    if count < 1:
        raise VideoError(f"sample count {count}: must be at least 1")
    path = Path(path)
    total = probe_video(path).frame_count  # the container's count: one decoding pass, not two
    wanted = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist())
    samples: list[tuple[int, np.ndarray]] = []
    capture = _open_capture(path)
    try:
        for index in range(total):
            # grab() skips a frame without converting it; retrieve() only for the sampled ones
            if not capture.grab():
                break
            if index in wanted:
                ok, frame = capture.retrieve()
                if ok and frame is not None:
                    samples.append((index, frame))
    finally:
        capture.release()
    if not samples:
        raise VideoError(f"video {path}: no frame could be decoded; check the file")
    return samples


def _check_size(path: Path, size: Sequence[int]) -> tuple[int, int]:
    """(width, height) as positive ints; VideoError otherwise."""
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise VideoError(f"video {path}: size must be (width, height), got {size!r}") from exc
    if width < 1 or height < 1:
        raise VideoError(f"video {path}: frame size {width}x{height} is too small; use at least 1x1")
    return width, height


def _create_temp_file(folder: Path, stem: str) -> Path:
    """Creates a new empty hidden `.<stem>.<random>.mp4` in `folder` (OSError if the folder is not writable).

    Not tempfile.mkstemp: that creates the file with mode 0600, which the published video would
    keep; os.open with mode 0666 lets the umask decide, as for any new file. The .mp4 suffix
    matters: OpenCV picks the container from the file name.
    """
    while True:
        candidate = folder / f".{stem}.{secrets.token_hex(4)}{VIDEO_SUFFIX}"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return candidate


class AtomicVideoWriter:
    """Context manager writing an MP4 that appears at `path` only when every frame was written.

    Frames go to a hidden temporary file in the same folder (so the final rename is atomic);
    on a clean exit the file is checked to decode and renamed onto `path`; on an exception, or
    when no frame was written, the temporary file is deleted and `path` is left as it was.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int]) -> None:
        """Target path, frame rate (> 0) and size (width, height) of the frames that will be written."""
        self.path = Path(path)
        if self.path.suffix.lower() != VIDEO_SUFFIX:
            raise VideoError(f"video {self.path}: only {VIDEO_SUFFIX} output is supported; "
                             f"name the file *{VIDEO_SUFFIX}")
        if not math.isfinite(float(fps)) or fps <= 0:
            raise VideoError(f"video {self.path}: fps {fps} must be a positive number")
        self.fps = float(fps)
        self.size = _check_size(self.path, size)
        self.encoded_size = (self.size[0] + self.size[0] % 2, self.size[1] + self.size[1] % 2)
        self.frames_written = 0
        self._tmp: Path | None = None
        self._writer: cv2.VideoWriter | None = None

    def __enter__(self) -> AtomicVideoWriter:
        """Creates the folder and opens the temporary file for writing."""
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._tmp = _create_temp_file(folder, self.path.stem)
        except OSError as exc:
            raise VideoError(f"cannot write video {self.path}: folder {folder} cannot be created or written "
                             f"({exc.strerror or exc}); choose a writable output folder") from exc
        writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*FOURCC), self.fps, self.encoded_size)
        if not writer.isOpened():
            self._discard()
            raise VideoError(f"cannot write video {self.path}: OpenCV could not open an {FOURCC} MP4 writer; "
                             f"check that the folder is writable and OpenCV has FFmpeg")
        self._writer = writer
        return self

    def write(self, frame: np.ndarray) -> None:
        """Appends one frame (BGR uint8 HxWx3, or HxW gray) of exactly the writer's size."""
        if self._writer is None:
            raise VideoError(f"video {self.path}: write() called outside the 'with' block")
        frame = np.asarray(frame)
        width, height = self.size
        if frame.dtype != np.uint8:
            raise VideoError(f"video {self.path}: frame {self.frames_written} has dtype {frame.dtype}; "
                             f"frames must be uint8")
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if frame.shape != (height, width, 3):
            raise VideoError(f"video {self.path}: frame {self.frames_written} has shape {frame.shape}, expected "
                             f"({height}, {width}, 3); resize frames to the writer's size")
        pad_w, pad_h = self.encoded_size[0] - width, self.encoded_size[1] - height
        if pad_w or pad_h:
            frame = cv2.copyMakeBorder(frame, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        self._writer.write(np.ascontiguousarray(frame))
        self.frames_written += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Publishes the file on a clean exit; removes the temporary file otherwise."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if exc_type is not None:
            self._discard()
            return
        try:
            if self.frames_written == 0:
                raise VideoError(f"video {self.path}: no frames were written, so no file was saved; "
                                 f"check the input images")
            info = probe_video(self._tmp)
            if info.frame_count != self.frames_written:
                LOGGER.warning("video %s: container states %d frames, %d were written",
                               self.path, info.frame_count, self.frames_written)
            self._publish()
        except BaseException:
            self._discard()
            raise
        self._tmp = None
        LOGGER.info("wrote %s (%d frames, %dx%d, %.3g fps)", self.path, self.frames_written, *self.encoded_size,
                    self.fps)

    def _publish(self) -> None:
        """Flushes the temporary file to disk and renames it onto path; an older sidecar goes first.

        The sidecar describes the frames of the previous video at this path: removed before the new
        video appears, a crash in between leaves a video without a sidecar, never with a wrong one.
        """
        with open(self._tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        try:
            sidecar_path(self.path).unlink(missing_ok=True)
            os.replace(self._tmp, self.path)
        except OSError as exc:
            raise VideoError(f"cannot write video {self.path} ({exc.strerror or exc}); "
                             f"choose another output path") from exc

    def _discard(self) -> None:
        """Deletes the temporary file if it exists."""
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def sidecar_path(video_path: str | os.PathLike) -> Path:
    """The sidecar JSON of a video: the video's file name plus '.json' (clip.mp4 -> clip.mp4.json)."""
    video_path = Path(video_path)
    return video_path.with_name(video_path.name + SIDECAR_SUFFIX)


def make_sidecar(video_path: str | os.PathLike, fps: float, size: tuple[int, int],
                 frames: Sequence[FrameRecord], settings: dict[str, Any]) -> dict[str, Any]:
    """A sidecar dict in the documented format."""
    width, height = size
    return {
        "video": Path(video_path).name,
        "fps": float(fps),
        "width": int(width),
        "height": int(height),
        "frames": [record.to_dict() for record in frames],
        "settings": dict(settings),
    }


def write_sidecar(video_path: str | os.PathLike, data: dict[str, Any]) -> Path:
    """Writes `data` as the video's sidecar JSON (atomically) and returns its path."""
    path = sidecar_path(video_path)
    try:
        text = json.dumps(data, indent=2, default=str)
        atomic_write_text(path, text + "\n")
    except OSError as exc:
        raise VideoError(f"cannot write sidecar {path} ({exc.strerror or exc}); "
                         f"choose a writable output folder") from exc
    return path


def read_sidecar(video_path: str | os.PathLike) -> dict[str, Any] | None:
    """The video's sidecar dict, or None when it has none; VideoError if the file is not a JSON object."""
    path = sidecar_path(video_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VideoError(f"cannot read sidecar {path} ({type(exc).__name__}); delete it or re-create the video") \
            from exc
    if not isinstance(data, dict) or not isinstance(data.get("frames", []), list):
        raise VideoError(f"sidecar {path} is not a video sidecar object; delete it or re-create the video")
    return data
