"""benchmarks/defect_response.py: how strongly a model's map answers each painted defect, and the verdict."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import defect_response as response


def test_peaks_inside_the_box_and_away_from_every_widened_box():
    amap = np.zeros((40, 60), np.float32)
    amap[10, 10] = 0.9  # inside the defect's box
    amap[12, 25] = 0.8  # inside another defect's box widened by 4
    amap[30, 50] = 0.3  # defect-free surface
    inside, outside = response.peaks(amap, (8, 8, 14, 14), [(8, 8, 14, 14), (27, 14, 32, 20)], margin=4)
    assert (inside, outside) == (pytest.approx(0.9), pytest.approx(0.3))
    assert np.isnan(response.peaks(amap, (0, 0, 60, 40), [(0, 0, 60, 40)], margin=0)[1])  # nothing left outside


def test_sample_frames_spread_over_the_frames_showing_the_defect_whole():
    boxes = [{1: (0, 0, 2, 2)} if 3 <= index <= 20 else {} for index in range(25)]
    defect = {"defect_id": 1, "first_full_frame": 5, "last_full_frame": 15}
    assert response.sample_frames(defect, boxes, 3) == [5, 10, 15]
    assert response.sample_frames(defect, boxes, 50) == list(range(5, 16))  # never more than there are
    partial = {"defect_id": 1, "first_full_frame": None, "last_full_frame": None}  # never whole: any showing it
    assert response.sample_frames(partial, boxes, 2) == [3, 20]
    assert response.sample_frames({"defect_id": 2}, boxes, 3) == []


@pytest.mark.parametrize(("inside", "outside", "verdict"), [
    ([0.80, 0.75, 0.90], [0.6, 0.6, 0.6], "above threshold"),
    ([0.65, 0.66, 0.70], [0.6, 0.6, 0.6], "below threshold"),
    ([0.58, 0.61, 0.59], [0.6, 0.6, 0.6], "not above the surface"),
    ([0.80, 0.81, 0.79], [0.85, 0.8, 0.9], "not above the surface"),  # above a threshold the surface exceeds too
])
def test_verdict_against_the_threshold_and_the_surface(inside, outside, verdict):
    result = response.Response(1, "scratch", 5.0, np.array(inside), np.array(outside))
    assert result.verdict(threshold=0.72) == verdict


def test_table_notes_a_threshold_the_surface_exceeds():
    responses = [response.Response(1, "hole", 5.0, np.array([0.9]), np.array([0.6])),
                 response.Response(2, "scratch", 5.0, np.array([0.7]), np.array([0.75, 0.8, 0.7]))]
    assert "note" not in response.table(responses, threshold=0.8)
    rows = response.table(responses, threshold=0.74).splitlines()
    assert rows[1].endswith("above threshold") and rows[2].endswith("not above the surface")
    assert rows[3].startswith("note:") and "beside defects 2:" in rows[3] and "calibrate_surface.py" in rows[3]


def test_one_row_per_painted_defect_on_a_conveyor(belt, tiny_model, capsys, tmp_path):
    """On 96x64 frames (smaller than a picture tile): one row per defect, and a picture of two tiles."""
    code = response.cli([str(belt), "--model_path", str(tiny_model.model_path), "--class_name",
                         tiny_model.class_name, "--device", "cpu", "--samples", "3",
                         "--picture", str(tmp_path / "tiles.png")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("region threshold ")
    lines = out.strip().splitlines()
    assert lines[-1] == f"picture {tmp_path / 'tiles.png'}"
    rows = [line for line in lines[2:-1] if not line.startswith("note:")]  # the tiny model's threshold may note
    assert [row.split()[0] for row in rows] == ["1", "2"]  # the belt's two defects, in order
    for row in rows:
        assert row.endswith(("above threshold", "below threshold", "not above the surface")), row
        peak = float(row.split()[3])
        assert 0.0 <= peak <= 1.0
    assert cv2.imread(str(tmp_path / "tiles.png")).shape == (512, 2 * 256, 3)


def test_a_video_without_ground_truth_is_one_line_and_exit_2(tmp_path, tiny_model, capsys):
    code = response.cli([str(tmp_path / "none.mp4"), "--model_path", str(tiny_model.model_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "none.mp4.json" in err and "create_conveyor_video.py" in err


def edited_copy(belt: Path, folder: Path, edit: Callable[[dict], object]) -> Path:
    """The belt video copied into folder with its ground truth changed by edit (the shared belt stays as it is)."""
    video = folder / belt.name
    shutil.copy(belt, video)
    truth = json.loads(belt.with_name(belt.name + ".json").read_text())
    edit(truth)
    video.with_name(video.name + ".json").write_text(json.dumps(truth))
    return video


def test_a_sidecar_without_areas_or_types_still_gives_rows(belt, tiny_model, capsys, tmp_path):
    """Ground truth from elsewhere may lack area_pixels and defect_type: the row says nan and 'defect'."""
    def strip(truth: dict) -> None:
        for defect in truth["defects"]:
            defect.pop("area_pixels"), defect.pop("defect_type")

    video = edited_copy(belt, tmp_path, strip)
    code = response.cli([str(video), "--model_path", str(tiny_model.model_path), "--class_name",
                         tiny_model.class_name, "--device", "cpu", "--samples", "2"])
    rows = [line for line in capsys.readouterr().out.strip().splitlines()[2:] if not line.startswith("note:")]
    assert code == 0
    assert [row.split()[:3] for row in rows] == [["1", "defect", "nan"], ["2", "defect", "nan"]]


@pytest.mark.parametrize(("broken", "named"), [
    (lambda truth: truth["defects"][0].pop("defect_id"), "defect #0 has no defect_id"),
    (lambda truth: next(f for f in truth["frames"] if f["defects"])["defects"][0].pop("box"), "without defect_id"),
])
def test_a_sidecar_without_ids_or_boxes_is_one_line_and_exit_2(belt, tiny_model, capsys, tmp_path, broken, named):
    video = edited_copy(belt, tmp_path, broken)
    code = response.cli([str(video), "--model_path", str(tiny_model.model_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and named in err


def test_picture_tiles_frame_over_map_per_defect(tmp_path):
    """One 256x512 tile per defect, up to four a row; the frame crop on top shows the frame's pixels, and a
    map above the threshold comes out red (JET's top) below it."""
    frame = np.full((100, 300, 3), 90, np.uint8)
    amap = np.zeros((100, 300), np.float32)
    amap[40:60, 140:160] = 1.0
    view = (frame, amap, (140, 40, 160, 60))
    responses = [response.Response(i, "hole", 4.0, np.array([1.0]), np.array([0.2]), view) for i in range(1, 6)]
    out = tmp_path / "tiles.png"
    response.picture(responses, 0.7, out)
    image = cv2.imread(str(out))
    assert image.shape == (2 * 512, 4 * 256, 3)  # five tiles: two rows of four, the last three blank
    first = image[:512, :256]
    assert tuple(first[100, 10]) == (90, 90, 90)  # frame pixels (the crop is 128 px, shown at 2x)
    centre = first[256 + 2 * (50 - 0), 2 * (150 - 86)]  # map crop: left 86 (centred on x 150), top 0
    assert centre[2] > 100 and centre[0] < 50  # red: far above the threshold
    assert not image[512:, 256:].any()  # blank tiles
    with pytest.raises(response.video_io.VideoError, match="--picture"):
        response.picture(responses, 0.7, tmp_path / "tiles.txt")


def test_a_tile_outlines_the_regions_as_cut_from_the_map_and_as_measured():
    """Yellow: the region as the map cuts it; green: as tracking measures it (here a thin line inside it)."""
    frame = np.full((128, 128, 3), 100, np.uint8)
    amap = np.zeros((128, 128), np.float32)
    cut = np.zeros_like(amap)
    cut[50:70, 20:100] = 0.9
    measured = np.zeros_like(amap)
    measured[59:62, 24:96] = 0.9
    result = response.Response(1, "scratch", 5.0, np.array([0.9]), np.array([0.5]),
                               (frame, amap, (20, 50, 100, 70)), (cut, measured))
    image = response.tile(result, threshold=0.7)[:256]  # the frame's half, shown at twice the size
    yellow = np.all(image == response.YELLOW, axis=2)
    green = np.all(image == response.GREEN, axis=2)
    assert yellow[2 * 50:2 * 51, 2 * 30:2 * 90].all()  # the cut's top edge
    assert green[2 * 59:2 * 60, 2 * 30:2 * 90].all() and not green[2 * 50:2 * 56].any()
    plain = response.tile(response.Response(1, "scratch", 5.0, np.array([0.9]), np.array([0.5]),
                                            (frame, amap, (20, 50, 100, 70))), threshold=0.7)
    assert not np.all(plain == response.GREEN, axis=2).any()


def test_frame_boxes_from_belt_boxes_and_frame_offsets():
    """A sidecar with belt boxes and frame offsets (steel_conveyor.py's): boxes moved by the offset, clipped."""
    truth = {"width": 100, "height": 50, "frames": [{"index": i, "offset": 30.0 * i} for i in range(4)],
             "defects": [{"defect_id": 1, "box": [90, 10, 120, 20]}, {"defect_id": 2, "box": [0, 45, 10, 60]}]}
    assert response.frame_boxes(truth) == [{1: (90, 10, 100, 20), 2: (0, 45, 10, 50)}, {1: (60, 10, 90, 20)},
                                           {1: (30, 10, 60, 20)}, {1: (0, 10, 30, 20)}]
