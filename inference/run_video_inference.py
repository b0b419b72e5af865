"""Short wrapper: `run_video_inference.py INPUT [OUTPUT] --class_name C [--mode ...]`.

    python inference/run_video_inference.py input.mp4 output.mp4 --class_name wfdd_yellow_cloth
    python inference/run_video_inference.py input.mp4 --class_name mvtec_grid --mode size --pixel_size 0.1

Delegates to one of the video scripts (it adds no behaviour of its own):
sidebyside (default) -> video_inference_sidebyside.py, basic -> video_inference.py,
clean -> video_inference_clean.py, size -> video_inference_with_size.py.
Without OUTPUT the video goes to output/<class_name>/<input stem>_<mode>.mp4.
"""
from __future__ import annotations

import sys
from typing import Any, Sequence

import click

from inference import cli as shared
from inference import (
    video_inference,
    video_inference_clean,
    video_inference_sidebyside,
    video_inference_with_size,
)

SCRIPTS = {
    "sidebyside": video_inference_sidebyside,
    "basic": video_inference,
    "clean": video_inference_clean,
    "size": video_inference_with_size,
}
# Flags that only one mode takes; the others refuse them instead of ignoring them silently.
MODE_ONLY_OPTIONS = {
    "intensity": "clean", "pixel_size": "size", "physical_unit": "size", "min_defect_area": "size",
}


def forward_args(input_video: str, output_video: str | None, options: dict[str, Any]) -> list[str]:
    """The target script's argv: --video_path/--output_path plus every option that was set."""
    argv = ["--video_path", input_video]
    if output_video:
        argv += ["--output_path", output_video]
    for name, value in options.items():
        if value is None:
            continue
        if isinstance(value, bool):
            argv.append(f"--{name}" if value else f"--no_{name}")
        else:
            argv += [f"--{name}", str(value)]
    return argv


@click.command(name="run_video_inference", help="Run a video inference script: INPUT [OUTPUT] --class_name C.")
@click.argument("input_video")
@click.argument("output_video", required=False)
@click.option("--mode", type=click.Choice(tuple(SCRIPTS)), default="sidebyside", show_default=True,
              help="Which script: sidebyside, basic, clean (overlay only) or size (defect sizes).")
@shared.model_options
@click.option("--display/--no_display", default=False, show_default=True, help="Show a preview window.")
@click.option("--max_frames", type=int, default=None, help="Process at most this many frames.")
@click.option("--intensity", type=float, default=None, help="clean mode: heatmap weight 0..1.")
@click.option("--pixel_size", type=float, default=None, help="size mode: one pixel's side in --physical_unit.")
@click.option("--physical_unit", default=None, help="size mode: mm, cm or inch.")
@click.option("--min_defect_area", type=int, default=None, help="size mode: smallest defect in pixels.")
def main(input_video: str, output_video: str | None, mode: str, **options: Any) -> None:
    """Checks mode-only flags, then runs the chosen script with the forwarded flags."""
    for name, owner in MODE_ONLY_OPTIONS.items():
        if options[name] is not None and owner != mode:
            raise click.UsageError(f"--{name} applies to --mode {owner} only (this run uses --mode {mode})")
    code = SCRIPTS[mode].cli(forward_args(input_video, output_video, options))
    if code:
        raise click.exceptions.Exit(code)


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    return shared.run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
