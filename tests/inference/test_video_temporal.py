"""inference/video_temporal.py: train on a tiny conveyor video, score one with a stop, one-line errors."""
from __future__ import annotations

from pathlib import Path

import pytest

import temporal
import video_io
from inference import video_temporal
from preprocessing.create_conveyor_video import ConveyorConfig, MotionProfile, create_conveyor_video
from tests.helpers import assert_user_error, read_csv

TINY_FLAGS = ["--clip_len", "4", "--size", "16", "--features", "4,8", "--hidden", "4", "--epochs", "1",
              "--batch_size", "8", "--threads", "2"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """A 40-frame defect-free 64x32 conveyor and a 30-frame one whose belt stops for 5 frames, then jerks."""
    folder = tmp_path_factory.mktemp("temporal")
    base = dict(texture="gravel", width=64, height=32, speed=2, defects=0)
    normal, stop = folder / "normal.mp4", folder / "stop.mp4"
    create_conveyor_video(normal, ConveyorConfig(**base, frames=40))
    create_conveyor_video(stop, ConveyorConfig(**base, frames=30), MotionProfile(stop_at=12, stop_frames=5,
                                                                                 jerk_frames=2))
    return {"normal": normal, "stop": stop, "folder": folder}


@pytest.fixture(scope="module")
def trained(videos, tmp_path_factory) -> Path:
    """The tiny model trained by the CLI (and the stop video scored) into one folder."""
    model = tmp_path_factory.mktemp("temporal_model")
    code = video_temporal.cli(["--model", str(model), "--train", str(videos["normal"]), "--video",
                               str(videos["stop"]), "--output", str(model / "out"), *TINY_FLAGS])
    assert code == 0
    return model


def test_training_and_scoring_write_every_output_with_one_row_per_frame(trained, videos):
    assert (trained / temporal.MODEL_FILE).is_file()
    out = trained / "out"
    rows = read_csv(out / "stop_temporal_frames.csv")
    sidecar = video_io.read_sidecar(videos["stop"])
    assert len(rows) == len(sidecar["frames"])
    assert list(rows[0]) == ["frame", "score", "flagged", "motion", "temporal_anomaly"]
    assert [int(r["temporal_anomaly"]) for r in rows] == [int(f["temporal_anomaly"]) for f in sidecar["frames"]]
    assert (out / "stop_temporal_timeline.png").stat().st_size > 1000
    info = video_io.probe_video(out / "stop_temporal.mp4", exact=True)
    assert (info.frame_count, info.width, info.height) == (len(rows), 3 * 64, 32)


def test_a_model_trained_alike_is_reused_and_other_settings_are_refused(trained, videos, capsys, tmp_path):
    stamp = (trained / temporal.MODEL_FILE).stat().st_mtime_ns
    code = video_temporal.cli(["--model", str(trained), "--train", str(videos["normal"]), "--video",
                               str(videos["normal"]), "--output", str(tmp_path), *TINY_FLAGS])
    assert code == 0 and (trained / temporal.MODEL_FILE).stat().st_mtime_ns == stamp
    out = capsys.readouterr().out
    assert "normal.mp4: " in out and "false alarms" in out  # a conveyor without a profile: all frames normal
    assert len(read_csv(tmp_path / "normal_temporal_frames.csv")) == video_io.probe_video(videos["normal"]).frame_count
    code = video_temporal.cli(["--model", str(trained), "--train", str(videos["normal"]), *TINY_FLAGS[:-4],
                               "--epochs", "2"])
    assert_user_error(capsys, code, "different 'train' settings")


def test_scoring_with_a_saved_model_prints_auroc_against_the_sidecar(trained, videos, capsys, tmp_path):
    code = video_temporal.cli(["--model", str(trained), "--video", str(videos["stop"]), "--output", str(tmp_path)])
    assert code == 0
    assert "frame AUROC" in capsys.readouterr().out


@pytest.mark.parametrize("make_args, needles", [
    (lambda v, t: ["--model", str(t), "--video", str(t / "missing.mp4")], ["--video", "missing.mp4"]),
    (lambda v, t: ["--model", str(t), "--train", str(v["normal"]), "--epochs", "0"], ["--epochs 0"]),
    (lambda v, t: ["--model", str(t), "--train", str(v["normal"]), "--features", "4,x"], ["--features"]),
    (lambda v, t: ["--model", str(t), "--train", str(v["normal"]), "--channels", "2"], ["--channels 2"]),
    (lambda v, t: ["--model", str(t), "--video", str(v["stop"])], ["no ConvLSTM model here", "--train"]),
    (lambda v, t: ["--model", str(t)], ["nothing to do"]),
    (lambda v, t: ["--model", str(t), "--video", str(v["folder"] / "corrupt.mp4")], ["--video", "corrupt.mp4"]),
])
def test_bad_input_is_one_line_with_exit_code_2(videos, tmp_path, capsys, make_args, needles):
    (videos["folder"] / "corrupt.mp4").write_bytes(b"not a video at all")
    code = video_temporal.cli(make_args(videos, tmp_path))
    assert_user_error(capsys, code, *needles)


def test_trains_on_a_video_to_dataset_folder(videos, tmp_path, capsys):
    from preprocessing import video_to_dataset

    assert video_to_dataset.cli(["--video", str(videos["normal"]), "--class_name", "belt", "--every", "1",
                                 "--jitter", "0", "--output", str(tmp_path / "data")]) == 0
    folder = tmp_path / "data" / "belt"
    frames, size = temporal.read_model_frames(folder, video_temporal.DEFAULTS)
    assert len(frames) == video_io.probe_video(videos["normal"], exact=True).frame_count and size == (64, 32)
    code = video_temporal.cli(["--model", str(tmp_path / "model"), "--train", str(folder), *TINY_FLAGS])
    assert code == 0 and temporal.load_model(tmp_path / "model").train["sources"] == ["belt"]


def test_a_jittered_frame_folder_is_refused_with_the_fix(videos, tmp_path):
    from preprocessing import video_to_dataset

    assert video_to_dataset.cli(["--video", str(videos["normal"]), "--class_name", "belt", "--every", "1",
                                 "--output", str(tmp_path / "data")]) == 0  # default --jitter 2
    with pytest.raises(temporal.TemporalError, match="--jitter 0"):
        temporal.read_model_frames(tmp_path / "data" / "belt", video_temporal.DEFAULTS)


def test_a_video_shorter_than_a_clip_is_one_line(trained, tmp_path, capsys):
    short = tmp_path / "short.mp4"
    create_conveyor_video(short, ConveyorConfig(texture="gravel", width=64, height=32, speed=30, defects=0))
    code = video_temporal.cli(["--model", str(trained), "--video", str(short), "--output", str(tmp_path)])
    assert_user_error(capsys, code, "short.mp4", "clips of 4")
