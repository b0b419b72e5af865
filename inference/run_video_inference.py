"""Short wrapper: `run_video_inference.py INPUT [OUTPUT] --class_name C [--mode ...]`.

    python inference/run_video_inference.py input.mp4 output.mp4 --class_name wfdd_yellow_cloth
    python inference/run_video_inference.py input.mp4 --class_name mvtec_grid --mode size --pixel_size 0.1

Runs one of the video modes (it adds no behaviour of its own), with that mode's own flags:
sidebyside (default) -> video_inference_sidebyside.py, basic -> video_inference.py,
clean -> video_inference_clean.py, size -> video_inference_with_size.py, tracking ->
video_inference_with_tracking.py. Without OUTPUT the video goes to output/<class_name>/<input stem>_<mode>.mp4
(tracking: its own output/<class_name>/<timestamp>/ folder). A flag of another
mode (e.g. --intensity with --mode size) is refused, not ignored.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any
from collections.abc import Sequence

import click
from click.core import ParameterSource

from inference import cli as shared
from inference import modes

WRAPPED_MODES = ("sidebyside", "basic", "clean", "size", "tracking")  # the --mode choices; the first is the default


@dataclass(frozen=True)
class ModeFlag:
    """A flag that only some modes take."""

    param: click.Parameter
    modes: tuple[str, ...]

    @property
    def flag(self) -> str:
        """As typed: --name."""
        return self.param.opts[0]

    @property
    def owners(self) -> str:
        """The modes that take it, for messages: clean, or size/tracking."""
        return "/".join(self.modes)


def mode_only_flags() -> dict[str, ModeFlag]:
    """Every flag that only some of the wrapped modes take, by parameter name."""
    params: dict[str, click.Parameter] = {}
    owners: dict[str, list[str]] = {}
    for mode in WRAPPED_MODES:
        for param in modes.own_parameters(mode):
            params.setdefault(param.name, param)
            owners.setdefault(param.name, []).append(mode)
    return {name: ModeFlag(param, tuple(owners[name])) for name, param in params.items()}


MODE_ONLY_FLAGS = mode_only_flags()


def mode_epilog() -> str:
    """The --help line saying which flags belong to which mode."""
    flags_by_owners: dict[str, list[str]] = {}
    for mode_flag in MODE_ONLY_FLAGS.values():
        flags_by_owners.setdefault(mode_flag.owners, []).append(mode_flag.flag)
    return "Mode-only flags: " + "; ".join(f"{' '.join(flags)} ({owners})"
                                           for owners, flags in flags_by_owners.items()) + "."


def given(name: str) -> bool:
    """True when the flag was set on the command line (or environment), not left at its default."""
    return click.get_current_context().get_parameter_source(name) not in (ParameterSource.DEFAULT,
                                                                          ParameterSource.DEFAULT_MAP)


def refuse_other_modes_flags(mode: str) -> None:
    """A flag that only other modes take is an error, not silently ignored."""
    for name, mode_flag in MODE_ONLY_FLAGS.items():
        if mode not in mode_flag.modes and given(name):
            raise click.UsageError(f"{mode_flag.flag} applies to --mode {mode_flag.owners} only "
                                   f"(this run uses --mode {mode})")


def run(input_video: str, output_video: str | None, mode: str, **options: Any) -> None:
    """Checks mode-only flags, then runs the chosen mode on INPUT (to OUTPUT)."""
    refuse_other_modes_flags(mode)
    values = {name: value for name, value in options.items()
              if name not in MODE_ONLY_FLAGS or mode in MODE_ONLY_FLAGS[name].modes}
    modes.MODES[mode].start({**values, "video_path": input_video, "output_path": output_video})


main = click.Command(
    "run_video_inference", callback=run, epilog=mode_epilog(),
    help="Run a video inference script: INPUT [OUTPUT] --class_name C.",
    params=[
        *modes.parameters(
            click.argument("input_video"),
            click.argument("output_video", required=False),
            click.option("--mode", type=click.Choice(WRAPPED_MODES), default=WRAPPED_MODES[0], show_default=True,
                         help="Which script: sidebyside, basic, clean (overlay only), size (defect sizes) or tracking "
                              "(defects tracked across frames, one report entry each)."),
            shared.model_options,
            shared.display_options,
        ),
        *(mode_flag.param for mode_flag in MODE_ONLY_FLAGS.values()),
    ],
)


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    return shared.run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
