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

*Partial* files and folders (a video being written, a run's staging folder, a run's lock) carry
their writer's process id in their name and are held with an advisory lock (``flock``) while the
writer works on them (:class:`PartialLock`). A run killed with ``kill -9`` cannot clean up after
itself; :func:`remove_stale_partials` lets the next run remove what it left, and only that: an
entry whose lock is still held (a run that is still going, even a paused one) is never touched.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: partials are told dead by their writer's pid alone
    fcntl = None  # type: ignore[assignment]

# FFmpeg prints its own demuxer errors ("moov atom not found") on stderr before OpenCV reports a
# failed open; VideoError already says what is wrong, so FFmpeg is kept quiet (AV_LOG_QUIET). The
# variable is read when OpenCV first uses FFmpeg, hence before cv2 does any video work; a value the
# user set (e.g. for debugging) is kept.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402 - after the FFmpeg log setting above
import numpy as np  # noqa: E402

from errors import UserError  # noqa: E402
from paths import sidecar_path  # noqa: E402
from utils import atomic_write_text  # noqa: E402

LOGGER = logging.getLogger(__name__)

FOURCC = "mp4v"
VIDEO_SUFFIX = ".mp4"
# Suffixes (lower case) of the video files a folder is searched for (inference/batch_inspect.py); FFmpeg decodes them.
VIDEO_INPUT_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")
ASSUMED_FPS = 25.0  # the frame rate of a video whose container states none

# Names of partial entries; group "pid" is the writer's process id, the 8 hex digits make the name unique.
PARTIAL_VIDEO = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]{8}\.partial\.mp4$")  # .<stem>.<pid>-<hex>.partial.mp4
PARTIAL_NAMES = (
    PARTIAL_VIDEO,
    re.compile(r"^\.staging-(?P<pid>\d+)-[0-9a-f]{8}$"),  # a run's staging folder
    re.compile(r"^\.run-(?P<pid>\d+)-[0-9a-f]{8}\.lock$"),  # held while a run writes into its run folder
)
# A partial whose lock is free but whose writer pid is alive is dead all the same once it is this old:
# the pid was reused (e.g. pid 1 in a restarted container); a live writer locks its partials microseconds
# after creating them.
PARTIAL_GRACE_SECONDS = 30.0
PARTIAL_MIN_AGE_SECONDS = 2.0  # younger partials are never removed (created, not yet locked)
_CREATING = threading.Lock()  # held from creating a partial to locking it; scans of this process wait for it


class VideoError(UserError):
    """Bad video input or output; the one-line message names the file and the fix."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds: frame rate, frame count (as the container states it) and frame size."""

    path: Path
    fps: float  # always > 0: probe_video assumes ASSUMED_FPS for a container that states none
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
            LOGGER.warning("video %s states no frame rate; assuming %.0f fps", path, ASSUMED_FPS)
            fps = ASSUMED_FPS
        stated = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        if exact or not math.isfinite(stated) or stated < 1:
            frame_count = 1 + _count_frames(capture)
        else:
            frame_count = int(round(stated))
        height, width = first.shape[:2]
    finally:
        capture.release()
    return VideoInfo(path=path, fps=fps, frame_count=frame_count, width=int(width), height=int(height))


def iter_frames(path: str | os.PathLike, batch_size: int = 1, check: bool = True,
                start: int = 0) -> Iterator[list[np.ndarray]]:
    """Yields the video's frames (BGR uint8, HxWx3) from frame `start` on in lists of `batch_size`; the last
    list may be shorter.

    The video is checked (probe_video) when this is called, so a bad file fails before any
    frame is asked for (check=False: the caller has probed it already). Reading goes on until the
    decoder stops, whatever frame count the container states. Frames before `start` are decoded and
    dropped (exact on every codec, unlike seeking).
    """
    if batch_size < 1:
        raise VideoError(f"batch_size {batch_size}: must be at least 1")
    if start < 0:
        raise VideoError(f"start frame {start}: must be 0 or more")
    path = Path(path)
    if check:
        probe_video(path)
    return _read_batches(path, batch_size, start)


def _read_batches(path: Path, batch_size: int, start: int = 0) -> Iterator[list[np.ndarray]]:
    """Generator behind iter_frames (the capture is released when it ends or is closed)."""
    capture = _open_capture(path)
    try:
        for _ in range(start):
            if not capture.grab():  # grab() skips a frame without converting it
                return
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


class PartialLock:
    """A partial file or folder held by its writer: named with the writer's pid, locked (flock) until released.

    `create` makes the entry (a new name each time) and takes the lock at once; `release` lets the
    lock go (the entry stays: e.g. a video renamed into place); `remove` deletes the entry, then
    releases. The lock also goes when the process dies, however it dies, which is what tells a
    later run that the entry is dead.
    """

    def __init__(self, path: Path, fd: int | None) -> None:
        """An entry and the open descriptor holding its lock (None: released)."""
        self.path = path
        self._fd = fd

    @classmethod
    def create(cls, folder: str | os.PathLike, name: Callable[[str], str], directory: bool = False) -> PartialLock:
        """Creates a new partial in `folder` named name("<pid>-<8 hex digits>") and locks it (OSError if the
        folder is not writable).

        Files are created with mode 0666 and folders with 0777, less the umask, as any new entry (not
        tempfile's 0600/0700, which a published file would keep).
        """
        folder = Path(folder)
        with _CREATING:
            while True:
                path = folder / name(f"{os.getpid()}-{secrets.token_hex(4)}")
                try:
                    if directory:
                        os.mkdir(path, 0o777)
                        fd = os.open(path, os.O_RDONLY)
                    else:
                        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
                except FileExistsError:
                    continue
                break
            partial = cls(path, fd)
            try:
                if fcntl is not None:
                    try:  # blocking: a scan of another run may hold it for a moment while it looks
                        fcntl.flock(fd, fcntl.LOCK_EX)
                    except OSError:  # a file system without locks: a scan falls back on the pid
                        LOGGER.debug("%s: no advisory lock on this file system", path)
            except BaseException:  # e.g. Ctrl-C or SIGTERM right here: nothing left behind
                partial.remove()
                raise
        return partial

    @property
    def held(self) -> bool:
        """Whether the lock is still held (not released)."""
        return self._fd is not None

    def release(self) -> None:
        """Lets the lock go; the entry itself stays."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        """Deletes the entry (a folder with its contents), then lets the lock go."""
        try:
            if self.path.is_dir() and not self.path.is_symlink():
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                self.path.unlink(missing_ok=True)
        finally:
            self.release()


def partial_pid(name: str) -> int | None:
    """The writer's pid in a partial entry's name, None for any other name."""
    for pattern in PARTIAL_NAMES:
        match = pattern.match(name)
        if match:
            return int(match["pid"])
    return None


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (in this pid namespace; a zombie counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, ValueError):
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return pid > 0


def _lock_is_held(fd: int | None) -> bool | None:
    """True: another open file holds the entry's lock; False: nobody did (it is now held on fd); None: cannot
    tell (no descriptor, no locks here)."""
    if fd is None or fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    return False


def _is_dead(path: Path, pid: int, held: bool | None) -> bool:
    """Whether a partial's writer is provably gone: its lock is free and its pid is not alive (or, lock
    free, the pid is this process's own or the entry is older than the grace period: the pid was reused)."""
    if held:
        return False  # a live run, maybe paused or in another container: never touched
    try:
        age = time.time() - path.lstat().st_mtime
    except OSError:
        return False
    if age < PARTIAL_MIN_AGE_SECONDS:
        return False  # just created: its writer may not have locked it yet
    own = pid == os.getpid()
    if not own and not _pid_alive(pid):
        return True
    if held is None:
        return False  # no lock to ask: a live writer cannot be told from a reused pid
    # This process creates partials under _CREATING and locks them at once: an unlocked one with its pid
    # is older (a killed run that had the same pid, e.g. pid 1 of a restarted container).
    return own or age > PARTIAL_GRACE_SECONDS


def remove_stale_partials(folder: str | os.PathLike) -> list[Path]:
    """Removes the partial entries directly in `folder` whose writer is gone (killed: `kill -9`, a power cut);
    returns them. Entries of a run that is still going hold their lock and are left alone; a folder that
    cannot be read, or an entry that cannot be removed, is skipped."""
    try:
        entries = [(entry.name, Path(entry.path)) for entry in os.scandir(folder)]
    except OSError:
        return []
    removed = []
    for name, path in entries:
        pid = partial_pid(name)
        if pid is not None and _remove_if_dead(path, pid):
            removed.append(path)
    return removed


def _remove_if_dead(path: Path, pid: int) -> bool:
    """Removes one partial entry when its writer is gone (the lock is held on it meanwhile)."""
    with _CREATING:
        if path.is_symlink():
            return False
        try:
            fd: int | None = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return False  # removed meanwhile (e.g. by another run's scan)
        except OSError:
            fd = None
        try:
            if not _is_dead(path, pid, _lock_is_held(fd)):
                return False
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            LOGGER.debug("cannot remove %s (%s)", path, exc)
            return False
        finally:
            if fd is not None:
                os.close(fd)
    return True


def _partial_video_name(stem: str) -> Callable[[str], str]:
    """Names of the hidden partial files of a video `<stem>.mp4`: `.<stem>.<pid>-<hex>.partial.mp4` (the .mp4
    suffix matters: OpenCV picks the container from the file name)."""
    return lambda tag: f".{stem}.{tag}.partial{VIDEO_SUFFIX}"


class AtomicVideoWriter:
    """Context manager writing an MP4 that appears at `path` only when every frame was written.

    Frames go to a hidden partial file in the same folder (so the final rename is atomic),
    `.<stem>.<pid>-<hex>.partial.mp4`, locked while it is written (:class:`PartialLock`); on a clean
    exit the file is checked to decode and renamed onto `path`; on an exception, or when no frame
    was written, the partial file is deleted and `path` is left as it was. After `kill -9` the next
    run's :func:`remove_stale_partials` removes it.
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
        self._lock: PartialLock | None = None
        self._writer: cv2.VideoWriter | None = None

    def __enter__(self) -> AtomicVideoWriter:
        """Creates the folder and opens the temporary file for writing."""
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._lock = PartialLock.create(folder, _partial_video_name(self.path.stem))
            self._tmp = self._lock.path
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
        if self._lock is not None:
            self._lock.release()
            self._lock = None
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
        """Deletes the partial file if it exists and lets its lock go."""
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


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


def conveyor_truth(video_path: str | os.PathLike) -> dict[str, Any]:
    """A conveyor video's ground truth (its sidecar); VideoError naming the fix when it is missing or partial."""
    data = read_sidecar(video_path)
    if data is None or not data.get("frames") or not {"width", "height"} <= data.keys():
        raise VideoError(f"{sidecar_path(video_path)}: no ground truth beside the video (a conveyor's sidecar); "
                         "make the video with preprocessing/create_conveyor_video.py")
    return data


def replay_video(video_path: str | os.PathLike, writer: Any,
                 operation: Callable[[np.ndarray, int], np.ndarray]) -> int:
    """Writes `operation(frame, index)` of every frame of a video to `writer`; returns the frame count."""
    capture = cv2.VideoCapture(str(video_path))
    count = 0
    try:
        ok, frame = capture.read()
        while ok:
            writer.write(operation(frame, count))
            count += 1
            ok, frame = capture.read()
    finally:
        capture.release()
    return count
