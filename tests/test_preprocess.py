"""preprocess: the fast frame input against the literal one (PIL image, normalise the whole region, cut, pad)."""
from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from torchvision import transforms

import preprocess

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def literal_frame_input(frame: np.ndarray, geometry: preprocess.FrameGeometry) -> np.ndarray:
    """The frame input written out step by step with torchvision's own transforms, as training's view is made."""
    x0, y0, x1, y1 = geometry.roi
    region = frame[y0:y1, x0:x1]
    rgb = np.repeat(region[..., None], 3, axis=2) if region.ndim == 2 else np.ascontiguousarray(region[..., ::-1])
    image = preprocess.scale_short_side(PIL.Image.fromarray(rgb), min(geometry.scaled))
    tensor = transforms.Normalize(MEAN, STD)(transforms.ToTensor()(image)).numpy()
    (sy, sx), (height, width) = geometry.start, geometry.padded
    tensor = tensor[:, sy:sy + height, sx:sx + width]
    pad_h, pad_w = height - tensor.shape[1], width - tensor.shape[2]
    mode = "reflect" if pad_h < tensor.shape[1] and pad_w < tensor.shape[2] else "edge"
    return np.pad(tensor, ((0, 0), (0, pad_h), (0, pad_w)), mode=mode)


@pytest.mark.parametrize("shape, short_side, roi, shift", [
    ((256, 320, 3), 256, None, None),                       # the training scale: no resize
    ((256, 320, 3), 256, None, preprocess.GridShift(1, 5)),  # a grid shift along x
    ((237, 613, 3), 128, None, None),                        # odd size, shrunk, padded
    ((237, 613), 128, None, preprocess.GridShift(0, 3)),     # gray
    ((720, 1280, 3), 256, (40, 30, 1001, 650), None),        # an ROI of a large frame
    ((100, 90, 3), 256, None, None),                         # enlarged
])
def test_frame_input_equals_the_literal_steps(shape, short_side, roi, shift) -> None:
    """Same values as torchvision's ToTensor + Normalize on the PIL-scaled region, cut and mirrored at the pad
    (to float32 rounding of the division: Normalize divides by 255 then standardises, as normalize does)."""
    frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    geometry = preprocess.frame_geometry(shape, short_side, 32, roi)
    if shift is not None:
        geometry = preprocess.shifted_geometry(geometry, shift, 32)
    fast = preprocess.frame_input(frame, geometry, MEAN, STD)
    literal = literal_frame_input(frame, geometry)
    assert fast.shape == (3, *geometry.padded) and fast.dtype == np.float32
    np.testing.assert_allclose(fast, literal, rtol=0, atol=1e-6)
    out = np.full((3, *geometry.padded), np.nan, np.float32)
    assert preprocess.frame_input(frame, geometry, MEAN, STD, out=out) is out
    np.testing.assert_array_equal(out, fast)


def test_normalize_in_place_is_bitwise_the_formula() -> None:
    """normalize's in-place steps give the very bits of (x / 255 - mean) / std in float32."""
    image = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    formula = ((image.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
                - np.asarray(MEAN, np.float32).reshape(3, 1, 1)) / np.asarray(STD, np.float32).reshape(3, 1, 1))
    np.testing.assert_array_equal(preprocess.normalize(image, MEAN, STD), formula)
    tensor = transforms.Normalize(MEAN, STD)(torch.from_numpy(image).permute(2, 0, 1).float() / 255.0).numpy()
    np.testing.assert_allclose(preprocess.normalize(image, MEAN, STD), tensor, rtol=0, atol=1e-6)


def test_frame_to_rgb_refuses_other_types() -> None:
    """Float or 4-channel frames get a PreprocessError naming the expected input."""
    with pytest.raises(preprocess.PreprocessError, match="uint8"):
        preprocess.frame_to_rgb(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(preprocess.PreprocessError, match="HxWx3"):
        preprocess.frame_to_rgb(np.zeros((4, 4, 4), np.uint8))


def test_light_level_is_the_median_grey_of_the_region_on_a_sparse_grid():
    frame = np.full((40, 64, 3), 100, np.uint8)
    frame[:8, :8] = 255  # a glint: the median does not move
    assert preprocess.light_level(frame) == 100.0
    assert preprocess.light_level(frame[..., 0]) == 100.0  # grey frames too
    frame[:, 32:] = (30, 60, 90)  # grey 60 on the right half
    assert preprocess.light_level(frame, (32, 0, 64, 40)) == 60.0
    assert len(frame[::preprocess.LIGHT_SAMPLE_STEP, ::preprocess.LIGHT_SAMPLE_STEP]) == 10


def test_compensate_light_scales_to_the_reference_within_the_gain_limit():
    rng = np.random.default_rng(0)
    frame = rng.integers(40, 160, (32, 48, 3)).astype(np.uint8)
    level = preprocess.light_level(frame)
    brighter = preprocess.compensate_light(frame, 1.25 * level)
    assert brighter.dtype == np.uint8 and brighter.shape == frame.shape
    assert preprocess.light_level(brighter) == pytest.approx(1.25 * level, abs=1.0)
    assert np.abs(brighter.astype(float) - np.clip(np.rint(frame * 1.25), 0, 255)).max() <= 1
    assert preprocess.compensate_light(frame, level) is frame  # at its level: unchanged
    far = preprocess.compensate_light(frame, 10 * level)  # at most MAX_LIGHT_GAIN, saturating at 255
    assert np.abs(far.astype(float) - np.clip(frame * preprocess.MAX_LIGHT_GAIN, 0, 255)).max() <= 1


def test_compensate_light_takes_grey_frames_and_reads_the_roi_only():
    """A grey (HxW) frame whose left half is dark: its region's level becomes the reference, the frame stays grey."""
    frame = np.full((30, 50), 120, np.uint8)
    frame[:, :25] = 20
    lit = preprocess.compensate_light(frame, 90.0, roi=(25, 0, 50, 30))  # right half: 120 -> 90
    assert lit.shape == (30, 50) and lit.dtype == np.uint8
    assert preprocess.light_level(lit, (25, 0, 50, 30)) == 90.0 and int(lit[0, 0]) == 15


def test_jpeg_round_trip_keeps_shape_and_type_and_loses_more_at_low_quality() -> None:
    """A busy colour and a grey image: same shape and dtype back; quality 95 nearer the original than 20."""
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (40, 72, 3)).astype(np.uint8)
    grey = colour[:, :, 1].copy()
    for image in (colour, grey):
        near, far = (preprocess.jpeg_round_trip(image, quality) for quality in (95, 20))
        assert near.shape == far.shape == image.shape and near.dtype == far.dtype == np.uint8
        error = [np.abs(out.astype(np.int16) - image).mean() for out in (near, far)]
        assert 0 < error[0] < error[1]


def test_defocus_keeps_the_light_and_spreads_a_point_alike_in_every_direction() -> None:
    """A point through a lens out of focus (sigma 2): its light kept, spread symmetrically, wider than at sigma 1."""
    point = np.zeros((31, 31), np.float32)
    point[15, 15] = 1.0
    wide, narrow = preprocess.defocus(point, 2.0), preprocess.defocus(point, 1.0)
    assert wide.sum() == pytest.approx(1.0, abs=1e-4) and np.allclose(wide, wide.T, atol=1e-7)
    assert wide[15, 15] < narrow[15, 15] and wide[15, 19] > narrow[15, 19]
