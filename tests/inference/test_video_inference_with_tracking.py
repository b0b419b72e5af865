"""Tracking inference script: organized output, report contents, defect frames, flat output, bad input."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import cv2
import pytest

import paths
import video_io
from inference import runner
from inference import tracking_run as tracking
from inference import video_inference_with_tracking as script
from model import load_checkpoint
from tests.helpers import files_under, write_scrolling_clip, write_unreadable

SIZE = 64
SHIFT = 2  # px per frame the surface moves to the left
N_FRAMES = 12


@pytest.fixture(scope="module")
def moving_clip(tiny_model, tmp_path_factory) -> Path:
    """12 frames of one defective test image scrolling left by 2 px per frame (one defect crossing)."""
    return write_scrolling_clip(tiny_model, tmp_path_factory.mktemp("moving") / "moving.mp4", N_FRAMES, SHIFT)


def args(tiny_model, video: Path, *extra: str) -> list[str]:
    """Flags for the tiny model on a video (CPU, threshold 0.5 so the blob forms a region)."""
    return ["--model_path", str(tiny_model.model_path), "--class_name", tiny_model.class_name, "--device", "cpu",
            "--video_path", str(video), "--threshold", "0.5", "--min_defect_area", "4", *extra]


@pytest.fixture(scope="module")
def organized_run(tiny_model, moving_clip, tmp_path_factory):
    """One default (organized) run in a fresh working directory: (cwd, exit code, stdout)."""
    cwd = tmp_path_factory.mktemp("organized")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        code = script.cli(args(tiny_model, moving_clip, "--pixel_size", "0.5", "--fabric_speed", "10"))
    return cwd, code


def test_default_run_writes_video_defect_frames_and_report_in_a_timestamped_folder(organized_run, tiny_model):
    cwd, code = organized_run
    assert code == 0
    runs = list((cwd / "output" / tiny_model.class_name).iterdir())
    assert len(runs) == 1
    run = runs[0]
    dt.datetime.strptime(run.name, tracking.TIMESTAMP_FORMAT)  # the folder is named by the run's timestamp
    assert sorted(p.name for p in run.iterdir()) == ["defects", "output-video", "report"]
    assert sorted(p.name for p in (run / "output-video").iterdir()) == [
        "moving_tracking.mp4", "moving_tracking_frames.csv", "moving_tracking_timeline.png"]
    info = video_io.probe_video(run / "output-video" / "moving_tracking.mp4", exact=True)
    assert (info.frame_count, info.width, info.height) == (N_FRAMES, SIZE, SIZE)

    report = json.loads((run / "report" / "tracking_report.json").read_text())
    tracks, defects = report["tracks"], report["defects"]
    assert len(defects) >= 1 and len(tracks) >= len(defects)
    frames = sorted((run / "defects").iterdir())
    assert len(frames) == len(defects)  # one representative frame per physical defect
    for track in tracks:
        assert 0 <= track["first_frame"] <= track["representative_frame"] <= track["last_frame"] < N_FRAMES
        assert track["duration_frames"] == track["last_frame"] - track["first_frame"] + 1
        assert track["duration_seconds"] == pytest.approx(track["duration_frames"] / 10.0)
        assert 0.5 <= track["mean_score"] <= track["max_score"] <= 1.0
        assert track["max_area_physical"] == pytest.approx(track["max_area_pixels"] * 0.25)
        x1, y1, x2, y2 = track["bbox"]
        assert 0 <= x1 < x2 <= SIZE and 0 <= y1 < y2 <= SIZE
    assert {t["defect_id"] for t in tracks if t["defect_id"] is not None} == {d["defect_id"] for d in defects}
    for defect in defects:
        members = [t for t in tracks if t["track_id"] in defect["track_ids"]]
        assert members and all(t["defect_id"] == defect["defect_id"] for t in members)
        assert defect["first_frame"] == min(t["first_frame"] for t in members)
        assert defect["last_frame"] == max(t["last_frame"] for t in members)
        assert defect["first_frame"] <= defect["representative_frame"] <= defect["last_frame"]
        assert defect["area_physical"] == pytest.approx(defect["area_px"] * 0.25)
        assert defect["area_mm2"] == pytest.approx(defect["area_physical"])
        x0, y0, x1, y1 = defect["surface_box_px"]
        assert defect["length"] == pytest.approx((x1 - x0) * 0.5) and defect["width"] == pytest.approx((y1 - y0) * 0.5)
        assert x0 <= defect["surface_centroid_px"][0] <= x1 and y0 <= defect["surface_centroid_px"][1] <= y1
        path = Path(defect["defect_frame"])
        assert path.name == f"defect_{defect['defect_id']:04d}_frame_{defect['representative_frame']:06d}.png"
        image = cv2.imread(str(cwd / path))
        assert image is not None and image.shape == (SIZE, SIZE, 3)
    totals = report["totals"]
    assert totals["num_tracks"] == len(tracks) and totals["num_defects"] == len(defects)
    assert totals["total_frames"] == N_FRAMES
    assert totals["area_unit"] == "mm^2"
    assert totals["mean_motion_px_per_frame"][0] == pytest.approx(-SHIFT, abs=0.5)
    # 2 px/frame * 0.5 mm/px * 10 fps = 10 mm/s, as --fabric_speed says
    assert totals["fabric_speed_check"]["agrees"] is True
    assert totals["mean_speed_per_second"] == pytest.approx(10.0, rel=0.2)
    assert report["settings"]["pixel_size"] == 0.5 and report["settings"]["image_threshold"] == 0.5
    assert report["settings"]["threshold"] == 0.5  # --threshold also cuts the regions unless --pixel_threshold
    assert report["settings"]["region_scale"] == "logit"  # --region_scale auto: GLASS's sigmoid
    assert report["settings"]["min_presence"] == 0.25 and totals["flicker_left_out"] >= 0
    assert report["settings"]["thin_cell_px"] == pytest.approx(8.0)  # --thin_regions image: the map's 8 px cell
    assert report["settings"]["wide_cell_px"] == pytest.approx(8.0)  # --wide_regions image, likewise
    assert all(0.25 <= defect["presence"] <= 1.0 for defect in report["defects"])
    assert len(report["flicker"]) == totals["flicker_left_out"]
    assert all(0.0 < defect["presence"] < 0.25 for defect in report["flicker"])
    # --backend auto on a CPU runs the ONNX export
    assert report["settings"]["backend"] == "onnx" and report["model"]["class_name"] == tiny_model.class_name
    perf = report["performance"]
    assert perf["frames"] == N_FRAMES and perf["measured_fps"] > 0
    assert set(perf["stage_ms_per_frame"]) == {"decode", "score", "render", "write"}
    assert set(perf["tracking_ms_per_frame"]) == {"motion", "average", "analysis", "tracking"}


def test_no_organized_output_writes_beside_output_path(tiny_model, moving_clip, tmp_path):
    out = tmp_path / "flat" / "tracked.mp4"
    assert script.cli(args(tiny_model, moving_clip, "--output_path", str(out), "--no_organized_output")) == 0
    names = sorted(p.name for p in (tmp_path / "flat").iterdir())
    assert names == ["tracked.mp4", "tracked_frames.csv", "tracked_report.json", "tracked_timeline.png"]
    report = json.loads((tmp_path / "flat" / "tracked_report.json").read_text())
    assert all(defect["defect_frame"] is None for defect in report["defects"])

    frames_dir = tmp_path / "frames"
    out2 = tmp_path / "flat2" / "tracked.mp4"
    assert script.cli(args(tiny_model, moving_clip, "--output_path", str(out2), "--no_organized_output",
                           "--save_defect_frames", "--defect_frames_dir", str(frames_dir))) == 0
    report2 = json.loads((tmp_path / "flat2" / "tracked_report.json").read_text())
    assert sorted(p.name for p in frames_dir.iterdir()) == sorted(
        Path(d["defect_frame"]).name for d in report2["defects"])
    # same input, same settings: the same tracks and defects (deterministic)
    strip = ("defect_frame",)
    assert report["tracks"] == report2["tracks"]
    assert [{k: v for k, v in d.items() if k not in strip} for d in report["defects"]] == [
        {k: v for k, v in d.items() if k not in strip} for d in report2["defects"]]


def test_organized_output_takes_the_video_name_from_output_path(tiny_model, moving_clip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    options = {"no_organized_output": False, "video_path": str(moving_clip), "output_path": "x/belt.mp4",
               "defect_frames_dir": None, "save_defect_frames": False}
    first = tracking.plan_output(options, "mvtec_toy", now)
    assert first.video == Path("output/mvtec_toy/20260102_030405/output-video/belt.mp4")
    assert first.defects_dir == Path("output/mvtec_toy/20260102_030405/defects")
    assert first.report == Path("output/mvtec_toy/20260102_030405/report/tracking_report.json")
    first.run_dir.mkdir(parents=True)
    second = tracking.plan_output(options, "mvtec_toy", now)  # same second: a folder of its own
    assert second.run_dir == Path("output/mvtec_toy/20260102_030405_1")


def test_a_run_folder_taken_meanwhile_by_another_run_gives_the_next_name(moving_clip, tmp_path, monkeypatch):
    """Two runs planned in the same second: the second to create the folder gets <timestamp>_1, whole."""
    monkeypatch.chdir(tmp_path)
    options = {"no_organized_output": False, "video_path": str(moving_clip), "output_path": None,
               "defect_frames_dir": None, "save_defect_frames": False}
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    first = tracking.plan_output(options, "mvtec_toy", now)
    second = tracking.plan_output(options, "mvtec_toy", now)  # planned before the first created its folder
    assert first == second
    created: list[Path] = []
    first, first_lock = tracking.create_output_folders(first, created)
    second, second_lock = tracking.create_output_folders(second, created)
    assert first.run_dir.name == "20260102_030405" and second.run_dir.name == "20260102_030405_1"
    assert second.video == second.run_dir / "output-video" / "moving_tracking.mp4"
    assert second.report.parent.is_dir() and second.defects_dir.is_dir() and second.video.parent.is_dir()
    assert first_lock.path.parent == first.run_dir and first_lock.path.name.startswith(".run-")
    tracking.finish_run_folder(first_lock)
    tracking.finish_run_folder(second_lock)
    paths.remove_empty_folders(created)
    assert not (tmp_path / "output").exists()


@pytest.mark.parametrize("case, needle", [
    ("unreadable video", "broken.mp4"),
    ("empty video", "empty.mp4"),
    ("missing model directory", "model directory not found"),
    ("wrong class name", "mvtec_nope"),
    ("unwritable output folder", "--output_path"),
    ("defect frames dir is a file", "--defect_frames_dir"),
    ("bad pixel size", "--pixel_size"),
    ("pixel size in px", "--pixel_size 0.1 with --physical_unit px"),
    ("bad fabric speed", "--fabric_speed"),
    ("bad motion method", "--motion_method"),
    ("bad roi", "--roi"),
    ("roi outside the frames", "--roi"),
    ("bad merge gap", "--merge_gap"),
    ("bad region height", "--region_height"),
    ("bad region scale", "--region_scale"),
    ("bad min presence", "--min_presence"),
    ("bad thin regions", "--thin_regions"),
    ("bad wide regions", "--wide_regions"),
    ("bad pixel threshold", "--pixel_threshold"),
    ("surface window without calibration", "calibrate_surface.py"),
    ("surface min frames above the window", "--surface_min_frames"),
])
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(tiny_model, moving_clip, tmp_path, monkeypatch, capsys,
                                                            case, needle):
    monkeypatch.chdir(tmp_path)
    video, extra = moving_clip, []
    model = ["--model_path", str(tiny_model.model_path), "--class_name", tiny_model.class_name]
    if case == "unreadable video":
        video = write_unreadable(tmp_path)
    elif case == "empty video":
        video = tmp_path / "empty.mp4"
        video.write_bytes(b"")
    elif case == "missing model directory":
        model = ["--model_path", str(tmp_path / "no_models"), "--class_name", "mvtec_toy"]
    elif case == "wrong class name":
        model = ["--model_path", str(tiny_model.model_path), "--class_name", "mvtec_nope"]
    elif case == "unwritable output folder":
        (tmp_path / "a_file").write_text("")
        extra = ["--no_organized_output", "--output_path", str(tmp_path / "a_file" / "out.mp4")]
    elif case == "defect frames dir is a file":
        (tmp_path / "frames").write_text("")
        extra = ["--defect_frames_dir", str(tmp_path / "frames")]
    elif case == "bad pixel size":
        extra = ["--pixel_size", "-1"]
    elif case == "pixel size in px":
        extra = ["--pixel_size", "0.1", "--physical_unit", "px"]
    elif case == "bad fabric speed":
        extra = ["--fabric_speed", "-3"]
    elif case == "bad motion method":
        extra = ["--motion_method", "psychic"]
    elif case == "bad roi":
        extra = ["--roi", "10,10,5"]
    elif case == "roi outside the frames":
        extra = ["--roi", "100,100,200,200"]  # the clip is 64x64
    elif case == "bad merge gap":
        extra = ["--merge_gap", "-2"]
    elif case == "bad region height":
        extra = ["--region_height", "1"]
    elif case == "bad region scale":
        extra = ["--region_scale", "log"]
    elif case == "bad min presence":
        extra = ["--min_presence", "1.5"]
    elif case == "bad thin regions":
        extra = ["--thin_regions", "pixels"]
    elif case == "bad wide regions":
        extra = ["--wide_regions", "edges"]
    elif case == "bad pixel threshold":
        extra = ["--pixel_threshold", "1.5"]
    elif case == "surface window without calibration":
        extra = ["--surface_window", "5"]
    elif case == "surface min frames above the window":
        extra = ["--surface_window", "5", "--surface_min_frames", "6", "--pixel_threshold", "0.9"]
    before = files_under(tmp_path)
    code = script.cli([*model, "--device", "cpu", "--video_path", str(video), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert files_under(tmp_path) == before
    assert not (tmp_path / "output").exists()  # no empty run folder either


def test_failure_mid_run_leaves_no_file_and_no_run_folder(tiny_model, moving_clip, tmp_path, monkeypatch):
    def fail(self, frame, result, index):
        if index == 5:
            raise KeyboardInterrupt
        return frame

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tracking.TrackingRenderer, "render", fail)
    assert script.cli(args(tiny_model, moving_clip)) == 130
    assert files_under(tmp_path) == [] and not (tmp_path / "output").exists()


def test_a_staging_folder_made_but_not_yet_recorded_is_removed_too(tiny_model, moving_clip, tmp_path, monkeypatch):
    """A signal between creating the defect frames' staging folder and recording it (the window inside
    PartialLock.create and its assignment) leaves no folder: cleanup removes this process's staging folders."""
    render = tracking.TrackingRenderer.render

    def interrupted(self, frame, result, index):
        if index == 5:
            video_io.PartialLock.create(self.layout.defects_dir, lambda tag: f".staging-{tag}", directory=True)
            raise KeyboardInterrupt  # as SIGTERM/Ctrl-C would, before _stage stores the lock
        return render(self, frame, result, index)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tracking.TrackingRenderer, "render", interrupted)
    assert script.cli(args(tiny_model, moving_clip)) == 130
    assert files_under(tmp_path) == [] and not (tmp_path / "output").exists()


def test_settings_are_checked_without_an_output_name_or_a_video():
    tracking.check_settings({"output_path": None, "display": False, "max_frames": None})  # nothing to refuse
    tracking.check_settings({"output_path": "runs/belt.mp4", "display": False, "max_frames": 5})
    with pytest.raises(runner.RunError, match="--output_path belt.avi"):  # the name, as it goes in the run folder
        tracking.check_settings({"output_path": "runs/belt.avi", "display": False, "max_frames": None})
    with pytest.raises(runner.RunError, match="--max_frames 0"):
        tracking.check_settings({"output_path": "runs/belt.avi", "display": False, "max_frames": 0})


def test_speed_check_compares_measured_and_expected():
    assert tracking.check_speed(10.0, None, "mm/s") is None
    good = tracking.check_speed(10.5, 10.0, "mm/s")
    assert good["agrees"] is True and good["ratio"] == pytest.approx(1.05)
    bad = tracking.check_speed(5.0, 10.0, "mm/s")
    assert bad["agrees"] is False and bad["ratio"] == pytest.approx(0.5)
    assert tracking.check_speed(0.0, 0.0, "mm/s")["agrees"] is True


def test_pixel_threshold_and_roi_reach_the_tracker(tiny_model, moving_clip, tmp_path):
    """--pixel_threshold cuts the regions (the frame decision keeps --threshold); --roi limits the map."""
    out = tmp_path / "roi" / "tracked.mp4"
    assert script.cli(args(tiny_model, moving_clip, "--output_path", str(out), "--no_organized_output",
                           "--pixel_threshold", "0.999", "--roi", "0,0,32,64")) == 0
    report = json.loads((tmp_path / "roi" / "tracked_report.json").read_text())
    assert report["settings"]["threshold"] == 0.999 and report["settings"]["image_threshold"] == 0.5
    assert report["defects"] == [] or all(d["max_score"] >= 0.999 for d in report["defects"])
    with open(tmp_path / "roi" / "tracked_frames.csv", newline="") as handle:
        assert sum(1 for _ in handle) == N_FRAMES + 1


def test_roi_is_where_the_motion_is_measured(tiny_model, moving_clip, tmp_path):
    """The moving clip above a static photo three times its height (machine parts beside a belt): with --roi
    on the belt the report's motion is the belt's, not the static part's zero."""
    import numpy as np
    from skimage import data

    static = cv2.cvtColor(cv2.resize(data.camera(), (SIZE, 3 * SIZE)), cv2.COLOR_GRAY2BGR)
    video = tmp_path / "beside.mp4"
    capture = cv2.VideoCapture(str(moving_clip))
    with video_io.AtomicVideoWriter(video, 25.0, (SIZE, 4 * SIZE)) as writer:
        ok, frame = capture.read()
        while ok:
            writer.write(np.vstack([frame, static]))
            ok, frame = capture.read()
    out = tmp_path / "beside" / "tracked.mp4"
    assert script.cli(args(tiny_model, video, "--output_path", str(out), "--no_organized_output",
                           "--roi", f"0,0,{SIZE},{SIZE}")) == 0
    report = json.loads((tmp_path / "beside" / "tracked_report.json").read_text())
    assert report["totals"]["mean_motion_px_per_frame"][0] == pytest.approx(-SHIFT, abs=0.5)


@pytest.mark.parametrize("method", ["patchcore", "padim", "draem", "ae"])
def test_tracking_runs_with_a_model_of_another_method(fitted_methods, method, tmp_path, monkeypatch):
    model = fitted_methods.tiny_model(method)
    video = write_scrolling_clip(model, tmp_path / "moving.mp4", 6, SHIFT)
    monkeypatch.chdir(tmp_path)
    code = script.cli(["--model_path", str(model.model_path), "--class_name", model.class_name, "--device", "cpu",
                       "--backend", "torch", "--video_path", str(video), "--min_defect_area", "4",
                       "--min_track_frames", "2"])
    assert code == 0
    report_path = next((tmp_path / "output" / model.class_name).glob("*/report/tracking_report.json"))
    report = json.loads(report_path.read_text())
    assert report["model"]["method"] == method and report["model"]["class_name"] == model.class_name
    assert report["settings"]["class_dir"] == str(model.class_dir) and report["settings"]["backend"] == "torch"
    # regions measured on the evidence the method squashed: DRAEM's softmax, the others' distances
    assert report["settings"]["region_scale"] == ("logit" if method == "draem" else "distance")
    assert report["performance"]["frames"] == 6 and report["totals"]["total_frames"] == 6
    # the calibrated thresholds are the checkpoint's, and the dark square is found as one defect
    calibration = load_checkpoint(next(model.class_dir.glob("ckpt_best_*.pth")))["calibration"]
    assert report["settings"]["image_threshold"] == pytest.approx(calibration["image_threshold"])
    if method in ("patchcore", "padim"):  # the pixel methods trained 2 epochs: not yet detectors
        assert report["totals"]["num_defects"] == 1


def test_averaging_shifts_only_when_averaging_and_along_the_measured_motion():
    """No grid shifts for single-frame tracking; with a surface window, one shift per frame in [0, pad_to) along
    the axis the tracker has measured the surface moving (x before any motion)."""
    from types import SimpleNamespace

    from defect_tracking import GLASSDefectTracker
    from inference.tracking_run import averaging_shifts
    from size_analyzer import DefectSizeAnalyzer

    engine = SimpleNamespace(info=SimpleNamespace(pad_to=16))
    analyzer = DefectSizeAnalyzer(0.1, "mm", 4)
    single = GLASSDefectTracker(analyzer, threshold=0.5, motion_method=None)
    assert averaging_shifts(engine, single) is None
    averaging = GLASSDefectTracker(analyzer, threshold=0.5, motion_method=None, surface_window=4)
    shifts = averaging_shifts(engine, averaging)(8, 5)
    assert len(shifts) == 5 and {s.axis for s in shifts} == {1} and all(0 <= s.offset < 16 for s in shifts)
    averaging.tracker._offset[:] = (2.0, -30.0)  # the surface has moved up
    assert {s.axis for s in averaging_shifts(engine, averaging)(8, 5)} == {0}


def test_model_settings_are_the_tracking_commands_defaults(tiny_model):
    """The tracker's model-derived settings: GLASS's logit scale, the map's cell in frame pixels (8 px at the
    training scale, 16 px in frames twice as large) for thin and wide regions, the engine's surface edges;
    --thin_regions map / --wide_regions map: none."""
    from inference.engine import EngineConfig, InferenceEngine, surface_edges

    engine = InferenceEngine.from_config(EngineConfig(str(tiny_model.model_path), tiny_model.class_name,
                                                      device="cpu"))
    settings = tracking.model_settings(engine, (128, 256))
    assert settings["region_scale"] == "logit"
    assert settings["thin_cell_px"] == pytest.approx(2 * engine.cell_px((SIZE, SIZE))) == pytest.approx(16.0)
    assert settings["wide_cell_px"] == settings["thin_cell_px"]
    assert {key: settings[key] for key in ("surface_view", "surface_margin")} == surface_edges(engine, (128, 256))
    plain = tracking.model_settings(engine, (SIZE, SIZE), "linear", "map", "map")
    assert plain["region_scale"] == "linear" and plain["thin_cell_px"] is None and plain["wide_cell_px"] is None
    assert tracking.model_settings(engine, (SIZE, SIZE), "auto", "map")["wide_cell_px"] == pytest.approx(8.0)
    assert set(plain) == set(settings) == {"region_scale", "thin_cell_px", "wide_cell_px", "surface_view",
                                           "surface_margin"}


def test_a_flagged_frame_makes_no_region_below_the_pixel_threshold(tmp_path):
    """The frame's image verdict is drawn, but regions are seeded at the pixel threshold alone: a flagged frame
    whose map peaks between the low and the pixel threshold adds no track; a peak at the pixel threshold does."""
    import types

    import numpy as np

    from defect_tracking import GLASSDefectTracker
    from inference.engine import FrameResult
    from size_analyzer import DefectSizeAnalyzer

    tracker = GLASSDefectTracker(DefectSizeAnalyzer(1.0, "mm"), threshold=0.9, low_threshold=0.5,
                                 motion_method=None, min_hits=1)
    layout = tracking.TrackingOutput(tmp_path / "v.mp4", None, tmp_path / "r.json")
    renderer = tracking.TrackingRenderer(tracker, types.SimpleNamespace(threshold=0.5), layout, {})
    frame = np.full((48, 80, 3), 128, np.uint8)
    amap = np.zeros((48, 80), np.float32)
    amap[16:28, 30:44] = 0.8  # above the low threshold, below the pixel threshold
    for index in range(3):
        canvas = renderer.render(frame, FrameResult(0.99, amap, True), index)
        assert canvas.shape == frame.shape
    assert tracker.num_tracks == 0
    amap[22, 36] = 0.95  # one pixel at the pixel threshold seeds the whole area
    for index in range(3, 6):
        renderer.render(frame, FrameResult(0.99, amap, True), index)
    assert tracker.num_tracks == 1
