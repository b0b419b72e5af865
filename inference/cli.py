"""Command-line pieces shared by the video scripts: Click options, config building, error handling.

A video script's Click command (built by `modes.build_command`) takes `model_options` and
`video_options` (plus its mode's own flags) and runs the mode (a renderer mode through
`run_inference(options, mode, make_renderer)`); its `cli(argv) -> int` calls `run_cli(command, argv)`.
User errors end as one line on stderr, `error: <message>`, with exit code 2; Ctrl-C ends with 130,
SIGTERM (`docker stop`, systemd) is cleaned up as Ctrl-C is and ends with 143. Nothing is written
before the input (model directory, class, video, output folder) has been checked.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping, Sequence

import click

import model as glass_model
import preprocess
import utils
import video_io
from size_analyzer import PIXEL_UNIT, UNITS, DefectSizeAnalyzer, SizeAnalysisError
from inference import runner
from inference.engine import BACKENDS, EngineConfig, EngineError, InferenceEngine

LOGGER = logging.getLogger(__name__)

DEFAULT_MODEL_PATH = "results/models/backbone_0/"
DEFAULT_OUTPUT_ROOT = "output"

MODEL_OPTION_NAMES = ("model_path", "class_name", "device", "backend", "onnx_path", "batch_size", "threshold", "roi")


def apply_options(command: Callable[..., Any], options: Sequence[Callable[[Any], Any]]) -> Callable[..., Any]:
    """Applies Click option decorators so that --help lists them in the given order."""
    for option in reversed(options):
        command = option(command)
    return command


def model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--model_path --class_name, then engine_options, then --onnx_path."""
    return apply_options(command, [
        click.option("--model_path", default=DEFAULT_MODEL_PATH, show_default=True,
                     help="Backbone folder of trained classes (results/models/backbone_<i>/) or one class folder."),
        click.option("--class_name", default=None, help="Trained class, <dataset>_<class> (e.g. mvtec_grid)."),
        engine_options,
        click.option("--onnx_path", default=None, help="ONNX file for --backend onnx (default: exported on demand)."),
    ])


def engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--device --backend --batch_size --threshold --roi: how any model runs."""
    return apply_options(command, [
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                     help="torch (the checkpoint), onnx (its ONNX export in ONNX Runtime, exported on first use) "
                          "or auto (onnx on CPU, torch on CUDA)."),
        click.option("--batch_size", type=int, default=8, show_default=True, help="Frames scored per batch."),
        click.option("--threshold", type=float, default=None,
                     help="Frame decision threshold in [0, 1] (default: the model's, calibrated on held-out "
                          "defect-free images)."),
        click.option("--roi", default=None, metavar="X0,Y0,X1,Y1",
                     help="Score only this region of every frame (frame pixels, e.g. the belt); default: the "
                          "whole frame. Frames are scored whole at the training scale (shorter side -> resize)."),
    ])


def size_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--pixel_size --physical_unit --min_defect_area --pixel_threshold: how map regions are cut and measured."""
    return apply_options(command, [
        click.option("--pixel_size", type=click.FloatRange(min=0.0, min_open=True), default=1.0, show_default=True,
                     help="Side length of one video pixel in --physical_unit."),
        click.option("--physical_unit", type=click.Choice(UNITS), default="mm", show_default=True,
                     help="Unit of --pixel_size and of every size reported; px: sizes in pixels (--pixel_size 1; "
                          "severity classes and --merge_gap then read a pixel as a millimetre)."),
        click.option("--min_defect_area", type=click.IntRange(min=0), default=10, show_default=True,
                     help="Smallest defect kept, in pixels (smaller regions are noise)."),
        click.option("--pixel_threshold", type=click.FloatRange(0.0, 1.0), default=None,
                     help="Anomaly-map level that cuts maps into defect regions (default: the model's pixel "
                          "threshold, calibrated on held-out defect-free images; --threshold, when given, also "
                          "sets it)."),
    ])


def size_analyzer(options: Mapping[str, Any]) -> DefectSizeAnalyzer:
    """The size analyzer of --pixel_size --physical_unit --min_defect_area (a pixel size other than 1 in px is
    refused naming the flags)."""
    if options["physical_unit"] == PIXEL_UNIT and options["pixel_size"] != 1.0:
        raise SizeAnalysisError(f"--pixel_size {options['pixel_size']} with --physical_unit px: a pixel is 1 px; "
                                "give the unit the pixel size is in, e.g. --physical_unit mm")
    return DefectSizeAnalyzer(options["pixel_size"], options["physical_unit"], options["min_defect_area"])


def region_threshold(engine: InferenceEngine, pixel_threshold: float | None, threshold: float | None) -> float:
    """The map level that cuts defect regions: --pixel_threshold; else --threshold when given (one knob
    for both, as before calibration); else the model's calibrated pixel threshold."""
    if pixel_threshold is not None:
        return float(pixel_threshold)
    if threshold is not None:
        return float(threshold)
    return float(engine.info.pixel_threshold)


def region_thresholds(engine: InferenceEngine, pixel_threshold: float | None,
                      threshold: float | None) -> tuple[float, float]:
    """(level that seeds a region, level regions extend down to): the calibrated pixel threshold and
    the typical defect-free map peak (hysteresis); a level given on the command line is used for both."""
    high = region_threshold(engine, pixel_threshold, threshold)
    if pixel_threshold is not None or threshold is not None:
        return high, high
    return high, float(engine.info.region_low)


OUTPUT_HELP = "Output .mp4 (default: output/<class_name>/<video stem>_<mode>.mp4)."


def video_options(command: Callable[..., Any] | None = None, *, output_help: str = OUTPUT_HELP) -> Any:
    """--video_path --output_path --display/--no_display --max_frames (as `@video_options` or
    `@video_options(output_help=...)` for a script whose outputs go elsewhere)."""
    def apply(target: Callable[..., Any]) -> Callable[..., Any]:
        return apply_options(target, [
            click.option("--video_path", required=True, help="Input video (any format OpenCV/FFmpeg decodes)."),
            click.option("--output_path", default=None, help=output_help),
            display_options,
        ])

    return apply(command) if command is not None else apply


def display_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--display/--no_display --max_frames: the preview window and how much of the video a run takes."""
    return apply_options(command, [
        click.option("--display/--no_display", default=False, show_default=True,
                     help="Show a preview window while processing (q quits, keeping what was done)."),
        click.option("--max_frames", type=int, default=None, help="Process at most this many frames."),
    ])


def engine_config(options: Mapping[str, Any]) -> EngineConfig:
    """The engine configuration from the model options (validated by EngineConfig)."""
    values = {name: options.get(name) for name in MODEL_OPTION_NAMES}
    try:
        values["roi"] = preprocess.parse_roi(values["roi"])
    except preprocess.PreprocessError as err:
        raise EngineError(str(err)) from None
    return EngineConfig(**values)


def default_output_path(class_name: str, video_path: str | os.PathLike, mode: str) -> Path:
    """output/<class_name>/<video stem>_<mode>.mp4 (relative to the working directory)."""
    return Path(DEFAULT_OUTPUT_ROOT) / class_name / f"{Path(video_path).stem}_{mode}{video_io.VIDEO_SUFFIX}"


def run_config(options: Mapping[str, Any], class_name: str, mode: str) -> runner.RunConfig:
    """The run configuration from the video options, with the default output path filled in."""
    output = options["output_path"] or default_output_path(class_name, options["video_path"], mode)
    return runner.RunConfig(
        video_path=options["video_path"], output_path=output, display=options["display"],
        max_frames=options["max_frames"],
    )


def prepare(options: Mapping[str, Any], mode: str) -> tuple[EngineConfig, runner.RunConfig, video_io.VideoInfo]:
    """Validates every input (flags, model directory, class, video, output folder) before any work."""
    engine_cfg = engine_config(options)
    class_dir = glass_model.resolve_class_dir(engine_cfg.model_path, engine_cfg.class_name)
    run_cfg = run_config(options, class_dir.name, mode)
    info = runner.check_run(run_cfg)
    check_roi(engine_cfg, info)
    return engine_cfg, run_cfg, info


def check_roi(engine_cfg: EngineConfig, info: video_io.VideoInfo) -> None:
    """The --roi must lie in the video's frames: said before any work."""
    if engine_cfg.roi is not None:
        try:
            preprocess.check_roi(engine_cfg.roi, info.height, info.width)
        except preprocess.PreprocessError as err:
            raise EngineError(str(err)) from None


def run_inference(
    options: Mapping[str, Any], mode: str, make_renderer: Callable[[InferenceEngine], runner.FrameRenderer]
) -> runner.RunSummary:
    """Checks the input, loads the engine, runs the renderer over the video and prints the summary."""
    engine_cfg, run_cfg, info = prepare(options, mode)
    tick = time.perf_counter()
    engine = InferenceEngine.from_config(engine_cfg)
    LOGGER.info("model %s ready in %.1f s (%s backend, threshold %.4f)", engine.info.class_name,
                time.perf_counter() - tick, engine.backend_name, engine.threshold)
    summary = runner.run_video(engine, make_renderer(engine), run_cfg, info)
    click.echo(summary.report())
    return summary


def run_cli(command: click.Command, argv: Sequence[str] | None = None) -> int:
    """Runs a Click command; user errors -> 'error: <one line>' on stderr and 2, Ctrl-C -> 130, SIGTERM -> 143
    (handled as Ctrl-C: the run's cleanup removes its partial files)."""
    return utils.run_command(command, argv)


__all__ = [
    "DEFAULT_MODEL_PATH", "default_output_path", "engine_config", "model_options",
    "check_roi", "display_options", "prepare", "region_threshold", "region_thresholds", "run_cli", "run_config",
    "run_inference", "video_options",
]
