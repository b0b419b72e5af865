"""Scoring a tracking report against conveyor ground truth: matching, statuses, areas, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference import evaluate_tracking as ev
from preprocessing import create_conveyor_video as conveyor

PIXEL_MM = 0.2  # 400 px = 16 mm^2
FRAMES = 200


def truth_defect(defect_id: int, box: list[int], frames: tuple[int, int], area: int = 400,
                 defect_type: str = "hole") -> dict:
    """A ground-truth defect entry as create_conveyor_video writes it (strip coordinates)."""
    x1, y1, x2, y2 = box
    return {"defect_id": defect_id, "defect_type": defect_type, "area_pixels": area, "box": box,
            "centroid": [(x1 + x2) / 2, (y1 + y2) / 2], "placement": "interior", "group": defect_id - 1,
            "first_visible_frame": frames[0], "last_visible_frame": frames[1],
            "first_full_frame": frames[0] + 3, "last_full_frame": frames[1] - 3}


def sidecar(defects: list[dict], offset: int = 0) -> dict:
    """A conveyor sidecar around hand-made defects (frame lists without visible parts)."""
    frames = [{"index": i, "offset": offset + 4 * i, "defects": []} for i in range(FRAMES)]
    return {"video": "belt.mp4", "fps": 25.0, "width": 160, "height": 64, "num_frames": FRAMES,
            "speed_px_per_frame": 4, "direction": "right_to_left", "motion_px_per_frame": [-4.0, 0.0],
            "strip": {"width": 960, "height": 64}, "settings": {}, "frames": frames, "defects": defects}


def reported(defect_id: int, box: list[float], frames: tuple[int, int], area: float = 400.0) -> dict:
    """A reported defect entry in the tracking report's schema (surface = frame-0 coordinates)."""
    x1, y1, x2, y2 = box
    return {"defect_id": defect_id, "track_ids": [defect_id], "first_frame": frames[0], "last_frame": frames[1],
            "max_score": 0.9, "representative_frame": frames[0] + 5, "surface_box_px": box,
            "surface_centroid_px": [(x1 + x2) / 2, (y1 + y2) / 2], "area_px": area,
            "area_physical": area * PIXEL_MM ** 2, "area_mm2": area * PIXEL_MM ** 2, "length": 4.0, "width": 4.0,
            "along": 1.0, "across": 1.0}


def report(defects: list[dict], pixel_size: float = PIXEL_MM, unit: str = "mm", total_frames: int = FRAMES) -> dict:
    """A tracking report around hand-made reported defects."""
    return {"video": "test-video/belt.mp4", "settings": {"pixel_size": pixel_size, "physical_unit": unit},
            "totals": {"total_frames": total_frames, "num_tracks": len(defects)}, "tracks": [], "defects": defects}


def run(tmp_path: Path, capsys, rep: dict, truth: dict, *flags: str) -> tuple[dict, str]:
    """Runs the CLI on the two dicts; returns the --json numbers and stdout."""
    (tmp_path / "report.json").write_text(json.dumps(rep))
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    out = tmp_path / "numbers.json"
    code = ev.cli([str(tmp_path / "report.json"), str(tmp_path / "truth.json"), "--json", str(out), *flags])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(out.read_text()), captured.out


def statuses(numbers: dict) -> dict[int, str]:
    """Ground-truth id -> status."""
    return {d["defect_id"]: d["status"] for d in numbers["defects"]}


A = truth_defect(1, [200, 10, 220, 30], (10, 50))
B = truth_defect(2, [400, 30, 420, 50], (60, 100), defect_type="stain")


def test_perfect_report_finds_every_defect_once(tmp_path, capsys):
    rep = report([reported(1, [200, 10, 220, 30], (11, 49)), reported(2, [401, 31, 421, 51], (60, 100))])
    numbers, out = run(tmp_path, capsys, rep, sidecar([A, B]))
    summary = numbers["summary"]
    assert statuses(numbers) == {1: "found once", 2: "found once"}
    assert (summary["found_once"], summary["missed"], summary["split"], summary["merged"],
            summary["false_tracks"]) == (2, 0, 0, 0, 0)
    assert summary["accepted"] and summary["mean_abs_area_error_percent"] == 0.0
    assert [d["report_ids"] for d in numbers["defects"]] == [[1], [2]]
    assert "found once 2/2" in out and "acceptance     PASS" in out
    assert not list(tmp_path.glob(".numbers.json.*"))  # written through a temp file, nothing left over


def test_two_reports_on_one_defect_are_a_split(tmp_path, capsys):
    rep = report([reported(1, [200, 10, 210, 30], (10, 30), 180.0), reported(2, [210, 10, 220, 30], (25, 50), 200.0)])
    numbers, out = run(tmp_path, capsys, rep, sidecar([A]))
    assert statuses(numbers) == {1: "split"}
    assert numbers["summary"]["split"] == 1 and not numbers["summary"]["accepted"]
    assert numbers["defects"][0]["report_ids"] == [1, 2]
    assert numbers["defects"][0]["area_error_percent"] == pytest.approx(-5.0)  # (180 + 200) / 400 - 1
    assert "FAIL (1 split)" in out


def test_one_report_over_two_defects_is_a_merge(tmp_path, capsys):
    near = truth_defect(2, [235, 10, 255, 30], (14, 54))
    rep = report([reported(1, [200, 10, 255, 30], (10, 54), 800.0)])
    numbers, out = run(tmp_path, capsys, rep, sidecar([A, near]))
    assert statuses(numbers) == {1: "merged", 2: "merged"}
    assert numbers["summary"]["merged"] == 2 and numbers["summary"]["found_once"] == 0
    assert all(d["area_error_percent"] is None for d in numbers["defects"])  # no area error for a merge
    assert not numbers["summary"]["accepted"] and "2 merged" in out


def test_unreported_defect_is_missed(tmp_path, capsys):
    numbers, out = run(tmp_path, capsys, report([reported(1, [200, 10, 220, 30], (10, 50))]), sidecar([A, B]))
    assert statuses(numbers) == {1: "found once", 2: "missed"}
    assert numbers["summary"]["missed"] == 1 and numbers["summary"]["failures"] == ["1 missed"]
    assert numbers["defects"][1]["report_ids"] == [] and "missed 1" in out


def test_reports_away_from_every_defect_are_false_tracks(tmp_path, capsys):
    perfect = [reported(1, [200, 10, 220, 30], (10, 50)), reported(2, [400, 30, 420, 50], (60, 100))]
    numbers, out = run(tmp_path, capsys, report([*perfect, reported(7, [300, 5, 310, 15], (120, 130))]),
                       sidecar([A, B]))
    assert numbers["summary"]["false_tracks"] == 1 and numbers["summary"]["false_track_ids"] == [7]
    assert numbers["summary"]["accepted"]  # one false track is allowed
    assert "false track 7: frames 120-130" in out
    two = [*perfect, reported(7, [300, 5, 310, 15], (120, 130)), reported(8, [600, 5, 610, 15], (150, 160))]
    numbers, _ = run(tmp_path, capsys, report(two), sidecar([A, B]))
    assert numbers["summary"]["false_track_ids"] == [7, 8] and numbers["summary"]["failures"] == ["2 false tracks"]


def test_report_at_the_right_time_but_far_away_is_false_and_the_defect_missed(tmp_path, capsys):
    numbers, _ = run(tmp_path, capsys, report([reported(1, [300, 10, 320, 30], (10, 50))]), sidecar([A]))
    assert statuses(numbers) == {1: "missed"} and numbers["summary"]["false_track_ids"] == [1]


def test_report_at_the_right_place_but_another_time_does_not_match(tmp_path, capsys):
    numbers, _ = run(tmp_path, capsys, report([reported(1, [200, 10, 220, 30], (51, 80))]), sidecar([A]))
    assert statuses(numbers) == {1: "missed"} and numbers["summary"]["false_track_ids"] == [1]


def test_tolerance_grows_the_truth_box(tmp_path, capsys):
    off = report([reported(1, [230, 10, 250, 30], (10, 50))])  # 10 px past the truth box's right edge
    numbers, _ = run(tmp_path, capsys, off, sidecar([A]), "--tolerance_px", "12")
    assert statuses(numbers) == {1: "found once"} and numbers["settings"]["tolerance_px"] == 12.0
    numbers, _ = run(tmp_path, capsys, off, sidecar([A]), "--tolerance_px", "4")
    assert statuses(numbers) == {1: "missed"} and numbers["summary"]["false_tracks"] == 1
    below = report([reported(1, [200, 41, 220, 60], (10, 50))])  # 11 px below (y2 = 30 exclusive)
    assert statuses(run(tmp_path, capsys, below, sidecar([A]))[0]) == {1: "found once"}
    assert statuses(run(tmp_path, capsys, below, sidecar([A]), "--tolerance_px", "11")[0]) == {1: "missed"}


def test_small_defects_are_below_size_neither_missed_nor_making_false_tracks(tmp_path, capsys):
    small = truth_defect(2, [400, 30, 410, 40], (60, 100), area=50)  # 2 mm^2
    seen = truth_defect(3, [600, 30, 610, 40], (110, 150), area=50)
    rep = report([reported(1, [200, 10, 220, 30], (10, 50)), reported(9, [600, 30, 610, 40], (110, 150), 50.0)])
    numbers, out = run(tmp_path, capsys, rep, sidecar([A, small, seen]))
    assert statuses(numbers) == {1: "found once", 2: "below size", 3: "below size"}
    summary = numbers["summary"]
    assert (summary["considered"], summary["below_size"], summary["missed"], summary["false_tracks"]) == (1, 2, 0, 0)
    assert summary["accepted"] and "2 below 5 mm^2" in out
    assert numbers["defects"][2]["report_ids"] == [9]
    numbers, _ = run(tmp_path, capsys, rep, sidecar([A, small, seen]), "--min_area_mm2", "1")
    assert statuses(numbers) == {1: "found once", 2: "missed", 3: "found once"}
    numbers, _ = run(tmp_path, capsys, rep, sidecar([A, small, seen]), "--min_area_mm2", "20")  # A is 16 mm^2
    assert set(statuses(numbers).values()) == {"below size"} and numbers["summary"]["accepted"]


def test_area_errors_and_their_limit(tmp_path, capsys):
    rep = report([reported(1, [200, 10, 220, 30], (10, 50), 480.0), reported(2, [400, 30, 420, 50], (60, 100), 360.0)])
    numbers, out = run(tmp_path, capsys, rep, sidecar([A, B]))
    assert [d["area_error_percent"] for d in numbers["defects"]] == pytest.approx([20.0, -10.0])
    assert numbers["summary"]["mean_abs_area_error_percent"] == pytest.approx(15.0)
    assert numbers["summary"]["accepted"] and "+20.0" in out and "-10.0" in out and "15.0 %" in out
    rep["defects"][0]["area_px"] = 520.0  # +30 %
    numbers, out = run(tmp_path, capsys, rep, sidecar([A, B]))
    assert numbers["summary"]["failures"] == ["defect 1 area +30.0 %"] and "FAIL" in out


@pytest.mark.parametrize("pixel_size,unit", [(0.02, "cm"), (0.2 / 25.4, "inch"), (0.2, "mm")])
def test_pixel_size_unit_is_converted_to_mm(tmp_path, capsys, pixel_size, unit):
    rep = report([reported(1, [200, 10, 220, 30], (10, 50))], pixel_size=pixel_size, unit=unit)
    numbers, _ = run(tmp_path, capsys, rep, sidecar([A]), "--min_area_mm2", "15")
    assert numbers["defects"][0]["area_mm2"] == pytest.approx(16.0)  # 400 px of 0.2 mm
    assert numbers["settings"]["mm_per_pixel"] == pytest.approx(0.2)
    assert statuses(numbers) == {1: "found once"}
    numbers, _ = run(tmp_path, capsys, rep, sidecar([A]), "--min_area_mm2", "16")  # on the limit, round-off aside
    assert statuses(numbers) == {1: "found once"}
    numbers, _ = run(tmp_path, capsys, rep, sidecar([A]), "--min_area_mm2", "17")
    assert statuses(numbers) == {1: "below size"}


def test_truth_boxes_move_to_frame_zero_coordinates(tmp_path, capsys):
    rep = report([reported(1, [160, 10, 180, 30], (10, 50))])  # A's strip box less the first frame's offset 40
    numbers, _ = run(tmp_path, capsys, rep, sidecar([A], offset=40))
    assert statuses(numbers) == {1: "found once"}


def test_defects_after_a_shorter_run_are_left_out(tmp_path, capsys):
    rep = report([reported(1, [200, 10, 220, 30], (10, 50))], total_frames=55)
    numbers, out = run(tmp_path, capsys, rep, sidecar([A, B]))
    assert statuses(numbers) == {1: "found once"} and numbers["summary"]["left_out_after_report"] == 1
    assert numbers["summary"]["accepted"] and "1 after the report's last frame left out" in out


def test_match_matrix_is_reports_by_truths():
    gt = [ev.TruthDefect(1, "hole", "interior", 400, (0, 0, 10, 10), 0, 9),
          ev.TruthDefect(2, "hole", "interior", 400, (50, 0, 60, 10), 5, 20)]
    rp = [ev.ReportedDefect(1, (1,), (2, 2, 8, 8), 3, 4, 30.0), ev.ReportedDefect(2, (2,), (0, 0, 60, 10), 8, 9, 9.0),
          ev.ReportedDefect(3, (3,), (100, 0, 110, 10), 0, 30, 1.0)]
    matrix = ev.match_matrix(rp, gt, 0)
    assert matrix.shape == (3, 2) and matrix.tolist() == [[True, False], [True, True], [False, False]]
    assert ev.match_matrix([], gt, 12).shape == (0, 2) and ev.match_matrix(rp, [], 12).shape == (3, 0)
    assert ev.match_matrix(rp[:1], gt[:1], 0).dtype == np.bool_


def test_real_conveyor_sidecar_is_read(tmp_path, capsys):
    cfg = conveyor.ConveyorConfig(texture="brick", width=96, height=64, speed=8, defects=2, seed=0)
    data = conveyor.create_conveyor_video(tmp_path / "belt.mp4", cfg)
    truth = ev.read_ground_truth(tmp_path / "belt.mp4.json")
    assert [t.defect_id for t in truth.defects] == [1, 2] and truth.num_frames == data["num_frames"]
    for t, d in zip(truth.defects, data["defects"]):
        assert t.box == tuple(float(v) for v in d["box"]) and t.area_pixels == d["area_pixels"]
        assert (t.first_frame, t.last_frame) == (d["first_visible_frame"], d["last_visible_frame"])
    # a report that saw each defect a little late, 3 px off and 10 % large: every defect found once
    rep = report([reported(d["defect_id"], [v + 3 for v in d["box"]], (d["first_visible_frame"] + 2,
                                                                         d["last_visible_frame"] - 2),
                           1.1 * d["area_pixels"]) for d in data["defects"]],
                 pixel_size=1.0, total_frames=data["num_frames"])
    (tmp_path / "report.json").write_text(json.dumps(rep))
    assert ev.cli([str(tmp_path / "report.json"), str(tmp_path / "belt.mp4.json")]) == 0
    out = capsys.readouterr().out
    assert "found once 2/2" in out and "acceptance     PASS" in out


def _bad(tmp_path: Path, capsys, report_text: str | None, truth_text: str | None) -> str:
    """Runs the CLI on raw file contents (None: no file); asserts exit 2 with one line, returns it."""
    paths = []
    for name, text in (("report.json", report_text), ("truth.json", truth_text)):
        path = tmp_path / name
        path.unlink(missing_ok=True)
        if text is not None:
            path.write_text(text)
        paths.append(str(path))
    code = ev.cli([*paths, "--json", str(tmp_path / "numbers.json")])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err and not (tmp_path / "numbers.json").exists()
    return lines[0]


GOOD_REPORT = json.dumps(report([reported(1, [200, 10, 220, 30], (10, 50))]))
GOOD_TRUTH = json.dumps(sidecar([A]))


def test_bad_input_ends_with_one_line(tmp_path, capsys):
    line = _bad(tmp_path, capsys, None, GOOD_TRUTH)
    assert "report.json: no such file" in line and "video_inference_with_tracking.py" in line
    line = _bad(tmp_path, capsys, GOOD_REPORT, None)
    assert "truth.json: no such file" in line and "create_conveyor_video.py" in line
    assert "report.json: not JSON" in _bad(tmp_path, capsys, "{not json", GOOD_TRUTH)
    assert "truth.json: not a JSON object" in _bad(tmp_path, capsys, GOOD_REPORT, "[1, 2]")
    older = json.dumps({"settings": {"pixel_size": 0.1, "physical_unit": "mm"}, "tracks": [{"track_id": 1}]})
    line = _bad(tmp_path, capsys, older, GOOD_TRUTH)
    assert "report.json: no 'defects' list (an older report" in line and "re-run" in line
    frames_only = json.dumps({"video": "v.mp4", "fps": 25.0, "frames": [{"index": 0, "label": "good"}]})
    line = _bad(tmp_path, capsys, GOOD_REPORT, frames_only)
    assert "truth.json: no per-defect ground truth" in line and "create_conveyor_video.py" in line
    no_size = json.dumps({**json.loads(GOOD_REPORT), "settings": {}})
    assert "'pixel_size' must be a number" in _bad(tmp_path, capsys, no_size, GOOD_TRUTH)
    furlong = json.dumps(report([], unit="furlong"))
    assert "physical_unit in" in _bad(tmp_path, capsys, furlong, GOOD_TRUTH)
    pixels = json.dumps(report([], pixel_size=1.0, unit="px"))
    assert "--pixel_size P --physical_unit mm" in _bad(tmp_path, capsys, pixels, GOOD_TRUTH)
    bad_box = json.dumps(report([{**reported(1, [0, 0, 1, 1], (0, 1)), "surface_box_px": [0, 0, 1]}]))
    assert "defects[0]: 'surface_box_px' must be [x1, y1, x2, y2]" in _bad(tmp_path, capsys, bad_box, GOOD_TRUTH)
    bad_tracks = json.dumps(report([{**reported(1, [0, 0, 1, 1], (0, 1)), "track_ids": ["a"]}]))
    assert "'track_ids' must be a list of integers" in _bad(tmp_path, capsys, bad_tracks, GOOD_TRUTH)
    empty = json.dumps(sidecar([truth_defect(1, [200, 10, 220, 30], (10, 50), area=0)]))
    assert "defects[0]: 'area_pixels' must be positive" in _bad(tmp_path, capsys, GOOD_REPORT, empty)
    no_area = json.dumps(report([{k: v for k, v in reported(1, [0, 0, 1, 1], (0, 1)).items() if k != "area_px"}]))
    assert "'area_px' must be a number" in _bad(tmp_path, capsys, no_area, GOOD_TRUTH)


def test_bad_flag_ends_with_one_line(tmp_path, capsys):
    (tmp_path / "report.json").write_text(GOOD_REPORT)
    (tmp_path / "truth.json").write_text(GOOD_TRUTH)
    code = ev.cli([str(tmp_path / "report.json"), str(tmp_path / "truth.json"), "--tolerance_px", "-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--tolerance_px" in err[0]
