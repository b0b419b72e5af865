"""Video inference scripts: outputs, per-frame CSV/timeline, sidecar truth, threshold, bad input, atomicity."""
from __future__ import annotations

import csv
import json
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
from inference import modes, renderers, runner
from inference import run_video_inference, video_inference, video_inference_clean
from inference import video_inference_sidebyside, video_inference_with_size
from inference.engine import EngineConfig, InferenceEngine
from size_analyzer import CSV_COLUMNS

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["good/000", "blob/000", "good/001", "blob/001", "good/002", "blob/002", "good/000", "good/001"]
N_FRAMES = len(SOURCES)
SIZE = 64


@pytest.fixture(scope="module")
def clip(tiny_model, tmp_path_factory) -> Path:
    """An 8-frame 64 px MP4 of the tiny model's test images (3 defective) with its sidecar JSON."""
    folder = tmp_path_factory.mktemp("clip")
    path = folder / "clip.mp4"
    test_dir = tiny_model.data_path / "toy" / "test"
    records = []
    with video_io.AtomicVideoWriter(path, 10.0, (SIZE, SIZE)) as writer:
        for index, name in enumerate(SOURCES):
            source = test_dir / f"{name}.png"
            writer.write(cv2.imread(str(source)))
            label = name.split("/")[0]
            records.append(video_io.FrameRecord(index, str(source), label, label != "good"))
    video_io.write_sidecar(path, video_io.make_sidecar(path, 10.0, (SIZE, SIZE), records, {"test": True}))
    return path


@pytest.fixture(scope="module")
def engine(tiny_model) -> InferenceEngine:
    """The tiny model's engine (batch 3, so batches do not divide the clip evenly)."""
    return InferenceEngine.from_config(EngineConfig(str(tiny_model.model_path), tiny_model.class_name, "cpu",
                                                    batch_size=3))


def model_args(tiny_model, *extra: str) -> list[str]:
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


def files_under(folder: Path) -> list[Path]:
    """Every file below a folder (empty if the folder does not exist)."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("script, extra, width", [
    (video_inference, [], SIZE),
    (video_inference_sidebyside, ["--threshold", "0.8"], 2 * SIZE),
    (video_inference_clean, ["--intensity", "0.6"], SIZE),
    # threshold 0.5 cuts the tiny model's maps into regions, so there is something to measure
    (video_inference_with_size, ["--threshold", "0.5", "--pixel_size", "0.5", "--physical_unit", "cm",
                                 "--min_defect_area", "4"], SIZE),
])
def test_every_script_writes_video_frames_csv_and_timeline(tiny_model, clip, tmp_path, capsys, monkeypatch,
                                                          script, extra, width):
    def no_window(*args):
        raise AssertionError("a window was opened without --display")

    monkeypatch.setattr(cv2, "imshow", no_window)
    out = tmp_path / "out" / "result.mp4"
    code = script.cli(model_args(tiny_model, "--video_path", str(clip), "--output_path", str(out), *extra))
    assert code == 0
    info = video_io.probe_video(out, exact=True)
    assert (info.frame_count, info.width, info.height) == (N_FRAMES, width, SIZE)

    rows = read_csv(tmp_path / "out" / "result_frames.csv")
    assert [int(r["frame"]) for r in rows] == list(range(N_FRAMES))
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    # the sidecar's truth is joined frame by frame
    assert [r["label"] for r in rows] == [name.split("/")[0] for name in SOURCES]
    assert [int(r["true_is_defect"]) for r in rows] == [int(name.startswith("blob")) for name in SOURCES]
    assert [Path(r["source"]).stem for r in rows] == [name.split("/")[1] for name in SOURCES]
    if "--threshold" in extra:
        threshold = float(extra[extra.index("--threshold") + 1])
        assert [r["is_defect"] == "1" for r in rows] == [float(r["score"]) >= threshold for r in rows]

    timeline = cv2.imread(str(tmp_path / "out" / "result_timeline.png"))
    assert timeline is not None and timeline.shape[1] == 1000
    stdout = capsys.readouterr().out
    assert "FPS end to end" in stdout and "frame accuracy" in stdout and "frame AUROC" in stdout
    names = {p.name for p in files_under(tmp_path / "out")}
    expected = {"result.mp4", "result_frames.csv", "result_timeline.png"}
    if script is video_inference_with_size:
        expected |= {"result_defects.csv", "result_sizes.json"}
        check_size_outputs(tmp_path / "out" / "result_defects.csv", tmp_path / "out" / "result_sizes.json")
    assert names == expected  # and no temporary file left behind


def check_size_outputs(defects_csv: Path, sizes_json: Path) -> None:
    """The size script's per-defect CSV and JSON agree and use --pixel_size 0.5 --physical_unit cm."""
    with open(defects_csv, newline="") as handle:
        assert tuple(next(csv.reader(handle))) == CSV_COLUMNS
    defects = read_csv(defects_csv)
    report = json.loads(sizes_json.read_text())
    assert defects, "threshold 0.5 should yield defect regions on the tiny model's maps"
    assert report["summary"]["total_defects"] == len(defects)
    assert report["settings"] == {"pixel_size": 0.5, "physical_unit": "cm", "min_defect_area_pixels": 4,
                                  "threshold": 0.5, "image_threshold": 0.5,  # --threshold sets both
                                  "severity_thresholds_mm2": [1.0, 10.0, 100.0]}
    for row in defects:
        assert row["physical_unit"] == "cm"
        assert int(row["area_pixels"]) >= 4
        assert float(row["area_physical"]) == pytest.approx(int(row["area_pixels"]) * 0.25)
        assert 0 <= int(row["x1"]) < int(row["x2"]) <= SIZE and 0 <= int(row["y1"]) < int(row["y2"]) <= SIZE
        assert float(row["max_score"]) >= 0.5
    assert {int(r["frame_index"]) for r in defects} == {f["frame_index"] for f in report["frames"]}


def test_threshold_changes_decisions_and_scores_are_deterministic(tiny_model, clip, tmp_path):
    all_defect = tmp_path / "zero.mp4"
    assert video_inference.cli(model_args(tiny_model, "--video_path", str(clip), "--output_path", str(all_defect),
                                          "--threshold", "0")) == 0
    rows = read_csv(tmp_path / "zero_frames.csv")
    assert all(r["is_defect"] == "1" for r in rows)
    scores = sorted(float(r["score"]) for r in rows)
    assert len(set(scores)) == N_FRAMES
    middle = (scores[3] + scores[4]) / 2  # between the 4th and 5th score: half the frames above

    split = tmp_path / "middle.mp4"
    assert video_inference.cli(model_args(tiny_model, "--video_path", str(clip), "--output_path", str(split),
                                          "--threshold", f"{middle:.8f}")) == 0
    again = read_csv(tmp_path / "middle_frames.csv")
    assert [r["score"] for r in again] == [r["score"] for r in rows]  # two runs, identical scores
    assert [r["is_defect"] == "1" for r in again] == [float(r["score"]) >= middle for r in again]
    assert sum(r["is_defect"] == "1" for r in again) == N_FRAMES // 2


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


def test_display_without_screen_is_a_one_line_error(tiny_model, clip, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    code = video_inference.cli(model_args(tiny_model, "--video_path", str(clip), "--output_path",
                                          str(tmp_path / "o" / "x.mp4"), "--display"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--display" in err[0]
    assert files_under(tmp_path / "o") == []


def test_wrapper_writes_to_the_default_output_path(tiny_model, clip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = run_video_inference.cli([str(clip), *model_args(tiny_model), "--mode", "clean", "--intensity", "0.3",
                                    "--max_frames", "5"])
    assert code == 0
    out = tmp_path / "output" / tiny_model.class_name / "clip_clean.mp4"
    assert frame_count(out) == 5
    assert len(read_csv(out.with_name("clip_clean_frames.csv"))) == 5
    assert out.with_name("clip_clean_timeline.png").is_file()


def test_script_file_runs_and_reports_errors_in_one_line(clip, tmp_path):
    """`python inference/run_video_inference.py ...` as users type it (a real process, no traceback)."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "inference" / "run_video_inference.py"), str(clip), "--class_name", "mvtec_toy",
         "--model_path", str(tmp_path / "no_models")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error:") and "no_models" in proc.stderr
    assert files_under(tmp_path / "output") == []


def test_wrapper_forwards_and_refuses_flags_of_other_modes(tiny_model, clip, tmp_path, capsys):
    out = tmp_path / "w.mp4"
    code = run_video_inference.cli([str(clip), str(out), *model_args(tiny_model), "--mode", "basic",
                                    "--intensity", "0.3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--intensity applies to --mode clean" in err[0]
    code = run_video_inference.cli([str(tmp_path / "missing.mp4"), str(out), *model_args(tiny_model)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "missing.mp4" in err[0]  # the delegated script's exit code
    code = run_video_inference.cli([str(clip), str(out), *model_args(tiny_model), "--max_frames", "2"])
    assert code == 0 and frame_count(out) == 2
    assert video_io.probe_video(out).width == 2 * SIZE  # sidebyside is the default mode
    capsys.readouterr()  # the progress bar
    code = run_video_inference.cli([str(clip), str(out), *model_args(tiny_model), "--pixel_threshold", "0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--pixel_threshold applies to --mode size" in err[0]
    assert "sidebyside" in err[0]
    code = run_video_inference.cli([str(clip), str(out), *model_args(tiny_model), "--mode", "clean",
                                    "--intensity", "1.5"])  # the clean mode's own typed flag checks the value
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--intensity" in err[0] and "1.5" in err[0]


@pytest.mark.parametrize("script, mode, own_flags", [
    (video_inference, "basic", []),
    (video_inference_sidebyside, "sidebyside", []),
    (video_inference_clean, "clean", ["intensity"]),
    (video_inference_with_size, "size", ["pixel_size", "physical_unit", "min_defect_area", "pixel_threshold"]),
])
def test_every_script_is_its_modes_command_from_the_registry(script, mode, own_flags):
    shared_flags = ["model_path", "class_name", "device", "backend", "batch_size", "threshold", "roi", "onnx_path",
                    "video_path", "output_path", "display", "max_frames"]
    assert script.main.name == modes.MODES[mode].command_name == script.__name__.rsplit(".", 1)[1]
    assert [p.name for p in script.main.params] == shared_flags + own_flags
    assert [p.name for p in modes.own_parameters(mode)] == own_flags
    wrapper_flags = [p.name for p in run_video_inference.main.params]
    assert all(flag in wrapper_flags for flag in shared_flags[:8] + own_flags)  # the wrapper takes them, typed
    with pytest.raises(ValueError, match="either a renderer or a run"):
        modes.Mode("nothing", "nothing", "draws nothing")


def write_unreadable(folder: Path) -> Path:
    """A text file named like a video."""
    path = folder / "broken.mp4"
    path.write_text("not a video\n")
    return path


def write_empty(folder: Path) -> Path:
    """An MP4 container opened and closed without frames."""
    path = folder / "empty.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (SIZE, SIZE))
    writer.release()
    if not path.exists():
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize("case, needle", [
    ("unreadable video", "broken.mp4"),
    ("empty video", "empty.mp4"),
    ("missing video", "nowhere.mp4"),
    ("missing model directory", "model directory not found"),
    ("wrong class name", "mvtec_nope"),
    ("unwritable output folder", "--output_path"),
    ("output not mp4", "--output_path"),
    ("bad intensity", "--intensity"),
    ("bad threshold", "--threshold"),
    ("bad max_frames", "--max_frames"),
    ("bad pixel size", "--pixel_size"),
    ("bad unit", "--physical_unit"),
    ("bad device", "--device"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tiny_model, clip, tmp_path, capsys, case, needle):
    out_dir = tmp_path / "out"
    video, out, script, extra = str(clip), out_dir / "result.mp4", video_inference, []
    model = model_args(tiny_model)
    if case == "unreadable video":
        video = str(write_unreadable(tmp_path))
    elif case == "empty video":
        video = str(write_empty(tmp_path))
    elif case == "missing video":
        video = str(tmp_path / "nowhere.mp4")
    elif case == "missing model directory":
        model = ["--model_path", str(tmp_path / "no_models"), "--class_name", "mvtec_toy"]
    elif case == "wrong class name":
        model = ["--model_path", str(tiny_model.model_path), "--class_name", "mvtec_nope"]
    elif case == "unwritable output folder":
        blocker = out_dir / "a_file"
        blocker.parent.mkdir()
        blocker.write_text("")
        out = blocker / "result.mp4"  # a folder below a regular file cannot be created
    elif case == "output not mp4":
        out = out_dir / "result.avi"
    elif case == "bad intensity":
        script, extra = video_inference_clean, ["--intensity", "1.5"]
    elif case == "bad threshold":
        extra = ["--threshold", "2"]
    elif case == "bad max_frames":
        extra = ["--max_frames", "0"]
    elif case == "bad pixel size":
        script, extra = video_inference_with_size, ["--pixel_size", "0"]
    elif case == "bad unit":
        script, extra = video_inference_with_size, ["--physical_unit", "furlong"]
    elif case == "bad device":
        extra = ["--device", "tpu"]
    before = files_under(out_dir)
    code = script.cli([*model, "--video_path", video, "--output_path", str(out), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert files_under(out_dir) == before


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


def test_interrupt_in_cli_returns_130_and_saves_nothing(tiny_model, clip, tmp_path, monkeypatch, capsys):
    def interrupt(self, frame, result, index):
        raise KeyboardInterrupt

    monkeypatch.setattr(renderers.OverlayRenderer, "render", interrupt)
    out_dir = tmp_path / "out"
    code = video_inference.cli(model_args(tiny_model, "--video_path", str(clip), "--output_path",
                                          str(out_dir / "x.mp4")))
    assert code == 130 and files_under(out_dir) == []


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
    assert runner._runs(np.array([0, 1, 1, 0, 1], bool)) == [(1, 2), (4, 4)]


def test_heatmap_colours_use_a_fixed_score_scale():
    # JET in BGR: score 0 dark blue, 0.5 green, 1 dark red; outside [0, 1] clipped
    ends = drawing.colorize(np.array([[0.0, 0.5, 1.0, -0.2, 1.5]], np.float32))
    assert ends[0].tolist() == [[128, 0, 0], [126, 255, 130], [0, 0, 128], [128, 0, 0], [0, 0, 128]]
    low = drawing.colorize(np.full((4, 4), 0.1, np.float32))
    high = drawing.colorize(np.full((4, 4), 0.9, np.float32))
    # constant maps keep their own colour (no per-frame stretch): low scores blue, high scores red (BGR)
    assert low[0, 0, 0] > 200 and low[0, 0, 2] < 50
    assert high[0, 0, 2] > 200 and high[0, 0, 0] < 50
    mixed = drawing.colorize(np.array([[0.1, 0.9]], np.float32))
    assert (mixed[0, 0] == low[0, 0]).all() and (mixed[0, 1] == high[0, 0]).all()
    # a chosen range (the evaluation images share one): vmin dark blue, vmax dark red
    ranged = drawing.colorize(np.array([[2.0, 3.0, 4.0]]), vmin=2.0, vmax=4.0)
    assert ranged[0].tolist() == [[128, 0, 0], [126, 255, 130], [0, 0, 128]]


def test_default_output_path_and_side_paths():
    from inference import cli

    expected = Path("output/mvtec_grid/line 3_size.mp4")
    assert cli.default_output_path("mvtec_grid", "videos/line 3.mp4", "size") == expected
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
