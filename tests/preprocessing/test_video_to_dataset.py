"""video_to_dataset: an MVTec-layout class from a defect-free video (shape kept, splits, errors, determinism)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import video_io
from datasets.base import DatasetConfig
from datasets.registry import build_dataset
from preprocessing import video_to_dataset as v2d

WIDTH, HEIGHT = 96, 64  # non-square on purpose
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def write_video(path: Path, n: int = 40, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """A small MP4 (the project's mp4v writer) whose frames differ in their blue level."""
    with video_io.AtomicVideoWriter(path, 10.0, (width, height)) as writer:
        for i in range(n):
            frame = np.zeros((height, width, 3), np.uint8)
            frame[..., 0] = (6 * i) % 256
            frame[..., 1] = np.linspace(0, 255, width).astype(np.uint8)[None, :]
            frame[..., 2] = np.linspace(0, 255, height).astype(np.uint8)[:, None]
            writer.write(frame)
    return path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """A 40-frame 96x64 video."""
    return write_video(tmp_path / "normal.mp4")


def run(video: Path, output: Path, *extra: str, class_name: str = "steel") -> int:
    """The CLI's exit code."""
    return v2d.cli(["--video", str(video), "--class_name", class_name, "--output", str(output), *extra])


def images(folder: Path) -> list[str]:
    """Sorted PNG names in a folder."""
    return sorted(p.name for p in folder.glob("*.png"))


def assert_one_line_error(capsys: pytest.CaptureFixture, *needles: str) -> None:
    """stderr is one 'error:' line naming the given things, without a traceback."""
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if " INFO " not in line and " WARNING " not in line]  # logging lines
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    for needle in needles:
        assert needle in err[0]


def test_frames_keep_shape_and_trace_back_to_the_video(video: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    assert run(video, out, "--every", "5", "--test_fraction", "0.25", "--jitter", "0") == 0
    cls = out / "steel"
    side = json.loads((cls / v2d.SIDECAR_NAME).read_text())
    assert (side["width"], side["height"], side["fps"], side["frame_count"]) == (WIDTH, HEIGHT, 10.0, 40)
    assert side["video"] == str(video.resolve()) and side["settings"]["every"] == 5
    # 8 kept frames (0, 5, ..., 35); 2 held out at the centres of the two halves: positions 2 and 6
    assert [r["frame"] for r in side["test"]] == [10, 30]
    assert [r["frame"] for r in side["train"]] == [0, 5, 15, 20, 25, 35]
    assert side["train"][3] == {"image": "train/good/003.png", "frame": 20, "time_s": 2.0}
    decoded = [f for batch in video_io.iter_frames(video, 8) for f in batch]
    for record in side["train"] + side["test"]:
        image = cv2.imread(str(cls / record["image"]), cv2.IMREAD_UNCHANGED)
        assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
        assert np.array_equal(image, decoded[record["frame"]])  # lossless: exactly the decoded frame
    assert images(cls / "train" / "good") == [f"{i:03d}.png" for i in range(6)]
    assert images(cls / "test" / "good") == ["000.png", "001.png"]
    assert sorted(p.name for p in out.iterdir()) == ["steel"]  # no temporary folder left behind


@pytest.mark.parametrize("extra, train, test", [
    (["--every", "1"], [i for i in range(40) if i % 10 != 5], [5, 15, 25, 35]),  # 4 of 40 held out
    (["--every", "5", "--test_fraction", "0"], list(range(0, 40, 5)), []),
    (["--every", "4", "--start", "3", "--end", "30"], [3, 7, 11, 19, 23, 27], [15]),  # 7 kept: 1 test
    (["--every", "4", "--start", "3", "--max_frames", "5"], [3, 7, 15, 19], [11]),
    (["--every", "10", "--test_fraction", "0.01"], [0, 10, 30], [20]),  # at least one test frame
])
def test_counts_for_every_range_fraction_and_cap(video: Path, tmp_path: Path, extra: list[str], train: list[int],
                                                 test: list[int]) -> None:
    out = tmp_path / "data"
    assert run(video, out, *extra) == 0
    side = json.loads((out / "steel" / v2d.SIDECAR_NAME).read_text())
    assert [r["frame"] for r in side["train"]] == train
    assert [r["frame"] for r in side["test"]] == test
    assert len(images(out / "steel" / "train" / "good")) == len(train)
    assert len(images(out / "steel" / "test" / "good")) == len(test)


def test_held_out_frames_are_evenly_spaced() -> None:
    assert v2d.split_counts(100, 0.1) == (90, 10)
    assert v2d.split_counts(3, 0.1) == (2, 1)
    assert v2d.split_counts(5, 0.0) == (5, 0)
    assert v2d.held_out_positions(100, 10) == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95]
    assert v2d.held_out_positions(7, 3) == [1, 3, 5]


def test_layout_is_read_by_the_mvtec_dataset(video: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    assert run(video, out, "--every", "2") == 0  # 20 kept: 18 train, 2 test
    cfg = DatasetConfig("mvtec", out, tmp_path / "no_textures", ("steel",), resize=40, imagesize=32,
                        downsampling=8, num_workers=0, fg=0)
    train = build_dataset(cfg, "steel", "train", MEAN, STD, seed=0, las=False)
    test = build_dataset(cfg, "steel", "test", MEAN, STD, seed=0)
    assert len(train) == 18 and len(test) == 2
    item = test[0]
    assert item["image"].shape == (3, 32, 32) and item["is_anomaly"] == 0


def test_same_input_same_output(video: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert run(video, first, "--every", "3") == 0
    assert run(video, second, "--every", "3") == 0
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


def test_missing_video(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(tmp_path / "nope.mp4", tmp_path / "data") == 2
    assert_one_line_error(capsys, "nope.mp4", "does not exist")
    assert not (tmp_path / "data").exists()


def test_corrupt_video(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert run(bad, tmp_path / "data") == 2
    assert_one_line_error(capsys, "bad.mp4")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("extra, needle", [
    (["--every", "0"], "--every 0"),
    (["--test_fraction", "1"], "--test_fraction 1.0"),
    (["--test_fraction", "-0.1"], "--test_fraction -0.1"),
    (["--start", "-1"], "--start -1"),
    (["--start", "10", "--end", "10"], "--end 10"),
    (["--max_frames", "2"], "--max_frames 2"),  # 1 train + 1 test
    (["--every", "30"], "--every 30"),  # 2 kept: 1 train + 1 test
    (["--start", "100"], "--start 100"),  # past the end of the video
])
def test_bad_settings_exit_2_with_one_line(video: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                           extra: list[str], needle: str) -> None:
    out = tmp_path / "data"
    assert run(video, out, *extra) == 2
    assert_one_line_error(capsys, needle)
    assert not out.exists() or not any(out.iterdir())  # nothing half-written, no temporary folder


@pytest.mark.parametrize("name", ["", "a/b", "..", ".hidden", "fg_mask", "sp ace"])
def test_bad_class_name(video: Path, tmp_path: Path, capsys: pytest.CaptureFixture, name: str) -> None:
    assert run(video, tmp_path / "data", class_name=name) == 2
    assert_one_line_error(capsys, "--class_name")


def test_unwritable_output(video: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert run(video, blocker / "data") == 2
    assert_one_line_error(capsys, "--output")


def test_existing_class_kept_without_overwrite_and_replaced_with_it(video: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "data"
    old = out / "steel" / "train" / "good" / "keep.png"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old")
    assert run(video, out) == 2
    assert_one_line_error(capsys, "--overwrite", str(out / "steel"))
    assert old.read_bytes() == b"old" and images(old.parent) == ["keep.png"]
    assert sorted(p.name for p in out.iterdir()) == ["steel"]
    # a failing run with --overwrite leaves the old class untouched too
    assert run(video, out, "--overwrite", "--every", "30") == 2
    capsys.readouterr()
    assert old.read_bytes() == b"old"
    assert run(video, out, "--overwrite") == 0
    assert not old.exists() and len(images(old.parent)) == 7  # 8 kept: 7 train, 1 test
    assert sorted(p.name for p in out.iterdir()) == ["steel"]  # old class and temporary folder gone


def test_empty_class_folder_is_filled(video: Path, tmp_path: Path) -> None:
    (tmp_path / "data" / "steel").mkdir(parents=True)
    assert run(video, tmp_path / "data") == 0
    assert len(images(tmp_path / "data" / "steel" / "train" / "good")) == 7


def test_interrupted_run_leaves_nothing(video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fail_on_third(path: Path, frame: np.ndarray) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        assert cv2.imwrite(str(path), frame)

    monkeypatch.setattr(v2d, "write_png", fail_on_third)
    assert run(video, tmp_path / "data") == 130
    assert list((tmp_path / "data").iterdir()) == []


def test_shift_frame_moves_content_and_mirrors_the_uncovered_border() -> None:
    frame = np.arange(5 * 6, dtype=np.uint8).reshape(5, 6)
    moved = v2d.shift_frame(frame, 2, -1)  # two pixels right, one up
    assert moved.shape == frame.shape
    assert np.array_equal(moved[0:4, 2:6], frame[1:5, 0:4])  # out[y, x] = in[y + 1, x - 2]
    assert np.array_equal(moved[0:4, 0:2], frame[1:5, 2:0:-1])  # columns -2, -1 mirror columns 2, 1
    assert np.array_equal(moved[4, 2:6], frame[3, 0:4])  # row 5 mirrors row 3
    assert v2d.shift_frame(frame, 0, 0) is frame
    colour = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    assert np.array_equal(v2d.shift_frame(colour, -3, 2)[2:, :6], colour[:5, 3:])


def test_training_frames_are_jittered_by_recorded_seeded_shifts(video: Path, tmp_path: Path) -> None:
    assert run(video, tmp_path / "a", "--every", "5", "--test_fraction", "0.25", "--jitter", "2") == 0
    cls = tmp_path / "a" / "steel"
    side = json.loads((cls / v2d.SIDECAR_NAME).read_text())
    assert side["settings"]["jitter"] == 2 and side["settings"]["seed"] == 0
    decoded = [f for batch in video_io.iter_frames(video, 8) for f in batch]
    shifts = [tuple(record["shift"]) for record in side["train"]]
    assert all(-2 <= dx <= 2 and -2 <= dy <= 2 for dx, dy in shifts) and len(set(shifts)) > 1
    for record in side["train"]:
        image = cv2.imread(str(cls / record["image"]), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(image, v2d.shift_frame(decoded[record["frame"]], *record["shift"]))
    for record in side["test"]:  # held-out test frames stay exactly as decoded
        assert "shift" not in record
        assert np.array_equal(cv2.imread(str(cls / record["image"]), cv2.IMREAD_UNCHANGED), decoded[record["frame"]])
    # Same seed, same shifts and bytes; another seed, other shifts.
    assert run(video, tmp_path / "b", "--every", "5", "--test_fraction", "0.25", "--jitter", "2") == 0
    assert run(video, tmp_path / "c", "--every", "5", "--test_fraction", "0.25", "--jitter", "2", "--seed", "5") == 0
    again = json.loads((tmp_path / "b" / "steel" / v2d.SIDECAR_NAME).read_text())
    other = json.loads((tmp_path / "c" / "steel" / v2d.SIDECAR_NAME).read_text())
    assert [r["shift"] for r in again["train"]] == [list(s) for s in shifts]
    assert [r["shift"] for r in other["train"]] != [list(s) for s in shifts]
    for name in images(cls / "train" / "good"):
        assert (cls / "train" / "good" / name).read_bytes() == (tmp_path / "b" / "steel" / "train" / "good" /
                                                                name).read_bytes()


@pytest.mark.parametrize("value", ["-1", "17"])
def test_bad_jitter_exits_2_with_one_line(video: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                          value: str) -> None:
    assert run(video, tmp_path / "data", "--jitter", value) == 2
    assert_one_line_error(capsys, f"--jitter {value}")
