"""The video inference modes and the one place their Click commands are built.

A mode is a name (`--mode` of run_video_inference.py, the `_<mode>` of default output names), the
command of its script, its help, its own flags and how it runs: a renderer factory for the modes that
only differ in what they draw (`cli.run_inference` runs it over the video), or a run of its own
(tracking: `tracking_run.run_tracking`). `build_command(name)` gives a mode's command: the shared
model flags (`cli.model_options`), the video flags (`cli.video_options`), then the mode's own flags.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Callable, Mapping

import click

from inference import cli as shared
from inference import renderers, tracking_run

OptionDecorator = Callable[[Callable[..., Any]], Callable[..., Any]]

INTENSITY_OPTION = click.option(
    "--intensity", type=click.FloatRange(0.0, 1.0), default=renderers.OVERLAY_INTENSITY, show_default=True,
    help="Heatmap weight in the blend, 0 (original frame) to 1 (heatmap only).")


@dataclass(frozen=True)
class Mode:
    """One video inference mode: its script's command name and help, its own flags and how it runs."""

    name: str
    command_name: str
    help: str
    renderer: renderers.RendererFactory | None = None  # flags -> (engine -> renderer), run by cli.run_inference
    run: Callable[[Mapping[str, Any]], object] | None = None  # a run of its own, instead of a renderer
    options: tuple[OptionDecorator, ...] = ()  # the mode's own flags, after the shared ones
    output_help: str = shared.OUTPUT_HELP

    def __post_init__(self) -> None:
        if (self.renderer is None) == (self.run is None):
            raise ValueError(f"mode {self.name}: give either a renderer or a run")

    def start(self, options: Mapping[str, Any]) -> None:
        """Runs the mode with the values of its command's flags."""
        if self.run is not None:
            self.run(options)
        else:
            shared.run_inference(options, self.name, self.renderer(options))


MODES: dict[str, Mode] = {mode.name: mode for mode in (
    Mode("basic", "video_inference", "Anomaly heatmap overlay with score and DEFECT/OK on every frame.",
         renderer=renderers.overlay_renderer),
    Mode("sidebyside", "video_inference_sidebyside", "Original frame | heatmap overlay with score and verdict.",
         renderer=renderers.side_by_side_renderer),
    Mode("clean", "video_inference_clean", "Heatmap overlay only, no text.",
         renderer=renderers.clean_renderer, options=(INTENSITY_OPTION,)),
    Mode("size", "video_inference_with_size", "Heatmap overlay with defect boxes and areas in physical units.",
         renderer=renderers.size_renderer, options=(shared.size_options,)),
    Mode("tracking", "video_inference_with_tracking",
         "Track defects across video frames; saves the video, one frame per defect and a JSON report.",
         run=tracking_run.run_tracking, options=(tracking_run.tracking_options,), output_help=tracking_run.OUTPUT_HELP),
)}


def parameters(*options: OptionDecorator) -> list[click.Parameter]:
    """The Click parameters that option decorators declare, in --help order."""
    def collect(**values: Any) -> None:
        """Carries the parameters; never called."""

    return click.command()(shared.apply_options(collect, options)).params


def own_parameters(name: str) -> list[click.Parameter]:
    """The flags only this mode takes (beyond the shared model and video flags)."""
    return parameters(*MODES[name].options)


def build_command(name: str) -> click.Command:
    """The Click command of a mode: model flags, video flags, then the mode's own flags."""
    mode = MODES[name]

    def run(**options: Any) -> None:
        """Runs the mode over the video."""
        mode.start(options)

    return click.Command(mode.command_name, help=mode.help, callback=run, params=parameters(
        shared.model_options, shared.video_options(output_help=mode.output_help), *mode.options))

