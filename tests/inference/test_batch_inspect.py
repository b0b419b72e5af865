"""batch_inspect.py: three short videos (one corrupt) one after the other and as Ray tasks on a local Ray instance:
a summary row per video in list order, the corrupt one's one-line error in its row, the others finished."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from inference import batch_inspect
from size_analyzer import SEVERITY_LEVELS
from tests.helpers import frame_count, one_line_error, read_csv, write_scrolling_clip, write_unreadable

FRAMES = (6, 8)


@pytest.fixture(scope="module")
def videos(tiny_model, tmp_path_factory) -> Path:
    """A folder of three videos: a.mp4 (6 frames), b.mp4 (8 frames, the test image moving 3 px per frame) and
    broken.mp4 (not a video), plus a text file that is not a video."""
    folder = tmp_path_factory.mktemp("videos")
    write_scrolling_clip(tiny_model, folder / "a.mp4", FRAMES[0], 2)
    write_scrolling_clip(tiny_model, folder / "b.mp4", FRAMES[1], 3)
    write_unreadable(folder)
    (folder / "notes.txt").write_text("not a video")
    return folder


def args(tiny_model, videos: str, output: Path, *extra: str) -> list[str]:
    """The tiny model on CPU with the region threshold at 0.5 (its blob forms a region)."""
    return ["--videos", videos, "--model_path", str(tiny_model.model_path), "--class_name", tiny_model.class_name,
            "--device", "cpu", "--backend", "torch", "--threshold", "0.5", "--min_defect_area", "4",
            "--output", str(output), *extra]


def check_summary(output: Path, videos: Path) -> list[dict[str, str]]:
    """The summary's rows: a, b tracked with their frames and report, broken with its one-line error."""
    rows = read_csv(output / "summary.csv")
    assert list(rows[0]) == list(batch_inspect.SUMMARY_FIELDS)
    assert [Path(row["video"]).name for row in rows] == ["a.mp4", "b.mp4", "broken.mp4"]
    for row, frames, stem in zip(rows[:2], FRAMES, ("a", "b")):
        assert row["error"] == "" and int(row["frames"]) == frames and float(row["fps"]) > 0
        report = json.loads(Path(row["report"]).read_text())
        assert Path(row["report"]) == output / stem / f"{stem}_tracking_report.json"
        assert int(row["tracks"]) == report["totals"]["num_tracks"]
        assert int(row["defects"]) == report["totals"]["num_defects"] == len(report["defects"])
        by_level = [int(row[f"defects_{level}"]) for level in SEVERITY_LEVELS]
        assert sum(by_level) == int(row["defects"])
        assert frame_count(output / stem / f"{stem}_tracking.mp4") == frames
    assert int(rows[0]["defects"]) >= 1  # the moving blob is found
    broken = rows[2]
    assert str(videos / "broken.mp4") in broken["error"] and "\n" not in broken["error"]
    assert broken["frames"] == "" and not (output / "broken").exists()
    return rows


def test_three_videos_one_corrupt_one_after_the_other(tiny_model, videos, tmp_path, capsys):
    output = tmp_path / "out"
    assert batch_inspect.cli(args(tiny_model, str(videos), output)) == 2
    error = one_line_error(capsys)
    assert "1 of 3 videos failed" in error and "broken.mp4" in error
    check_summary(output, videos)


def test_three_videos_one_corrupt_as_ray_tasks(ray_local, tiny_model, videos, tmp_path, capsys):
    sequential = tmp_path / "sequential"
    assert batch_inspect.cli(args(tiny_model, str(videos / "*.mp4"), sequential)) == 2
    capsys.readouterr()
    output = tmp_path / "ray"
    assert batch_inspect.cli(args(tiny_model, str(videos / "*.mp4"), output, "--ray", "auto")) == 2
    assert "1 of 3 videos failed" in one_line_error(capsys)
    rows = check_summary(output, videos)
    expected = read_csv(sequential / "summary.csv")
    for name in ("video", "frames", "tracks", "defects", *(f"defects_{level}" for level in SEVERITY_LEVELS),
                 "error"):
        assert [row[name] for row in rows] == [row[name] for row in expected], name


def test_no_video_or_a_bad_model_stops_before_any_output(tiny_model, videos, tmp_path, capsys):
    output = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert batch_inspect.cli(args(tiny_model, str(empty), output)) == 2
    assert "no video files" in one_line_error(capsys)
    assert batch_inspect.cli(args(tiny_model, str(tmp_path / "missing"), output)) == 2
    assert "no such file or folder" in one_line_error(capsys)
    model = tmp_path / "model"
    shutil.copytree(tiny_model.model_path, model)
    bad = args(tiny_model, str(videos), output)
    bad[bad.index("--class_name") + 1] = "mvtec_nothing"
    assert batch_inspect.cli(bad) == 2
    assert "mvtec_nothing" in one_line_error(capsys)
    assert not output.exists()


def test_output_names_keep_videos_with_one_stem_apart():
    videos = [Path("/x/a.mp4"), Path("/y/a.mp4"), Path("/y/b.avi"), Path("/z/a.mov")]
    assert batch_inspect.output_names(videos) == ["a", "a_2", "b", "a_3"]
