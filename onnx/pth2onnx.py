"""Export a trained class model (GLASS, PatchCore or PaDiM) to ONNX (whole scoring path: images ->
patch-score grid; PatchCore adds its image-score grid as a second output, `image_grid`).

    python onnx/pth2onnx.py --model_path results/models/backbone_0/ --class_name mvtec_bottle
    python onnx/pth2onnx.py --model_path results/models/backbone_0/mvtec_bottle --dynamic_batch --output glass.onnx
    python onnx/pth2onnx.py --model_path results/models/patchcore/backbone_0/ --class_name mvtec_bottle

Writes <class_dir>/glass.onnx (or --output) and beside it <file>.json with what a runtime
needs (input size, normalisation, grid, smoothing sigma, threshold, export facts).
This folder is a script folder: it has no __init__.py (it would shadow the onnx package).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from collections.abc import Sequence

import click

import common
import model as glass_model
import utils
from inference import onnx_export

LOGGER = logging.getLogger("pth2onnx")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model_path", required=True, type=str,
              help="Backbone folder (results/models/backbone_0/) or a class folder.")
@click.option("--class_name", type=str, default=None, help="Class folder name, e.g. mvtec_bottle.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="ONNX file to write (default: <class_dir>/glass.onnx).")
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Fixed batch size of the graph (default 1).")
@click.option("--dynamic_batch", is_flag=True, help="Batch axis of any size.")
@click.option("--simplify", is_flag=True, help="Run onnxsim on the graph when it is installed.")
@click.option("--form", type=click.Choice(onnx_export.FORMS), default="auto", show_default=True,
              help="GLASS head form: fold (3x3 convolutions) or pool (the model's own pooling); auto: fewer "
                   "multiply-adds. Other methods export their own head (ignored).")
def main(model_path: str, class_name: str | None, output: Path | None, opset: int, batch: int | None,
         dynamic_batch: bool, simplify: bool, form: str) -> None:
    """Export a trained class model to ONNX, checked against PyTorch."""
    if batch is not None and dynamic_batch:
        raise common.ConfigError("--batch and --dynamic_batch exclude each other; pass one of them")
    class_dir = glass_model.resolve_class_dir(model_path, class_name)
    onnx_path, json_path = onnx_export.export_onnx(
        class_dir, output, opset=opset, batch=batch or 1, dynamic_batch=dynamic_batch, simplify=simplify, form=form)
    LOGGER.info("wrote %s and %s", onnx_path, json_path)


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point: bad input ends with `error: <one line>` and exit code 2, never a traceback."""
    return utils.run_command(main, argv, "choose a writable --output")


if __name__ == "__main__":
    sys.exit(cli())
