"""Property-based tests (hypothesis): the size analyzer and the engine on random map and frame shapes."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from inference.engine import InferenceEngine
from inference.model_info import ModelInfo
from size_analyzer import DefectSizeAnalyzer

FAST = settings(max_examples=60, deadline=None)


@st.composite
def anomaly_maps(draw: st.DrawFn) -> np.ndarray:
    """Float32 maps of random shape with values in [0, 1] (smooth blobs or noise)."""
    height = draw(st.integers(1, 48))
    width = draw(st.integers(1, 48))
    return draw(arrays(np.float32, (height, width), elements=st.floats(0.0, 1.0, width=32)))


@FAST
@given(anomaly_maps(), st.floats(0.0, 1.0), st.booleans(), st.integers(0, 6))
def test_size_analyzer_regions_are_consistent_on_any_map(amap, threshold, morphology, min_area):
    analyzer = DefectSizeAnalyzer(pixel_size=0.5, physical_unit="mm", min_defect_area=min_area)
    result = analyzer.analyze_defects(amap, threshold, morphology, keep_label_map=True)
    height, width = amap.shape
    assert result.label_map.shape == amap.shape
    assert result.total_area_px == int((result.label_map > 0).sum()) <= height * width
    for index, defect in enumerate(result.defects):
        x1, y1, x2, y2 = defect.box
        region = result.label_map == index + 1
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert int(region.sum()) == defect.area_px >= max(min_area, 1)
        assert defect.area_physical == np.float64(defect.area_px) * 0.25
        assert region[y1:y2, x1:x2].sum() == region.sum()  # the box holds the whole region
        assert np.isclose(defect.max_score, amap[region].max())
    areas = [defect.area_px for defect in result.defects]
    assert areas == sorted(areas, reverse=True)


class CellMeanBackend:
    """A stand-in network: a cell's score is the logistic of its pixels' mean (channel 0)."""

    name = "cell-mean"

    def __init__(self, stride: int) -> None:
        self.stride = stride

    def score_grids(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Backend protocol: the patch scores are also the image-score grid (as GLASS's)."""
        scores = self.patch_scores(batch)
        return scores, scores

    def patch_scores(self, batch: np.ndarray) -> np.ndarray:
        b, _, h, w = batch.shape
        s = self.stride
        cells = batch[:, 0].reshape(b, h // s, s, w // s, s).mean(axis=(2, 4))
        return 1.0 / (1.0 + np.exp(-cells))


INFO = ModelInfo(class_name="c", backbone="stub", imagesize=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                 grid=(4, 4), sigma=4.0, threshold=0.7, resize=32, stride=8, pad_to=16, pixel_threshold=0.6)


@FAST
@given(st.integers(2, 160), st.integers(2, 160), st.booleans(), st.integers(0, 2 ** 32 - 1))
def test_engine_scores_any_frame_shape_whole(height, width, gray, seed):
    rng = np.random.default_rng(seed)
    shape = (height, width) if gray else (height, width, 3)
    frame = rng.integers(0, 256, shape, dtype=np.uint8)
    engine = InferenceEngine(CellMeanBackend(INFO.stride), INFO)
    result = engine.predict([frame])[0]
    geometry = engine.geometry(frame)
    assert result.anomaly_map.shape == (height, width) and result.anomaly_map.dtype == np.float32
    assert np.isfinite(result.anomaly_map).all()
    assert 0.0 <= result.anomaly_map.min() and result.anomaly_map.max() <= result.score + 1e-6 <= 1.0 + 1e-6
    assert min(geometry.scaled) == INFO.resize and all(side % INFO.pad_to == 0 for side in geometry.padded)
    grid = engine.patch_scores([frame])[0]
    assert grid.shape == tuple(-(-side // INFO.stride) for side in geometry.scaled)
    assert result.score == float(grid.max()) and result.is_defect == (result.score >= INFO.threshold)
