"""inference/run_video_inference.py: the one wrapper over every mode (default output, flag checks, as a script)."""
from __future__ import annotations

import json
import subprocess
import sys

import video_io
from inference import run_video_inference
from tests.helpers import CLIP_SIZE as SIZE
from tests.helpers import REPO, files_under, frame_count, model_args, read_csv


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


def test_wrapper_runs_tracking_with_its_own_flags(tiny_model, clip, tmp_path, capsys):
    out = tmp_path / "t.mp4"
    code = run_video_inference.cli([str(clip), str(out), *model_args(tiny_model), "--mode", "tracking",
                                    "--no_organized_output", "--max_frames", "6", "--pixel_size", "0.1",
                                    "--merge_gap", "1.5"])
    assert code == 0 and frame_count(out) == 6
    report = json.loads(out.with_name("t_report.json").read_text())
    assert report["settings"]["pixel_size"] == 0.1 and report["settings"]["merge_gap_mm"] == 1.5
    assert len(read_csv(out.with_name("t_frames.csv"))) == 6
    capsys.readouterr()
    code = run_video_inference.cli([str(clip), str(out), *model_args(tiny_model), "--mode", "size",
                                    "--merge_gap", "1.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--merge_gap applies to --mode tracking" in err[0]


def test_wrapper_tracking_without_output_writes_its_own_run_folder(tiny_model, clip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = run_video_inference.cli([str(clip), *model_args(tiny_model), "--mode", "tracking", "--max_frames", "3"])
    assert code == 0
    runs = list((tmp_path / "output" / tiny_model.class_name).iterdir())  # output/<class>/<timestamp>/
    assert len(runs) == 1
    report = json.loads((runs[0] / "report" / "tracking_report.json").read_text())
    assert isinstance(report["defects"], list) and frame_count(runs[0] / "output-video" / "clip_tracking.mp4") == 3
