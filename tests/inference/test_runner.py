"""inference.runner: run_video's outputs, summary, display, atomicity, settings checks, frame metrics."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import drawing
import video_io
from inference import runner, video_inference, video_inference_clean, video_inference_sidebyside
from inference.engine import EngineConfig, InferenceEngine
from tests.helpers import CLIP_FRAMES as N_FRAMES, CLIP_SIZE as SIZE, CLIP_SOURCES as SOURCES
from tests.helpers import files_under, frame_count, model_args, read_csv


@pytest.fixture(scope="module")
def engine(tiny_model) -> InferenceEngine:
    """The tiny model's engine (batch 3, so batches do not divide the clip evenly)."""
    return InferenceEngine.from_config(EngineConfig(str(tiny_model.model_path), tiny_model.class_name, "cpu",
                                                    batch_size=3))


def test_without_sidecar_csv_has_no_truth_and_clean_intensity_blends(tiny_model, clip, tmp_path, capsys):
    bare = tmp_path / "bare.mp4"
    shutil.copy(clip, bare)
    plain, heat = tmp_path / "plain.mp4", tmp_path / "heat.mp4"
    for out, intensity in ((plain, "0"), (heat, "1")):
        code = video_inference_clean.cli(model_args(tiny_model, "--video_path", str(bare), "--output_path", str(out),
                                                    "--intensity", intensity, "--max_frames", "4"))
        assert code == 0
    with open(tmp_path / "plain_frames.csv", newline="") as handle:
        assert next(csv.reader(handle)) == ["frame", "score", "is_defect"]
    assert "frame accuracy" not in capsys.readouterr().out
    source = np.stack([f for batch in video_io.iter_frames(bare) for f in batch][:4]).astype(np.float32)
    zero = np.stack([f for batch in video_io.iter_frames(plain) for f in batch]).astype(np.float32)
    full = np.stack([f for batch in video_io.iter_frames(heat) for f in batch]).astype(np.float32)
    assert np.abs(zero - source).mean() < 4.0  # intensity 0: the frame itself (up to MPEG-4 loss)
    assert np.abs(full - source).mean() > 20.0  # intensity 1: the heatmap only


def test_display_window_q_stops_cleanly(tiny_model, clip, tmp_path, monkeypatch, capsys):
    shown = []
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(cv2, "imshow", lambda name, frame: shown.append(frame.shape))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: ord("q") if len(shown) == 3 else -1)
    monkeypatch.setattr(cv2, "destroyWindow", lambda name: None)
    out = tmp_path / "shown.mp4"
    code = video_inference_sidebyside.cli(model_args(tiny_model, "--video_path", str(clip), "--output_path", str(out),
                                                     "--display"))
    assert code == 0
    assert shown == [(SIZE, 2 * SIZE, 3)] * 3
    assert frame_count(out) == 3 and len(read_csv(tmp_path / "shown_frames.csv")) == 3
    assert "stopped early" in capsys.readouterr().out


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_failure_mid_run_leaves_no_file(engine, clip, tmp_path, failure):
    class FailingRenderer(runner.BaseRenderer):
        def render(self, frame, result, index):
            if index == 4:
                raise failure("stop")
            return frame

    out = tmp_path / "out" / "partial.mp4"
    with pytest.raises(failure):
        runner.run_video(engine, FailingRenderer(), runner.RunConfig(clip, out, progress=False))
    assert files_under(tmp_path / "out") == []


def test_on_progress_is_called_after_every_frame_and_can_end_the_run(engine, clip, tmp_path):
    class Plain(runner.BaseRenderer):
        def render(self, frame, result, index):
            return frame

    calls = []
    cfg = runner.RunConfig(clip, tmp_path / "p.mp4", progress=False, max_frames=5,
                           on_progress=lambda done, total: calls.append((done, total)))
    summary = runner.run_video(engine, Plain(), cfg)
    assert summary.frames == 5 and calls == [(i, 5) for i in range(1, 6)]

    def stop_at_three(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # an exception from the callback ends the run without output
        runner.run_video(engine, Plain(), runner.RunConfig(clip, tmp_path / "stop" / "q.mp4", progress=False,
                                                           on_progress=stop_at_three))
    assert files_under(tmp_path / "stop") == []


def test_grid_shifts_score_each_frame_with_the_shift_of_its_index(engine, clip, tmp_path):
    """RunConfig.grid_shifts is asked for every batch (first index, count) and its shifts reach the engine:
    the scores are the engine's for those frames and shifts, not the unshifted ones."""
    from inference.engine import frame_shifts

    class Scores(runner.BaseRenderer):
        def __init__(self):
            self.scores = []

        def render(self, frame, result, index):
            self.scores.append(result.score)
            return frame

    asked = []

    def shifts(first, count):
        asked.append((first, count))
        return frame_shifts(engine, first, count, (-2.0, 0.0))

    renderer = Scores()
    runner.run_video(engine, renderer, runner.RunConfig(clip, tmp_path / "s.mp4", progress=False, max_frames=7,
                                                        grid_shifts=shifts))
    assert asked == [(0, 3), (3, 3), (6, 1)]  # batch 3
    frames = [frame for batch in video_io.iter_frames(clip, 7) for frame in batch][:7]
    expected = [r.score for r in engine.predict(frames, frame_shifts(engine, 0, 7, (-2.0, 0.0)))]
    np.testing.assert_allclose(renderer.scores, expected, atol=1e-6)
    plain = [r.score for r in engine.predict(frames)]
    assert not np.allclose(renderer.scores, plain, atol=1e-6)


def test_a_run_removes_partial_videos_of_killed_runs_in_its_output_folder(tiny_model, clip, tmp_path, caplog):
    """After kill -9 (no cleanup ran) the next run into the folder removes the dead partial video, in one line."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / "out" / f".x.{int(proc.stdout)}-0123abcd.partial.mp4"
    dead.parent.mkdir()
    dead.write_bytes(b"half a video")
    os.utime(dead, (0, 0))
    with caplog.at_level("INFO", logger=runner.LOGGER.name):
        code = video_inference.cli(model_args(tiny_model, "--video_path", str(clip), "--output_path",
                                              str(tmp_path / "out" / "x.mp4")))
    assert code == 0 and not dead.exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.mp4", "x_frames.csv", "x_timeline.png"]
    lines = [r.getMessage() for r in caplog.records if "interrupted run" in r.getMessage()]
    assert len(lines) == 1 and dead.name in lines[0]


def test_run_video_summary_matches_engine_and_sidecar(engine, clip, tmp_path):
    class Recorder(runner.BaseRenderer):
        def __init__(self):
            self.seen = []

        def render(self, frame, result, index):
            self.seen.append((index, result.score))
            return drawing.overlay(frame, result.anomaly_map)

        def finish(self):
            return {"rendered": len(self.seen)}

    recorder = Recorder()
    summary = runner.run_video(engine, recorder, runner.RunConfig(clip, tmp_path / "s.mp4", progress=False))
    frames = [f for batch in video_io.iter_frames(clip) for f in batch]
    expected = [r.score for r in engine.predict(frames)]
    assert [i for i, _ in recorder.seen] == list(range(N_FRAMES))
    assert [s for _, s in recorder.seen] == pytest.approx(expected, abs=1e-6)
    assert summary.frames == N_FRAMES and summary.extra == {"rendered": N_FRAMES}
    assert summary.defect_frames == sum(s >= engine.threshold for s in expected)
    truth = [name.startswith("blob") for name in SOURCES]
    assert summary.accuracy == pytest.approx(np.mean([(s >= engine.threshold) == t for s, t in zip(expected, truth)]))
    assert summary.auroc is not None and 0.0 <= summary.auroc <= 1.0
    assert set(summary.stage_seconds) == set(runner.STAGES) and all(v >= 0 for v in summary.stage_seconds.values())
    assert summary.measured_fps > 0
    assert summary.to_dict()["files"] == [str(tmp_path / "s_frames.csv"), str(tmp_path / "s_timeline.png")]


def test_frame_metrics_known_answers():
    records = [runner.FrameRecord(i, s, s >= 0.5, true_is_defect=t)
               for i, (s, t) in enumerate([(0.1, False), (0.7, True), (0.6, False), (0.9, True)])]
    accuracy, auroc = runner.frame_metrics(records)
    assert accuracy == 0.75 and auroc == 1.0
    one_class = [runner.FrameRecord(0, 0.2, False, true_is_defect=False)]
    assert runner.frame_metrics(one_class) == (1.0, None)
    assert runner.frame_metrics([runner.FrameRecord(0, 0.2, False)]) == (None, None)
    assert drawing.true_runs(np.array([0, 1, 1, 0, 1], bool)) == [(1, 2), (4, 4)]


def test_side_paths():
    assert runner.side_path("out/run.mp4", "frames.csv") == Path("out/run_frames.csv")
    assert os.fspath(runner.RunConfig("a.mp4", "b/c.mp4").timeline_path) == os.path.join("b", "c_timeline.png")
    with pytest.raises(runner.RunError, match="--max_frames"):
        runner.RunConfig("a.mp4", "b.mp4", max_frames=0)


def test_settings_checks_need_only_their_own_flag(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    runner.check_output_name("out/run.MP4")
    with pytest.raises(runner.RunError, match=r"--output_path out/run.avi: only \.mp4 output"):
        runner.check_output_name("out/run.avi")
    runner.check_max_frames(None)
    runner.check_max_frames(1)
    with pytest.raises(runner.RunError, match="--max_frames 0"):
        runner.check_max_frames(0)
    runner.check_display(False)
    with pytest.raises(runner.RunError, match="--display: no screen"):
        runner.check_display(True)
