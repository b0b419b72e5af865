"""Decision thresholds from defect-free images the model never trained on (held-out calibration).

Scores of the training images are optimistic: the discriminator learnt exactly those images as
normal. Training therefore holds out part of train/good (`dataset --holdout`, default 10 %, at
least 8 images; datasets.base.split_holdout) and, when the final model is written, scores the
held-out and the training images exactly as the inference engine scores video frames (whole
image, BGR from cv2.imread, the training scale; `InferenceEngine.predict`). Then

* image threshold (a frame whose score is at or above it is a defect) = max(max, mean + 3 s) of the
  held-out image scores, s = the larger of their standard deviation and the training images', and
  at least the training images' 99.5th percentile;
* pixel threshold (the anomaly-map level that cuts maps into defect regions) = the same rule on the
  per-image maxima of the anomaly maps (maps are smoothed, so their peaks lie below the image scores);
* honest false-alarm rates: leave-one-out, each held-out image judged by the threshold the same rule
  computes from the other held-out images.

The held-out images give the level (unbiased), the many training images a floor for the spread,
which a handful of held-out images estimates poorly, and a floor for the threshold itself: training
scores are optimistic (at most as high as unseen ones), so their 99.5th percentile lies at or below
the unseen images' and a threshold under it would flag more than 0.5 % of new images. It binds when
the held-out images miss a rare but normal look (bench_line's lines: frames whose edge cells meet
texture that the centre crops of training never put there, 2-4 % of the frames): wide frames trained
from their centre crops show such looks in their training images too, as the model learnt the crop
only. Square images trained whole score low and mostly leave the floor below the held-out rule.

The rules were chosen by measurement on unseen normal and defective images among the candidates in
IMAGE_RULES / PIXEL_RULES (docs/calibration.md; `python inference/calibration.py --help` repeats the
measurement on a trained model and its MVTec-layout test split). Without held-out images the same
rule runs on the training images alone and the checkpoint says so (source "training").
"""
from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import click
import cv2
import numpy as np
import torch

import utils

LOGGER = logging.getLogger(__name__)

SOURCES = ("heldout", "training")
MAX_THRESHOLD = 0.999  # scores lie in [0, 1]; a threshold is kept below 1 so that 1.0 still counts
MAP_SAMPLE = 1 << 16  # pixels per map kept for pooled percentiles (maps are smooth: sigma 4 Gaussian)


@dataclass(frozen=True)
class MapSummary:
    """What the pixel rules need of one anomaly map: its maximum and an even subsample of its pixels."""

    maximum: float
    pixels: np.ndarray  # float32, at most MAP_SAMPLE values taken on a regular grid

    @classmethod
    def of(cls, amap: np.ndarray, sample: int = MAP_SAMPLE) -> MapSummary:
        """The summary of a map (every k-th row and column, k chosen so that at most `sample` remain;
        sample 0 keeps the maximum only, which is all the chosen rule needs)."""
        if sample <= 0:
            return cls(float(amap.max()), np.empty(0, np.float32))
        step = max(1, math.ceil(math.sqrt(amap.size / sample)))
        return cls(float(amap.max()), np.ascontiguousarray(amap[::step, ::step], np.float32).ravel())


# ---- rules ---------------------------------------------------------------------------------------
# An image rule maps defect-free image scores (and what it uses of the training images' scores) to a
# threshold; a pixel rule maps defect-free map summaries (and the same of the training images' map
# maxima) to one. Without a separate training set (source "training") the training part is empty.

TAIL = 0.995  # the training quantile that floors the chosen rule (bench_line's lines: 0.99 left 2.2 %)


@dataclass(frozen=True)
class TrainingScores:
    """What the rules use of the training images' scores (or map maxima): their spread and upper tail."""

    std: float = 0.0
    tail: float = -math.inf  # the TAIL quantile; -inf without training images

    @classmethod
    def of(cls, values: np.ndarray) -> TrainingScores:
        """The summary of some training scores (none: no floor at all)."""
        values = np.asarray(values, np.float64)
        if not len(values):
            return cls()
        return cls(float(values.std()), float(np.quantile(values, TAIL)))


NO_TRAINING = TrainingScores()

def _mean_sigma(values: np.ndarray, sigmas: float, spread: float = 0.0) -> float:
    """mean + sigmas * s with s the larger of the values' own standard deviation and `spread`."""
    return float(values.mean() + sigmas * max(float(values.std()), spread))


def _max_or_sigma(values: np.ndarray, sigmas: float, spread: float = 0.0) -> float:
    return max(float(values.max()), _mean_sigma(values, sigmas, spread))


PREVIOUS = "max(max,mean+3max(std,train_std))"  # the chosen rule of sessions 9-13
CHOSEN = "max(max,mean+3max(std,train_std),train_q99.5)"

IMAGE_RULES: dict[str, Callable[[np.ndarray, TrainingScores], float]] = {
    "max": lambda s, _: float(s.max()),
    "q99": lambda s, _: float(np.quantile(s, 0.99)),
    "mean+3std": lambda s, _: _mean_sigma(s, 3.0),
    "max(max,mean+3std)": lambda s, _: _max_or_sigma(s, 3.0),
    "max(max,mean+4std)": lambda s, _: _max_or_sigma(s, 4.0),
    PREVIOUS: lambda s, train: _max_or_sigma(s, 3.0, train.std),
    CHOSEN: lambda s, train: max(_max_or_sigma(s, 3.0, train.std), train.tail),
}


def _pooled(summaries: Sequence[MapSummary]) -> np.ndarray:
    return np.concatenate([m.pixels for m in summaries])


def maxima(summaries: Sequence[MapSummary]) -> np.ndarray:
    """The maxima of some map summaries."""
    return np.array([m.maximum for m in summaries], np.float64)


PIXEL_RULES: dict[str, Callable[[Sequence[MapSummary], TrainingScores], float]] = {
    "p99.9": lambda m, _: float(np.quantile(_pooled(m), 0.999)),
    "p99.99": lambda m, _: float(np.quantile(_pooled(m), 0.9999)),
    "max": lambda m, _: float(maxima(m).max()),
    "max(max,mean+3std)": lambda m, _: _max_or_sigma(maxima(m), 3.0),
    "max(max,mean+4std)": lambda m, _: _max_or_sigma(maxima(m), 4.0),
    PREVIOUS: lambda m, train: _max_or_sigma(maxima(m), 3.0, train.std),
    CHOSEN: lambda m, train: max(_max_or_sigma(maxima(m), 3.0, train.std), train.tail),
}

# Chosen by measurement (docs/calibration.md): the held-out images give the level, the training images
# (many more) a floor for the spread, which eight held-out images estimate poorly, and for the threshold
# (their 99.5th percentile; bench_line's lines). Pixel rules other than the percentiles work on the
# per-image map maxima.
IMAGE_RULE = CHOSEN
PIXEL_RULE = CHOSEN


def _capped(value: float) -> float:
    """A threshold kept inside [0, MAX_THRESHOLD]."""
    return float(min(max(value, 0.0), MAX_THRESHOLD))


def image_threshold(scores: np.ndarray, rule: str = IMAGE_RULE, train: TrainingScores = NO_TRAINING) -> float:
    """The image threshold of a rule from defect-free image scores (and the training scores' summary)."""
    return _capped(IMAGE_RULES[rule](np.asarray(scores, np.float64), train))


def pixel_threshold(summaries: Sequence[MapSummary], rule: str = PIXEL_RULE,
                    train: TrainingScores = NO_TRAINING) -> float:
    """The pixel threshold of a rule from defect-free anomaly maps (and the training map maxima's summary)."""
    return _capped(PIXEL_RULES[rule](summaries, train))


def leave_one_out_rate(items: Sequence[Any], threshold_of: Callable[[Sequence[Any]], float],
                       value_of: Callable[[Any], float]) -> float:
    """Fraction of items at or above the threshold computed from the other items (nan below 2 items)."""
    if len(items) < 2:
        return math.nan
    flagged = sum(value_of(items[i]) >= threshold_of([x for j, x in enumerate(items) if j != i])
                  for i in range(len(items)))
    return flagged / len(items)


def image_loo(scores: np.ndarray, rule: str = IMAGE_RULE, train: TrainingScores = NO_TRAINING) -> float:
    """Leave-one-out rate of images at or above the image threshold of the others."""
    return leave_one_out_rate(list(np.asarray(scores, np.float64)),
                              lambda rest: image_threshold(np.array(rest), rule, train), float)


def pixel_loo(summaries: Sequence[MapSummary], rule: str = PIXEL_RULE, train: TrainingScores = NO_TRAINING) -> float:
    """Leave-one-out rate of images with a map pixel at or above the pixel threshold of the others."""
    return leave_one_out_rate(list(summaries), lambda rest: pixel_threshold(rest, rule, train),
                              lambda m: m.maximum)


def calibrate(scores: np.ndarray, summaries: Sequence[MapSummary], names: Sequence[str], source: str,
              train_scores: np.ndarray | None = None, train_summaries: Sequence[MapSummary] = (),
              image_rule: str = IMAGE_RULE, pixel_rule: str = PIXEL_RULE) -> dict[str, Any]:
    """The checkpoint's "calibration" entry from defect-free image scores and their map summaries;
    `train_scores` / `train_summaries`: the training images' (source "heldout"), whose spreads floor
    the held-out ones'."""
    if source not in SOURCES:
        raise ValueError(f"calibration source {source!r}: use one of {', '.join(SOURCES)}")
    scores = np.asarray(scores, np.float64)
    if not len(scores) or len(scores) != len(summaries) or len(scores) != len(names):
        raise ValueError("calibration needs one score, map and name per image, and at least one image")
    train = np.asarray(train_scores if train_scores is not None else [], np.float64)
    image_train = TrainingScores.of(train)
    pixel_train = TrainingScores.of(maxima(train_summaries))
    return {
        "source": source,
        "images": [str(n) for n in names],
        "image_scores": [float(s) for s in scores],
        "map_maxima": [float(m) for m in maxima(summaries)],
        "image_threshold": image_threshold(scores, image_rule, image_train),
        "pixel_threshold": pixel_threshold(summaries, pixel_rule, pixel_train),
        "image_rule": image_rule,
        "pixel_rule": pixel_rule,
        "train_spread": {"images": len(train), "image_std": image_train.std, "map_max_std": pixel_train.std,
                         "image_tail": _finite(image_train.tail), "map_max_tail": _finite(pixel_train.tail)},
        "false_alarm_rate": image_loo(scores, image_rule, image_train),
        "pixel_false_alarm_rate": pixel_loo(summaries, pixel_rule, pixel_train),
    }


def _finite(value: float) -> float | None:
    """A value as JSON holds it: None in place of an infinity."""
    return value if math.isfinite(value) else None


def describe(calibration: dict[str, Any]) -> str:
    """One line: thresholds, rules and the leave-one-out false-alarm rates."""
    count = len(calibration["images"])

    def rate(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{100 * value:.1f} % ({round(value * count)} of {count})"

    rules = {calibration["image_rule"], calibration["pixel_rule"]}
    rule = calibration["image_rule"] if len(rules) == 1 else f"{calibration['image_rule']}; {calibration['pixel_rule']}"
    return (f"image threshold {calibration['image_threshold']:.4f}, pixel threshold "
            f"{calibration['pixel_threshold']:.4f} ({rule}) from {count} "
            f"{'held-out' if calibration['source'] == 'heldout' else 'training (optimistic)'} images; "
            f"leave-one-out false alarms: images {rate(calibration['false_alarm_rate'])}, "
            f"regions {rate(calibration['pixel_false_alarm_rate'])}")


# ---- scoring -------------------------------------------------------------------------------------

def read_frame(path: str | Path) -> np.ndarray:
    """An image file as the video commands see a frame: BGR uint8, whole (cv2.imread)."""
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        from datasets.base import DatasetError

        raise DatasetError(f"cannot read image {path} with OpenCV; replace or remove the file")
    return frame


def model_engine(net: Any, device: torch.device, class_name: str = "", batch_size: int = 8) -> Any:
    """An InferenceEngine on a GlassModel in memory (thresholds irrelevant: only scores and maps are used)."""
    from inference.backends import TorchBackend
    from inference.engine import InferenceEngine
    from inference.model_info import ModelInfo

    info = ModelInfo.for_net(net.cfg, class_name, net.strides, 0.5, 0.5)
    return InferenceEngine(TorchBackend(net, device), info, batch_size=batch_size)


def score_images(engine: Any, paths: Sequence[str | Path], keep_maps: bool = False, sample: int = MAP_SAMPLE
                 ) -> tuple[np.ndarray, list[MapSummary], list[np.ndarray]]:
    """(image scores, map summaries of `sample` pixels, full maps when asked) of image files, scored
    as video frames."""
    scores, summaries, maps = [], [], []
    step = max(1, engine.batch_size)
    for start in range(0, len(paths), step):
        for result in engine.predict([read_frame(p) for p in paths[start:start + step]]):
            scores.append(result.score)
            summaries.append(MapSummary.of(result.anomaly_map, sample))
            if keep_maps:
                maps.append(result.anomaly_map)
    return np.asarray(scores, np.float64), summaries, maps


def calibrate_model(net: Any, device: torch.device, heldout: Sequence[str | Path], training: Sequence[str | Path],
                    batch_size: int = 8) -> dict[str, Any]:
    """Scores the held-out and the training image files with the model as the engine scores frames
    and calibrates on the held-out ones (source "heldout"), or on the training ones when none are
    held out (source "training"). Leaves the model in eval mode."""
    engine = model_engine(net, device, batch_size=batch_size)
    train_scores, train_summaries, _ = score_images(engine, training, sample=0)  # maxima only: any number of images
    if not heldout:
        return calibrate(train_scores, train_summaries, [Path(p).name for p in training], "training")
    scores, summaries, _ = score_images(engine, heldout)
    return calibrate(scores, summaries, [Path(p).name for p in heldout], "heldout", train_scores, train_summaries)


# ---- measurement (docs/calibration.md) -----------------------------------------------------------

def _load_mask(path: Path | None, shape: tuple[int, int]) -> np.ndarray:
    """A ground-truth mask as bool at the map's shape (all False for good images)."""
    if path is None:
        return np.zeros(shape, bool)
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask.shape != shape:
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask > 0


@dataclass(frozen=True)
class _Judged:
    """What judging a threshold needs of a test image: score, map maximum and sorted map values."""

    score: float
    maximum: float
    inside: np.ndarray  # sorted map values inside the defect mask (empty for good images)
    outside: np.ndarray  # sorted map values outside it

    def at_or_above(self, values: np.ndarray, t: float) -> int:
        return int(len(values) - np.searchsorted(values, t, side="left"))


def _judge(score: float, amap: np.ndarray, mask: np.ndarray) -> _Judged:
    return _Judged(score, float(amap.max()), np.sort(amap[mask]), np.sort(amap[~mask]))


def _rates(t_image: float, t_pixel: float, good: Sequence[_Judged], bad: Sequence[_Judged]) -> dict[str, float]:
    """False alarms on good images and recall / mask coverage on defective ones at two thresholds."""
    coverage = [d.at_or_above(d.inside, t_pixel) / max(1, len(d.inside)) for d in bad]
    region = [(d.at_or_above(d.inside, t_pixel), d.at_or_above(d.outside, t_pixel)) for d in bad]
    return {
        "image_false_alarm": float(np.mean([g.score >= t_image for g in good])),
        "image_recall": float(np.mean([d.score >= t_image for d in bad])),
        "pixel_false_alarm": float(np.mean([g.maximum >= t_pixel for g in good])),
        "pixel_found": float(np.mean([d.at_or_above(d.inside, t_pixel) > 0 for d in bad])),
        "coverage": float(np.mean(coverage)),
        "outside_share": float(np.mean([o / (i + o) for i, o in region if i + o])) if any(sum(r) for r in region)
        else 0.0,
    }


LEGACY = "legacy: training mean+3std"  # the rule before calibration: from the training images, for both


def measure(class_dir: Path, data_path: Path, classname: str, splits: int = 200, device: str = "cpu"
            ) -> dict[str, Any]:
    """Every candidate rule judged on unseen images of the class: (1) computed from the checkpoint's
    held-out images, judged on test/good and on the defective test images; (2) averaged over `splits`
    random draws of as many calibration images from all unseen normal images (held-out + test/good),
    judged on the rest, which averages out the luck of one small calibration set. LEGACY is the rule
    before calibration (mean + 3 std of the training images' scores, for pixels too)."""
    from datasets.base import list_images
    from datasets.mvtec import mvtec_samples
    from methods.registry import load_trained_model
    from model import CheckpointError, final_checkpoint_path

    net, data = load_trained_model(class_dir, device)
    stored = data.get("calibration")
    if not stored or stored["source"] != "heldout":
        raise CheckpointError(f"{final_checkpoint_path(class_dir)}: no held-out calibration stored; "
                              "train with --holdout")
    engine = model_engine(net, torch.device(device))
    train_dir = data_path / classname / "train" / "good"
    train_scores, train_maps, _ = score_images(
        engine, [p for p in list_images(train_dir) if p.name not in set(stored["images"])])
    image_train, pixel_train = TrainingScores.of(train_scores), TrainingScores.of(maxima(train_maps))
    legacy = min(_mean_sigma(train_scores, 3.0), MAX_THRESHOLD)
    cal_scores, cal_maps, cal_full = score_images(engine, [train_dir / name for name in stored["images"]],
                                                  keep_maps=True)
    samples = mvtec_samples(data_path, classname, "test")
    scores, summaries, maps = score_images(engine, [s.image_path for s in samples], keep_maps=True)
    judged = [_judge(sc, m, _load_mask(s.mask_path, m.shape)) for s, sc, m in zip(samples, scores, maps)]
    good = [j for s, j in zip(samples, judged) if not s.is_anomaly]
    bad = [j for s, j in zip(samples, judged) if s.is_anomaly]
    bad_by_type: dict[str, list[_Judged]] = {}
    for s, j in zip(samples, judged):
        if s.is_anomaly:
            bad_by_type.setdefault(s.anomaly_type, []).append(j)
    pool_scores = np.concatenate([cal_scores, [j.score for j in good]])
    pool_maps = list(cal_maps) + [m for s, m in zip(samples, summaries) if not s.is_anomaly]
    pool_judged = [_judge(sc, m, np.zeros(m.shape, bool)) for sc, m in zip(cal_scores, cal_full)] + good
    rng = np.random.default_rng(0)
    draws = [rng.permutation(len(pool_scores)) for _ in range(splits)]
    n_cal = len(cal_scores)
    out: dict[str, Any] = {"calibration_images": n_cal, "training_images": len(train_scores),
                           "test_good": len(good), "test_defect": len(bad), "splits": splits,
                           "train_image_std": image_train.std, "train_map_max_std": pixel_train.std,
                           "image": {}, "pixel": {}}
    image_rules = {**{r: (lambda sc, r=r: image_threshold(sc, r, image_train)) for r in IMAGE_RULES},
                   LEGACY: lambda sc: legacy}
    for rule, threshold_of in image_rules.items():
        t = threshold_of(cal_scores)
        fixed = _rates(t, 1.0, good, bad)
        redrawn = [_rates(threshold_of(pool_scores[d[:n_cal]]), 1.0, [pool_judged[i] for i in d[n_cal:]], bad)
                   for d in draws]
        out["image"][rule] = {
            "threshold": t,
            "loo_false_alarm": leave_one_out_rate(
                list(cal_scores), lambda rest, rule_of=threshold_of: rule_of(np.array(rest)), float),
            "false_alarm": fixed["image_false_alarm"], "recall": fixed["image_recall"],
            "recall_by_type": {kind: float(np.mean([j.score >= t for j in bad_by_type[kind]]))
                               for kind in sorted(bad_by_type)},
            "splits_false_alarm": float(np.mean([r["image_false_alarm"] for r in redrawn])),
            "splits_recall": float(np.mean([r["image_recall"] for r in redrawn])),
        }
    pixel_rules = {**{r: (lambda ms, r=r: pixel_threshold(ms, r, pixel_train)) for r in PIXEL_RULES},
                   LEGACY: lambda ms: legacy}
    keys = ("pixel_false_alarm", "pixel_found", "coverage", "outside_share")
    for rule, threshold_of in pixel_rules.items():
        t = threshold_of(cal_maps)
        fixed = _rates(1.0, t, good, bad)
        redrawn = [_rates(1.0, threshold_of([pool_maps[i] for i in d[:n_cal]]), [pool_judged[i] for i in d[n_cal:]],
                          bad) for d in draws]
        out["pixel"][rule] = {
            "threshold": t,
            "loo_false_alarm": leave_one_out_rate(cal_maps, threshold_of, lambda m: m.maximum),
            **{k: fixed[k] for k in keys},
            **{f"splits_{k}": float(np.mean([r[k] for r in redrawn])) for k in keys},
        }
    return out


@click.command(name="calibration", help="Measure every candidate threshold rule of a trained class on its "
               "MVTec-layout test split (false alarms on test/good, defect recall, mask coverage); prints JSON.")
@click.option("--class_dir", type=click.Path(path_type=Path), required=True,
              help="results/models/backbone_0/<dataset>_<class>")
@click.option("--data_path", type=click.Path(path_type=Path), required=True,
              help="the MVTec-layout dataset root it was trained on")
@click.option("--class_name", required=True, help="the class folder under --data_path")
@click.option("--splits", type=int, default=200, help="random calibration draws from all unseen normals")
def main(class_dir: Path, data_path: Path, class_name: str, splits: int) -> None:
    """Prints every rule's measurement as JSON."""
    logging.getLogger().setLevel(logging.WARNING)
    click.echo(json.dumps(measure(class_dir, data_path, class_name, splits), indent=1))


def _cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for a bad flag)."""
    return utils.run_command(main, argv, "check --class_dir and --data_path")


if __name__ == "__main__":
    sys.exit(_cli())
