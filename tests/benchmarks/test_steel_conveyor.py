"""benchmarks/steel_conveyor.py: an independent conveyor (brushed steel, crisp defects) and its ground truth."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import errors
from benchmarks import steel_conveyor as steel
from inference import evaluate_tracking


@pytest.mark.parametrize("kind", steel.DEFECT_TYPES)
def test_each_defect_is_drawn_crisp_and_visible(kind):
    """Coverage in 0..1 with a solid core (the ground-truth mask, coverage >= 0.5) of at least 5 mm^2 at 0.1 mm
    pixels, every pixel of it changed by 3 grey levels or more and half of them by 10 or more (the faint rust
    stain's shade is 12), and a narrow anti-aliased edge (fewer pixels partly covered than fully)."""
    coverage, shade = steel.draw_defect(kind, np.random.default_rng(0))
    mask = coverage >= 0.5
    assert coverage.min() >= 0.0 and coverage.max() <= 1.0
    assert mask.sum() >= 500
    change = np.abs(coverage[..., None] * shade).max(axis=2)
    assert change[mask].min() >= 3.0 and np.median(change[mask]) >= 10.0
    partly = (coverage > 0.05) & (coverage < 0.5)
    assert partly.sum() < mask.sum()


def test_an_unknown_defect_type_is_a_user_error():
    with pytest.raises(errors.UserError, match="defect type pothole"):
        steel.draw_defect("pothole", np.random.default_rng(0))


def small_config(**changes) -> steel.SteelConfig:
    """A short 160x96 belt with four defects (fast to write)."""
    values = {"width": 160, "height": 96, "speed": 7.5, "defects": 4, "seed": 3}
    return steel.SteelConfig(**{**values, **changes})


def test_the_belt_is_reproducible_and_new_for_another_seed():
    first, again, other = (steel.build_belt(small_config(seed=seed)) for seed in (3, 3, 4))
    assert np.array_equal(first.strip, again.strip) and np.array_equal(first.labels, again.labels)
    assert first.defects == again.defects
    assert not np.allclose(first.strip[:, :160], other.strip[:, :160])


def test_the_ground_truth_is_the_painted_masks():
    """Each defect's area and box are those of its label pixels; ids 1..N; the offsets advance by the speed."""
    belt = steel.build_belt(small_config())
    assert [d.defect_id for d in belt.defects] == [1, 2, 3, 4]
    for d in belt.defects:
        ys, xs = np.nonzero(belt.labels == d.defect_id)
        assert d.area_pixels == len(xs)
        assert d.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert np.allclose(np.diff(belt.offsets), 7.5)


def test_the_video_shows_the_belt_and_evaluate_tracking_reads_its_sidecar(tmp_path):
    """Frame i is the belt at offset i * speed (to the camera's light, noise and the codec); the sidecar's
    defects load as evaluate_tracking's ground truth with their visible frames."""
    cfg = small_config()
    out = tmp_path / "steel.mp4"
    assert steel.main([*sum(([f"--{k}", str(v)] for k, v in vars(cfg).items() if v is not None), []),
                       "--output", str(out)]) == 0
    data = json.loads((tmp_path / "steel.mp4.json").read_text())
    belt = steel.build_belt(cfg)
    capture = cv2.VideoCapture(str(out))
    frames = [capture.read()[1] for _ in range(data["num_frames"])]
    assert len(frames) == len(belt.offsets) and all(f is not None and f.shape == (96, 160, 3) for f in frames)
    light = steel.camera_light(cfg)
    for index in (0, 4, len(frames) - 1):
        x0 = int(belt.offsets[index])
        expected = belt.strip[:, x0:x0 + 160] * light  # within a pixel of the sub-pixel shift
        seen = cv2.cvtColor(frames[index], cv2.COLOR_BGR2RGB).astype(np.float32)
        assert np.median(np.abs(seen - expected)) < 6.0
    truth = evaluate_tracking.read_ground_truth(tmp_path / "steel.mp4.json")
    assert len(truth.defects) == 4
    for d, painted in zip(truth.defects, belt.defects):
        assert d.area_pixels == painted.area_pixels
        first, last = d.first_frame, d.last_frame
        assert belt.offsets[first] < painted.box[2] and painted.box[0] < belt.offsets[first] + 160
        assert belt.offsets[last] < painted.box[2] and painted.box[0] < belt.offsets[last] + 160
        assert first == 0 or belt.offsets[first - 1] + 160 <= painted.box[0]


@pytest.mark.parametrize("flags, message", [(["--speed", "0.1"], "--speed"), (["--defects", "9"], "--defects"),
                                            (["--width", "32"], "--width")])
def test_bad_values_stop_with_one_line(tmp_path, capsys, flags, message):
    argv = [*flags, "--output", str(tmp_path / "v.mp4")]
    assert errors.run_script(lambda: steel.main(argv)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "v.mp4").exists()
