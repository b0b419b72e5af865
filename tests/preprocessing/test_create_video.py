"""Video creation scripts (create_video, create_dataset_video, create_enhanced_video) and their shared code."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import video_io
from preprocessing import create_dataset_video, create_enhanced_video, create_video, video_sources
from preprocessing.create_enhanced_video import defect_count, defect_slots
from tests.helpers import write_tiny_mvtec


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """<tmp>/mvtec holding class 'toy' (test: good x3, blob x3 with masks; 64 px)."""
    return write_tiny_mvtec(tmp_path)[0]


def frames_of(video: Path) -> list[np.ndarray]:
    """All decoded frames of a video."""
    return [frame for batch in video_io.iter_frames(video, batch_size=4) for frame in batch]


def labels_of(sidecar: dict) -> list[str]:
    """Frame labels of a sidecar."""
    return [frame["label"] for frame in sidecar["frames"]]


def assert_sidecar_matches_sources(sidecar: dict) -> None:
    """Every frame's label is its source image's folder, indices run 0..n-1, defects have their mask."""
    for i, frame in enumerate(sidecar["frames"]):
        assert frame["index"] == i
        source = Path(frame["source"])
        assert source.is_file() and source.parent.name == frame["label"]
        assert frame["is_defect"] == (frame["label"] != "good")
        if frame["is_defect"]:
            assert Path(frame["mask"]).name == f"{source.stem}_mask.png"
        else:
            assert frame["mask"] is None


def assert_frames_show_sources(video: Path, sidecar: dict) -> None:
    """Each decoded frame is closest to its own (resized) source image among all the video's sources."""
    size = (sidecar["width"], sidecar["height"])
    sources = {f["source"]: cv2.resize(cv2.imread(f["source"]), size) for f in sidecar["frames"]}
    names = list(sources)
    for frame, record in zip(frames_of(video), sidecar["frames"]):
        errors = [np.abs(frame.astype(int) - sources[n].astype(int)).mean() for n in names]
        assert names[int(np.argmin(errors))] == record["source"]


def assert_user_error(capsys: pytest.CaptureFixture, code: int, *needles: str) -> None:
    """Exit code 2 and exactly one 'error:' line on stderr naming the needles."""
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


# ---------------------------------------------------------------- create_video

def test_create_video_all_test_images(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "v" / "toy.mp4"
    assert create_video.cli(["toy", "--data_path", str(data), "--output", str(out), "--size", "64",
                             "--fps", "5"]) == 0
    info = video_io.probe_video(out)
    assert (info.frame_count, info.width, info.height, info.fps) == (6, 64, 64, 5.0)
    sidecar = video_io.read_sidecar(out)
    assert labels_of(sidecar) == ["good"] * 3 + ["blob"] * 3
    assert [Path(f["source"]).name for f in sidecar["frames"]] == ["000.png", "001.png", "002.png"] * 2
    assert sidecar["settings"]["tool"] == "create_video" and sidecar["settings"]["resize_method"] == "fixed"
    assert_sidecar_matches_sources(sidecar)
    assert_frames_show_sources(out, sidecar)


def test_create_video_one_defect_type_from_input_path(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "blob.mp4"
    code = create_video.cli(["toy", "--input_path", str(data / "toy" / "test"), "--defect", "blob",
                             "--output", str(out), "--size", "33"])
    assert code == 0
    info = video_io.probe_video(out)
    assert (info.frame_count, info.width, info.height) == (3, 34, 34)  # odd size rounded up to even
    assert labels_of(video_io.read_sidecar(out)) == ["blob"] * 3


def test_create_video_flat_folder_and_default_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tiny_mvtec(tmp_path / "datasets")  # datasets/mvtec/toy: the reference layout
    monkeypatch.chdir(tmp_path)
    assert create_video.cli(["toy", "--dataset", "MVTEC", "--size", "32"]) == 0  # folder name matched ignoring case
    default_out = tmp_path / "test-video" / "toy_all.mp4"
    assert video_io.probe_video(default_out).frame_count == 6
    assert create_video.cli(["toy", "--input_path", "datasets/mvtec/toy/test/good", "--size", "32",
                             "--output", "good.mp4"]) == 0
    assert labels_of(video_io.read_sidecar(tmp_path / "good.mp4")) == ["good"] * 3


def test_create_video_errors(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert_user_error(capsys, create_video.cli(["toy"]), "datasets/custom", "--data_path")
    assert_user_error(capsys, create_video.cli(["toy", "--data_path", str(data), "--defect", "hole"]),
                      "--defect hole", "good, blob")
    assert_user_error(capsys, create_video.cli(["nope", "--data_path", str(data)]), "--class_name nope", "toy")
    assert_user_error(capsys, create_video.cli(["toy", "--input_path", str(data / "toy" / "test" / "good"),
                                                "--defect", "blob"]), "--defect blob")
    assert_user_error(capsys, create_video.cli(["toy", "--data_path", str(data), "--fps", "0"]), "--fps")
    assert_user_error(capsys, create_video.cli(["toy", "--data_path", str(data), "--output", "x.avi"]), ".mp4")
    (tmp_path / "blocker").write_text("x")
    assert_user_error(capsys, create_video.cli(["toy", "--data_path", str(data), "--output", "blocker/x.mp4"]),
                      "writable")
    assert not (tmp_path / "test-video").exists()


def test_unreadable_image_is_a_one_line_error_and_no_video(data: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    (data / "toy" / "test" / "good" / "003.png").write_text("not an image")
    out = tmp_path / "out" / "toy.mp4"
    code = create_video.cli(["toy", "--data_path", str(data), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "error: cannot read image" in err and "003.png" in err and "Traceback" not in err
    assert list(out.parent.iterdir()) == []  # the temporary video was removed


# ---------------------------------------------------------------- create_dataset_video

def test_dataset_video_combined(data: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "tv"
    assert create_dataset_video.cli(["--dataset", "mvtec", "--class_name", "toy", "--data_path", str(data),
                                     "--output_dir", str(out_dir)]) == 0
    video = out_dir / "mvtec" / "toy" / "toy_all.mp4"
    assert sorted(p.name for p in video.parent.iterdir()) == ["toy_all.mp4", "toy_all.mp4.json"]
    info = video_io.probe_video(video)
    assert (info.frame_count, info.width, info.height) == (6, 64, 64)  # pad: largest size (all 64 px)
    sidecar = video_io.read_sidecar(video)
    assert labels_of(sidecar) == ["good"] * 3 + ["blob"] * 3
    assert sidecar["settings"]["resize_method"] == "pad" and sidecar["settings"]["test_types"] == ["good", "blob"]
    assert_sidecar_matches_sources(sidecar)
    assert_frames_show_sources(video, sidecar)


def test_dataset_video_separate_and_test_types(data: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "tv"
    base = ["--dataset", "mvtec", "--class_name", "toy", "--data_path", str(data), "--output_dir", str(out_dir)]
    assert create_dataset_video.cli([*base, "--separate", "--resize_method", "fixed", "--size", "32"]) == 0
    folder = out_dir / "mvtec" / "toy"
    for kind in ("good", "blob"):
        video = folder / f"toy_{kind}.mp4"
        info = video_io.probe_video(video)
        assert (info.frame_count, info.width) == (3, 32)
        assert labels_of(video_io.read_sidecar(video)) == [kind] * 3
    # space-separated list, user order kept
    assert create_dataset_video.cli([*base, "--test_types", "blob", "good", "--enhance"]) == 0
    sidecar = video_io.read_sidecar(folder / "toy_blob+good.mp4")
    assert labels_of(sidecar) == ["blob"] * 3 + ["good"] * 3
    assert sidecar["settings"]["enhance"] is True and sidecar["settings"]["enhancement"]["clip_limit"] == 2.0


def test_dataset_video_list_structure(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (data / "toy" / "test" / "stain").mkdir()
    cv2.imwrite(str(data / "toy" / "test" / "stain" / "000.png"), np.zeros((8, 8, 3), np.uint8))
    out_dir = tmp_path / "tv"
    assert create_dataset_video.cli(["--dataset", "mvtec", "--class_name", "toy", "--data_path", str(data),
                                     "--output_dir", str(out_dir), "--list_structure"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[3:]}
    assert rows == {"good": ["3", "-", "(good)"], "blob": ["3", "yes", "(3/3)"], "stain": ["1", "no"],
                    "total": ["7"]}
    assert not out_dir.exists()


def test_dataset_video_errors(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["--dataset", "mvtec", "--class_name", "toy", "--data_path", str(data), "--output_dir", str(tmp_path / "tv")]
    assert_user_error(capsys, create_dataset_video.cli([*base, "--test_types", "good", "scratch"]),
                      "--test_types scratch", "available: good, blob")
    assert_user_error(capsys, create_dataset_video.cli([*base, "--resize_method", "crop"]), "--resize_method")
    assert_user_error(capsys, create_dataset_video.cli(["--class_name", "toy"]), "--dataset")
    assert_user_error(capsys, create_dataset_video.cli([*base[:4], "--data_path", str(tmp_path / "none")]),
                      "--data_path")
    (tmp_path / "blocker").write_text("x")
    assert_user_error(capsys, create_dataset_video.cli([*base[:6], "--output_dir", str(tmp_path / "blocker")]),
                      "--output_dir")
    assert not (tmp_path / "tv").exists()


# ---------------------------------------------------------------- frames: resize methods and enhancement

def test_resize_methods() -> None:
    wide = np.full((20, 40, 3), 200, np.uint8)  # h=20, w=40
    padded = video_sources.fit_frame(wide, (40, 50), "pad")
    assert padded.shape == (50, 40, 3)
    assert (padded[15:35] == 200).all() and (padded[:15] == 0).all() and (padded[35:] == 0).all()
    stretched = video_sources.fit_frame(wide, (40, 50), "largest")
    assert stretched.shape == (50, 40, 3) and (stretched == 200).all()
    small = video_sources.fit_frame(wide, (10, 10), "pad")  # shrink keeping aspect: 10x5 centred
    assert (small[3:7] == 200).all() and (small[:2] == 0).all() and (small[8:] == 0).all()
    assert video_sources.fit_frame(wide, (16, 16), "fixed").shape == (16, 16, 3)
    assert video_sources.fit_frame(wide, (40, 20), "pad") is wide  # already the frame size: untouched


def test_plan_frame_size(tmp_path: Path) -> None:
    images = []
    for name, (w, h) in {"a": (41, 20), "b": (30, 51)}.items():
        path = tmp_path / f"{name}.png"
        cv2.imwrite(str(path), np.zeros((h, w, 3), np.uint8))
        images.append(video_sources.SourceImage(path, "good"))
    assert video_sources.plan_frame_size(images, "pad", 256) == (42, 52)
    assert video_sources.plan_frame_size(images, "largest", 256) == (42, 52)
    assert video_sources.plan_frame_size(images, "fixed", 99) == (100, 100)
    with pytest.raises(video_sources.SourceError, match="--resize_method"):
        video_sources.plan_frame_size(images, "crop", 256)


def test_enhance_raises_local_contrast_mildly() -> None:
    rng = np.random.default_rng(0)
    low = cv2.GaussianBlur((100 + 20 * rng.random((64, 64, 3))).astype(np.uint8), (0, 0), 2)
    out = video_sources.enhance_image(low)
    assert out.shape == low.shape and out.dtype == np.uint8
    assert out.std() > 1.5 * low.std()
    assert abs(float(out.mean()) - float(low.mean())) < 30  # brightness roughly kept
    assert np.array_equal(out, video_sources.enhance_image(low))


# ---------------------------------------------------------------- create_enhanced_video

@pytest.mark.parametrize("total", [1, 2, 7, 20, 33, 100])
def test_defect_slots_are_evenly_spread(total: int) -> None:
    for n in range(1, total + 1):
        slots = defect_slots(total, n)
        assert len(slots) == n and slots == sorted(set(slots))
        assert 0 <= slots[0] and slots[-1] < total
        for k, slot in enumerate(slots):  # one defect in each of n equal stretches (exact integer test)
            assert k * total <= slot * n < (k + 1) * total


def test_defect_count_rounds_half_up() -> None:
    assert [defect_count(t, r) for t, r in [(20, 0.3), (5, 0.5), (6, 0.3), (10, 0.0), (10, 1.0), (3, 0.1)]] == \
        [6, 3, 2, 0, 10, 0]


def enhanced_args(data: Path, out_dir: Path, *extra: str) -> list[str]:
    """Command line of create_enhanced_video on the tiny dataset."""
    return ["--dataset", "mvtec", "--class_name", "toy", "--data_path", str(data), "--output_dir", str(out_dir),
            "--size", "32", *extra]


def test_enhanced_video_spread_outputs_and_good_frames(data: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "tv"
    assert create_enhanced_video.cli(enhanced_args(data, out_dir, "--video_name", "clip", "--total_frames", "20",
                                                   "--seed", "4", "--save_good_frames")) == 0
    video = out_dir / "clip" / "clip.mp4"
    assert video_io.probe_video(video).frame_count == 20
    sidecar = video_io.read_sidecar(video)
    assert_sidecar_matches_sources(sidecar)
    defects = [f["index"] for f in sidecar["frames"] if f["is_defect"]]
    assert len(defects) == round(0.3 * 20) == 6
    assert defects == defect_slots(20, 6)
    assert min(defects) < 5 and max(defects) >= 15  # first and last quarter both hold defects
    assert max(np.diff(defects)) <= 4  # no long stretch without defects
    # every image is used before any repeats (3 good images over 14 good frames, 3 defect over 6)
    good_sources = [f["source"] for f in sidecar["frames"] if not f["is_defect"]]
    assert len(set(good_sources[:3])) == 3 and len(set(good_sources)) == 3
    good_dir = out_dir / "clip" / "good_frames"
    good_indices = [f["index"] for f in sidecar["frames"] if not f["is_defect"]]
    assert sorted(p.name for p in good_dir.iterdir()) == [f"frame_{i:05d}.jpg" for i in good_indices]
    assert sorted(p.name for p in (out_dir / "clip").iterdir()) == ["clip.mp4", "clip.mp4.json", "good_frames"]
    assert good_dir.stat().st_mode & 0o777 == (out_dir / "clip").stat().st_mode & 0o777  # not a temp dir's 0700
    # a saved good frame is its source image at the video's frame size (JPEG q95 4:4:4: small error)
    for record in sidecar["frames"][:6]:
        if not record["is_defect"]:
            saved = cv2.imread(str(good_dir / f"frame_{record['index']:05d}.jpg")).astype(int)
            source = cv2.resize(cv2.imread(record["source"]), (32, 32), interpolation=cv2.INTER_AREA)
            assert np.abs(saved - source).mean() < 4
    assert sidecar["settings"]["seed"] == 4 and sidecar["settings"]["defect_frames"] == 6


def test_enhanced_video_seed_determinism(data: Path, tmp_path: Path) -> None:
    def frames_for(seed: int, folder: str) -> list[dict]:
        assert create_enhanced_video.cli(enhanced_args(data, tmp_path / folder, "--total_frames", "15",
                                                       "--seed", str(seed), "--no_save_frames")) == 0
        sidecar = video_io.read_sidecar(tmp_path / folder / "mvtec_toy" / "mvtec_toy.mp4")
        return sidecar["frames"]

    first, again, other = frames_for(1, "a"), frames_for(1, "b"), frames_for(2, "c")
    assert first == again
    assert [f["source"] for f in first] != [f["source"] for f in other]
    assert [f["is_defect"] for f in first] == [f["is_defect"] for f in other]  # the spread does not depend on it
    assert not (tmp_path / "a" / "mvtec_toy" / "good_frames").exists()


def test_enhanced_video_default_length_and_extreme_ratios(data: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "tv"
    assert create_enhanced_video.cli(enhanced_args(data, out_dir, "--video_name", "d")) == 0
    sidecar = video_io.read_sidecar(out_dir / "d" / "d.mp4")
    assert len(sidecar["frames"]) == 6 and sum(f["is_defect"] for f in sidecar["frames"]) == 2
    assert create_enhanced_video.cli(enhanced_args(data, out_dir, "--video_name", "all", "--defect_ratio", "1",
                                                   "--total_frames", "4", "--enhance")) == 0
    sidecar = video_io.read_sidecar(out_dir / "all" / "all.mp4")
    assert labels_of(sidecar) == ["blob"] * 4 and sidecar["settings"]["enhance"] is True
    assert list((out_dir / "all" / "good_frames").iterdir()) == []
    assert create_enhanced_video.cli(enhanced_args(data, out_dir, "--video_name", "none", "--defect_ratio", "0",
                                                   "--total_frames", "4")) == 0
    assert labels_of(video_io.read_sidecar(out_dir / "none" / "none.mp4")) == ["good"] * 4


def test_enhanced_video_replaces_old_good_frames(data: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "tv"
    assert create_enhanced_video.cli(enhanced_args(data, out_dir, "--video_name", "v", "--total_frames", "10")) == 0
    assert create_enhanced_video.cli(enhanced_args(data, out_dir, "--video_name", "v", "--total_frames", "3")) == 0
    sidecar = video_io.read_sidecar(out_dir / "v" / "v.mp4")
    good = [f"frame_{f['index']:05d}.jpg" for f in sidecar["frames"] if not f["is_defect"]]
    assert sorted(p.name for p in (out_dir / "v" / "good_frames").iterdir()) == good
    assert sorted(p.name for p in (out_dir / "v").iterdir()) == ["good_frames", "v.mp4", "v.mp4.json"]


@pytest.mark.parametrize("extra, needle", [
    (["--defect_ratio", "1.5"], "--defect_ratio"),
    (["--defect_ratio", "-0.1"], "--defect_ratio"),
    (["--total_frames", "0"], "--total_frames"),
    (["--fps", "-1"], "--fps"),
    (["--video_name", "a/b"], "--video_name"),
    (["--seed", "x"], "--seed"),
])
def test_enhanced_video_bad_flags(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                  extra: list[str], needle: str) -> None:
    code = create_enhanced_video.cli(enhanced_args(data, tmp_path / "tv", *extra))
    assert_user_error(capsys, code, needle)
    assert not (tmp_path / "tv").exists()


def test_enhanced_video_needs_images_of_each_kind(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for path in (data / "toy" / "test" / "blob").iterdir():
        path.unlink()
    code = create_enhanced_video.cli(enhanced_args(data, tmp_path / "tv", "--defect_ratio", "0.5"))
    assert_user_error(capsys, code, "--defect_ratio 0.5", "no defect test images")


def test_expand_multi_value() -> None:
    expand = video_sources.expand_multi_value
    assert expand(["--test_types", "a", "b,c", "--separate"], "--test_types") == \
        ["--test_types", "a", "--test_types", "b", "--test_types", "c", "--separate"]
    assert expand(["--x", "1", "--test_types"], "--test_types") == ["--x", "1", "--test_types"]
    assert expand(["--", "--test_types", "a"], "--test_types") == ["--", "--test_types", "a"]


def test_sidecar_is_json_with_documented_keys(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    assert create_video.cli(["toy", "--data_path", str(data), "--output", str(out), "--size", "16"]) == 0
    raw = json.loads(video_io.sidecar_path(out).read_text())
    assert set(raw) == {"video", "fps", "width", "height", "frames", "settings"}
    assert set(raw["frames"][0]) == {"index", "source", "label", "is_defect", "mask"}
    assert raw["video"] == "v.mp4" and (raw["width"], raw["height"]) == (16, 16)
