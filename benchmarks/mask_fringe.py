"""How much of each painted defect's ground-truth mask barely changes the surface.

    python benchmarks/mask_fringe.py results/line_g_long/videos/defects.mp4.json

A conveyor video's sidecar (create_conveyor_video.py) holds its settings; this script rebuilds the belt
with and without the defects from them and prints, per painted defect, the share of its mask whose pixels
the defect changed by less than 10 and 20 grey levels (largest change over the colour channels), and the
surface's local standard deviation there (15 px window, median over the mask): the faint fringe that a
model at 8 px patch scale does not see, against which measured areas are checked (README, "Areas").
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from preprocessing import create_conveyor_video as conveyor

LEVELS = (10, 20)  # grey levels
WINDOW = 15  # px, the local standard deviation's window


def config_of(sidecar: Path) -> conveyor.ConveyorConfig:
    """The conveyor settings a sidecar recorded."""
    settings = json.loads(sidecar.read_text())["settings"]
    fields = conveyor.ConveyorConfig.__dataclass_fields__
    return conveyor.ConveyorConfig(**{name: tuple(value) if isinstance(value, list) else value
                                      for name, value in settings.items() if name in fields})


def local_std(gray: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Standard deviation of each pixel's window x window neighbourhood."""
    mean = cv2.blur(gray, (window, window))
    return np.sqrt(np.maximum(cv2.blur(gray * gray, (window, window)) - mean * mean, 0.0))


def fringe_rows(cfg: conveyor.ConveyorConfig) -> list[dict]:
    """Per painted defect: id, type, mask pixels, share below each of LEVELS, the surface's local std."""
    clean = conveyor.build_strip(cfg)
    painted, labels, defects = conveyor.paint_defects(clean, cfg)
    change = np.abs(painted.astype(np.float32) - clean.astype(np.float32)).max(axis=2)
    spread = local_std(cv2.cvtColor(clean, cv2.COLOR_RGB2GRAY).astype(np.float32))
    rows = []
    for defect in defects:
        inside = labels == defect.defect_id
        rows.append({"id": defect.defect_id, "type": defect.defect_type, "pixels": int(inside.sum()),
                     **{f"below_{level}": float((change[inside] < level).mean()) for level in LEVELS},
                     "surface_std": float(np.median(spread[inside]))})
    return rows


def main(argv: list[str] | None = None) -> int:
    """Prints the table for one sidecar."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sidecar", type=Path, help="VIDEO.mp4.json written by create_conveyor_video.py")
    args = parser.parse_args(argv)
    if not args.sidecar.is_file():
        parser.error(f"{args.sidecar}: no such sidecar; pass the VIDEO.mp4.json of a conveyor video")
    print("| id | defect | mask px | " + " | ".join(f"change < {level}" for level in LEVELS) + " | surface std |")
    print("|---|---|---|" + "---|" * len(LEVELS) + "---|")
    for row in fringe_rows(config_of(args.sidecar)):
        shares = " | ".join(f"{100 * row[f'below_{level}']:.1f} %" for level in LEVELS)
        print(f"| {row['id']} | {row['type']} | {row['pixels']} | {shares} | {row['surface_std']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
