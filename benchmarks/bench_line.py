"""A production line set up from a recording, end to end, scored against ground truth.

    python benchmarks/bench_line.py                                   # 640x256 gravel, ~15 min on 2 cores
    python benchmarks/bench_line.py --texture grass --width 1280 --height 720 --speed 12 --out results/line_grass

The four commands of the README's workflow, run as a user runs them:

1. record: a defect-free conveyor video of the surface (`create_conveyor_video.py --defects 0 --frames N`),
   and a second one at another speed (new footage for the false-alarm count), and the test
   video with painted defects (`--preset wide` scenario at the chosen size: a branching crack, a faint
   stain, defects at the frame edges, two in view at once);
2. dataset: `video_to_dataset.py` on the defect-free recording;
3. train: `main.py` (`--backbone`, default efficientnet_lite0, demo settings; thresholds calibrated on held-out frames);
4. track: `video_inference_with_tracking.py` on the three videos (with `--surface_window N`: first
   `calibrate_surface.py` on the defect-free recording, then tracking averages each map over N frames
   on the surface with those thresholds; `--calibrate` calibrates single frames, N = 1, the same way);

then `evaluate_tracking.py` on the defect video, and the share of flagged frames (single frames above the
image threshold) and the defects reported on the two defect-free videos. Prints one table; everything
stays under --out. `--reuse` keeps the videos, dataset and model of an earlier run in --out (to compare
tracking settings on the same model). `--new_surface` quilts every video's belt from random crops of the
photo so that it never repeats, the training video's from one half of the photo and the other two from
the other half, each with its own seed (surface the model has never seen, as on a real line; without
it all three videos show the same surface; with `--surface_window`, the surface is calibrated on a fourth
recording, of the second half with a seed of its own); `--noise` adds camera noise to all of them.
`--calibrate_from rest` trains on the first `--train_share` (default half) of the training recording and
calibrates on what follows one frame width of travel later (the single-recording workflow).
`--footage steel` records the three videos with `benchmarks/steel_conveyor.py` instead (brushed steel, crisp
defects: footage the toolkit was not developed on; `--speed` may be fractional); `--region_scale` is tracking's.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import errors

REPO = Path(__file__).resolve().parent.parent
TRAIN_FLAGS = [
    "net", "--pretrain_embed_dimension", "512",
    "--target_embed_dimension", "512", "--dsc_hidden", "512", "--lr", "0.0005", "--select", "last",
]


def run(command: list[str], log: Path) -> tuple[float, str]:
    """Runs one command from the repository root; (wall seconds, its output, also appended to log)."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    with open(log, "a") as handle:
        handle.write("$ " + " ".join(command) + "\n" + done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}; see {log}")
    return time.perf_counter() - started, done.stdout


def flagged(frames_csv: Path) -> tuple[int, int]:
    """(frames flagged, frames) of a tracking run's per-frame CSV."""
    with open(frames_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return sum(row["is_defect"] in ("1", "True", "true") for row in rows), len(rows)


def main(argv: list[str] | None = None) -> int:
    """Runs the workflow and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texture", default="gravel")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--speed", type=float, default=6, help="belt travel in pixels per frame (whole pixels, "
                        "but for --footage steel)")
    parser.add_argument("--footage", choices=("conveyor", "steel"), default="conveyor",
                        help="conveyor: preprocessing/create_conveyor_video.py (--texture; the defect video is its "
                             "--preset wide); steel: benchmarks/steel_conveyor.py (brushed steel, crisp defects, a "
                             "generator the toolkit was not developed on; every video new surface, --texture unused)")
    parser.add_argument("--region_scale", choices=("auto", "linear", "logit", "distance"), default="auto",
                        help="tracking's --region_scale")
    parser.add_argument("--normal_frames", type=int, default=600, help="frames of the defect-free recording")
    parser.add_argument("--every", type=int, default=3, help="video_to_dataset --every")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--pixel_size", type=float, default=0.1, help="mm per pixel")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/line"))
    parser.add_argument("--aug_path", type=Path, default=REPO / "demo_data" / "dtd" / "images",
                        help="LAS texture folder (DTD's images; the demo's: bash shell/run-demo.sh, or "
                             "python preprocessing/make_demo_dataset.py)")
    parser.add_argument("--surface_window", type=int, default=1,
                        help="tracking's --surface_window (1: each frame alone); above 1, calibrated first")
    parser.add_argument("--calibrate", action="store_true",
                        help="with --surface_window 1: calibrate single frames on a recording too "
                             "(calibrate_surface.py --surface_window 1) instead of the held-out thresholds")
    parser.add_argument("--calibrate_from", choices=("other", "rest", "recording"), default=None,
                        help="what calibrate_surface.py runs on: 'other' a fourth recording (of the second half with "
                             "--new_surface), 'rest' what the dataset leaves of the training recording after "
                             "--train_share (video_to_dataset --end; calibrate_surface --start one frame width of "
                             "travel later), 'recording' the training recording [other with --new_surface, else "
                             "recording]")
    parser.add_argument("--train_share", type=float, default=0.5,
                        help="with --calibrate_from rest: the share of the training recording the dataset takes")
    parser.add_argument("--resize", type=int, default=None,
                        help="main.py dataset --resize/--imagesize: the model's scale (frames' shorter side scaled to "
                             "it; above the shorter side the frames are enlarged) [the frame height rounded down to a "
                             "multiple of 16: full resolution]")
    parser.add_argument("--imagesize", type=int, default=None,
                        help="main.py dataset --imagesize: the training square, cut from frames scaled to --resize "
                             "[--resize]; smaller with --train_crop random trains large frames at full resolution")
    parser.add_argument("--train_crop", choices=("centre", "random"), default="centre",
                        help="main.py dataset --train_crop: where the square is cut (random: anywhere in the frame)")
    parser.add_argument("--jpeg", type=int, default=30,
                        help="main.py dataset --jpeg: half the training frames JPEG-compressed at a quality drawn in "
                             "JPEG..100 (0: none, as every line trained before 2026-12-04's evening)")
    parser.add_argument("--backbone", default="efficientnet_lite0", help="main.py net -b (e.g. efficientnet_lite2)")
    parser.add_argument("--layers", nargs="+", default=["blocks.2", "blocks.4"],
                        help="backbone layers the model is trained on (main.py -le; blocks.1: 4 px cells)")
    parser.add_argument("--downsampling", type=int, default=8, help="main.py dataset --downsampling: the stride "
                        "of the first of --layers (blocks.1: 4)")
    parser.add_argument("--new_surface", action="store_true",
                        help="surfaces quilted from random crops (create_conveyor_video --quilt, 3/8 of the height), "
                             "the training video's from one half of the photo, the other two videos' from the other "
                             "half (--surface) with their own seeds: surface the model has never seen")
    parser.add_argument("--noise", type=float, default=0.0, help="camera noise of every video (grey levels)")
    parser.add_argument("--turn", choices=("left_to_right", "bottom_to_top", "top_to_bottom"), default=None,
                        help="every video mirrored or turned a quarter (benchmarks/turn_video.py); --width/--height "
                             "are the frames before turning (along/across the motion): --width 256 --height 640 "
                             "--turn top_to_bottom gives 640x256 frames with the belt moving down, as a line-scan "
                             "camera across a belt sees it")
    parser.add_argument("--vignette", type=float, default=0.0,
                        help="every video's light falling off to 1 - V at the frame corners "
                             "(benchmarks/relight_video.py, written losslessly as .avi)")
    parser.add_argument("--motion_blur", type=int, default=0,
                        help="every video smeared over L px of belt travel while the shutter is open "
                             "(benchmarks/relight_video.py, written losslessly as .avi; 0: none)")
    parser.add_argument("--reuse", action="store_true", help="keep the videos, dataset and model already in --out")
    args = parser.parse_args(argv)
    if args.footage == "conveyor" and args.speed != int(args.speed):
        parser.error("--speed must be a whole number of pixels with --footage conveyor")
    if args.footage == "conveyor":
        args.speed = int(args.speed)
    if args.surface_window < 1:
        parser.error("--surface_window must be at least 1")
    if args.resize is not None and not 32 <= args.resize <= 4 * min(args.width, args.height):
        parser.error("--resize must lie between 32 and 4 times the frame's shorter side")
    if args.imagesize is not None and not (args.imagesize % 32 == 0 and 32 <= args.imagesize <= (args.resize or 0)):
        parser.error("--imagesize must be a multiple of 32 between 32 and --resize (give --resize too)")
    if not 0.0 <= args.vignette < 1.0:
        parser.error("--vignette must lie in [0, 1): the light's loss at the frame corners")
    if not 0 <= args.motion_blur <= 64:
        parser.error("--motion_blur must lie in 0..64 (pixels of belt travel while the shutter is open)")
    if not 0 <= args.jpeg <= 100:
        parser.error("--jpeg must be a JPEG quality in 1..100 (0: none)")
    if not 0.0 < args.train_share < 1.0:
        parser.error("--train_share must lie between 0 and 1")
    if args.calibrate_from is None:
        args.calibrate_from = "other" if args.new_surface else "recording"
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "bench_line.log"
    videos = {name: video_path(args, out, name) for name in ("normal", "normal_new", "defects")}
    times = {"record": 0.0, "dataset": 0.0, "train": 0.0}
    model = ["--model_path", str(out / "results" / "models" / "backbone_0"), "--class_name", "custom_line"]
    reuse = args.reuse and (out / "results" / "models" / "backbone_0" / "custom_line").is_dir()
    if not reuse:
        times.update(record_and_train(args, out, log, videos))
    calibrate = args.surface_window > 1 or args.calibrate
    runs = f"runs_window{args.surface_window}" if calibrate else "runs"
    if calibrate and args.calibrate_from == "rest":
        runs += "_rest"
    if not calibrate:  # the checkpoint's thresholds: an earlier run's single-frame calibration would be read instead
        (out / "results" / "models" / "backbone_0" / "custom_line" / "surface_calibration.json").unlink(missing_ok=True)
    if calibrate:
        # On new surface, calibrate on a recording of surface that neither training nor the tests saw.
        calibration = video_path(args, out, "calibration") if args.calibrate_from == "other" else videos["normal"]
        if not calibration.exists():
            record(args, log, calibration, [*surface_flags(args, "calibration"), "--speed", str(args.speed),
                                            "--defects", "0", "--frames", str(args.normal_frames // 2),
                                            "--seed", str(args.seed + 3)])
        start = rest_start(args) if args.calibrate_from == "rest" else 0
        run([sys.executable, "inference/calibrate_surface.py", *model, "--video_path", str(calibration),
             "--surface_window", str(args.surface_window), "--start", str(start)], log)
    model += ["--pixel_size", str(args.pixel_size), "--no_organized_output", "--surface_window",
              str(args.surface_window), "--region_scale", args.region_scale]
    belt = args.texture if args.footage == "conveyor" else "steel_conveyor.py"
    print(f"line: {belt} {args.width}x{args.height}{f' turned {args.turn}' if args.turn else ''}"
          f"{f', vignette {args.vignette}' if args.vignette else ''}"
          f"{f', motion blur {args.motion_blur} px' if args.motion_blur else ''}, {args.speed} px/frame, "
          f"pixel {args.pixel_size} mm; "
          f"record {times['record']:.0f} s, dataset {times['dataset']:.0f} s, train {times['train']:.0f} s"
          f"{' (reused)' if reuse else ''}; surface window {args.surface_window}")
    print("| video | frames flagged | share | defects reported | FPS (end to end) |")
    print("|---|---|---|---|---|")
    for name, video in videos.items():
        target = out / runs / f"{name}_tracking.mp4"
        frames = ["--save_defect_frames"] if name == "defects" else []
        _, text = run([sys.executable, "inference/video_inference_with_tracking.py", *model, "--video_path",
                       str(video), "--output_path", str(target), *frames], log)
        hits, total = flagged(target.with_name(f"{target.stem}_frames.csv"))
        fps = next((line.split()[1] for line in text.splitlines() if line.startswith("speed")), "?")
        reported = len(json.loads(target.with_name(f"{target.stem}_report.json").read_text())["defects"])
        print(f"| {name} | {hits} / {total} | {100.0 * hits / max(total, 1):.1f} % | {reported} | {fps} |")
    report = out / runs / "defects_tracking_report.json"
    _, text = run([sys.executable, "inference/evaluate_tracking.py", str(report), str(videos["defects"]) + ".json",
                   "--json", str(out / runs / "evaluation.json")], log)
    print()
    print(text)
    return 0


SURFACE_SEEDS = {"normal": 0, "normal_new": 1, "defects": 2, "calibration": 3}  # added to --seed


def surface_flags(args: argparse.Namespace, video: str) -> list[str]:
    """Generator flags of one of the line's videos: frame, texture, noise and, with --new_surface, a
    belt that never repeats (quilted from random crops: 3/8 of the height), recorded for training on one half
    of the photo and for everything else on the other, each video with its own surface seed. With --footage steel:
    frame and noise (the steel camera's own, 2 grey levels, unless --noise)."""
    if args.footage == "steel":
        return ["--width", str(args.width), "--height", str(args.height),
                *(["--noise", str(args.noise)] if args.noise else [])]
    flags = ["--width", str(args.width), "--height", str(args.height), "--texture", args.texture,
             "--noise", str(args.noise)]
    if args.new_surface:
        flags += ["--surface", "first_half" if video == "normal" else "second_half", "--quilt",
                  str(args.height * 3 // 8), "--surface_seed", str(args.seed + SURFACE_SEEDS[video])]
    return flags


def relit(args: argparse.Namespace) -> bool:
    """True when every video goes through relight_video.py (--vignette or --motion_blur)."""
    return bool(args.vignette or args.motion_blur)


def video_path(args: argparse.Namespace, out: Path, name: str) -> Path:
    """Where the line's video `name` lies once recorded (.avi when relit: lossless)."""
    return out / "videos" / f"{name}{'.avi' if relit(args) else '.mp4'}"


def record(args: argparse.Namespace, log: Path, target: Path, flags: list[str]) -> float:
    """Writes one video of the line to target: the generator with flags, then --turn, then --vignette and
    --motion_blur; wall seconds."""
    py = sys.executable
    raw = target.with_name(f"{target.stem}_generated.mp4") if args.turn or relit(args) else target
    generator = "benchmarks/steel_conveyor.py" if args.footage == "steel" else "preprocessing/create_conveyor_video.py"
    seconds, _ = run([py, generator, *flags, "--output", str(raw)], log)
    if args.turn:
        turned = target.with_name(f"{target.stem}_turned.mp4") if relit(args) else target
        seconds += run([py, "benchmarks/turn_video.py", str(raw), "--turn", args.turn, "--output", str(turned)],
                       log)[0]
        raw = turned
    if relit(args):
        seconds += run([py, "benchmarks/relight_video.py", str(raw), "--vignette", str(args.vignette),
                        "--motion_blur", str(args.motion_blur), "--output", str(target)], log)[0]
    return seconds


def dataset_end(args: argparse.Namespace) -> int:
    """video_to_dataset --end: the whole training recording, or its first --train_share with --calibrate_from rest."""
    return int(args.normal_frames * args.train_share) if args.calibrate_from == "rest" else args.normal_frames


def rest_start(args: argparse.Namespace) -> int:
    """calibrate_surface --start with --calibrate_from rest: one frame width of belt travel after the dataset's end,
    so that no calibration frame shows surface a training frame showed."""
    return dataset_end(args) + math.ceil(args.width / args.speed)


def record_and_train(args: argparse.Namespace, out: Path, log: Path, videos: dict[str, Path]) -> dict[str, float]:
    """Steps 1-3: the three videos, the dataset from the defect-free one, the model; their wall seconds."""
    py = sys.executable
    recorded, tested, defects = (surface_flags(args, name) for name in ("normal", "normal_new", "defects"))
    times = {}
    times["record"] = record(args, log, videos["normal"], [*recorded, "--speed", str(args.speed), "--defects", "0",
                                                           "--frames", str(args.normal_frames), "--seed",
                                                           str(args.seed)])
    half = args.speed / 2 if args.footage == "steel" else max(1, args.speed // 2)
    record(args, log, videos["normal_new"], [*tested, "--speed", str(half), "--defects", "0",
                                             "--frames", str(args.normal_frames // 2), "--seed", str(args.seed + 1)])
    # The steel belt is new surface for every seed; the conveyor's photo is the same for every seed.
    wide, seed = (["--defects", "8"], args.seed + SURFACE_SEEDS["defects"]) if args.footage == "steel" else \
        (["--preset", "wide"], args.seed)
    record(args, log, videos["defects"], [*wide, *defects, "--speed", str(args.speed), "--seed", str(seed)])
    times["dataset"], _ = run([py, "preprocessing/video_to_dataset.py", "--video", str(videos["normal"]),
                               "--class_name", "line", "--every", str(args.every), "--output", str(out / "data"),
                               "--end", str(dataset_end(args)), "--overwrite"], log)
    short = str(args.resize or min(args.width, args.height) // 16 * 16)
    times["train"], _ = run([py, "main.py", "--seed", str(args.seed), "--results_path", str(out / "results"),
                             *TRAIN_FLAGS, "-b", args.backbone,
                             *[flag for layer in args.layers for flag in ("-le", layer)],
                             "--meta_epochs", str(args.epochs),
                             "dataset", "--downsampling", str(args.downsampling),
                             "--fg", "0", "--distribution", "1", "--resize", short,
                             "--imagesize", str(args.imagesize or short), "--train_crop", args.train_crop,
                             "--jpeg", str(args.jpeg),
                             "-d", "line", "custom", str(out / "data"), str(args.aug_path)], log)
    return times


if __name__ == "__main__":
    sys.exit(errors.run_script(main))
