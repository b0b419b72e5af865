"""Checks the size analyzer on maps with known defects and prints what it measured.

    python size_analyzer/test_defect_size_analysis.py [--pixel_size 0.1]

Draws a disc, a rectangle and a thin scratch of known pixel areas on a 256 x 256 anomaly map,
measures them in mm, cm and inch, and prints true against measured areas, severities and the
unit conversions. Exits 0 when every area is within 2 % of the truth and the units agree, else 1.
(A user-facing validation script, as in the reference toolkit; the unit tests are in
tests/size_analyzer/test_measure.py.)
"""
from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np

import errors
from size_analyzer import DefectSizeAnalyzer

MM_PER_UNIT = {"mm": 1.0, "cm": 10.0, "inch": 25.4}
TOLERANCE = 0.02


def known_map() -> tuple[np.ndarray, list[int]]:
    """An anomaly map with three defects and their true pixel areas (left to right)."""
    anomaly_map = np.full((256, 256), 0.1, np.float32)
    masks = [np.zeros((256, 256), np.uint8) for _ in range(3)]
    cv2.circle(masks[0], (40, 60), 20, 1, cv2.FILLED)
    cv2.rectangle(masks[1], (100, 150), (139, 179), 1, cv2.FILLED)  # 40 x 30
    cv2.line(masks[2], (180, 40), (240, 220), 1, 5)
    for mask, score in zip(masks, (0.9, 0.7, 0.95)):
        anomaly_map[mask > 0] = score
    return anomaly_map, [int(mask.sum()) for mask in masks]


def main(argv: list[str] | None = None) -> int:
    """Measures the known map in every unit; prints the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pixel_size", type=float, default=0.1, help="pixel side in mm")
    args = parser.parse_args(argv)
    anomaly_map, truth = known_map()
    ok = True
    print(f"{'unit':<5} {'defect':>6} {'true px':>8} {'measured px':>11} {'area':>14} {'in mm^2':>9}  severity")
    for unit, mm in MM_PER_UNIT.items():
        analyzer = DefectSizeAnalyzer(pixel_size=args.pixel_size / mm, physical_unit=unit, min_defect_area=10)
        defects = analyzer.analyze_defects(anomaly_map, threshold=0.5, use_morphology=False).defects
        if len(defects) != len(truth):
            print(f"{unit}: found {len(defects)} defects, expected {len(truth)}")
            ok = False
            continue
        left_to_right = sorted(defects, key=lambda defect: defect.box[0])
        for number, (defect, true_px) in enumerate(zip(left_to_right, truth), start=1):
            measured = defect.area_px
            area = defect.area_physical
            in_mm2 = area * mm * mm
            ok &= abs(measured - true_px) <= TOLERANCE * true_px
            ok &= abs(in_mm2 - measured * args.pixel_size ** 2) <= 1e-6 * max(in_mm2, 1.0)
            area_text = f"{area:.4f} {unit}^2"
            print(f"{unit:<5} {number:>6} {true_px:>8} {measured:>11} {area_text:>14} {in_mm2:>9.3f}  "
                  f"{defect.severity}")
    print("OK: areas within 2 % and units consistent" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(errors.run_script(main))
