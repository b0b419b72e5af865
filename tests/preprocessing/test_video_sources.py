"""preprocessing.video_sources: frame sizing and resize methods, enhancement, multi-value flags."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from preprocessing import video_sources


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


def test_expand_multi_value() -> None:
    expand = video_sources.expand_multi_value
    assert expand(["--test_types", "a", "b,c", "--separate"], "--test_types") == \
        ["--test_types", "a", "--test_types", "b", "--test_types", "c", "--separate"]
    assert expand(["--x", "1", "--test_types"], "--test_types") == ["--x", "1", "--test_types"]
    assert expand(["--", "--test_types", "a"], "--test_types") == ["--", "--test_types", "a"]
