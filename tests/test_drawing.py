"""drawing: the heatmap colours on a fixed score scale."""
from __future__ import annotations

import numpy as np

import drawing


def test_heatmap_colours_use_a_fixed_score_scale():
    # JET in BGR: score 0 dark blue, 0.5 green, 1 dark red; outside [0, 1] clipped
    ends = drawing.colorize(np.array([[0.0, 0.5, 1.0, -0.2, 1.5]], np.float32))
    assert ends[0].tolist() == [[128, 0, 0], [126, 255, 130], [0, 0, 128], [128, 0, 0], [0, 0, 128]]
    low = drawing.colorize(np.full((4, 4), 0.1, np.float32))
    high = drawing.colorize(np.full((4, 4), 0.9, np.float32))
    # constant maps keep their own colour (no per-frame stretch): low scores blue, high scores red (BGR)
    assert low[0, 0, 0] > 200 and low[0, 0, 2] < 50
    assert high[0, 0, 2] > 200 and high[0, 0, 0] < 50
    mixed = drawing.colorize(np.array([[0.1, 0.9]], np.float32))
    assert (mixed[0, 0] == low[0, 0]).all() and (mixed[0, 1] == high[0, 0]).all()
    # a chosen range (the evaluation images share one): vmin dark blue, vmax dark red
    ranged = drawing.colorize(np.array([[2.0, 3.0, 4.0]]), vmin=2.0, vmax=4.0)
    assert ranged[0].tolist() == [[128, 0, 0], [126, 255, 130], [0, 0, 128]]


def test_true_runs_and_the_score_timeline():
    import cv2 as cv

    assert drawing.true_runs(np.array([1, 1, 0, 0, 1, 0, 1, 1, 1], bool)) == [(0, 1), (4, 4), (6, 8)]
    assert drawing.true_runs(np.zeros(4, bool)) == []
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.1])
    png = drawing.score_timeline_png(np.arange(5), scores, 0.5, scores >= 0.5, 25.0, scores > 0.5,
                                     {"score": "score", "truth": "truth", "axis": "anomaly score"})
    image = cv.imdecode(np.frombuffer(png, np.uint8), cv.IMREAD_COLOR)
    assert image.shape == (320, 1000, 3) and image.std() > 5
