"""Scores a tracking run against the ground truth of a synthetic conveyor video.

    python inference/evaluate_tracking.py REPORT GROUND_TRUTH [--min_area_mm2 5] [--tolerance_px 12] [--json OUT.json]

REPORT is the tracking report `inference/video_inference_with_tracking.py` writes (its `defects`
list: one entry per physical defect, with its frame span and its box on the surface); GROUND_TRUTH
is the sidecar `<video>.mp4.json` that `preprocessing/create_conveyor_video.py` writes beside the
video (its `defects` list: the painted defects with their strip boxes and visible frames).

Surface coordinates are frame-0 pixel coordinates, so a ground-truth strip point (X, Y) lies at
(X - frames[0].offset, Y). A reported defect matches a ground-truth defect when their frame spans
overlap and their surface boxes overlap once the ground-truth box is grown by --tolerance_px on
every side (motion estimates drift a few pixels). Over the ground-truth defects of at least
--min_area_mm2 (smaller ones are listed as "below size": they are neither missed nor do they make
their matching reports false), a defect is

    found once   matched by exactly one reported defect, which matches no other ground-truth defect
    split        matched by two or more reported defects
    merged       matched by a reported defect that matches two or more ground-truth defects
    missed       matched by no reported defect

and a reported defect that matches no ground-truth defect (of any size) is a false track. The area
error of a found-once or split defect is (sum of its reports' area_px) / area_pixels - 1. The
acceptance: every defect >= --min_area_mm2 found by exactly one track, at most one false track,
every area error within 25 %. The table and the verdict are printed (exit 0); --json also writes
the numbers. Bad input ends with one `error:` line and exit code 2.
"""
from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

import click
import numpy as np

import utils
from errors import UserError
from size_analyzer import MM_PER_UNIT, PIXEL_UNIT

LOGGER = logging.getLogger(__name__)

MAX_FALSE_TRACKS = 1  # acceptance: at most this many false tracks
MAX_AREA_ERROR = 0.25  # acceptance: every area error within this fraction
AREA_RTOL = 1e-9  # unit round-off (0.02 cm vs 0.2 mm pixels) must not move a defect across --min_area_mm2
REPORT_FIX = "pass the tracking report of inference/video_inference_with_tracking.py (report/tracking_report.json)"
TRUTH_FIX = ("pass the sidecar <video>.mp4.json that preprocessing/create_conveyor_video.py writes "
             "(regenerate the video if its sidecar is older)")

FOUND_ONCE, SPLIT, MERGED, MISSED, BELOW_SIZE = "found once", "split", "merged", "missed", "below size"


class EvaluationError(UserError):
    """A report or ground-truth file that cannot be evaluated (one-line message with the fix)."""


@dataclass(frozen=True)
class TruthDefect:
    """One painted defect of the ground truth, its box in surface (frame-0) coordinates."""

    defect_id: int
    defect_type: str
    placement: str
    area_pixels: int
    box: tuple[float, float, float, float]
    first_frame: int
    last_frame: int


@dataclass(frozen=True)
class ReportedDefect:
    """One physical defect of a tracking report."""

    defect_id: int
    track_ids: tuple[int, ...]
    box: tuple[float, float, float, float]
    first_frame: int
    last_frame: int
    area_px: float


@dataclass(frozen=True)
class Report:
    """What of a tracking report the evaluation needs."""

    defects: tuple[ReportedDefect, ...]
    mm_per_pixel: float
    total_frames: int | None
    video: str | None


@dataclass(frozen=True)
class GroundTruth:
    """What of a conveyor sidecar the evaluation needs."""

    defects: tuple[TruthDefect, ...]
    num_frames: int
    video: str | None


@dataclass(frozen=True)
class DefectResult:
    """The verdict on one ground-truth defect."""

    defect_id: int
    defect_type: str
    placement: str
    area_mm2: float
    first_frame: int
    last_frame: int
    report_ids: tuple[int, ...]
    status: str
    reported_area_px: float | None
    area_error: float | None  # reported / true - 1, for found-once and split defects


@dataclass(frozen=True)
class Evaluation:
    """All verdicts, the counts and the acceptance."""

    results: tuple[DefectResult, ...]
    false_tracks: tuple[ReportedDefect, ...]  # reported defects that match no ground-truth defect
    left_out: int  # ground-truth defects first seen after the report's last frame
    min_area_mm2: float
    tolerance_px: float
    mm_per_pixel: float

    def count(self, status: str) -> int:
        """Ground-truth defects >= min area whose status includes `status`."""
        return sum(status in r.status.split("+") for r in self.results if r.status != BELOW_SIZE)

    @property
    def considered(self) -> int:
        """Ground-truth defects of at least the minimum area."""
        return sum(r.status != BELOW_SIZE for r in self.results)

    @property
    def area_errors(self) -> list[float]:
        """The area errors that exist (found-once and split defects)."""
        return [r.area_error for r in self.results if r.area_error is not None]

    @property
    def mean_abs_area_error(self) -> float | None:
        """Mean absolute area error (fraction), None without any."""
        return float(np.mean(np.abs(self.area_errors))) if self.area_errors else None

    @property
    def failures(self) -> list[str]:
        """Why the acceptance fails (empty: it holds)."""
        reasons = [f"{self.count(s)} {s}" for s in (MISSED, SPLIT, MERGED) if self.count(s)]
        if len(self.false_tracks) > MAX_FALSE_TRACKS:
            reasons.append(f"{len(self.false_tracks)} false tracks")
        reasons += [f"defect {r.defect_id} area {100 * r.area_error:+.1f} %" for r in self.results
                    if r.area_error is not None and abs(r.area_error) > MAX_AREA_ERROR]
        return reasons

    @property
    def accepted(self) -> bool:
        """Every defect >= min area found once, at most one false track, areas within 25 %."""
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers."""
        mean = self.mean_abs_area_error
        return {
            "settings": {"min_area_mm2": self.min_area_mm2, "tolerance_px": self.tolerance_px,
                         "mm_per_pixel": self.mm_per_pixel},
            "defects": [{**asdict(r), "report_ids": list(r.report_ids),
                         "area_error_percent": None if r.area_error is None else 100 * r.area_error}
                        for r in self.results],
            "false_tracks": [{**asdict(r), "track_ids": list(r.track_ids), "box": list(r.box)}
                             for r in self.false_tracks],
            "summary": {
                "ground_truth_defects": len(self.results), "considered": self.considered,
                "below_size": len(self.results) - self.considered, "left_out_after_report": self.left_out,
                "found_once": self.count(FOUND_ONCE), "missed": self.count(MISSED), "split": self.count(SPLIT),
                "merged": self.count(MERGED), "false_tracks": len(self.false_tracks),
                "false_track_ids": [r.defect_id for r in self.false_tracks],
                "mean_abs_area_error_percent": None if mean is None else 100 * mean,
                "accepted": self.accepted, "failures": self.failures,
            },
        }


# --- reading ---------------------------------------------------------------------------------------

def load_json(path: Path, what: str, fix: str) -> dict[str, Any]:
    """A JSON object from a file, or a one-line EvaluationError naming the file and the fix."""
    if not path.is_file():
        raise EvaluationError(f"{what} {path}: no such file; {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise EvaluationError(f"{what} {path}: not JSON (not UTF-8 text); {fix}") from None
    except json.JSONDecodeError as err:
        raise EvaluationError(f"{what} {path}: not JSON ({err}); {fix}") from None
    if not isinstance(data, dict):
        raise EvaluationError(f"{what} {path}: not a JSON object; {fix}")
    return data


def _number(entry: Mapping[str, Any], key: str, where: str) -> float:
    """A finite number from an entry, or an EvaluationError naming where."""
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EvaluationError(f"{where}: '{key}' must be a number, got {value!r}")
    return float(value)


def _box(entry: Mapping[str, Any], key: str, where: str) -> tuple[float, float, float, float]:
    """A box [x1, y1, x2, y2] from an entry, or an EvaluationError naming where."""
    value = entry.get(key)
    if (not isinstance(value, (list, tuple)) or len(value) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        raise EvaluationError(f"{where}: '{key}' must be [x1, y1, x2, y2] (numbers), got {value!r}")
    x1, y1, x2, y2 = (float(v) for v in value)
    return x1, y1, x2, y2


def read_report(path: Path) -> Report:
    """The reported defects and the pixel size of a tracking report."""
    data = load_json(path, "report", REPORT_FIX)
    defects = data.get("defects")
    if not isinstance(defects, list):
        older = " (an older report with tracks only?)" if "tracks" in data else ""
        raise EvaluationError(f"report {path}: no 'defects' list{older}; re-run "
                              "inference/video_inference_with_tracking.py, whose report lists one entry per defect")
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    where = f"report {path} settings"
    pixel_size = _number(settings, "pixel_size", where)
    unit = settings.get("physical_unit")
    if unit == PIXEL_UNIT:
        raise EvaluationError(f"{where}: sizes in px have no physical scale to compare with the ground truth's mm; "
                              "track again with --pixel_size P --physical_unit mm (P: one pixel's side in mm)")
    if pixel_size <= 0 or unit not in MM_PER_UNIT:
        raise EvaluationError(f"{where}: need pixel_size > 0 and physical_unit in {sorted(MM_PER_UNIT)}, "
                              f"got {pixel_size!r} {unit!r}; {REPORT_FIX}")
    totals = data.get("totals") if isinstance(data.get("totals"), dict) else {}
    total = totals.get("total_frames")
    return Report(
        defects=tuple(_reported_defect(entry, f"report {path} defects[{i}]") for i, entry in enumerate(defects)),
        mm_per_pixel=pixel_size * MM_PER_UNIT[unit],
        total_frames=int(total) if isinstance(total, int) and not isinstance(total, bool) else None,
        video=data.get("video") if isinstance(data.get("video"), str) else None,
    )


def _reported_defect(entry: Any, where: str) -> ReportedDefect:
    """One entry of a report's `defects` list."""
    if not isinstance(entry, dict):
        raise EvaluationError(f"{where}: not an object; {REPORT_FIX}")
    tracks = entry.get("track_ids", [])
    if not isinstance(tracks, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tracks):
        raise EvaluationError(f"{where}: 'track_ids' must be a list of integers, got {tracks!r}")
    return ReportedDefect(
        defect_id=int(_number(entry, "defect_id", where)), track_ids=tuple(tracks),
        box=_box(entry, "surface_box_px", where), first_frame=int(_number(entry, "first_frame", where)),
        last_frame=int(_number(entry, "last_frame", where)), area_px=_number(entry, "area_px", where),
    )


def read_ground_truth(path: Path) -> GroundTruth:
    """The painted defects of a conveyor sidecar, boxes moved to surface (frame-0) coordinates."""
    data = load_json(path, "ground truth", TRUTH_FIX)
    defects, frames = data.get("defects"), data.get("frames")
    if not isinstance(defects, list) or not isinstance(frames, list) or not frames:
        raise EvaluationError(f"ground truth {path}: no per-defect ground truth ('defects' and 'frames'); {TRUTH_FIX}")
    offset = _number(frames[0] if isinstance(frames[0], dict) else {}, "offset", f"ground truth {path} frames[0]")
    truths = []
    for i, entry in enumerate(defects):
        where = f"ground truth {path} defects[{i}]"
        if not isinstance(entry, dict):
            raise EvaluationError(f"{where}: not an object; {TRUTH_FIX}")
        if entry.get("first_visible_frame") is None:  # never in view: nothing to find
            continue
        x1, y1, x2, y2 = _box(entry, "box", where)
        if _number(entry, "area_pixels", where) <= 0:
            raise EvaluationError(f"{where}: 'area_pixels' must be positive; {TRUTH_FIX}")
        truths.append(TruthDefect(
            defect_id=int(_number(entry, "defect_id", where)), defect_type=str(entry.get("defect_type", "?")),
            placement=str(entry.get("placement", "?")), area_pixels=int(_number(entry, "area_pixels", where)),
            box=(x1 - offset, y1, x2 - offset, y2), first_frame=int(_number(entry, "first_visible_frame", where)),
            last_frame=int(_number(entry, "last_visible_frame", where)),
        ))
    num_frames = data.get("num_frames")
    return GroundTruth(tuple(truths), num_frames if isinstance(num_frames, int) else len(frames),
                       data.get("video") if isinstance(data.get("video"), str) else None)


# --- matching --------------------------------------------------------------------------------------

def match_matrix(reported: Sequence[ReportedDefect], truths: Sequence[TruthDefect], tolerance_px: float) -> np.ndarray:
    """(reported, truth) bool matrix: frame spans overlap and boxes overlap (truth grown by the tolerance)."""
    r_span = np.array([(r.first_frame, r.last_frame) for r in reported], float).reshape(-1, 2)
    t_span = np.array([(t.first_frame, t.last_frame) for t in truths], float).reshape(-1, 2)
    r_box = np.array([r.box for r in reported], float).reshape(-1, 4)
    t_box = np.array([t.box for t in truths], float).reshape(-1, 4) + np.array([-1, -1, 1, 1]) * tolerance_px
    r_span, r_box = r_span[:, None, :], r_box[:, None, :]  # reported along rows, truths along columns
    t_span, t_box = t_span[None, :, :], t_box[None, :, :]
    in_time = (r_span[..., 0] <= t_span[..., 1]) & (t_span[..., 0] <= r_span[..., 1])  # inclusive frames
    along = (r_box[..., 0] < t_box[..., 2]) & (t_box[..., 0] < r_box[..., 2])  # x2/y2 exclusive
    across = (r_box[..., 1] < t_box[..., 3]) & (t_box[..., 1] < r_box[..., 3])
    return in_time & along & across


def _status(matches: np.ndarray, merging: np.ndarray) -> str:
    """found once / split / merged / split+merged / missed from one truth's match column."""
    count = int(matches.sum())
    if count == 0:
        return MISSED
    parts = [SPLIT] if count > 1 else []
    if (matches & merging).any():
        parts.append(MERGED)
    return "+".join(parts) or FOUND_ONCE


def evaluate(report: Report, truth: GroundTruth, min_area_mm2: float, tolerance_px: float) -> Evaluation:
    """Matches the reported defects with the ground truth and classifies every defect."""
    horizon = report.total_frames if report.total_frames is not None else truth.num_frames
    covered = [t for t in truth.defects if t.first_frame < horizon]
    matrix = match_matrix(report.defects, covered, tolerance_px)
    merging = matrix.sum(axis=1) >= 2  # reported defects over two or more ground-truth defects
    results = []
    for column, t in enumerate(covered):
        matches = matrix[:, column]
        area_mm2 = t.area_pixels * report.mm_per_pixel ** 2
        big_enough = area_mm2 >= min_area_mm2 * (1 - AREA_RTOL)
        status = _status(matches, merging) if big_enough else BELOW_SIZE
        reported_area = float(sum(r.area_px for r, hit in zip(report.defects, matches) if hit))
        has_error = status in (FOUND_ONCE, SPLIT)
        results.append(DefectResult(
            defect_id=t.defect_id, defect_type=t.defect_type, placement=t.placement, area_mm2=area_mm2,
            first_frame=t.first_frame, last_frame=t.last_frame,
            report_ids=tuple(r.defect_id for r, hit in zip(report.defects, matches) if hit), status=status,
            reported_area_px=reported_area if matches.any() else None,
            area_error=reported_area / t.area_pixels - 1.0 if has_error else None,
        ))
    false_tracks = tuple(r for r, hits in zip(report.defects, matrix) if not hits.any())
    return Evaluation(tuple(results), false_tracks, len(truth.defects) - len(covered), min_area_mm2,
                      tolerance_px, report.mm_per_pixel)


# --- output ----------------------------------------------------------------------------------------

def format_table(evaluation: Evaluation) -> str:
    """One row per ground-truth defect."""
    header = (f"{'id':>4}  {'type':<16}{'placement':<13}{'area mm^2':>10}  {'frames':<11}{'reports':<12}"
              f"{'status':<14}{'area err %':>10}")
    lines = [header, "-" * len(header)]
    for r in evaluation.results:
        reports = ",".join(map(str, r.report_ids)) or "-"
        error = "" if r.area_error is None else f"{100 * r.area_error:+.1f}"
        lines.append(f"{r.defect_id:>4}  {r.defect_type:<16}{r.placement:<13}{r.area_mm2:>10.2f}  "
                     f"{f'{r.first_frame}-{r.last_frame}':<11}{reports:<12}{r.status:<14}{error:>10}")
    for r in evaluation.false_tracks:
        box = ", ".join(f"{v:g}" for v in r.box)
        lines.append(f"false track {r.defect_id}: frames {r.first_frame}-{r.last_frame}, surface box [{box}], "
                     f"{r.area_px * evaluation.mm_per_pixel ** 2:.2f} mm^2")
    return "\n".join(lines)


def format_summary(evaluation: Evaluation) -> str:
    """The counts, the mean absolute area error and the acceptance verdict."""
    e = evaluation
    mean = "n/a" if e.mean_abs_area_error is None else f"{100 * e.mean_abs_area_error:.1f} %"
    false_ids = f" ({','.join(str(r.defect_id) for r in e.false_tracks)})" if e.false_tracks else ""
    below = len(e.results) - e.considered
    lines = [
        f"summary        found once {e.count(FOUND_ONCE)}/{e.considered}, missed {e.count(MISSED)}, "
        f"split {e.count(SPLIT)}, merged {e.count(MERGED)}, false tracks {len(e.false_tracks)}{false_ids}; "
        f"mean |area error| {mean}"
        + (f"; {below} below {e.min_area_mm2:g} mm^2" if below else "")
        + (f"; {e.left_out} after the report's last frame left out" if e.left_out else ""),
    ]
    rule = (f"every defect >= {e.min_area_mm2:g} mm^2 found by exactly one track, at most "
            f"{'one false track' if MAX_FALSE_TRACKS == 1 else f'{MAX_FALSE_TRACKS} false tracks'}, "
            f"area within {100 * MAX_AREA_ERROR:g} %")
    verdict = "PASS" if e.accepted else f"FAIL ({'; '.join(e.failures)})"
    lines.append(f"acceptance     {verdict}: {rule}")
    return "\n".join(lines)


def _check_same_video(report: Report, truth: GroundTruth) -> None:
    """Warns when the report and the ground truth name different videos or frame counts."""
    if report.video and truth.video and Path(report.video).name != truth.video:
        LOGGER.warning("the report is of %s, the ground truth of %s", Path(report.video).name, truth.video)
    if report.total_frames is not None and report.total_frames > truth.num_frames:
        LOGGER.warning("the report covers %d frames, the ground-truth video has %d", report.total_frames,
                       truth.num_frames)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("report", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("ground_truth", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--min_area_mm2", type=click.FloatRange(min=0.0), default=5.0, show_default=True,
              help="Smallest ground-truth defect that must be found (smaller ones are listed as below size).")
@click.option("--tolerance_px", type=click.FloatRange(min=0.0), default=12.0, show_default=True,
              help="Grow every ground-truth box by this many pixels per side before matching.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the numbers to this JSON file.")
def _command(report: Path, ground_truth: Path, min_area_mm2: float, tolerance_px: float,
             json_path: Path | None) -> None:
    """Score a tracking REPORT against the GROUND_TRUTH sidecar of a synthetic conveyor video."""
    reported, truth = read_report(report), read_ground_truth(ground_truth)
    _check_same_video(reported, truth)
    evaluation = evaluate(reported, truth, min_area_mm2, tolerance_px)
    LOGGER.info("%d reported defects against %d ground-truth defects (%.4g mm per pixel)",
                len(reported.defects), len(evaluation.results), reported.mm_per_pixel)
    click.echo(format_table(evaluation))
    click.echo(format_summary(evaluation))
    if json_path is not None:
        numbers = {"report": str(report), "ground_truth": str(ground_truth), **evaluation.to_dict()}
        utils.atomic_write_text(json_path, json.dumps(numbers, indent=2, allow_nan=False) + "\n")
        click.echo(f"json           {json_path}")


def cli(argv: Sequence[str] | None = None) -> int:
    """Runs the command; bad input prints one line and returns 2."""
    return utils.run_command(_command, argv, "choose a writable --json path")


if __name__ == "__main__":
    sys.exit(cli())
