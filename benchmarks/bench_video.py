"""Frames per second of the whole tracking pipeline (decode, score, track, write) and of each stage.

    python benchmarks/bench_video.py                      # demo lite0 model, torch and onnx, + wideresnet50
    python benchmarks/bench_video.py --models lite0 --backends onnx --sizes 320x256 1280x720 --frames 300

Runs exactly what `inference/video_inference_with_tracking.py` runs per frame (the runner with
the tracking renderer: heatmap overlay, size analysis, surface motion, ByteTrack, track boxes,
defect-frame PNGs, MP4 writing) on a synthetic conveyor video
(`preprocessing/create_conveyor_video.py`: a real photo moving 4 px/frame per 256 px of the
frame's shorter side, with painted defects) of each requested frame size, after one warm-up run.
Frames are scored whole at the model's training scale (shorter side -> its resize), so wide and
large frames cost more than square ones. Model loading and ONNX export are not timed.

To time another commit side by side, check it out in a worktree and run its copy of this script with
`PYTHONPATH=<worktree>`: without it, the editable install (`pip install -e .`) imports this checkout's modules
into the worktree's scripts, and both runs time the same code.

Models: `lite0` is a trained model, by default the demo's (`bash shell/run-demo.sh`, efficientnet_lite0
at 256 px; any other with `--model_path`/`--class_name`, its backbone named in the table); `wrn50` is
wideresnet50 at 288 px with the paper's dimensions and random weights (pretrained ones when found
locally): timing does not depend on weight values. The table also says how many tracks were reported
for the painted defects that crossed the view, and the mean motion estimate against the true belt
motion (for trained models only: random weights give random maps).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import torch

import bench_onnx
import errors
import utils
import video_io
from defect_tracking import GLASSDefectTracker
from inference import cli as shared
from inference import runner
from inference import tracking_run as tracking
from inference.backends import TorchBackend
from inference.engine import EngineConfig, InferenceEngine
from inference.onnx_runtime import OnnxBackend
from preprocessing.create_conveyor_video import ConveyorConfig, create_conveyor_video
from size_analyzer import DefectSizeAnalyzer

LOGGER = logging.getLogger("bench_video")
DEMO_MODEL = Path("results/demo/models/backbone_0")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Benchmark settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=("lite0", "wrn50"), default=["lite0", "wrn50"])
    parser.add_argument("--backends", nargs="+", choices=("torch", "onnx"), default=["torch", "onnx"])
    parser.add_argument("--model_path", default=str(DEMO_MODEL), help="backbone folder of the trained lite0 model")
    parser.add_argument("--class_name", default="mvtec_brick")
    parser.add_argument("--texture", default="brick", help="conveyor photo (matches the class)")
    parser.add_argument("--sizes", nargs="+", default=["256x256", "320x256", "1280x720"],
                        help="conveyor frame sizes WIDTHxHEIGHT (each frame is scored whole at the model's scale)")
    parser.add_argument("--frames", type=utils.positive_int, default=None,
                        help="frames timed per run (default: the whole video)")
    parser.add_argument("--batch_size", type=utils.positive_int, default=8)
    parser.add_argument("--surface_window", type=utils.positive_int, default=1,
                        help="tracking's --surface_window (its cost; the model's own thresholds are kept)")
    parser.add_argument("--frame_regions", nargs="+", choices=("image", "map"), default=["image"],
                        help="tracking's --thin_regions and --wide_regions, both set to each value in turn (each one "
                             "timed; image: regions measured on the frame, map: as the map cuts them)")
    parser.add_argument("--threads", type=utils.positive_int, default=None,
                        help="ONNX Runtime threads (default: physical cores)")
    return parser.parse_args(argv)


def lite0_engine(args: argparse.Namespace, backend: str) -> InferenceEngine:
    """The trained demo model with one backend (ONNX exported on demand, cached beside the checkpoint)."""
    return InferenceEngine.from_config(EngineConfig(args.model_path, args.class_name, "cpu", backend,
                                                    batch_size=args.batch_size))


def wrn50_engine(args: argparse.Namespace, backend: str, folder: Path) -> tuple[InferenceEngine, str]:
    """wideresnet50 at 288 px (paper dimensions) with one backend; and which backbone weights it has."""
    spec = bench_onnx.MODELS["wrn50"]
    net, weights = bench_onnx.build_net(spec)
    if backend == "onnx":
        path, _, _ = bench_onnx.export(net, spec, folder, "auto")
        onnx = OnnxBackend(path, "cpu", threads=args.threads)
        return InferenceEngine(onnx, onnx.info, batch_size=args.batch_size), weights
    bench_onnx.set_channels_last(net, True)
    info = bench_onnx.model_info(net, spec)
    return InferenceEngine(TorchBackend(net, torch.device("cpu")), info, batch_size=args.batch_size), weights


def run_once(engine: InferenceEngine, video: Path, folder: Path, frames: int,
             surface_window: int = 1, frame_regions: str = "image") -> tuple[runner.RunSummary, dict]:
    """One tracking run as the script does it; (run summary, tracking report)."""
    info = video_io.probe_video(video)
    layout = tracking.TrackingOutput(folder / "out.mp4", folder / "defects", folder / "report.json")
    high, low = shared.region_thresholds(engine, None, None)
    # --surface_window: the averaging's cost only (its thresholds come from calibrate_surface.py on a line)
    tracker = GLASSDefectTracker(DefectSizeAnalyzer(0.1, "mm", 10), threshold=high, low_threshold=low,
                                 fps=info.fps, min_hits=3, merge_gap_mm=tracking.DEFAULT_MERGE_GAP_MM,
                                 min_presence=tracking.MIN_PRESENCE,
                                 surface_window=surface_window,
                                 **tracking.model_settings(engine, (info.height, info.width), "auto", frame_regions,
                                                           frame_regions))
    renderer = tracking.TrackingRenderer(tracker, engine, layout, {"benchmark": True})
    layout.defects_dir.mkdir(parents=True)
    try:  # averaging scores frames with grid shifts, as tracking does
        summary = runner.run_video(engine, renderer, runner.RunConfig(
            video, layout.video, progress=False, max_frames=frames,
            grid_shifts=tracking.averaging_shifts(engine, tracker)))
    finally:
        renderer.cleanup()
    return summary, json.loads(layout.report.read_text())


def truth_columns(report: dict, sidecar: dict, frames: int) -> list[str]:
    """Defects reported vs painted defects in view, and motion estimate vs the true belt motion."""
    seen = {d["defect_id"] for record in sidecar["frames"][:frames] for d in record["defects"]}
    true_dx = sidecar["motion_px_per_frame"][0]
    dx = report["totals"]["mean_motion_px_per_frame"][0]
    return [f"{report['totals']['num_defects']} / {len(seen)}", f"{dx:+.2f} / {true_dx:+.1f}"]


def frame_size(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' -> (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--sizes {text}: use WIDTHxHEIGHT, e.g. 320x256") from None
    return width, height


def main(argv: list[str] | None = None) -> int:
    """Prints the table."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    rows = []
    sizes = [frame_size(text) for text in args.sizes]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runs = [(key, backend, size, thin) for size in sizes for key in args.models for backend in args.backends
                for thin in args.frame_regions]
        for key, backend, (width, height), thin in runs:
            video = folder / f"conveyor_{width}x{height}.mp4"
            if not video.exists():
                create_conveyor_video(video, ConveyorConfig(
                    texture=args.texture, width=width, height=height,
                    speed=max(1, round(4 * min(width, height) / 256)), defects=4))
            sidecar = json.loads(video.with_name(video.name + ".json").read_text())
            frames = min(args.frames or len(sidecar["frames"]), len(sidecar["frames"]))
            if key == "lite0":
                engine, weights = lite0_engine(args, backend), f"trained ({args.class_name})"
                label = f"{engine.info.backbone} {engine.info.resize}"
            else:
                engine, weights = wrn50_engine(args, backend, folder)
                label = "wideresnet50 288"
            run_once(engine, video, folder / f"warm-{key}-{backend}-{width}-{thin}", min(frames, 24),
                     args.surface_window, thin)  # warm-up
            summary, report = run_once(engine, video, folder / f"{key}-{backend}-{width}-{thin}", frames,
                                       args.surface_window, thin)
            perf = report["performance"]
            stages = perf["stage_ms_per_frame"]
            track_ms = perf["tracking_ms_per_frame"]
            rows.append([label, weights, backend, thin, f"{width}x{height}", str(summary.frames),
                         f"{summary.measured_fps:.1f}",
                         *(f"{stages[s]:.1f}" for s in runner.STAGES),
                         f"{sum(track_ms.values()):.1f}",
                         *(truth_columns(report, sidecar, frames) if weights != "random" else ["n/a", "n/a"])])
            print(f"done: {label} {backend} {thin} {width}x{height}: {summary.measured_fps:.1f} FPS", file=sys.stderr)
    header = ["model", "weights", "backend", "regions on frame", "frame", "frames", "FPS", "decode ms", "score ms",
              "render ms", "write ms", "(track ms)", "defects / painted", "dx / true dx"]
    print(format_table(header, rows))
    print("render includes tracking (track ms: size analysis + motion + ByteTrack, and the surface average with "
          f"--surface_window {args.surface_window}), the overlay and the boxes; "
          "FPS is end to end with model loading excluded.")
    return 0


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(errors.run_script(main))
