"""A conveyor video and its ground truth as another camera mounting would see them: mirrored or turned a quarter.

    python benchmarks/turn_video.py VIDEO --turn bottom_to_top --output turned.mp4

`preprocessing/create_conveyor_video.py` always moves the belt right to left. This writes the same frames
mirrored (`left_to_right`) or turned a quarter (`bottom_to_top`: clockwise, `top_to_bottom`: anticlockwise,
portrait frames), and the sidecar `<output>.json` with every box turned alike: the defects' surface boxes in
frame-0 coordinates (`frames[0].offset` becomes 0, so `inference/evaluate_tracking.py` reads them as they are)
and each frame's boxes in that frame's coordinates. A belt turned this way is the same belt, so a line set up
from the turned recording should find what the original line finds (README, "Other directions of motion").
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

import errors
import utils
import video_io

Box = list[int]  # x1, y1, x2, y2 (x2, y2 exclusive)

# Each turn: the frame operation, and where a box of a (width, height) frame goes.
TURNS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[Box, int, int], Box]]] = {
    "left_to_right": (lambda frame: cv2.flip(frame, 1),
                      lambda b, w, h: [w - b[2], b[1], w - b[0], b[3]]),
    "bottom_to_top": (lambda frame: cv2.rotate(frame, cv2.ROTATE_90_CLOCKWISE),
                      lambda b, w, h: [h - b[3], b[0], h - b[1], b[2]]),
    "top_to_bottom": (lambda frame: cv2.rotate(frame, cv2.ROTATE_90_COUNTERCLOCKWISE),
                      lambda b, w, h: [b[1], w - b[2], b[3], w - b[0]]),
}


def turn_box(box: Sequence[float], turn: str, width: int, height: int) -> Box:
    """A box of a width x height frame after the turn."""
    return TURNS[turn][1]([int(v) for v in box], width, height)


def turn_truth(truth: dict, turn: str, video_name: str) -> dict:
    """The sidecar of the turned video: sizes swapped for quarter turns, every box turned, offset 0."""
    width, height = int(truth["width"]), int(truth["height"])
    offset = int(truth["frames"][0].get("offset", 0))
    turned = copy.deepcopy(truth)
    turned["video"] = video_name
    if turn != "left_to_right":
        turned["width"], turned["height"] = height, width
    turned["turn"] = turn
    for defect in turned.get("defects", []):
        x1, y1, x2, y2 = defect["box"]
        defect["box"] = turn_box((x1 - offset, y1, x2 - offset, y2), turn, width, height)
    for frame in turned["frames"]:
        for seen in frame.get("defects", []):
            seen["box"] = turn_box(seen["box"], turn, width, height)
    turned["frames"][0]["offset"] = 0
    return turned


def turn_video(video: Path, turn: str, output: Path) -> int:
    """Writes the turned video and its sidecar; returns the number of frames."""
    truth = video_io.conveyor_truth(video)
    operation = TURNS[turn][0]
    info = video_io.probe_video(video)
    size = (info.width, info.height) if turn == "left_to_right" else (info.height, info.width)
    with video_io.AtomicVideoWriter(output, info.fps, size) as writer:
        count = video_io.replay_video(video, writer, lambda frame, _: operation(frame))
    utils.atomic_write_text(Path(str(output) + ".json"), json.dumps(turn_truth(truth, turn, output.name)))
    return count


def main(argv: list[str] | None = None) -> int:
    """Command line: VIDEO --turn T --output OUT.mp4."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", type=Path, help="a conveyor video with its sidecar VIDEO.json")
    parser.add_argument("--turn", choices=sorted(TURNS), required=True)
    parser.add_argument("--output", type=Path, required=True, help="the turned video (.mp4)")
    args = parser.parse_args(argv)

    def run() -> None:
        count = turn_video(args.video, args.turn, args.output)
        print(f"{args.output}: {count} frames, belt moving {args.turn.replace('_', ' ')}")

    return errors.run_script(run)


if __name__ == "__main__":
    sys.exit(main())
