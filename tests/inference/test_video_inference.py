"""The video scripts (video_inference*.py) end to end: video, per-frame CSV, timeline, sidecar truth, threshold."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import pytest

import video_io
from inference import video_inference, video_inference_clean, video_inference_sidebyside, video_inference_with_size
from size_analyzer import CSV_COLUMNS
from tests.helpers import CLIP_FRAMES as N_FRAMES, CLIP_SIZE as SIZE, CLIP_SOURCES as SOURCES
from tests.helpers import files_under, model_args, read_csv


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
