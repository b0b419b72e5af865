"""The ConvLSTM video autoencoder (methods/video_autoencoder.py) and its training and scoring (temporal.py)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import temporal
import video_io
from methods.base import CheckpointError
from methods.video_autoencoder import (
    ConvLSTMCell, VideoAEConfig, VideoAutoencoder, VideoModelError, clip_loss, error_maps, frame_scores,
    model_size, to_model_frames)

TINY = VideoAEConfig(clip_len=4, size=16, features=(4, 8), hidden=8)


def moving_frames(count: int, speed: int = 2, width: int = 48, height: int = 24, seed: int = 0) -> list[np.ndarray]:
    """Grey frames of a smooth random texture (dark, mean about 0.3) sliding left `speed` px per frame."""
    coarse = np.random.default_rng(seed).uniform(20, 130, (height // 4, (width + speed * count) // 4))
    strip = cv2.resize(coarse, (width + speed * count, height), interpolation=cv2.INTER_CUBIC).clip(0, 255)
    strip = strip.astype(np.uint8)
    return [strip[:, i * speed:i * speed + width].copy() for i in range(count)]


def test_convlstm_cell_keeps_the_map_size_and_runs_without_input():
    cell = ConvLSTMCell(3, 5, kernel=3)
    x = torch.rand(2, 3, 6, 7)
    h, c = cell(x, cell.zero_state(x))
    assert h.shape == c.shape == (2, 5, 6, 7)
    free = ConvLSTMCell(0, 5)
    h2, c2 = free(None, (h, c))
    assert h2.shape == (2, 5, 6, 7) and torch.all(h2.abs() < 1)


def test_convlstm_cell_matches_the_lstm_equations():
    cell = ConvLSTMCell(1, 1, kernel=1)
    with torch.no_grad():  # gates i, f, o, g = 1*x + 0*h + bias
        cell.gates.weight.copy_(torch.tensor([[[[1.0]], [[0.0]]]] * 4))
        cell.gates.bias.copy_(torch.tensor([0.0, 1.0, 0.0, 0.0]))
    x = torch.full((1, 1, 1, 1), 0.5)
    c0 = torch.full((1, 1, 1, 1), 2.0)
    h, c = cell(x, (torch.zeros_like(x), c0))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    expected_c = sig(1.5) * 2.0 + sig(0.5) * np.tanh(0.5)
    assert c.item() == pytest.approx(expected_c, rel=1e-6)
    assert h.item() == pytest.approx(sig(0.5) * np.tanh(expected_c), rel=1e-6)


def test_autoencoder_shapes_reconstruction_and_prediction():
    net = VideoAutoencoder(VideoAEConfig(clip_len=4, size=16, features=(4, 8), hidden=8, predict_frames=2,
                                         standardise=False))
    with torch.no_grad():
        reconstruction, prediction = net(torch.rand(3, 4, 1, 16, 24))
    assert reconstruction.shape == (3, 4, 1, 16, 24) and prediction.shape == (3, 2, 1, 16, 24)
    assert 0 <= float(reconstruction.min()) and float(reconstruction.max()) <= 1  # sigmoid output


def test_standardised_clips_come_back_in_the_clip_units():
    net = VideoAutoencoder(TINY)
    with torch.no_grad():
        flat = net(torch.full((1, 4, 1, 16, 24), 0.7))[0]  # std 0 -> the floor, no division by zero
        bright = net(torch.rand(1, 4, 1, 16, 24) * 0.1 + 0.8)[0]
    assert torch.isfinite(flat).all() and abs(float(flat.mean()) - 0.7) < 0.05
    assert abs(float(bright.mean()) - 0.85) < 0.1
    assert VideoAutoencoder(TINY)(torch.rand(1, 4, 1, 16, 24))[1] is None


def test_losses_and_scores_against_hand_computed_values():
    clip = torch.zeros(1, 2, 1, 2, 2)
    output = clip.clone()
    output[0, 0, 0, 0, 0] = 1.0  # one pixel of 8 off by 1
    assert clip_loss(output, clip).item() == pytest.approx(1 / 8)
    future, prediction = torch.zeros(1, 1, 1, 2, 2), torch.full((1, 1, 1, 2, 2), 0.5)
    assert clip_loss(output, clip, prediction, future).item() == pytest.approx(1 / 8 + 0.25)
    maps = error_maps(output, clip)
    assert maps.shape == (1, 2, 2, 2) and maps[0, 0, 0, 0] == 1 and maps.sum() == 1
    errors = torch.tensor([[1.0, 2.0], [3.0, 10.0]])
    assert frame_scores(errors).item() == pytest.approx(4.0)
    assert frame_scores(errors, 0.5).item() == pytest.approx(6.5)  # the largest half: 10 and 3
    colour = torch.zeros(1, 3, 1, 1)
    assert error_maps(colour + torch.tensor([0.0, 1.0, 2.0]).view(1, 3, 1, 1), colour).item() == pytest.approx(5 / 3)


def test_frames_of_any_shape_grey_or_colour_reach_the_model_size():
    assert model_size(320, 128, VideoAEConfig()) == (160, 64)
    assert model_size(128, 320, VideoAEConfig()) == (64, 160)
    assert model_size(101, 77, VideoAEConfig(size=32)) == (40, 32)  # 41.97 -> the nearest multiple of 4
    grey = to_model_frames([np.full((77, 101), 255, np.uint8)], VideoAEConfig(size=32))
    assert grey.shape == (1, 1, 32, 40) and grey.dtype == np.float32 and np.allclose(grey, 1)
    colour = to_model_frames([np.zeros((30, 40, 3), np.uint8)], VideoAEConfig(size=16, channels=3))
    assert colour.shape == (1, 3, 16, 20)
    assert to_model_frames([np.zeros((30, 40, 3), np.uint8)], TINY).shape == (1, 1, 16, 20)
    with pytest.raises(VideoModelError, match="one size"):
        to_model_frames([np.zeros((30, 40), np.uint8), np.zeros((32, 40), np.uint8)], TINY)


@pytest.mark.parametrize("changes, flag", [
    ({"clip_len": 1}, "--clip_len"), ({"channels": 2}, "--channels"), ({"features": ()}, "--features"),
    ({"size": 8}, "--size"), ({"kernel": 2}, "--kernel"), ({"predict_frames": -1}, "--predict_frames"),
    ({"top_fraction": 0.0}, "--top_fraction"),
])
def test_bad_settings_are_one_line_errors_naming_the_flag(changes, flag):
    with pytest.raises(VideoModelError, match=flag):
        VideoAEConfig(**{**TINY.to_dict(), **changes})


def test_config_round_trips_through_its_dict():
    assert VideoAEConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(CheckpointError, match="unknown fields"):
        VideoAEConfig.from_dict({**TINY.to_dict(), "colour": 1})


def test_a_tiny_training_run_lowers_the_loss_and_same_seed_gives_same_numbers():
    frames = to_model_frames(moving_frames(16), TINY)
    settings = temporal.TrainConfig(epochs=3, batch_size=4, lr=0.01, seed=3)
    torch.manual_seed(0)
    a = VideoAutoencoder(TINY)
    torch.manual_seed(0)
    b = VideoAutoencoder(TINY)
    losses = temporal.fit(a, [frames], settings, progress=False)
    assert losses[-1] < 0.9 * losses[0]
    assert temporal.fit(b, [frames], settings, progress=False) == losses
    assert np.array_equal(temporal.score_frames(a, frames).scores, temporal.score_frames(b, frames).scores)


def test_every_frame_is_scored_and_clip_starts_cover_the_end():
    assert temporal.clip_starts(8, 4) == [0, 2, 4]
    assert temporal.clip_starts(9, 4) == [0, 2, 4, 5]
    with pytest.raises(temporal.TemporalError, match="at least --clip_len 4"):
        temporal.clip_starts(3, 4)
    net = VideoAutoencoder(VideoAEConfig(clip_len=4, size=16, features=(4, 8), hidden=8, predict_frames=2))
    scored = temporal.score_frames(net, to_model_frames(moving_frames(11), net.cfg))
    assert scored.scores.shape == (11,) and scored.errors.shape == (11, 16, 32)
    assert scored.reconstructions.shape == (11, 1, 16, 32) and np.all(scored.scores > 0)


def test_train_save_load_round_trip_gives_identical_scores(tmp_path):
    video = tmp_path / "normal.mp4"
    with video_io.AtomicVideoWriter(video, 25.0, (48, 24)) as writer:
        for frame in moving_frames(30):
            writer.write(frame)
    model, seconds = temporal.train([video], TINY, temporal.TrainConfig(epochs=1, batch_size=4), progress=False)
    assert seconds > 0 and model.threshold > 0 and model.calibration["frames"] == 6
    path = temporal.save_model(model, tmp_path / "model")
    loaded = temporal.load_model(tmp_path / "model")
    assert path.name == temporal.MODEL_FILE and loaded.threshold == model.threshold and loaded.net.cfg == TINY
    assert temporal.evaluate_video(loaded, video) == {**temporal.evaluate_video(model, video),
                                                      "ms_per_frame": pytest.approx(0, abs=1e9)}
    assert np.array_equal(temporal.score_video(loaded, video)[0].scores, temporal.score_video(model, video)[0].scores)
    temporal.check_same_settings(tmp_path / "model", TINY, temporal.TrainConfig(epochs=1, batch_size=4), [video])
    with pytest.raises(CheckpointError, match="different 'train' settings"):
        temporal.check_same_settings(tmp_path / "model", TINY, temporal.TrainConfig(epochs=2, batch_size=4), [video])


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no ConvLSTM model here"):
        temporal.load_model(tmp_path)
    (tmp_path / temporal.MODEL_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        temporal.load_model(tmp_path)
    torch.save({"format": "other"}, tmp_path / temporal.MODEL_FILE)
    with pytest.raises(CheckpointError, match="not a convlstm video model"):
        temporal.load_model(tmp_path)


def test_truth_comes_from_the_sidecar_motion_fields():
    frames = [{"temporal_anomaly": False}, {"temporal_anomaly": True}]
    assert temporal.temporal_truth({"frames": frames}, 2) == [False, True]
    assert temporal.temporal_truth({"frames": [{}, {}], "settings": {"generator": "create_conveyor_video"}}, 2) == \
        [False, False]
    assert temporal.temporal_truth({"frames": [{}, {}]}, 2) is None and temporal.temporal_truth(None, 2) is None
    metrics = temporal.detection_metrics(np.array([0.1, 0.9, 0.2, 0.8]), np.array([False, True, True, False]),
                                         [False, True, False, True])
    assert metrics["frame_auroc"] == 1.0 and metrics["false_alarm_rate"] == 0.5 and metrics["recall"] == 0.5
    truth = [False] * 6 + [True] + [False] * 3
    flagged = np.array([True] + [False] * 4 + [True] * 2 + [False] * 3)
    metrics = temporal.detection_metrics(np.arange(10.0), flagged, truth, margin=2)
    assert metrics["false_alarm_rate"] == pytest.approx(2 / 9) and metrics["false_alarm_rate_far"] == 0.2


def test_a_frame_folder_is_read_in_source_frame_order(tmp_path):
    import json

    frames = moving_frames(5)
    listing = {"settings": {"every": 1}, "train": [], "test": []}
    for index, frame in enumerate(frames):
        split = "test" if index == 2 else "train"
        name = f"{len(listing[split]):03d}.png"
        (tmp_path / split / "good").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / split / "good" / name), frame)
        listing[split].append({"image": f"{split}/good/{name}", "frame": index})
    (tmp_path / "video_to_dataset.json").write_text(json.dumps(listing))
    read = [image for batch in temporal.iter_source(tmp_path) for image in batch]
    assert [np.array_equal(a[:, :, 0], b) for a, b in zip(read, frames)] == [True] * 5


def test_sources_of_different_frame_sizes_train_together():
    wide = to_model_frames(moving_frames(8), TINY)
    square = to_model_frames(moving_frames(8, width=24), TINY)
    assert wide.shape[2:] != square.shape[2:]
    losses = temporal.fit(VideoAutoencoder(TINY), [wide, square], temporal.TrainConfig(epochs=1, batch_size=4),
                          progress=False)
    assert len(losses) == 1 and losses[0] > 0
