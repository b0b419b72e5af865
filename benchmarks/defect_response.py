"""Why a painted defect was missed: how strongly the model's map answers it, against the region threshold.

    python benchmarks/defect_response.py results/line/videos/defects.mp4 \
        --model_path results/line/results/models/backbone_0 --class_name custom_line [--samples 5]

For every defect in the conveyor's ground truth (`VIDEO.json`, written by
`preprocessing/create_conveyor_video.py`), scores `--samples` frames spread over the frames that show it
whole, each frame alone, and prints per defect the map's peak inside its box (median, and the range over
the frames), the peak of the same frames outside every painted defect's box (widened by --margin px: the
defect-free surface around it), the single-frame region threshold a tracking run cuts with (the surface
calibration's when the class has one, else the model's held-out one) and a verdict:

- `not above the surface`: its peak is no higher than the defect-free surface's in the same frames: no
  threshold marks it in a frame alone without marking defect-free surface too (the map may still trace it
  faintly: see the picture);
- `above threshold`: its peak exceeds the surface's and the threshold: the map marks the defect in a frame alone;
- `below threshold`: it answers (its peak exceeds the surface's) but too weakly for a frame alone
  (averaging on the surface, `--surface_window`, may find it).

A note follows the table when the surface itself peaks at or above the threshold (a threshold not calibrated
on this surface).

`--picture PATH` also writes one tile per defect: the middle sampled frame around the defect's box (red)
over the map there (JET colours, the threshold at the middle of the scale: red above, blue well below). On the
frame, the outlines of that frame's regions as tracking cuts them from the map (yellow: at half their height on
the model's evidence) and as it measures them (green: thin and wide ones on the frame, `--thin_regions image`,
`--wide_regions image`).
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np

import drawing
import model as glass_model
import utils
import video_io
from inference import calibrate_surface
from inference import cli as shared
from defect_tracking import GLASSDefectTracker
from inference import tracking_run
from inference.engine import InferenceEngine
from size_analyzer import DefectSizeAnalyzer

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
TILE = 128  # frame pixels around a defect in the picture (shown at twice the size)
RED = (0, 0, 255)
YELLOW = (0, 255, 255)
GREEN = (0, 255, 0)
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Response:
    """How the map answers one painted defect over the frames that show it whole."""

    defect_id: int
    defect_type: str
    area_mm2: float
    inside: np.ndarray  # per sampled frame: the map's peak in the defect's box
    outside: np.ndarray  # per sampled frame: the map's peak away from every painted defect
    view: tuple[np.ndarray, np.ndarray, Box] | None = None  # the middle sample's (frame, map, box), for the picture
    regions: tuple[np.ndarray, np.ndarray] | None = None  # that frame's regions: cut from the map, measured

    def verdict(self, threshold: float) -> str:
        """above threshold / below threshold / not above the surface (see the module docstring)."""
        peak, surface = float(np.median(self.inside)), float(np.nanmedian(self.outside))
        if peak <= surface:  # first: a threshold below the surface's peak marks the surface as well
            return "not above the surface"
        return "above threshold" if peak >= threshold else "below threshold"


def check_defects(truth: dict[str, Any]) -> None:
    """VideoError naming the first defect entry (or frame entry) of the ground truth without an id or a box."""
    for number, defect in enumerate(truth.get("defects", [])):
        if not isinstance(defect, dict) or "defect_id" not in defect:
            raise video_io.VideoError(f"ground truth defect #{number} has no defect_id; give every defect an id "
                                      "(as preprocessing/create_conveyor_video.py writes)")
    for index, frame in enumerate(truth["frames"]):
        for seen in frame.get("defects", []):
            if not {"defect_id", "box"} <= set(seen) or len(seen["box"]) != 4:
                raise video_io.VideoError(f"ground truth frame {index}: a defect entry without defect_id and a "
                                          "4-number box; give each one both (x0, y0, x1, y1)")


def frame_boxes(truth: dict[str, Any]) -> list[dict[int, Box]]:
    """Per frame of the sidecar, each visible defect's box in that frame: as the frame lists it, or (sidecars
    that give each defect's box on the belt and each frame's offset, as benchmarks/steel_conveyor.py writes)
    the belt box moved by the frame's offset (frame x = belt x - offset), clipped to the frame."""
    if any(frame.get("defects") for frame in truth["frames"]) or not truth.get("defects"):
        return [{int(seen["defect_id"]): tuple(int(v) for v in seen["box"]) for seen in frame.get("defects", [])}
                for frame in truth["frames"]]
    width, height = int(truth["width"]), int(truth["height"])
    boxes: list[dict[int, Box]] = []
    for frame in truth["frames"]:
        shift = int(round(float(frame.get("offset", 0.0))))
        seen = {}
        for defect in truth["defects"]:
            x0, y0, x1, y1 = (int(v) for v in defect["box"])
            box = (max(x0 - shift, 0), max(y0, 0), min(x1 - shift, width), min(y1, height))
            if box[0] < box[2] and box[1] < box[3]:
                seen[int(defect["defect_id"])] = box
        boxes.append(seen)
    return boxes


def sample_frames(defect: dict[str, Any], boxes: Sequence[dict[int, Box]], samples: int) -> list[int]:
    """Up to `samples` frames spread evenly over those showing the defect whole (any showing it, if none)."""
    defect_id = int(defect["defect_id"])
    first, last = defect.get("first_full_frame"), defect.get("last_full_frame")
    shown = [index for index, seen in enumerate(boxes) if defect_id in seen]
    whole = [index for index in shown if first is not None and first <= index <= last]
    frames = whole or shown
    if not frames:
        return []
    picks = np.linspace(0, len(frames) - 1, min(samples, len(frames))).round().astype(int)
    return sorted({frames[pick] for pick in picks})


def peaks(amap: np.ndarray, box: Box, others: Sequence[Box], margin: int) -> tuple[float, float]:
    """(the map's peak inside box, its peak outside every box widened by margin; nan if nothing is left)."""
    x0, y0, x1, y1 = box
    inside = float(amap[y0:y1, x0:x1].max())
    away = np.ones(amap.shape, bool)
    for bx0, by0, bx1, by1 in others:
        away[max(by0 - margin, 0):by1 + margin, max(bx0 - margin, 0):bx1 + margin] = False
    return inside, float(amap[away].max()) if away.any() else float("nan")


def read_frames(video: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """The wanted frames of a video, by index."""
    frames: dict[int, np.ndarray] = {}
    index = 0
    for batch in video_io.iter_frames(video, batch_size=16):
        for frame in batch:
            if index in wanted:
                frames[index] = frame
            index += 1
        if index > max(wanted, default=-1):
            break
    return frames


def measure(engine: InferenceEngine, video: Path, truth: dict[str, Any], pixel_size: float, samples: int,
            margin: int, tracker: GLASSDefectTracker | None = None) -> list[Response]:
    """The map's response to every painted defect of a conveyor video (with `tracker`: also the middle sample's
    regions as it cuts and measures them)."""
    boxes = frame_boxes(truth)
    plan = {int(d["defect_id"]): sample_frames(d, boxes, samples) for d in truth.get("defects", [])}
    frames = read_frames(video, {index for picks in plan.values() for index in picks})
    responses = []
    for defect in truth.get("defects", []):
        defect_id = int(defect["defect_id"])
        picks = [index for index in plan[defect_id] if index in frames]
        results = engine.predict([frames[index] for index in picks]) if picks else []
        pairs = [peaks(result.anomaly_map, boxes[index][defect_id], list(boxes[index].values()), margin)
                 for index, result in zip(picks, results)]
        inside, outside = (np.array(values, np.float64) for values in zip(*pairs)) if pairs else (np.zeros(0),) * 2
        middle = len(picks) // 2
        view = (frames[picks[middle]], results[middle].anomaly_map, boxes[picks[middle]][defect_id]) if picks else None
        regions = None
        if view is not None and tracker is not None:
            _, cut, measured = tracker.region_maps(view[0], view[1])
            regions = (cut, measured)
        area = float(defect.get("area_pixels", float("nan"))) * pixel_size ** 2  # nan: the sidecar gives none
        responses.append(Response(defect_id, str(defect.get("defect_type", "defect")), area, inside, outside, view,
                                  regions))
    return responses


def table(responses: Sequence[Response], threshold: float) -> str:
    """One row per defect: its peak, the surface's, the threshold and the verdict."""
    rows = [f"{'id':>4}  {'type':<16}{'area mm^2':>10}  {'peak in box (range)':<22}{'surface peak':>13}  verdict"]
    for r in responses:
        if r.inside.size == 0:
            rows.append(f"{r.defect_id:>4}  {r.defect_type:<16}{r.area_mm2:>10.2f}  never in view")
            continue
        span = f"{np.median(r.inside):.3f} ({r.inside.min():.3f}-{r.inside.max():.3f})"
        rows.append(f"{r.defect_id:>4}  {r.defect_type:<16}{r.area_mm2:>10.2f}  {span:<22}"
                    f"{np.nanmedian(r.outside):>13.3f}  {r.verdict(threshold)}")
    flooded = [r.defect_id for r in responses if r.outside.size and np.nanmedian(r.outside) >= threshold]
    if flooded:
        rows.append(f"note: the defect-free surface peaks at or above the threshold beside defects "
                    f"{', '.join(map(str, flooded))}: this threshold flags surface too; calibrate it on a recording "
                    "of this surface (inference/calibrate_surface.py)")
    return "\n".join(rows)


def tile(response: Response, threshold: float) -> np.ndarray:
    """The defect's surroundings over its map, labelled with its id, type and verdict (BGR, 2*TILE wide)."""
    canvas = np.zeros((2 * TILE, TILE, 3), np.uint8)
    if response.view is not None:
        frame, amap, (x0, y0, x1, y1) = response.view
        height, width = amap.shape
        left = int(np.clip((x0 + x1) // 2 - TILE // 2, 0, max(width - TILE, 0)))
        top = int(np.clip((y0 + y1) // 2 - TILE // 2, 0, max(height - TILE, 0)))
        crop = np.s_[top:top + TILE, left:left + TILE]
        image = drawing.as_bgr(frame[crop])
        cv2.rectangle(image, (x0 - left - 2, y0 - top - 2), (x1 - left + 1, y1 - top + 1), RED, 1)
        for regions, colour in zip(response.regions or (), (YELLOW, GREEN)):
            outlines, _ = cv2.findContours((regions[crop] > 0).astype(np.uint8), cv2.RETR_LIST,
                                           cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(image, outlines, -1, colour, 1)
        heat = drawing.colorize(amap[crop], threshold - 0.25, threshold + 0.25)
        canvas[:image.shape[0], :image.shape[1]] = image
        canvas[TILE:TILE + heat.shape[0], :heat.shape[1]] = heat
    canvas = cv2.resize(canvas, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    verdict = response.verdict(threshold) if response.inside.size else "never in view"
    drawing.put_text(canvas, f"{response.defect_id} {response.defect_type}", (4, 16), (255, 255, 255), 0.45)
    drawing.put_text(canvas, verdict, (4, 2 * TILE + 16), (255, 255, 255), 0.45)
    return canvas


def check_picture_path(path: Path) -> None:
    """VideoError unless the picture's name ends in .png, .jpg or .jpeg."""
    if path.suffix.lower() not in PICTURE_SUFFIXES:
        raise video_io.VideoError(f"--picture {path}: name it .png or .jpg")


def picture(responses: Sequence[Response], threshold: float, path: Path) -> None:
    """Writes the defects' tiles side by side, up to four a row (PNG or JPEG by the name; atomically)."""
    check_picture_path(path)
    tiles = [tile(r, threshold) for r in responses]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 4 if len(tiles) > 4 else 0)
    rows = [np.hstack(tiles[start:start + 4]) for start in range(0, len(tiles), 4)]
    encoded = cv2.imencode(path.suffix.lower(), np.vstack(rows))[1]
    utils.atomic_write_bytes(path, encoded.tobytes())


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("video", type=click.Path(path_type=Path))
@shared.model_options
@click.option("--pixel_size", type=click.FloatRange(min=0.0, min_open=True), default=0.1, show_default=True,
              help="mm per pixel (areas only)")
@click.option("--samples", type=click.IntRange(min=1), default=5, show_default=True,
              help="frames scored per defect")
@click.option("--margin", type=click.IntRange(min=0), default=16, show_default=True,
              help="px around every painted defect's box left out of the surface peak")
@click.option("--picture", "picture_path", type=click.Path(path_type=Path), default=None,
              help="also write the defects' tiles (frame over map) to this .png/.jpg")
def main(video: Path, pixel_size: float, samples: int, margin: int, picture_path: Path | None = None,
         **options: Any) -> None:
    """Print how strongly the model answers each painted defect of a conveyor video."""
    truth = video_io.conveyor_truth(video)
    check_defects(truth)
    if picture_path is not None:
        check_picture_path(picture_path)
    engine_cfg = shared.engine_config(options)
    class_dir = glass_model.resolve_class_dir(engine_cfg.model_path, engine_cfg.class_name)
    engine = InferenceEngine.from_config(engine_cfg)
    levels = calibrate_surface.tracking_levels(engine, class_dir, {**options, "surface_window": 1})
    click.echo(f"region threshold {levels.threshold:.4f} (single frames; from {levels.source})")
    frame_shape = (int(truth["height"]), int(truth["width"]))
    tracker = GLASSDefectTracker(DefectSizeAnalyzer(pixel_size, "mm"), threshold=levels.threshold,
                                 low_threshold=levels.low_threshold, motion_method=None,
                                 **tracking_run.model_settings(engine, frame_shape))
    responses = measure(engine, video, truth, pixel_size, samples, margin, tracker)
    click.echo(table(responses, levels.threshold))
    if picture_path is not None and responses:
        picture(responses, levels.threshold, picture_path)
        click.echo(f"picture {picture_path}")


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    return shared.run_cli(main, argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(cli())
