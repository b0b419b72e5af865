"""The inference engine: same scores as the evaluation path, maps at frame resolution, errors."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from inference.backends import resolve_device
from inference.engine import EngineConfig, FrameResult, InferenceEngine
from inference.model_info import EngineError, ModelInfo, checkpoint_thresholds, default_threshold
from model import CheckpointError
from methods.registry import load_trained_model


def _test_frames(tiny_model) -> list[np.ndarray]:
    """The fixture dataset's test images as BGR frames (good first, then defective)."""
    test = tiny_model.data_path / "toy" / "test"
    paths = sorted((test / "good").glob("*.png")) + sorted((test / "blob").glob("*.png"))
    return [cv2.imread(str(p)) for p in paths]


@pytest.fixture(scope="module")
def engine(tiny_model) -> InferenceEngine:
    return InferenceEngine.from_config(EngineConfig(str(tiny_model.model_path), tiny_model.class_name, device="cpu"))


def _dataset_inputs(tiny_model, split: str = "test") -> torch.Tensor:
    """The inputs the training/testing loader makes of the fixture's test images (same order as _test_frames)."""
    from datasets import base as data
    from datasets.registry import build_dataset
    from model import NetConfig

    _, ckpt = load_trained_model(tiny_model.class_dir)
    net = NetConfig.from_dict(ckpt["net"])
    cfg = data.DatasetConfig("mvtec", tiny_model.data_path, tiny_model.data_path, ("toy",), batch_size=4,
                             num_workers=0, resize=net.resize, imagesize=net.imagesize, fg=0)
    dataset = build_dataset(cfg, "toy", split, net.mean, net.std, seed=0, las=False)
    samples = dataset.samples
    order = sorted(range(len(dataset)), key=lambda i: (samples[i].is_anomaly, str(samples[i].image_path)))
    return torch.stack([dataset[i]["image"] for i in order])


def test_scores_equal_the_model_on_dataset_preprocessing(engine, tiny_model):
    """A frame that is a training view gets exactly the loader's input, hence the evaluation's scores and maps."""
    frames = _test_frames(tiny_model)
    images = _dataset_inputs(tiny_model)
    np.testing.assert_array_equal(engine.preprocess(frames), images.numpy())
    net, _ = load_trained_model(tiny_model.class_dir)
    with torch.no_grad():
        expected = net(images).numpy()
    got = np.stack(engine.patch_scores(frames))
    assert got.shape == expected.shape == (len(frames), *engine.info.grid)
    np.testing.assert_allclose(got, expected, atol=1e-5)

    results = engine.predict(frames)
    assert all(isinstance(r, FrameResult) for r in results)
    np.testing.assert_allclose([r.score for r in results], expected.reshape(len(frames), -1).max(1), atol=1e-5)
    # the maps, built here independently of the engine's code: bilinear upsampling (half-pixel centres)
    # of the patch grid to the training size, then scipy's Gaussian with the model's sigma (GLASS's maps)
    upsampled = F.interpolate(torch.from_numpy(expected)[:, None], size=engine.info.imagesize, mode="bilinear",
                              align_corners=False)[:, 0].numpy()
    maps = np.stack([ndimage.gaussian_filter(m, sigma=engine.info.sigma) for m in upsampled])
    np.testing.assert_allclose(np.stack([r.anomaly_map for r in results]), maps, atol=1e-5)
    assert [r.is_defect for r in results] == [r.score >= engine.threshold for r in results]


@pytest.mark.parametrize("width, height", [(96, 64), (192, 128), (64, 150)])
def test_a_wide_frame_is_scored_whole_at_the_training_scale(engine, tiny_model, width, height):
    """The centre of the engine's input is the training crop of the same frame, pixel for pixel."""
    from preprocess import training_view

    rng = np.random.default_rng(width)
    frame = cv2.resize(_test_frames(tiny_model)[-1], (width, height), interpolation=cv2.INTER_CUBIC)
    frame = np.clip(frame.astype(int) + rng.integers(-20, 20, frame.shape), 0, 255).astype(np.uint8)
    batch = engine.preprocess([frame])
    geometry = engine.geometry(frame)
    short = engine.info.resize
    assert min(geometry.scaled) == short and batch.shape[2:] == geometry.padded
    assert all(side % engine.info.pad_to == 0 for side in geometry.padded)
    h, w = geometry.scaled
    top, left = int(round((h - engine.info.imagesize) / 2)), int(round((w - engine.info.imagesize) / 2))
    crop = batch[0, :, top:top + engine.info.imagesize, left:left + engine.info.imagesize]
    view = training_view(PIL.Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)), short, engine.info.imagesize)
    from preprocess import normalize
    np.testing.assert_allclose(crop, normalize(view, engine.info.mean, engine.info.std), atol=1e-6)
    grid = engine.patch_scores([frame])[0]
    assert grid.shape == (-(-h // engine.info.stride), -(-w // engine.info.stride))
    result = engine.predict([frame])[0]
    assert result.anomaly_map.shape == (height, width)
    assert result.score == pytest.approx(float(grid.max()))


def test_frame_map_known_answers(engine):
    """A constant grid gives that constant everywhere; one hot cell gives a peak on that cell whose mass is
    the cell's area (bilinear upsampling and the Gaussian both keep the sum away from the borders)."""
    stride = engine.info.stride
    frame = np.zeros((engine.info.imagesize, engine.info.imagesize, 3), np.uint8)
    geometry = engine.geometry(frame)
    rows, cols = engine.info.grid
    flat = engine.frame_map(np.full((rows, cols), 0.3, np.float32), geometry)
    assert flat.shape == frame.shape[:2]
    np.testing.assert_allclose(flat, 0.3, atol=1e-6)
    grid = np.zeros((rows, cols), np.float32)
    grid[rows // 2, cols // 2] = 1.0
    peaked = engine.frame_map(grid, geometry)
    peak_y, peak_x = np.unravel_index(np.argmax(peaked), peaked.shape)
    centre = ((rows // 2) * stride + (stride - 1) / 2, (cols // 2) * stride + (stride - 1) / 2)
    assert abs(peak_y - centre[0]) <= 1 and abs(peak_x - centre[1]) <= 1
    assert peaked.sum() == pytest.approx(stride * stride, rel=1e-3)
    assert peaked.max() < 1.0 and peaked.min() >= 0.0


class _CellMean:
    """A local stand-in network: each 8 px cell scores the logistic of its channel-0 mean."""

    def score_grids(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, _, h, w = batch.shape
        scores = 1.0 / (1.0 + np.exp(-batch[:, 0].reshape(b, h // 8, 8, w // 8, 8).mean(axis=(2, 4))))
        return scores, scores


_CELL_INFO = ModelInfo(class_name="c", backbone="stub", imagesize=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                       grid=(4, 4), sigma=4.0, threshold=0.7, resize=32, stride=8, pad_to=16, pixel_threshold=0.6)


def test_a_grid_shift_moves_the_patch_grid_and_keeps_the_map_on_the_frame():
    """Known answers for a local network: offset 0 scores as no shift except that the input is cut to a
    multiple of the stride inside the region along the axis; any offset keeps the map on the frame (a bright
    6x6 square's map peak stays on the square) while the grid meets it at another phase (other values); the
    cells are those of the region from the offset on, nothing padded along that axis."""
    from preprocess import GridShift, grid_shift, normalize

    info = dataclasses.replace(_CELL_INFO, imagesize=64, resize=64, grid=(8, 8))
    engine = InferenceEngine(_CellMean(), info)
    frame = np.full((64, 96), 40, np.uint8)
    frame[29:35, 45:51] = 250  # centre (31.5, 47.5), not on the 8 px grid
    normalised = normalize(np.repeat(frame[..., None], 3, 2), (0.5,) * 3, (0.5,) * 3)[0]
    plain = engine.predict([frame])[0]
    peaks = set()
    for axis, offset in [(1, 0), (0, 0), (1, 3), (0, 5), (1, 7), (0, 9), (1, 14), (0, 15)]:
        result = engine.predict([frame], [GridShift(axis, offset)])[0]
        assert result.anomaly_map.shape == frame.shape
        y, x = np.unravel_index(np.argmax(result.anomaly_map), frame.shape)
        assert abs(y - 31.5) <= 3 and abs(x - 47.5) <= 3, (axis, offset)
        peaks.add(round(float(result.anomaly_map.max()), 4))
        # the input: 48 of the 64 rows or 80 of the 96 columns (the longest multiple of 16 that every offset
        # leaves inside), from the offset on
        length = 48 if axis == 0 else 80
        window = normalised[offset:offset + length] if axis == 0 else normalised[:, offset:offset + length]
        rows, cols = window.shape
        cells = 1.0 / (1.0 + np.exp(-window.reshape(rows // 8, 8, cols // 8, 8).mean(axis=(1, 3))))
        np.testing.assert_allclose(engine.patch_scores([frame], [GridShift(axis, offset)])[0], cells, atol=1e-6)
        if offset == 0:  # the same grid as unshifted over the part the input holds
            got, want = result.anomaly_map, plain.anomaly_map
            inner = (slice(12, length - 12), slice(None)) if axis == 0 else (slice(None), slice(12, length - 12))
            np.testing.assert_allclose(got[inner], want[inner], atol=0.02)
    assert len(peaks) >= 3  # the phase changes what the map sees
    assert grid_shift(7, 16, 1) == grid_shift(7, 16, 1) == (1, grid_shift(7, 16, 0).offset)
    drawn = np.array([grid_shift(i, 16, 1).offset for i in range(2000)])
    assert drawn.min() >= 0 and drawn.max() < 16 and np.bincount(drawn, minlength=16).min() > 80
    with pytest.raises(EngineError, match="grid shift"):
        engine.predict([frame], [GridShift(1, 16)])
    with pytest.raises(EngineError, match="one per frame"):
        engine.predict([frame, frame], [GridShift(1, 0)])
    small = InferenceEngine(_CellMean(), dataclasses.replace(info, imagesize=24, resize=24, grid=(3, 3)))
    short = np.random.default_rng(0).integers(0, 256, (24, 40), dtype=np.uint8)  # 24 rows: under two strides
    np.testing.assert_array_equal(small.predict([short], [GridShift(0, 9)])[0].anomaly_map,
                                  small.predict([short])[0].anomaly_map)  # too short for a shift: as it is
    assert not np.array_equal(small.predict([short], [GridShift(1, 9)])[0].anomaly_map,
                              small.predict([short])[0].anomaly_map)  # 40 columns: shifted


def test_frame_shifts_follow_the_motion_axis():
    """Shifts go along the axis the surface has moved along most (x before any motion), one per frame."""
    from inference.engine import frame_shifts

    engine = InferenceEngine(_CellMean(), _CELL_INFO)
    assert {s.axis for s in frame_shifts(engine, 0, 5, (0.0, 0.0))} == {1}
    assert {s.axis for s in frame_shifts(engine, 10, 5, (-3.0, 40.0))} == {0}
    assert {s.axis for s in frame_shifts(engine, 10, 5, (-90.0, 4.0))} == {1}
    assert [s.offset for s in frame_shifts(engine, 3, 4, (1.0, 0.0))] == [
        s.offset for s in frame_shifts(engine, 0, 7, (1.0, 0.0))][3:]


def test_batch_size_does_not_change_results(tiny_model, engine):
    frames = _test_frames(tiny_model)
    one = InferenceEngine(engine.backend, engine.info, batch_size=1).patch_scores(frames)
    np.testing.assert_allclose(np.stack(one), np.stack(engine.patch_scores(frames)), atol=1e-5)


def test_maps_come_back_at_frame_resolution(engine, tiny_model):
    frame = cv2.resize(_test_frames(tiny_model)[-1], (100, 80))
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    results = engine.predict([frame, gray, frame[:70, :61]])
    assert [r.anomaly_map.shape for r in results] == [(80, 100), (80, 100), (70, 61)]
    assert all(r.anomaly_map.dtype == np.float32 for r in results)
    assert all(0.0 <= r.anomaly_map.min() <= r.anomaly_map.max() <= r.score + 1e-6 for r in results)
    assert results[0].score == pytest.approx(results[1].score, abs=0.2)  # gray: same frame, other colours
    assert engine.predict([]) == []


class BrightnessBackend:
    """A stand-in network with a known answer: a cell's score is the mean red channel of its pixels."""

    name = "brightness"

    def __init__(self, info: ModelInfo) -> None:
        self.info = info
        self.inputs: list[np.ndarray] = []

    def score_grids(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Backend protocol: the patch scores are also the image-score grid (as GLASS's)."""
        scores = self.patch_scores(batch)
        return scores, scores

    def patch_scores(self, batch: np.ndarray) -> np.ndarray:
        """(B,3,H,W) -> (B,H/s,W/s): cell means of channel 0, mapped to [0, 1] by a logistic."""
        self.inputs.append(batch)
        s = self.info.stride
        b, _, h, w = batch.shape
        cells = batch[:, 0].reshape(b, h // s, s, w // s, s).mean(axis=(2, 4))
        return 1.0 / (1.0 + np.exp(-cells))


def _brightness_engine(engine: InferenceEngine, roi=None) -> InferenceEngine:
    return InferenceEngine(BrightnessBackend(engine.info), engine.info, threshold=0.9, roi=roi)


@pytest.mark.parametrize("width, height, where", [
    (320, 64, "right"), (320, 64, "left"), (256, 96, "top"), (256, 96, "bottom"), (333, 71, "right"),
])
def test_defects_at_the_frame_edges_are_seen(engine, width, height, where):
    """A red square touching any edge of a wide frame gives the top score and a map peak on it."""
    stub = _brightness_engine(engine)
    frame = np.full((height, width, 3), 60, np.uint8)
    size = 12
    box = {"right": (height // 2 - 6, width - size), "left": (height // 2 - 6, 0),
           "top": (0, width // 2), "bottom": (height - size, width // 2)}[where]
    y, x = box
    frame[y:y + size, x:x + size] = (0, 0, 255)  # BGR red
    result = stub.predict([frame])[0]
    plain = stub.predict([np.full((height, width, 3), 60, np.uint8)])[0]
    assert result.score > plain.score + 0.1
    peak_y, peak_x = np.unravel_index(np.argmax(result.anomaly_map), result.anomaly_map.shape)
    assert y - 4 <= peak_y <= y + size + 4 and x - 4 <= peak_x <= x + size + 4


def test_roi_restricts_scoring_to_the_belt(engine):
    """Outside the ROI nothing is scored (map zero, score unaffected); inside, positions are frame positions."""
    frame = np.full((96, 320, 3), 60, np.uint8)
    frame[5:17, 40:52] = (0, 0, 255)  # off the belt (above y = 24)
    roi = (16, 24, 300, 88)
    stub = _brightness_engine(engine, roi)
    clean = stub.predict([np.full((96, 320, 3), 60, np.uint8)])[0]
    off_belt = stub.predict([frame])[0]
    assert off_belt.score == pytest.approx(clean.score)
    assert off_belt.anomaly_map.shape == (96, 320)
    assert not off_belt.anomaly_map[:24].any() and not off_belt.anomaly_map[:, :16].any()
    assert not off_belt.anomaly_map[88:].any() and not off_belt.anomaly_map[:, 300:].any()
    frame[50:62, 200:212] = (0, 0, 255)  # on the belt
    on_belt = stub.predict([frame])[0]
    assert on_belt.score > clean.score + 0.1
    peak_y, peak_x = np.unravel_index(np.argmax(on_belt.anomaly_map), on_belt.anomaly_map.shape)
    assert 46 <= peak_y <= 66 and 196 <= peak_x <= 216
    # the network saw only the ROI, at the training scale
    assert stub.backend.inputs[-1].shape[2] == engine.info.resize


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "10,10,5,20", "-1,0,5,5"])
def test_bad_roi_names_the_flag(text):
    from preprocess import PreprocessError, parse_roi

    with pytest.raises(PreprocessError, match="--roi") as info:
        parse_roi(text)
    assert "\n" not in str(info.value)


def test_roi_outside_the_frame_is_refused(engine):
    stub = _brightness_engine(engine, (500, 500, 600, 600))
    with pytest.raises(EngineError, match="--roi"):
        stub.predict([np.zeros((64, 64, 3), np.uint8)])


def test_same_frames_same_numbers(engine, tiny_model):
    frames = _test_frames(tiny_model)
    first = [(r.score, r.anomaly_map) for r in engine.predict(frames)]
    second = [(r.score, r.anomaly_map) for r in engine.predict(frames)]
    for (s1, m1), (s2, m2) in zip(first, second):
        assert s1 == s2 and np.array_equal(m1, m2)


def test_default_thresholds_are_the_calibrated_ones_and_3_sigma_is_the_fallback(engine, tiny_model):
    _, data = load_trained_model(tiny_model.class_dir)
    assert engine.threshold == pytest.approx(data["calibration"]["image_threshold"])
    assert engine.info.pixel_threshold == pytest.approx(data["calibration"]["pixel_threshold"])
    # Checkpoints without calibration (older ones) keep mean + 3 std of the training-image scores.
    assert default_threshold(np.array([0.2, 0.4])) == pytest.approx(0.3 + 3 * 0.1)
    assert default_threshold(np.array([0.9, 1.0])) == 0.999
    assert default_threshold(np.array([])) == 0.5
    override = InferenceEngine(engine.backend, engine.info, threshold=0.0)
    assert all(r.is_defect for r in override.predict(_test_frames(tiny_model)))


def test_model_info_round_trip_and_bad_description(engine):
    assert ModelInfo.from_dict(engine.info.to_dict(), "x.json") == engine.info
    info = dataclasses.replace(engine.info, threshold=0.7, pixel_threshold=0.55)
    described = info.to_dict()
    assert described["pixel_threshold"] == 0.55 and ModelInfo.from_dict(described, "x.json") == info
    del described["pixel_threshold"]  # a description exported before pixel thresholds existed
    assert ModelInfo.from_dict(described, "x.json").pixel_threshold == 0.7
    broken = engine.info.to_dict()
    del broken["grid"]
    with pytest.raises(EngineError, match="x.json"):
        ModelInfo.from_dict(broken, "x.json")


@pytest.mark.parametrize("kwargs, flag", [
    ({"backend": "tensorrt"}, "--backend"),
    ({"batch_size": 0}, "--batch_size"),
    ({"threshold": 1.5}, "--threshold"),
    ({"device": "tpu"}, "--device"),
])
def test_bad_settings_name_the_flag(kwargs, flag):
    with pytest.raises(EngineError, match=flag) as info:
        EngineConfig("results/models/backbone_0", **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_says_so():
    with pytest.raises(EngineError, match="--device cpu"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_missing_model_and_wrong_class(tmp_path, tiny_model):
    with pytest.raises(CheckpointError, match="model directory not found"):
        InferenceEngine.from_config(EngineConfig(str(tmp_path / "nothing"), "mvtec_toy"))
    with pytest.raises(CheckpointError, match="mvtec_toy"):
        InferenceEngine.from_config(EngineConfig(str(tiny_model.model_path), "mvtec_nope"))


def test_bad_frames_are_refused(engine):
    with pytest.raises(EngineError, match="empty"):
        engine.predict([np.zeros((0, 10, 3), np.uint8)])
    with pytest.raises(EngineError, match="uint8"):
        engine.predict([np.zeros((64, 64, 3), np.float32)])
    with pytest.raises(EngineError, match="shape"):
        engine.predict([np.zeros((64, 64, 4), np.uint8)])


def test_onnx_provider_auto_falls_back_to_cpu_without_cuda_provider(monkeypatch):
    """--device auto on a CUDA machine with CPU-only onnxruntime runs ONNX on CPU; cuda asks for CUDA."""
    import onnxruntime

    from inference.backends import _onnx_provider

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert _onnx_provider("auto", torch.device("cuda")) == "cpu"
    assert _onnx_provider("cuda", torch.device("cuda")) == "cuda"  # OnnxBackend then says how to get it
    assert _onnx_provider("cpu", torch.device("cpu")) == "cpu"
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert _onnx_provider("auto", torch.device("cuda")) == "cuda"


def test_auto_backend_runs_onnx_on_cpu_and_falls_back_to_torch_when_export_fails(tiny_model, monkeypatch, caplog):
    from inference import onnx_export

    frames = _test_frames(tiny_model)[:2]
    cfg = EngineConfig(str(tiny_model.model_path), tiny_model.class_name, device="cpu", backend="auto")
    auto = InferenceEngine.from_config(cfg)
    assert auto.backend_name == "onnx"
    torch_engine = InferenceEngine.from_config(EngineConfig(str(tiny_model.model_path), tiny_model.class_name,
                                                            device="cpu", backend="torch"))
    assert torch_engine.backend_name == "torch"
    np.testing.assert_allclose(np.stack(auto.patch_scores(frames)), np.stack(torch_engine.patch_scores(frames)),
                               atol=1e-4)

    def unwritable(class_dir):
        raise PermissionError(13, "Permission denied", str(class_dir))

    monkeypatch.setattr(onnx_export, "cached_export", unwritable)
    fallback = InferenceEngine.from_config(cfg)
    assert fallback.backend_name == "torch" and "running the checkpoint in PyTorch" in caplog.text
    with pytest.raises(PermissionError):  # asked for onnx explicitly: no fallback
        InferenceEngine.from_config(EngineConfig(str(tiny_model.model_path), tiny_model.class_name, device="cpu",
                                                 backend="onnx"))


def test_regions_extend_to_the_typical_defect_free_peak(tiny_model):
    """pixel_low is the mean map maximum of the calibration images, never above the pixel threshold."""
    _, data = load_trained_model(tiny_model.class_dir)
    calibrated = dict(data, calibration={**data.get("calibration", {}), "image_threshold": 0.7,
                                         "pixel_threshold": 0.6, "map_maxima": [0.4, 0.5, 0.6]})
    info = ModelInfo.from_checkpoint(calibrated, "c", (8, 16))
    assert info.pixel_low == pytest.approx(0.5) and info.region_low == pytest.approx(0.5)
    assert ModelInfo.from_dict(info.to_dict(), "x.json") == info
    high = dict(calibrated, calibration={**calibrated["calibration"], "map_maxima": [0.9, 0.95]})
    assert ModelInfo.from_checkpoint(high, "c", (8, 16)).region_low == pytest.approx(0.6)
    old = {k: v for k, v in data.items() if k != "calibration"}
    legacy = ModelInfo.from_checkpoint(old, "c", (8, 16))
    assert legacy.pixel_low is None and legacy.region_low == legacy.pixel_threshold
    assert checkpoint_thresholds(calibrated) == pytest.approx((0.7, 0.6, 0.5))
    assert checkpoint_thresholds(high) == pytest.approx((0.7, 0.6, 0.6))
    fallback = default_threshold(np.asarray(old.get("train_scores", []), dtype=np.float64))
    assert checkpoint_thresholds(old) == (fallback, fallback, None)


def test_cell_px_is_the_grid_stride_in_frame_pixels():
    """Known answers: stride 8 at the training scale, times the frame's (or its ROI's) scale."""
    engine = InferenceEngine(_CellMean(), dataclasses.replace(_CELL_INFO, resize=320, imagesize=320))
    assert engine.cell_px((320, 768)) == pytest.approx(8.0)
    assert engine.cell_px((640, 1536)) == pytest.approx(16.0)  # twice the training scale
    assert engine.cell_px((200, 900)) == pytest.approx(5.0)
    with_roi = InferenceEngine(_CellMean(), dataclasses.replace(_CELL_INFO, resize=320, imagesize=320),
                               roi=(0, 0, 900, 160))
    assert with_roi.cell_px((320, 900)) == pytest.approx(4.0)  # the ROI's 160 rows are scored at 320


def test_edge_band_is_four_strides_at_the_training_scale_within_a_quarter_of_the_region():
    """Known answers: 4 x pad_to (16) = 64 training-scale pixels, times the frame's scale; capped at a quarter of
    the region's shorter side; the region is the ROI when one is set."""
    from inference.engine import surface_edges

    engine = InferenceEngine(_CellMean(), dataclasses.replace(_CELL_INFO, resize=320, imagesize=320))
    assert engine.edge_band((320, 768)) == ((0, 0, 768, 320), 64)
    assert engine.edge_band((640, 1536)) == ((0, 0, 1536, 640), 128)  # twice the training scale
    assert engine.edge_band((200, 900)) == ((0, 0, 900, 200), 40)  # ceil(64 * 200 / 320)
    small = InferenceEngine(_CellMean(), _CELL_INFO)  # resize 32: 64 training pixels = twice the short side
    assert small.edge_band((32, 48)) == ((0, 0, 48, 32), 8)  # capped at 32 // 4
    with_roi = InferenceEngine(_CellMean(), dataclasses.replace(_CELL_INFO, resize=320, imagesize=320),
                               roi=(100, 20, 740, 300))
    assert surface_edges(with_roi, (320, 800)) == {"surface_view": (100, 20, 740, 300), "surface_margin": 56}
