"""Surface calibration: thresholds of averaged maps from a defect-free video, stored beside the checkpoint,
and the levels a tracking run takes from its flags and that file."""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import preprocess
from inference import calibrate_surface as surface_cal
from inference import tracking_run
from inference import video_inference_with_tracking as tracking_script
from inference.engine import EngineConfig, InferenceEngine, frame_shifts
from tests.helpers import files_under, frames_of, read_csv, write_scrolling_clip, write_unreadable

MODEL_LEVELS = SimpleNamespace(info=SimpleNamespace(pixel_threshold=0.7, region_low=0.6))  # what tracking reads


def stored(window: int = 30, min_frames: int = 10) -> surface_cal.SurfaceCalibration:
    """A calibration with known numbers."""
    return surface_cal.SurfaceCalibration(window, min_frames, 0.56, 0.55, 500, 0.55, 0.003, 0.559, "normal.mp4",
                                          "phase", 0.8)


def test_thresholds_are_max_or_mean_plus_four_std_and_the_99th_percentile_of_the_pixels():
    peaks = np.array([0.50, 0.52, 0.51, 0.53])
    pixels = np.linspace(0.0, 0.5, 101)  # 99th percentile: 0.495
    high, low = surface_cal.thresholds(peaks, pixels)
    # mean 0.515, population std sqrt((2 * 0.015^2 + 2 * 0.005^2) / 4) = 0.01118
    assert high == pytest.approx(0.515 + 4 * math.sqrt(1.25e-4))
    assert low == pytest.approx(0.495)
    high, low = surface_cal.thresholds(np.array([0.5] * 30 + [0.6]), pixels)  # a lone high peak: the max binds
    assert high == pytest.approx(0.6) and low == pytest.approx(0.495)
    high, low = surface_cal.thresholds(peaks, pixels + 0.2)  # never above the threshold
    assert low == high


def test_the_pixel_sample_is_a_regular_grid_of_about_the_asked_size():
    averaged = np.arange(256 * 640, dtype=np.float32).reshape(256, 640)
    sample = surface_cal.pixel_sample(averaged, 4096)
    assert 2048 <= sample.size <= 4096  # every 7th pixel: 37 x 92 rows and columns
    assert sample[0] == averaged[3, 3] and sample[1] == averaged[3, 10]
    assert surface_cal.pixel_sample(np.ones((8, 8), np.float32), 4096).size == 64


def test_a_long_recordings_pixel_sample_stays_bounded_and_equally_dense_over_its_frames():
    sample = surface_cal.PixelSample(limit=1000)
    maps = [np.full(64, float(index), np.float32) for index in range(100)]  # map i: 64 pixels of value i
    for pixels in maps:
        sample.add(pixels)
    kept = sample.values()
    assert 500 <= kept.size <= 1000 and sample.stride == 8  # 6400 pixels thinned three times
    counts = np.bincount(kept.astype(int), minlength=100)
    assert counts.min() >= 7 and counts.max() <= 9  # every map kept at the same density (64 / 8)
    every = np.concatenate(maps)
    assert abs(np.quantile(kept, 0.99) - np.quantile(every, 0.99)) <= 1.0
    short = surface_cal.PixelSample(limit=1000)
    for pixels in maps[:10]:
        short.add(pixels)
    assert np.array_equal(short.values(), np.concatenate(maps[:10]))  # under the limit: every pixel, unchanged


def test_belt_views_count_frame_lengths_along_the_main_axis_of_the_motion():
    assert surface_cal.belt_views((-600.0, 3.0), (256, 640)) == pytest.approx(1 + 600 / 640)
    assert surface_cal.belt_views((5.0, 300.0), (256, 640)) == pytest.approx(1 + 300 / 256)  # a vertical belt
    assert surface_cal.belt_views((0.0, 0.0), (256, 640)) == 1.0  # a still surface shows one view


def test_a_recording_of_too_little_belt_is_warned_about():
    short = replace(stored(), belt_views=3.3, start=1547, video="normal.mp4")
    warning = surface_cal.coverage_warning(short)
    assert "normal.mp4 showed 3.3 frame lengths" in warning and "from frame 1547" in warning
    assert f"at least {surface_cal.MIN_BELT_VIEWS} frame lengths" in warning
    assert surface_cal.coverage_warning(replace(stored(), belt_views=float(surface_cal.MIN_BELT_VIEWS))) is None
    assert surface_cal.coverage_warning(stored()) is None  # files written before the count: nothing to say


def test_calibration_round_trips_through_its_file(tmp_path):
    path = surface_cal.write(tmp_path, stored())
    assert path == tmp_path / "surface_calibration.json"
    assert json.loads(path.read_text())["calibrations"][0]["created"]
    assert surface_cal.load(tmp_path) == stored()
    assert surface_cal.load(tmp_path / "elsewhere") is None


@pytest.mark.parametrize("content, needle", [
    ("{not json", "unreadable"),
    (json.dumps({"version": 99}), "version 99"),
    (json.dumps({**stored().to_dict(), "version": 1}), "version 1"),  # the earlier low-threshold rule
    (json.dumps({**stored().to_dict(), "version": 2}), "version 2"),  # frames scored without grid shifts
    (json.dumps({k: v for k, v in stored().to_dict().items() if not k.startswith("frame_")} | {"version": 3}),
     "version 3"),  # no frame threshold
    (json.dumps({**stored().to_dict(), "frame_threshold": None}), "unreadable"),
    (json.dumps({**stored().to_dict(), "threshold": None}), "unreadable"),
    (json.dumps({**stored().to_dict(), "min_frames": 40}), "unreadable"),
    (json.dumps({k: v for k, v in stored().to_dict().items() if k != "window"}), "unreadable"),
    (json.dumps({"calibrations": [stored().to_dict(), {**stored(1, 1).to_dict(), "version": 3}]}), "version 3"),
    (json.dumps({"calibrations": "none"}), "not a calibration object"),
    (json.dumps([1, 2]), "not a calibration object"),
])
def test_a_bad_calibration_file_names_itself_and_the_fix(tmp_path, content, needle):
    (tmp_path / "surface_calibration.json").write_text(content)
    with pytest.raises(surface_cal.SurfaceCalibrationError) as err:
        surface_cal.load(tmp_path)
    assert needle in str(err.value) and "surface_calibration.json" in str(err.value)
    assert "calibrate_surface.py" in str(err.value)


def levels(folder: Path, **options) -> tuple:
    """(window, min_frames, threshold, low, source) of tracking_levels."""
    found = surface_cal.tracking_levels(MODEL_LEVELS, folder, options)
    assert found.frame_threshold == (0.8 if found.source.endswith(".json") else None)  # stored() has 0.8
    return found.window, found.min_frames, found.threshold, found.low_threshold, found.source


def test_tracking_levels_follow_the_flags_and_the_calibration(tmp_path):
    bare, calibrated = tmp_path / "bare", tmp_path / "calibrated"
    bare.mkdir()
    surface_cal.write(calibrated, stored())
    path = str(calibrated / "surface_calibration.json")
    assert levels(bare) == (1, 1, 0.7, 0.6, "model")  # no file: each frame alone, the model's levels
    assert levels(calibrated) == (30, 10, 0.56, 0.55, path)  # a file: its window and thresholds by default
    assert levels(calibrated, surface_window=1) == (1, 1, 0.7, 0.6, "model")  # switched off
    assert levels(calibrated, surface_window=30, surface_min_frames=10) == (30, 10, 0.56, 0.55, path)
    assert levels(bare, surface_window=30, pixel_threshold=0.8) == (30, 10, 0.8, 0.8, "command line")
    assert levels(calibrated, threshold=0.9) == (30, 10, 0.9, 0.9, "command line")
    single = tmp_path / "single"  # calibrated for single frames: its levels by default and with --surface_window 1
    surface_cal.write(single, stored(1, 1))
    path = str(single / "surface_calibration.json")
    assert levels(single) == (1, 1, 0.56, 0.55, path)
    assert levels(single, surface_window=1) == (1, 1, 0.56, 0.55, path)
    assert levels(single, surface_window=1, pixel_threshold=0.8) == (1, 1, 0.8, 0.8, "command line")


def test_each_window_keeps_its_own_calibration_and_the_latest_is_the_default(tmp_path, caplog):
    surface_cal.write(tmp_path, stored(30, 10))
    single = replace(stored(1, 1), threshold=0.7, low_threshold=0.65, frame_threshold=0.8)
    surface_cal.write(tmp_path, single)
    path = str(tmp_path / "surface_calibration.json")
    assert [entry.window for entry in surface_cal.load_all(tmp_path)] == [30, 1]
    assert levels(tmp_path) == (1, 1, 0.7, 0.65, path)  # the latest: single frames
    assert levels(tmp_path, surface_window=30) == (30, 10, 0.56, 0.55, path)  # window 30 kept its own
    assert levels(tmp_path, surface_window=1) == (1, 1, 0.7, 0.65, path)
    again = replace(stored(30, 10), threshold=0.6)  # calibrating window 30 again replaces its entry only
    surface_cal.write(tmp_path, again)
    assert surface_cal.load_all(tmp_path) == [single, again]
    assert levels(tmp_path) == (30, 10, 0.6, 0.55, path)
    with pytest.raises(surface_cal.SurfaceCalibrationError) as err:
        surface_cal.tracking_levels(MODEL_LEVELS, tmp_path, {"surface_window": 20})
    assert "calibrated for window 1, min frames 1, window 30, min frames 10" in str(err.value)
    # a file of one calibration, as written before windows shared the file, still reads, and gains the next
    (tmp_path / "surface_calibration.json").write_text(json.dumps(stored(30, 10).to_dict()))
    assert surface_cal.load_all(tmp_path) == [stored(30, 10)]
    surface_cal.write(tmp_path, single)
    assert surface_cal.load_all(tmp_path) == [stored(30, 10), single]
    # a file it cannot read is replaced by the new calibration, with a warning
    (tmp_path / "surface_calibration.json").write_text("{broken")
    surface_cal.write(tmp_path, single)
    assert surface_cal.load_all(tmp_path) == [single]
    assert "writing this calibration in its place" in caplog.text


@pytest.mark.parametrize("options, needle", [
    ({"surface_window": 30}, "has no surface_calibration.json"),
    ({"surface_window": 30, "stored_window": 1}, "calibrated for window 1"),
    ({"surface_window": 20}, "calibrated for window 30"),
    ({"surface_min_frames": 5}, "calibrated for window 30, min frames 10"),
    ({"surface_window": 4, "surface_min_frames": 5}, "--surface_min_frames"),
])
def test_tracking_levels_refuse_a_window_without_its_calibration(tmp_path, options, needle):
    folder = tmp_path / ("bare" if options == {"surface_window": 30} else "calibrated")
    folder.mkdir()
    if folder.name == "calibrated":
        window = options.pop("stored_window", 30)
        surface_cal.write(folder, stored(window, min(window, 10)))
    with pytest.raises(surface_cal.SurfaceCalibrationError) as err:
        surface_cal.tracking_levels(MODEL_LEVELS, folder, options)
    assert needle in str(err.value)
    assert "calibrate_surface.py" in str(err.value) or "--surface_min_frames" in str(err.value)


@pytest.fixture(scope="module")
def copied_model(tiny_model, tmp_path_factory) -> Path:
    """A copy of the tiny model's backbone folder (the calibration is written into its class folder)."""
    target = tmp_path_factory.mktemp("surface_model") / "backbone_0"
    shutil.copytree(tiny_model.model_path, target)
    return target


def test_cli_calibrates_on_a_video_and_tracking_uses_it_by_default(tiny_model, copied_model, tmp_path, capsys):
    clip = write_scrolling_clip(tiny_model, tmp_path / "normal.mp4", 12, 2)
    model = ["--model_path", str(copied_model), "--class_name", tiny_model.class_name, "--device", "cpu"]
    assert surface_cal.cli([*model, "--video_path", str(clip), "--surface_window", "4", "--surface_min_frames",
                            "2"]) == 0
    printed = capsys.readouterr().out
    assert "written" in printed
    result = surface_cal.load(copied_model / tiny_model.class_name)
    assert (result.window, result.min_frames, result.frames) == (4, 2, 11)  # frames 2..12 have averaged pixels
    # 11 steps of 2 px along the width: about 1 + 22 / width frame lengths, far too little belt, said so
    width = frames_of(clip)[0].shape[1]
    assert result.belt_views == pytest.approx(1 + 22 / width, abs=0.05)
    assert f"belt           {result.belt_views:.1f} frame lengths" in printed
    assert "warning        " in printed and "calibrate on a recording of at least" in printed
    assert result.threshold >= result.peak_max >= result.peak_mean >= result.low_threshold  # q99 below the peaks
    assert result.low_rule == "q99(pixels)" and result.version == 4
    # the frame threshold: max(max, mean + 4 std) of the frames' own image scores, as the engine scores them
    # (each frame's light compensated to the recording's level: the median of the frames' levels)
    frames = frames_of(clip)
    assert result.light_level is None  # --light off by default
    engine = InferenceEngine.from_config(EngineConfig(str(copied_model), tiny_model.class_name, "cpu",
                                                      light_level=result.light_level))
    shifts = frame_shifts(engine, 0, len(frames), (-2.0, 0.0))  # the clip scrolls 2 px/frame to the left
    scores = np.array([r.score for r in engine.predict(frames, shifts)])
    assert result.frame_threshold == pytest.approx(max(scores.max(), scores.mean() + 4 * scores.std()))
    assert result.frame_rule == "max(max,mean+4std)"
    assert 0.0 <= result.low_threshold <= result.threshold <= 1.0
    # the same video again: the same numbers (deterministic)
    assert surface_cal.cli([*model, "--video_path", str(clip), "--surface_window", "4", "--surface_min_frames",
                            "2"]) == 0
    assert surface_cal.load(copied_model / tiny_model.class_name) == result

    out = tmp_path / "run" / "tracked.mp4"
    assert tracking_script.cli([*model, "--video_path", str(clip), "--no_organized_output", "--output_path",
                                str(out), "--min_defect_area", "4"]) == 0
    settings = json.loads((tmp_path / "run" / "tracked_report.json").read_text())["settings"]
    assert (settings["surface_window"], settings["surface_min_frames"]) == (4, 2)
    assert settings["threshold"] == pytest.approx(result.threshold)
    assert settings["region_levels_from"].endswith("surface_calibration.json")
    # the frame flags follow the calibration's frame threshold
    assert settings["image_threshold"] == pytest.approx(result.frame_threshold)
    assert settings["image_threshold_from"] == settings["region_levels_from"]
    assert settings["light_level"] is None
    rows = read_csv(tmp_path / "run" / "tracked_frames.csv")
    assert [row["is_defect"] == "1" for row in rows] == [float(row["score"]) >= result.frame_threshold for row in rows]


def test_cli_calibrates_single_frames_and_tracking_cuts_them_with_it(tiny_model, copied_model, tmp_path):
    clip = write_scrolling_clip(tiny_model, tmp_path / "normal.mp4", 10, 2)
    model = ["--model_path", str(copied_model), "--class_name", tiny_model.class_name, "--device", "cpu"]
    assert surface_cal.cli([*model, "--video_path", str(clip), "--surface_window", "1"]) == 0
    result = surface_cal.load(copied_model / tiny_model.class_name)
    assert (result.window, result.min_frames, result.frames) == (1, 1, 10)  # every frame counts
    # known answer: the frames' own maps and scores, scored without grid shifts as single-frame tracking does
    engine = InferenceEngine.from_config(EngineConfig(str(copied_model), tiny_model.class_name, "cpu",
                                                      light_level=result.light_level))
    found = engine.predict(frames_of(clip))
    peaks = np.array([r.anomaly_map.max() for r in found], np.float64)
    scores = np.array([r.score for r in found], np.float64)
    assert result.threshold == pytest.approx(max(peaks.max(), peaks.mean() + 4 * peaks.std()), abs=1e-6)
    assert result.peak_max == pytest.approx(peaks.max(), abs=1e-6)
    assert result.frame_threshold == pytest.approx(max(scores.max(), scores.mean() + 4 * scores.std()), abs=1e-6)
    assert result.low_threshold <= result.threshold

    out = tmp_path / "run" / "tracked.mp4"  # no flags: single frames with the recording's levels
    assert tracking_script.cli([*model, "--video_path", str(clip), "--no_organized_output", "--output_path",
                                str(out), "--min_defect_area", "4"]) == 0
    settings = json.loads((tmp_path / "run" / "tracked_report.json").read_text())["settings"]
    assert settings["surface_window"] == 1
    assert (settings["threshold"], settings["image_threshold"]) == pytest.approx((result.threshold,
                                                                                  result.frame_threshold))
    assert settings["region_levels_from"].endswith("surface_calibration.json")
    rows = read_csv(tmp_path / "run" / "tracked_frames.csv")
    assert [row["is_defect"] == "1" for row in rows] == [float(row["score"]) >= result.frame_threshold for row in rows]
    (copied_model / tiny_model.class_name / "surface_calibration.json").unlink()


def test_with_a_roi_the_low_threshold_comes_from_the_roi_pixels_only(tiny_model, copied_model, tmp_path):
    """--roi on half the frame: the pixel sample is the ROI's (known answer through the same rule), not the
    whole map's with its zeros outside the ROI."""
    clip = write_scrolling_clip(tiny_model, tmp_path / "normal.mp4", 10, 2)
    model = ["--model_path", str(copied_model), "--class_name", tiny_model.class_name, "--device", "cpu"]
    assert surface_cal.cli([*model, "--video_path", str(clip), "--surface_window", "1", "--roi", "0,0,32,64"]) == 0
    result = surface_cal.load(copied_model / tiny_model.class_name)
    engine = InferenceEngine.from_config(EngineConfig(str(copied_model), tiny_model.class_name, "cpu",
                                                      roi=(0, 0, 32, 64), light_level=result.light_level))
    maps = [r.anomaly_map for r in engine.predict(frames_of(clip))]
    peaks = np.array([m.max() for m in maps], np.float64)
    inside = np.concatenate([surface_cal.pixel_sample(m[:, :32]) for m in maps])
    whole = np.concatenate([surface_cal.pixel_sample(m) for m in maps])
    assert result.low_threshold == pytest.approx(surface_cal.thresholds(peaks, inside)[1], abs=1e-6)
    assert surface_cal.thresholds(peaks, whole)[1] != pytest.approx(result.low_threshold, abs=1e-6)
    (copied_model / tiny_model.class_name / "surface_calibration.json").unlink()


def test_cli_calibrates_on_the_frames_from_start_on(tiny_model, copied_model, tmp_path):
    clip = write_scrolling_clip(tiny_model, tmp_path / "normal.mp4", 10, 2)
    model = ["--model_path", str(copied_model), "--class_name", tiny_model.class_name, "--device", "cpu"]
    assert surface_cal.cli([*model, "--video_path", str(clip), "--surface_window", "1", "--start", "4"]) == 0
    result = surface_cal.load(copied_model / tiny_model.class_name)
    assert (result.frames, result.start) == (6, 4)
    engine = InferenceEngine.from_config(EngineConfig(str(copied_model), tiny_model.class_name, "cpu",
                                                      light_level=result.light_level))
    scores = np.array([r.score for r in engine.predict(frames_of(clip)[4:])], np.float64)  # frames 4..9 only
    assert result.frame_threshold == pytest.approx(max(scores.max(), scores.mean() + 4 * scores.std()), abs=1e-5)
    # a file written before --start existed reads as start 0
    data = {k: v for k, v in result.to_dict().items() if k != "start"}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "surface_calibration.json").write_text(json.dumps(data))
    assert surface_cal.load(tmp_path / "old").start == 0
    (copied_model / tiny_model.class_name / "surface_calibration.json").unlink()


@pytest.mark.parametrize("case, needle", [
    ("missing video", "nothing.mp4"),
    ("unreadable video", "broken.mp4"),
    ("window of zero", "--surface_window"),
    ("start past the end", "--start 6"),
    ("min frames above the window", "--surface_min_frames"),
    ("too short a video", "longer defect-free video"),
    ("wrong class", "mvtec_nope"),
])
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(tiny_model, copied_model, tmp_path, capsys,
                                                                case, needle):
    clip = write_scrolling_clip(tiny_model, tmp_path / "normal.mp4", 6, 2)
    model = ["--model_path", str(copied_model), "--class_name", tiny_model.class_name, "--device", "cpu"]
    video, extra = str(clip), ["--surface_window", "4"]
    if case == "missing video":
        video = str(tmp_path / "nothing.mp4")
    elif case == "unreadable video":
        video = str(write_unreadable(tmp_path))
    elif case == "window of zero":
        extra = ["--surface_window", "0"]
    elif case == "start past the end":
        extra = ["--surface_window", "4", "--start", "6"]
    elif case == "min frames above the window":
        extra = ["--surface_window", "4", "--surface_min_frames", "5"]
    elif case == "too short a video":
        extra = ["--surface_window", "10", "--surface_min_frames", "6", "--max_frames", "6"]
    elif case == "wrong class":
        model[3] = "mvtec_nope"
    class_dir = copied_model / tiny_model.class_name
    (class_dir / "surface_calibration.json").unlink(missing_ok=True)
    before = files_under(class_dir)
    code = surface_cal.cli([*model, "--video_path", video, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert files_under(class_dir) == before


@pytest.mark.parametrize("extra, needle", [
    (["--surface_window", "5"], "has no surface_calibration.json"),
    (["--surface_window", "5", "--surface_min_frames", "6"], "--surface_min_frames"),
])
def test_tracking_refuses_a_window_before_it_loads_the_model(tiny_model, tmp_path, monkeypatch, capsys,
                                                               extra, needle):
    clip = write_scrolling_clip(tiny_model, tmp_path / "normal.mp4", 4, 2)

    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded before the surface settings were checked")

    monkeypatch.setattr(tracking_run.InferenceEngine, "from_config", loaded)
    monkeypatch.chdir(tmp_path)
    code = tracking_script.cli(["--model_path", str(tiny_model.model_path), "--class_name", tiny_model.class_name,
                                "--device", "cpu", "--video_path", str(clip), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "output").exists()


def test_light_compensation_undoes_a_change_of_light_and_can_be_off(tiny_model, copied_model, tmp_path):
    """Calibrated with --light compensate (tracking then compensates to the stored level), then the same frames
    under 20 % less light: compensated, their scores move by a fraction of what they move without; --light off
    (the default) stores no level and tracking then scores frames as they come."""
    clip = write_scrolling_clip(tiny_model, tmp_path / "normal.mp4", 10, 2)
    model = ["--model_path", str(copied_model), "--class_name", tiny_model.class_name, "--device", "cpu"]
    assert surface_cal.cli([*model, "--video_path", str(clip), "--surface_window", "1", "--light", "compensate"]) == 0
    level = surface_cal.load(copied_model / tiny_model.class_name).light_level
    frames = frames_of(clip)
    assert level == pytest.approx(np.median([preprocess.light_level(f) for f in frames]))  # the frames' median
    out = tmp_path / "comp" / "tracked.mp4"
    assert tracking_script.cli([*model, "--video_path", str(clip), "--no_organized_output", "--output_path",
                                str(out)]) == 0
    assert json.loads((tmp_path / "comp" / "tracked_report.json").read_text())["settings"]["light_level"] == level
    darker = [np.clip(np.rint(f * 0.8), 0, 255).astype(np.uint8) for f in frames]
    cfg = EngineConfig(str(copied_model), tiny_model.class_name, "cpu", light_level=level)
    compensated, plain = InferenceEngine.from_config(cfg), InferenceEngine.from_config(replace(cfg, light_level=None))
    as_recorded = np.array([r.score for r in compensated.predict(frames)])
    moved = np.abs(np.array([r.score for r in compensated.predict(darker)]) - as_recorded)
    moved_plain = np.abs(np.array([r.score for r in plain.predict(darker)]) -
                         np.array([r.score for r in plain.predict(frames)]))
    assert moved.mean() < 0.3 * moved_plain.mean() and moved_plain.mean() > 1e-3, (moved, moved_plain)

    assert surface_cal.cli([*model, "--video_path", str(clip), "--surface_window", "1", "--light", "off"]) == 0
    assert surface_cal.load(copied_model / tiny_model.class_name).light_level is None
    out = tmp_path / "run" / "tracked.mp4"
    assert tracking_script.cli([*model, "--video_path", str(clip), "--no_organized_output", "--output_path",
                                str(out)]) == 0
    assert json.loads((tmp_path / "run" / "tracked_report.json").read_text())["settings"]["light_level"] is None
