"""video_io: probe, batched reading, atomic MP4 writing, sidecars, one-line errors."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import video_io
from video_io import AtomicVideoWriter, FrameRecord, VideoError, VideoInfo


def smooth_frames(n: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    """Gradient frames (smooth, so the lossy codec keeps them close), each with its own blue level."""
    frames = []
    for i in range(n):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 0] = 30 * i
        frame[..., 1] = np.linspace(0, 255, width).astype(np.uint8)[None, :]
        frame[..., 2] = np.linspace(0, 255, height).astype(np.uint8)[:, None]
        frames.append(frame)
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 12.5) -> Path:
    """Writes frames through AtomicVideoWriter."""
    height, width = frames[0].shape[:2]
    with AtomicVideoWriter(path, fps, (width, height)) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def assert_one_line(err: VideoError, *needles: str) -> None:
    """The error message is one line and names the given things."""
    message = str(err)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_round_trip_probe_and_batches(tmp_path: Path) -> None:
    frames = smooth_frames(7)
    path = write_video(tmp_path / "clip.mp4", frames)
    info = video_io.probe_video(path)
    assert info == VideoInfo(path=path, fps=12.5, frame_count=7, width=64, height=48)
    assert info.size == (64, 48)
    assert video_io.probe_video(path, exact=True).frame_count == 7
    batches = list(video_io.iter_frames(path, batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 1]
    decoded = [frame for batch in batches for frame in batch]
    for original, frame in zip(frames, decoded):
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        diff = np.abs(frame.astype(int) - original.astype(int))
        assert diff.mean() < 6 and diff.max() < 40  # mp4v is lossy; smooth frames stay close
    # each decoded frame is closest to its own original (order kept)
    for i, frame in enumerate(decoded):
        errors = [np.abs(frame.astype(int) - f.astype(int)).mean() for f in frames]
        assert int(np.argmin(errors)) == i


def test_iter_frames_batch_size_one_and_gray_input(tmp_path: Path) -> None:
    gray = [np.full((32, 32), v, np.uint8) for v in (40, 120, 200)]
    path = tmp_path / "gray.mp4"
    with AtomicVideoWriter(path, 5, (32, 32)) as writer:
        for frame in gray:
            writer.write(frame)
    batches = list(video_io.iter_frames(path))
    assert [len(b) for b in batches] == [1, 1, 1]
    means = [float(b[0].mean()) for b in batches]
    assert means == pytest.approx([40, 120, 200], abs=4)


def test_writer_leaves_nothing_on_exception(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with AtomicVideoWriter(target, 10, (64, 48)) as writer:
            writer.write(smooth_frames(1)[0])
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_writer_keeps_old_video_when_a_rewrite_fails(tmp_path: Path) -> None:
    target = write_video(tmp_path / "out.mp4", smooth_frames(3))
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with AtomicVideoWriter(target, 10, (64, 48)) as writer:
            writer.write(smooth_frames(1)[0])
            raise RuntimeError("stop")
    assert target.read_bytes() == before
    assert list(tmp_path.iterdir()) == [target]


def test_rewriting_a_video_drops_its_old_sidecar_but_a_failed_rewrite_keeps_it(tmp_path: Path) -> None:
    target = write_video(tmp_path / "out.mp4", smooth_frames(3))
    video_io.write_sidecar(target, {"frames": [{"index": i} for i in range(3)]})
    with pytest.raises(RuntimeError):
        with AtomicVideoWriter(target, 10, (64, 48)) as writer:
            writer.write(smooth_frames(1)[0])
            raise RuntimeError("stop")
    assert video_io.read_sidecar(target) == {"frames": [{"index": i} for i in range(3)]}
    write_video(target, smooth_frames(2))  # the old sidecar described 3 frames: it must not outlive them
    assert video_io.read_sidecar(target) is None and not video_io.sidecar_path(target).exists()


def test_writer_onto_an_existing_folder_names_the_path(tmp_path: Path) -> None:
    target = tmp_path / "taken.mp4"
    (target / "inside").mkdir(parents=True)
    with pytest.raises(VideoError) as info:
        write_video(target, smooth_frames(2))
    assert_one_line(info.value, str(target))
    assert [p.name for p in tmp_path.iterdir()] == ["taken.mp4"]  # no temporary file left


def test_writer_leaves_no_temp_file_on_success(tmp_path: Path) -> None:
    target = write_video(tmp_path / "sub" / "out.mp4", smooth_frames(2))
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.mp4"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as any new file, not a temp file's 0600


def test_writer_partial_file_carries_the_pid_and_is_locked_while_written(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    with AtomicVideoWriter(target, 10, (64, 48)) as writer:
        writer.write(smooth_frames(1)[0])
        (partial,) = [p for p in tmp_path.iterdir()]
        assert video_io.PARTIAL_VIDEO.match(partial.name) and partial.name.startswith(f".out.{os.getpid()}-")
        assert video_io.partial_pid(partial.name) == os.getpid()
        os.utime(partial, (0, 0))  # however old: a scan (another run's) leaves a locked partial alone
        assert video_io.remove_stale_partials(tmp_path) == [] and partial.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    os.utime(target, (0, 0))
    assert video_io.remove_stale_partials(tmp_path) == []  # a finished video is no partial


def test_writer_rejects_zero_frames_and_saves_nothing(tmp_path: Path) -> None:
    with pytest.raises(VideoError) as err:
        with AtomicVideoWriter(tmp_path / "empty.mp4", 10, (64, 48)):
            pass
    assert_one_line(err.value, "empty.mp4", "no frames")
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_wrong_frames(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    with pytest.raises(VideoError) as err:
        with AtomicVideoWriter(target, 10, (64, 48)) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            writer.write(np.zeros((32, 32, 3), np.uint8))
    assert_one_line(err.value, "out.mp4", "(32, 32, 3)", "(48, 64, 3)")
    with pytest.raises(VideoError, match="uint8"):
        with AtomicVideoWriter(target, 10, (64, 48)) as writer:
            writer.write(np.zeros((48, 64, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, needle", [
    ({"fps": 0, "size": (64, 48)}, "fps"),
    ({"fps": 10, "size": (0, 48)}, "too small"),
])
def test_writer_rejects_bad_settings(tmp_path: Path, kwargs: dict, needle: str) -> None:
    with pytest.raises(VideoError) as err:
        AtomicVideoWriter(tmp_path / "out.mp4", **kwargs)
    assert_one_line(err.value, "out.mp4", needle)


def test_writer_pads_odd_sizes_to_even(tmp_path: Path) -> None:
    frame = np.zeros((47, 63, 3), np.uint8)
    frame[:, :32] = 200  # left half bright, right half dark: the added column repeats the dark edge
    path = tmp_path / "odd.mp4"
    with AtomicVideoWriter(path, 10, (63, 47)) as writer:
        assert writer.encoded_size == (64, 48)
        writer.write(frame)
    info = video_io.probe_video(path)
    assert (info.width, info.height) == (64, 48)
    decoded = next(video_io.iter_frames(path))[0].astype(int)
    assert abs(decoded[:, :28].mean() - 200) < 8 and decoded[:, 36:].mean() < 8
    assert decoded[-1].mean() == pytest.approx(decoded[-2].mean(), abs=8)


def test_writer_rejects_non_mp4_name(tmp_path: Path) -> None:
    with pytest.raises(VideoError) as err:
        AtomicVideoWriter(tmp_path / "out.avi", 10, (64, 48))
    assert_one_line(err.value, "out.avi", ".mp4")


def test_writer_unwritable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(VideoError) as err:
        with AtomicVideoWriter(blocker / "sub" / "out.mp4", 10, (64, 48)) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
    assert_one_line(err.value, "out.mp4", "writable")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_write_outside_context_is_an_error(tmp_path: Path) -> None:
    writer = AtomicVideoWriter(tmp_path / "out.mp4", 10, (64, 48))
    with pytest.raises(VideoError, match="outside"):
        writer.write(np.zeros((48, 64, 3), np.uint8))


def test_probe_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError) as err:
        video_io.probe_video(tmp_path / "missing.mp4")
    assert_one_line(err.value, "missing.mp4", "does not exist")


def test_probe_folder(tmp_path: Path) -> None:
    with pytest.raises(VideoError) as err:
        video_io.probe_video(tmp_path)
    assert_one_line(err.value, str(tmp_path), "not a file")


def test_probe_text_file_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoError) as err:
        video_io.probe_video(path)
    assert_one_line(err.value, "notes.mp4", "re-encode")


def test_probe_zero_frame_video(tmp_path: Path) -> None:
    path = tmp_path / "zero.mp4"
    raw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    assert raw.isOpened()
    raw.release()  # a container with a header and no frames
    assert path.stat().st_size > 0
    with pytest.raises(VideoError) as err:
        video_io.probe_video(path)
    assert_one_line(err.value, "zero.mp4")
    with pytest.raises(VideoError):
        video_io.iter_frames(path)  # fails when called, before any frame is asked for


def test_iter_frames_from_a_start_frame(tmp_path: Path) -> None:
    gray = [np.full((32, 32), v, np.uint8) for v in (20, 70, 120, 170, 220)]
    path = tmp_path / "gray.mp4"
    with AtomicVideoWriter(path, 5, (32, 32)) as writer:
        for frame in gray:
            writer.write(frame)
    batches = list(video_io.iter_frames(path, batch_size=2, start=2))
    assert [len(b) for b in batches] == [2, 1]
    assert [float(f.mean()) for b in batches for f in b] == pytest.approx([120, 170, 220], abs=4)
    assert list(video_io.iter_frames(path, start=5)) == []  # past the end: nothing
    with pytest.raises(VideoError, match="start frame -1"):
        video_io.iter_frames(path, start=-1)


def test_iter_frames_rejects_bad_batch_size(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", smooth_frames(2))
    with pytest.raises(VideoError, match="batch_size"):
        video_io.iter_frames(path, batch_size=0)


def test_sidecar_round_trip(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    assert video_io.sidecar_path(video) == tmp_path / "clip.mp4.json"
    assert video_io.read_sidecar(video) is None
    records = [FrameRecord(0, "/d/good/000.png", "good", False),
               FrameRecord(1, "/d/hole/000.png", "hole", True, "/d/gt/hole/000_mask.png")]
    data = video_io.make_sidecar(video, 10, (64, 48), records, {"seed": 3})
    assert data == {
        "video": "clip.mp4", "fps": 10.0, "width": 64, "height": 48,
        "frames": [
            {"index": 0, "source": "/d/good/000.png", "label": "good", "is_defect": False, "mask": None},
            {"index": 1, "source": "/d/hole/000.png", "label": "hole", "is_defect": True,
             "mask": "/d/gt/hole/000_mask.png"},
        ],
        "settings": {"seed": 3},
    }
    written = video_io.write_sidecar(video, {**data, "settings": {"path": tmp_path}})
    assert written == tmp_path / "clip.mp4.json"
    back = video_io.read_sidecar(video)
    assert back["frames"] == data["frames"] and back["settings"] == {"path": str(tmp_path)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4.json"]  # no temp file left


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", json.dumps({"frames": 3})])
def test_read_sidecar_rejects_corrupt_files(tmp_path: Path, content: str) -> None:
    video = tmp_path / "clip.mp4"
    video_io.sidecar_path(video).write_text(content)
    with pytest.raises(VideoError) as err:
        video_io.read_sidecar(video)
    assert_one_line(err.value, "clip.mp4.json")


def test_write_sidecar_unwritable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(VideoError) as err:
        video_io.write_sidecar(blocker / "clip.mp4", {"frames": []})
    assert_one_line(err.value, "clip.mp4.json", "writable")


def test_replay_video_writes_each_frame_through_the_operation(tmp_path: Path) -> None:
    """Every frame goes through the operation once, in order, with its index; the count is returned."""
    source = write_video(tmp_path / "in.mp4", smooth_frames(4))
    seen = []

    def mirror(frame: np.ndarray, index: int) -> np.ndarray:
        seen.append(index)
        return cv2.flip(frame, 1)

    with AtomicVideoWriter(tmp_path / "out.mp4", 12.5, (64, 48)) as writer:
        assert video_io.replay_video(source, writer, mirror) == 4
    assert seen == [0, 1, 2, 3]
    before = np.stack(next(video_io.iter_frames(source, batch_size=4)))
    after = np.stack(next(video_io.iter_frames(tmp_path / "out.mp4", batch_size=4)))
    assert np.abs(after.astype(int) - before[:, :, ::-1].astype(int)).mean() < 4  # mirrored, to codec noise
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 20  # not merely copied


@pytest.mark.parametrize("sidecar", [None, {"frames": []}, {"frames": [{"index": 0}]}])
def test_conveyor_truth_without_a_conveyor_sidecar_names_it_and_the_fix(tmp_path: Path, sidecar) -> None:
    video = write_video(tmp_path / "clip.mp4", smooth_frames(1))
    if sidecar is not None:
        video_io.write_sidecar(video, sidecar)
    with pytest.raises(VideoError) as err:
        video_io.conveyor_truth(video)
    assert_one_line(err.value, "clip.mp4.json", "create_conveyor_video.py")
    video_io.write_sidecar(video, {"width": 64, "height": 48, "frames": [{"index": 0}]})
    assert video_io.conveyor_truth(video)["width"] == 64
