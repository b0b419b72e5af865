"""The tracking run: output layout, run-folder lock, the tracking renderer and its report.

`run_tracking(options)` is what `video_inference_with_tracking.py` (and the orchestrator, with the
best-fitting model) runs: every frame's anomaly map goes through `defect_tracking.GLASSDefectTracker`
(defect regions from the size analyzer, surface motion, ByteTrack). By default a run writes a folder
of its own:

    output/<class_name>/<timestamp>/
        output-video/   <video stem>_tracking.mp4 (+ _frames.csv, _timeline.png)
        defects/        defect_<id>_frame_<n>.png: one annotated frame per defect (ID, score, area)
        report/         tracking_report.json: per physical defect its tracks, first/last frame,
                        surface position, length, width, area, severity; per track its frames,
                        scores and largest area; totals; run settings; measured FPS

With `--no_organized_output` the video goes to `--output_path` (default
output/<class_name>/<video stem>_tracking.mp4), the report beside it (`<stem>_report.json`) and
the defect frames only with `--save_defect_frames` (to `--defect_frames_dir`, default
`<stem>_defects/`). Everything is written only once the whole video went through.

An error, Ctrl-C or SIGTERM leaves no file and no run folder. While it runs, a run's hidden entries
carry its pid and are locked (video_io.PartialLock): the partial video `.<stem>.<pid>-<hex>.partial.mp4`,
the staging folder of defect frames `defects/.staging-<pid>-<hex>/` and, in an organized run folder,
`.run-<pid>-<hex>.lock`. After `kill -9` the next run on the same output folders removes those whose
lock is free and whose process is gone (and the run folders that leaves empty) and says so in one line;
a run that is still going keeps its lock and its files.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping, Sequence

import click
import cv2
import numpy as np

import model as glass_model
import paths
import preprocess
import video_io
from defect_tracking import METHODS, FrameTracks, GLASSDefectTracker, draw_tracks
from defect_tracking.glass_integration import MIN_PRESENCE, REGION_HEIGHT
from defect_tracking.surface import REGION_SCALES
import drawing
from inference import calibrate_surface
from inference import cli as shared
from inference import runner
from inference.engine import FrameResult, InferenceEngine, frame_shifts, surface_edges
from methods.registry import map_scale_of

LOGGER = logging.getLogger(__name__)

MODE = "tracking"
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"
OVERLAY_INTENSITY = 0.35  # lighter than the plain overlay: the track boxes must stay readable
SPEED_TOLERANCE = 0.2  # warn when the measured surface speed is off --fabric_speed by more than this
PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # defect frames are encoded while the video runs
DEFAULT_MERGE_GAP_MM = 2.0  # pieces of one defect closer than this on the surface are joined
OUTPUT_HELP = ("Output video name, in <run>/output-video/ (with --no_organized_output: the path; default "
               "output/<class_name>/<video stem>_tracking.mp4).")


@dataclass(frozen=True)
class TrackingOutput:
    """Where one tracking run writes its video, defect frames (None: not saved) and report."""

    video: Path
    defects_dir: Path | None
    report: Path
    run_dir: Path | None = None  # the organized run folder, None for --no_organized_output

    def side_report(self, report: SideReport) -> Path:
        """Where a further JSON report goes: report/<name>.json, or <video stem>_<flat_suffix> beside the video."""
        if self.run_dir is not None:
            return self.report.parent / f"{report.name}.json"
        return runner.side_path(self.video, report.flat_suffix)


@dataclass(frozen=True)
class SideReport:
    """A further JSON report saved with the tracking report (e.g. the orchestrator's model ranking)."""

    name: str  # organized output: report/<name>.json
    flat_suffix: str  # --no_organized_output: <video stem>_<flat_suffix>
    content: dict[str, Any]


def organized_output(class_name: str, video_path: str, output_name: str | None, defect_frames_dir: str | None,
                     now: dt.datetime, root: Path = Path(shared.DEFAULT_OUTPUT_ROOT)) -> TrackingOutput:
    """output/<class>/<timestamp>/{output-video,defects,report}/ (a new folder per run)."""
    stamp = now.strftime(TIMESTAMP_FORMAT)
    run_dir = root / class_name / stamp
    suffix = 1
    while run_dir.exists():  # two runs within one second get separate folders
        run_dir = root / class_name / f"{stamp}_{suffix}"
        suffix += 1
    name = output_name or f"{Path(video_path).stem}_{MODE}{video_io.VIDEO_SUFFIX}"
    defects = Path(defect_frames_dir) if defect_frames_dir else run_dir / "defects"
    return TrackingOutput(run_dir / "output-video" / name, defects, run_dir / "report" / "tracking_report.json",
                          run_dir)


def flat_output(class_name: str, video_path: str, output_path: str | None, save_defect_frames: bool,
                defect_frames_dir: str | None) -> TrackingOutput:
    """The video at --output_path, the report beside it, defect frames only when asked for."""
    video = Path(output_path) if output_path else shared.default_output_path(class_name, video_path, MODE)
    defects = None
    if save_defect_frames:
        defects = Path(defect_frames_dir) if defect_frames_dir else video.with_name(f"{video.stem}_defects")
    return TrackingOutput(video, defects, runner.side_path(video, "report.json"))


def representative_frame(frame: np.ndarray, frame_tracks: FrameTracks, track_id: int, unit: str) -> np.ndarray:
    """The original frame with one track's box and 'ID n score area' label, plus its frame number."""
    only = replace(frame_tracks, tracks=[t for t in frame_tracks.tracks if t.track_id == track_id])
    canvas = draw_tracks(frame, only, unit)
    scale = drawing.text_scale(canvas)
    drawing.put_text(canvas, f"frame {frame_tracks.frame_index}", (6, canvas.shape[0] - int(12 * scale) - 2),
                    (255, 255, 255), scale)
    return canvas


class TrackingRenderer(runner.BaseRenderer):
    """Overlay + track boxes and labels + verdict; keeps each track's best frame; writes the report."""

    def __init__(self, tracker: GLASSDefectTracker, engine: InferenceEngine, layout: TrackingOutput,
                 settings: dict[str, Any], fabric_speed: float | None = None,
                 side_reports: Sequence[SideReport] = ()) -> None:
        """side_reports: further JSON reports saved with the run's report."""
        self.tracker = tracker
        self.engine = engine
        self.layout = layout
        self.settings = settings
        self.fabric_speed = fabric_speed
        self.side_reports = list(side_reports)
        self.defect_frames: dict[int, int] = {}  # track id -> frame index of its staged representative PNG
        # A track's current representative frame is held in memory while the track is in view (it may still
        # change) and staged on disk as a PNG once the track leaves the view, so memory stays flat on long
        # videos and each PNG is encoded about once. Staged files move into defects/ only when the run
        # succeeded; cleanup() removes what is left.
        self._pending: dict[int, tuple[int, np.ndarray]] = {}
        self._staging: Path | None = None
        self._staging_lock: video_io.PartialLock | None = None

    def _stage(self, track_id: int) -> None:
        """Writes a track's pending representative frame to the staging folder (.staging-<pid>-<hex>/, locked)."""
        index, image = self._pending.pop(track_id)
        if self._staging is None:
            self._staging_lock = video_io.PartialLock.create(self.layout.defects_dir, lambda tag: f".staging-{tag}",
                                                             directory=True)
            self._staging = self._staging_lock.path
        path = self._staging / f"track_{track_id:04d}.png"
        if not cv2.imwrite(str(path), image, PNG_FAST):
            raise OSError(f"{path}: could not write the defect frame")
        self.defect_frames[track_id] = index

    def _keep_representatives(self, frame: np.ndarray, tracks: FrameTracks, index: int) -> None:
        """Holds new representative frames; stages those of tracks that left the view."""
        for track_id in tracks.new_representative:
            self._pending[track_id] = (index, representative_frame(frame, tracks, track_id, self.unit))
        in_view = {track.track_id for track in tracks.tracks}
        for track_id in [t for t in self._pending if t not in in_view]:
            self._stage(track_id)

    def cleanup(self) -> None:
        """Removes the staging folder (after the run, whether it succeeded or not), also one this process made
        but had not recorded yet (a signal inside PartialLock.create or just after it)."""
        if self._staging_lock is not None:
            self._staging_lock.remove()
            self._staging_lock = None
        self._staging = None
        if self.layout.defects_dir is not None:
            for stray in Path(self.layout.defects_dir).glob(f".staging-{os.getpid()}-*"):
                shutil.rmtree(stray, ignore_errors=True)

    @property
    def unit(self) -> str:
        """The physical unit of areas."""
        return self.tracker.analyzer.physical_unit

    def render(self, frame: np.ndarray, result: FrameResult, index: int) -> np.ndarray:
        """Tracks the frame's defects and draws them over the heatmap of the map they were cut from."""
        tracks = self.tracker.update(index, frame, result.anomaly_map)
        if self.layout.defects_dir is not None:
            self._keep_representatives(frame, tracks, index)
        # The heatmap shows what the regions were cut from (the surface average when averaging).
        canvas = draw_tracks(drawing.overlay(frame, tracks.anomaly_map, OVERLAY_INTENSITY), tracks, self.unit)
        runner.draw_verdict(canvas, result, self.engine.threshold)
        scale = drawing.text_scale(canvas)
        dx, dy = tracks.motion
        status = f"tracks {len(tracks.tracks)} in view, {self.tracker.num_tracks} total | motion {dx:+.1f},{dy:+.1f} px"
        drawing.put_text(canvas, status, (6, canvas.shape[0] - int(12 * scale) - 2), (255, 255, 255), scale)
        return canvas

    def finish(self) -> dict[str, Any]:
        """Track count and tracking stage timings for the terminal summary."""
        frames = max(self.tracker.frames_seen, 1)
        ms = {name: round(1000.0 * secs / frames, 3) for name, secs in self.tracker.stage_seconds.items()}
        return {"tracks": f"{self.tracker.num_defects} defect(s) from {self.tracker.num_tracks} track(s)",
                "tracking_ms_per_frame": ms}

    def artifacts(self, output_path: Path, summary: runner.RunSummary) -> dict[Path, runner.Artifact]:
        """The defect frames (moved from the staging folder) and the JSON report."""
        files: dict[Path, runner.Artifact] = {}
        frame_files: dict[int, str] = {}
        for track_id in list(self._pending):  # tracks still in view at the last frame
            self._stage(track_id)
        defects = self.tracker.defects()
        if self.layout.defects_dir is not None and self._staging is not None:
            for defect in defects:  # one frame per physical defect: its best track's representative frame
                track_id = defect.representative_track
                if track_id not in self.defect_frames:
                    continue
                index = self.defect_frames[track_id]
                path = self.layout.defects_dir / f"defect_{defect.defect_id:04d}_frame_{index:06d}.png"
                files[path] = self._staging / f"track_{track_id:04d}.png"
                frame_files[defect.defect_id] = str(path)
        report = self.report(summary, frame_files)
        files[self.layout.report] = json.dumps(report, indent=2, allow_nan=False) + "\n"
        for side in self.side_reports:
            files[self.layout.side_report(side)] = json.dumps(side.content, indent=2, allow_nan=False) + "\n"
        return files

    def report(self, summary: runner.RunSummary, frame_files: dict[int, str]) -> dict[str, Any]:
        """Tracks, totals, settings and measured speed, JSON-ready."""
        tracking = self.tracker.report(self.fabric_speed)
        for defect in tracking["defects"]:
            defect["defect_frame"] = frame_files.get(defect["defect_id"])
        totals = tracking["totals"]
        totals["defect_frames"] = summary.defect_frames
        totals["largest_area_pixels"] = max((d["area_px"] for d in tracking["defects"]), default=0)
        totals["largest_area_physical"] = max((d["area_physical"] for d in tracking["defects"]), default=0.0)
        totals["area_unit"] = f"{self.unit}^2"
        speed_check = check_speed(totals["mean_speed_per_second"], self.fabric_speed, totals["speed_unit"])
        if speed_check is not None:
            totals["fabric_speed_check"] = speed_check
        run = summary.to_dict()
        return {
            "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "video": str(summary.video_path),
            "output_video": str(summary.output_path),
            "model": self.engine.info.to_dict(),
            "settings": {**self.settings, "image_threshold": self.engine.threshold, **self.tracker.settings()},
            "defects": tracking["defects"],
            "tracks": tracking["tracks"],
            "flicker": tracking["flicker"],  # left out of defects by --min_presence, for review
            "totals": totals,
            "performance": {
                "frames": summary.frames, "wall_seconds": round(summary.wall_seconds, 3),
                "measured_fps": run["measured_fps"], "stage_ms_per_frame": run["stage_ms_per_frame"],
                "tracking_ms_per_frame": self.finish()["tracking_ms_per_frame"],
            },
            "frame_accuracy": summary.accuracy, "frame_auroc": summary.auroc,
            "files": run["files"] + [str(self.layout.report)]
                     + [str(self.layout.side_report(side)) for side in self.side_reports],
        }


def check_speed(measured: float, expected: float | None, unit: str) -> dict[str, Any] | None:
    """Compares the measured surface speed with --fabric_speed; warns when they disagree."""
    if expected is None:
        return None
    ratio = measured / expected if expected > 0 else math.inf if measured > 0 else 1.0
    agrees = abs(ratio - 1.0) <= SPEED_TOLERANCE
    if not agrees:
        LOGGER.warning("measured surface speed %.3f %s differs from --fabric_speed %.3f %s: check --pixel_size "
                       "and --fabric_speed", measured, unit, expected, unit)
    return {"expected": expected, "measured": measured, "unit": unit,
            "ratio": ratio if math.isfinite(ratio) else None, "agrees": agrees}


def plan_output(options: dict[str, Any], class_name: str, now: dt.datetime) -> TrackingOutput:
    """The output layout the flags ask for (nothing created yet)."""
    if options["no_organized_output"]:
        return flat_output(class_name, options["video_path"], options["output_path"],
                           options["save_defect_frames"], options["defect_frames_dir"])
    name = Path(options["output_path"]).name if options["output_path"] else None
    return organized_output(class_name, options["video_path"], name, options["defect_frames_dir"], now)


def create_output_folders(layout: TrackingOutput,
                          created: list[Path]) -> tuple[TrackingOutput, video_io.PartialLock | None]:
    """Creates the layout's folders (checked writable), adding each new one to `created`; returns the layout
    (an organized run folder taken meanwhile by another run: the next free name) and the run folder's lock
    (release it with `finish_run_folder`)."""
    run_lock = None
    if layout.run_dir is not None:
        created += runner.create_folder(layout.run_dir.parent, "--output_path:")
        layout = claim_run_folder(layout)
        created.append(layout.run_dir)
        try:
            run_lock = video_io.PartialLock.create(layout.run_dir, lambda tag: f".run-{tag}.lock")
        except OSError as err:
            raise runner.RunError(f"--output_path: cannot write in {layout.run_dir} ({err.strerror}); "
                                  "choose a writable folder") from None
    try:
        if layout.defects_dir is not None:
            created += runner.create_folder(layout.defects_dir, "--defect_frames_dir:")
        created += runner.create_folder(layout.report.parent, "--output_path:")
        created += runner.create_folder(layout.video.parent, "--output_path:")
    except BaseException:
        finish_run_folder(run_lock)
        raise
    return layout, run_lock


def claim_run_folder(layout: TrackingOutput) -> TrackingOutput:
    """Creates the organized run folder, this run's alone: when another run created it first (two runs
    within one second), the next free `<timestamp>_<n>` (the layout's paths follow)."""
    run_dir = layout.run_dir
    stamp = "_".join(run_dir.name.split("_")[:2])
    suffix = 0
    while True:
        try:
            run_dir.mkdir()
        except FileExistsError:
            suffix += 1
            run_dir = run_dir.with_name(f"{stamp}_{suffix}")
            continue
        except OSError as err:
            raise runner.RunError(f"--output_path: cannot create folder {run_dir} ({err.strerror}); "
                                  "choose a writable folder") from None
        break
    if run_dir == layout.run_dir:
        return layout

    def moved(path: Path) -> Path:
        return run_dir / path.relative_to(layout.run_dir) if path.is_relative_to(layout.run_dir) else path

    defects = moved(layout.defects_dir) if layout.defects_dir is not None else None
    return TrackingOutput(moved(layout.video), defects, moved(layout.report), run_dir)


def finish_run_folder(run_lock: video_io.PartialLock | None) -> None:
    """Removes the run folder's lock: the run ended (its files are complete, or were removed)."""
    if run_lock is not None:
        run_lock.remove()


def remove_interrupted(layout: TrackingOutput) -> list[Path]:
    """Removes what runs killed outright (`kill -9`) left in this run's output folders: in every run folder of
    the class (output/<class>/*/) or in the --no_organized_output folder, and in --defect_frames_dir."""
    folders = [] if layout.run_dir is not None else [layout.video.parent]
    if layout.defects_dir is not None and (layout.run_dir is None or not layout.defects_dir.is_relative_to(
            layout.run_dir)):
        folders.append(layout.defects_dir)
    run_dirs = []
    if layout.run_dir is not None and layout.run_dir.parent.is_dir():
        try:
            run_dirs = sorted(p for p in layout.run_dir.parent.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            pass
    return runner.remove_interrupted(folders, run_dirs)


def check_settings(options: Mapping[str, Any]) -> None:
    """The tracking flags that need no file (--max_frames, the --output_path name, --display), checked
    before any work."""
    runner.check_max_frames(options["max_frames"])
    if options["output_path"]:
        runner.check_output_name(Path(options["output_path"]).name)
    runner.check_display(options["display"])


def run_tracking(options: dict[str, Any], now: dt.datetime | None = None, side_reports: Sequence[SideReport] = (),
                 on_progress: Callable[[int, int], None] | None = None) -> tuple[runner.RunSummary, TrackingOutput]:
    """Checks every input, loads the engine, tracks the video and writes video, frames, report and side reports
    (on_progress: runner.RunConfig's, called after every frame)."""
    analyzer = shared.size_analyzer(options)
    check_settings(options)
    engine_cfg = shared.engine_config(options)
    class_dir = glass_model.resolve_class_dir(engine_cfg.model_path, engine_cfg.class_name)
    info = video_io.probe_video(options["video_path"])
    shared.check_roi(engine_cfg, info)
    # A missing or mismatched calibration fails here, before any work; a used one sets the frame flags' level.
    _, _, stored = calibrate_surface.surface_plan(class_dir, options)
    if stored is not None:
        light = stored.light_level if options.get("light", "auto") == "auto" else None
        engine_cfg = replace(engine_cfg, threshold=stored.frame_threshold, light_level=light)
    layout = plan_output(options, class_dir.name, now or dt.datetime.now())
    remove_interrupted(layout)
    created: list[Path] = []
    run_lock = None
    try:
        layout, run_lock = create_output_folders(layout, created)
        run_cfg = runner.RunConfig(options["video_path"], layout.video, options["display"], options["max_frames"],
                                   on_progress=on_progress)
        runner.check_run(run_cfg, info)
        engine = InferenceEngine.from_config(engine_cfg)
        fps = info.fps  # probe_video gives every video a frame rate (video_io.ASSUMED_FPS when it states none)
        levels = calibrate_surface.tracking_levels(engine, class_dir, options)
        tracker = GLASSDefectTracker(analyzer, threshold=levels.threshold, low_threshold=levels.low_threshold,
                                     motion_method=options["motion_method"], fps=fps,
                                     min_hits=options["min_track_frames"], merge_gap_mm=options["merge_gap"],
                                     min_presence=options["min_presence"],
                                     region_height=options["region_height"],
                                     surface_window=levels.window,
                                     surface_min_frames=levels.min_frames,
                                     **model_settings(engine, (info.height, info.width), options["region_scale"],
                                                      options["thin_regions"], options["wide_regions"]))
        run_cfg = replace(run_cfg, grid_shifts=averaging_shifts(engine, tracker))
        settings = {
            "region_levels_from": levels.source,
            "image_threshold_from": (levels.source if levels.frame_threshold is not None else
                                     "command line" if options.get("threshold") is not None else "model"),
            "model_path": str(engine_cfg.model_path), "class_dir": str(class_dir), "backend": engine.backend_name,
            "device": engine_cfg.device, "batch_size": engine_cfg.batch_size, "light_level": engine_cfg.light_level,
            "min_defect_area_pixels": analyzer.min_defect_area, "fabric_speed": options["fabric_speed"],
            "organized_output": not options["no_organized_output"],
        }
        renderer = TrackingRenderer(tracker, engine, layout, settings, options["fabric_speed"], side_reports)
        try:
            summary = runner.run_video(engine, renderer, run_cfg, info)
        finally:
            renderer.cleanup()
    except BaseException:
        finish_run_folder(run_lock)
        paths.remove_empty_folders(created)  # a failed run leaves no files and no empty folders of its own
        raise
    finish_run_folder(run_lock)
    click.echo(summary.report())
    click.echo(f"report         {layout.report}")
    return summary, layout


def model_settings(engine: InferenceEngine, frame_shape: Sequence[int], scale: str = "auto",
                   thin_regions: str = "image", wide_regions: str = "image") -> dict[str, Any]:
    """GLASSDefectTracker's settings that follow from the model and the frame shape, as tracking sets them by
    default (--region_scale auto, --thin_regions image, --wide_regions image): region_scale (with "auto" the
    model's own, AnomalyModel.map_scale: logit for GLASS and DRAEM, distance for the distance methods),
    thin_cell_px and wide_cell_px (the map's cell in frame pixels with "image": those regions measured on the
    frame; None with "map"), surface_view and surface_margin. The tracker's own defaults (the map itself, every
    region as the map cuts it, the whole frame) know no model."""
    cell_px = engine.cell_px(frame_shape)
    return {"region_scale": map_scale_of(engine.info.method) if scale == "auto" else scale,
            "thin_cell_px": cell_px if thin_regions == "image" else None,
            "wide_cell_px": cell_px if wide_regions == "image" else None,
            **surface_edges(engine, frame_shape)}


def averaging_shifts(engine: InferenceEngine, tracker: GLASSDefectTracker
                     ) -> Callable[[int, int], list[preprocess.GridShift]] | None:
    """RunConfig.grid_shifts for this tracker: when it averages on the surface, the grid shifts along the motion
    measured so far (as calibrate_surface.py scores the frames its thresholds come from); else None."""
    if tracker.average is None:
        return None
    return lambda first, count: frame_shifts(engine, first, count, tracker.surface_offset)


def tracking_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The tracking flags (size calibration, motion, defect frames, output layout)."""
    return shared.apply_options(command, [tracking_settings_options, layout_options])


def tracking_settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The flags that say how defects are found, measured and tracked (not where outputs go): what
    inference/batch_inspect.py takes, which lays out its outputs itself."""
    return shared.apply_options(command, [
        shared.size_options,
        click.option("--fabric_speed", type=click.FloatRange(min=0.0), default=None,
                     help="Expected surface speed in --physical_unit per second; the report compares it "
                          "with the measured one."),
        click.option("--min_track_frames", type=click.IntRange(min=1), default=3, show_default=True,
                     help="Report only defects detected in at least this many frames (shorter ones are map flicker)."),
        click.option("--min_presence", type=click.FloatRange(0.0, 1.0), default=MIN_PRESENCE, show_default=True,
                     help="Report only defects detected in at least this share of the frames that showed their place "
                          "on the surface from their first detection until the tracker gave them up (last detection "
                          "+ lost-track budget): the belt carries a defect through the whole view, flicker of the "
                          "map near its threshold lasts a few frames (0: report all)."),
        click.option("--merge_gap", type=click.FloatRange(min=0.0), default=DEFAULT_MERGE_GAP_MM, show_default=True,
                     help="Regions and tracks closer than this many mm on the surface are one defect (the pieces "
                          "of a branching crack, a stain seen as several blobs); 0 merges only touching ones."),
        click.option("--region_height", type=click.FloatRange(0.0, 1.0, max_open=True), default=REGION_HEIGHT,
                     show_default=True,
                     help="Measure each region where the map is at least this fraction of the way from the frame's "
                          "background to the region's peak (0.5: full width at half maximum; 0: down to the "
                          "region threshold)."),
        click.option("--region_scale", type=click.Choice(("auto", *REGION_SCALES)), default="auto",
                     show_default=True,
                     help="Where --region_height is measured: auto = on the model's evidence before it squashed its "
                          "scores into [0, 1] (logit for GLASS's sigmoid, distance for PatchCore/PaDiM/autoencoder), "
                          "where a strong defect's half height lies on its edge; linear = on the map itself (earlier "
                          "versions: strong defects measured larger)."),
        click.option("--thin_regions", type=click.Choice(("image", "map")), default="image", show_default=True,
                     help="Regions no wider than two patch cells of the map (cracks, scratches, pits), where the map "
                          "does not resolve a defect's width: image = keep the pixels where the frame shows the "
                          "defect (darker or brighter than the surface around it), grown along it by up to a cell; "
                          "map = as the map cuts them (earlier versions: such defects measured 2-3 times too large)."),
        click.option("--wide_regions", type=click.Choice(("image", "map")), default="image", show_default=True,
                     help="Wider regions (dents, stains, holes, spatter): image = where the frame shows the defect's "
                          "edge, between the region's core and the surface around it, and the defect stands apart "
                          "from that surface; map = as the map cuts them at --region_height (earlier versions: "
                          "convex or unevenly answered defects measured up to a third too small)."),
        click.option("--motion_method", type=click.Choice(METHODS), default="phase", show_default=True,
                     help="Surface motion estimate: phase correlation, dense optical flow or template matching."),
        click.option("--surface_window", type=click.IntRange(min=1), default=None,
                     help="Average each frame's map with the maps of the last N-1 frames at the same surface points "
                          "before cutting regions: finds faint defects that persist on the surface. Its thresholds "
                          "come from inference/calibrate_surface.py on a defect-free recording (or "
                          "--pixel_threshold). [default: the class's surface calibration when it has one, else 1 = "
                          "each frame alone]"),
        click.option("--surface_min_frames", type=click.IntRange(min=1), default=None,
                     help="With --surface_window: pixels averaged over fewer frames (just entered the view) start no "
                          "region. [default: the calibration's, else surface_window // 3]"),
        click.option("--light", type=click.Choice(("auto", "off")), default="auto", show_default=True,
                     help="auto: when the surface calibration in use recorded a light level "
                          "(calibrate_surface.py --light compensate), score every frame scaled to it; off: frames "
                          "as they come."),
    ])


def layout_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Where a tracking run's defect frames and outputs go."""
    return shared.apply_options(command, [
        click.option("--save_defect_frames/--no_save_defect_frames", default=False, show_default=True,
                     help="With --no_organized_output: save one annotated frame per defect "
                          "(organized output always does)."),
        click.option("--defect_frames_dir", default=None,
                     help="Folder for the defect frames (default: <run>/defects/, or <output stem>_defects/)."),
        click.option("--no_organized_output", is_flag=True, default=False,
                     help="Write to --output_path and beside it instead of output/<class>/<timestamp>/."),
    ])
