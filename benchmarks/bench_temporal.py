"""Temporal anomalies end to end: the ConvLSTM video autoencoder on a conveyor whose belt stops, then jerks.

    python benchmarks/bench_temporal.py                       # gravel 3 px/frame and brick 4 px/frame
    python benchmarks/bench_temporal.py --cases gravel --epochs 2 --train_frames 200   # a short run

Per case (texture, speed): a defect-free conveyor recording to train on (`create_conveyor_video.py
--defects 0 --frames N`; its last 20 % held out for the threshold), a test video in which the belt stops
for one second (--fps frames) and then jerks forward to catch up, at the same speed, and a new defect-free
recording to count false alarms on. The model is trained on CPU (temporal.train) and scored against the
sidecar truth (temporal.evaluate_video): frame AUROC, false-alarm rate on the normal frames (of the test
video, and of the new recording), recall of the abnormal frames at the threshold, train seconds, ms/frame.
Everything stays under --out (the rows also in OUT/bench_temporal.json).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import errors
import temporal
import utils
from methods.video_autoencoder import VideoAEConfig
from preprocessing.create_conveyor_video import ConveyorConfig, stop_and_jerk_videos


@dataclass(frozen=True)
class Case:
    """One conveyor: texture and belt speed (px/frame) at the benchmark's frame size."""

    texture: str
    speed: int


CASES = {"gravel": Case("gravel", 3), "brick": Case("brick", 4)}


def make_videos(case: Case, args: argparse.Namespace, folder: Path) -> dict[str, Path]:
    """The training recording, the stop+jerk test video and a new defect-free recording of one case."""
    base = ConveyorConfig(texture=case.texture, width=args.width, height=args.height, speed=case.speed, defects=0,
                          fps=args.fps)
    return stop_and_jerk_videos(folder, base, args.train_frames, args.test_frames, args.jerk_frames)


def run_case(case: Case, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Trains on one case's recording and evaluates the two test videos; one row per test video."""
    folder = Path(args.out) / f"{case.texture}_{case.speed}"
    paths = make_videos(case, args, folder)
    cfg = VideoAEConfig(predict_frames=args.predict_frames, top_fraction=args.top_fraction, size=args.size,
                        hidden=args.hidden, standardise=not args.raw)
    train_cfg = temporal.TrainConfig(epochs=args.epochs, lr=args.lr, seed=args.seed)
    model, seconds = temporal.train([paths["train"]], cfg, train_cfg, progress=not args.quiet)
    temporal.save_model(model, folder / "model")
    rows = []
    for name in ("stop_jerk", "normal"):
        result = temporal.evaluate_video(model, paths[name])
        rows.append({"case": f"{case.texture} {case.speed} px/f", "video": name, **result, "train_s": seconds})
    print(f"{case.texture}: losses {', '.join(f'{v:.5f}' for v in model.timing['losses'])}; held-out scores "
          f"{model.calibration}", flush=True)
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table."""
    def number(value: Any, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = ["| case | video | frames | frame AUROC | false alarms | false alarms > 1 clip away | recall | train s "
             "| ms/frame |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['video']} | {r['frames']} | {number(r.get('frame_auroc'))} | "
                     f"{number(r.get('false_alarm_rate'))} | {number(r.get('false_alarm_rate_far'))} | "
                     f"{number(r.get('recall'))} | {r['train_s']:.0f} | "
                     f"{r['ms_per_frame']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs the cases and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="gravel,brick", help=f"comma-separated, from {','.join(CASES)}")
    parser.add_argument("--width", type=utils.positive_int, default=320)
    parser.add_argument("--height", type=utils.positive_int, default=128)
    parser.add_argument("--fps", type=utils.positive_float, default=25.0)
    parser.add_argument("--train_frames", type=utils.positive_int, default=500)
    parser.add_argument("--test_frames", type=utils.positive_int, default=300)
    parser.add_argument("--jerk_frames", type=utils.positive_int, default=5)
    parser.add_argument("--epochs", type=utils.positive_int, default=temporal.TrainConfig.epochs)
    parser.add_argument("--lr", type=utils.positive_float, default=temporal.TrainConfig.lr)
    parser.add_argument("--size", type=utils.positive_int, default=64)
    parser.add_argument("--hidden", type=utils.positive_int, default=32)
    parser.add_argument("--predict_frames", type=utils.non_negative_int, default=0)
    parser.add_argument("--top_fraction", type=utils.positive_float, default=1.0)
    parser.add_argument("--seed", type=utils.non_negative_int, default=0)
    parser.add_argument("--threads", type=utils.positive_int, default=2)
    parser.add_argument("--out", default="results/bench_temporal")
    parser.add_argument("--raw", action="store_true", help="the network sees frames in [0, 1], not standardised clips")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    unknown = [name for name in args.cases.split(",") if name not in CASES]
    if unknown:
        parser.error(f"--cases {','.join(unknown)}: unknown; use some of {','.join(CASES)}")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = [row for name in args.cases.split(",") for row in run_case(CASES[name], args)]
    utils.atomic_write_text(Path(args.out) / "bench_temporal.json", json.dumps(rows, indent=2) + "\n")
    print(format_rows(rows))
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(errors.run_script(main))
