"""Runs the inference engine over a video: decode, score, render, write, report.

Every video script is `run_video(engine, <its renderer>, RunConfig)`; the scripts differ only in
the renderer (what is drawn on each frame, and which extra files are saved). For every run the
runner also writes, beside the output video:

- `<output stem>_frames.csv`: one row per frame (frame, score, is_defect; with the video's sidecar
  JSON also source, label, true_is_defect),
- `<output stem>_timeline.png`: score per frame, the threshold, true defect frames shaded when the
  sidecar is there.

All files are written atomically and only once the whole video went through: an error (or Ctrl-C, or
SIGTERM: `docker stop`, systemd) leaves no output file behind, half-written or otherwise. A run killed
outright (`kill -9`) leaves its hidden partial video (named with its pid, locked while written); the
next run into the same folder removes it (`remove_interrupted`) and says so in one line.

It also draws the frame verdict; the drawing primitives shared by the renderers (heatmap on a
fixed [0, 1] scale, overlay, text) are in `drawing`.
"""
from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from collections.abc import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np
import tqdm

import drawing
import utils
import video_io
from errors import UserError
from inference.engine import FrameResult
from paths import make_writable_folder

LOGGER = logging.getLogger(__name__)

STAGES = ("decode", "score", "render", "write")
QUIT_KEYS = (ord("q"), ord("Q"), 27)  # q or Esc closes the preview and ends the run cleanly

OK_COLOUR = (60, 200, 60)  # BGR
DEFECT_COLOUR = (40, 40, 230)


Artifact = str | bytes | Path  # content of an extra output file, or a finished file to move there


class RunError(UserError):
    """A run setting that cannot work; the message is one line naming the flag and the fix."""


@dataclass(frozen=True)
class RunConfig:
    """Which video to read, where to write it, and how to show progress."""

    video_path: str | os.PathLike
    output_path: str | os.PathLike
    display: bool = False
    max_frames: int | None = None
    progress: bool = True
    window_name: str = "GLASS video inference"
    # Called after every frame with (frames done, frames to do: the container's count, or max_frames); an
    # exception it raises ends the run as any error does (no output file is left).
    on_progress: Callable[[int, int], None] | None = None
    # Given (first frame index, count), the grid shifts to score those frames with (engine.frame_shifts: tracking
    # that averages maps on the surface, so that the grid's phase varies whatever the belt's speed); None: none.
    grid_shifts: Callable[[int, int], Sequence[Any]] | None = None

    def __post_init__(self) -> None:
        check_max_frames(self.max_frames)

    @property
    def csv_path(self) -> Path:
        """Per-frame scores beside the output video."""
        return side_path(self.output_path, "frames.csv")

    @property
    def timeline_path(self) -> Path:
        """Score timeline plot beside the output video."""
        return side_path(self.output_path, "timeline.png")


def side_path(output_path: str | os.PathLike, suffix: str) -> Path:
    """`<folder>/<stem>_<suffix>` beside an output video (e.g. out.mp4 -> out_frames.csv)."""
    output = Path(output_path)
    return output.with_name(f"{output.stem}_{suffix}")


class FrameRenderer(Protocol):
    """What a video script draws: one output frame per input frame, plus optional extras."""

    def render(self, frame: np.ndarray, result: FrameResult, index: int) -> np.ndarray:
        """The output frame (BGR uint8; all frames of a run must share one size)."""

    def finish(self) -> dict[str, Any]:
        """Extra report data once every frame was rendered (shown in the summary)."""

    def artifacts(self, output_path: Path, summary: RunSummary) -> dict[Path, Artifact]:
        """Extra files to save once the run succeeded: path -> text or bytes (written atomically), or
        -> the Path of a finished file on the same file system (moved there)."""


class BaseRenderer:
    """Default no-op finish/artifacts for renderers that only draw."""

    def render(self, frame: np.ndarray, result: FrameResult, index: int) -> np.ndarray:
        """Subclasses draw here."""
        raise NotImplementedError

    def finish(self) -> dict[str, Any]:
        """No extra report data."""
        return {}

    def artifacts(self, output_path: Path, summary: RunSummary) -> dict[Path, Artifact]:
        """No extra files."""
        return {}


@dataclass
class FrameRecord:
    """One row of the per-frame CSV."""

    frame: int
    score: float
    is_defect: bool
    source: str | None = None
    label: str | None = None
    true_is_defect: bool | None = None


@dataclass
class RunSummary:
    """What a run did, how fast, and (with a sidecar) how well."""

    video_path: Path
    output_path: Path
    csv_path: Path
    timeline_path: Path
    frames: int
    video_fps: float
    width: int
    height: int
    threshold: float
    defect_frames: int
    stage_seconds: dict[str, float]
    wall_seconds: float
    stopped_early: bool = False
    accuracy: float | None = None
    auroc: float | None = None
    artifacts: list[Path] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def measured_fps(self) -> float:
        """Frames per second end to end (decode, score, render, write)."""
        return self.frames / self.wall_seconds if self.wall_seconds > 0 else float("inf")

    def stage_ms_per_frame(self) -> dict[str, float]:
        """Milliseconds per frame spent in each stage."""
        return {name: 1000.0 * secs / max(self.frames, 1) for name, secs in self.stage_seconds.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (for reports)."""
        return {
            "video": str(self.video_path), "output": str(self.output_path), "frames": self.frames,
            "video_fps": self.video_fps, "threshold": self.threshold, "defect_frames": self.defect_frames,
            "measured_fps": round(self.measured_fps, 2),
            "stage_ms_per_frame": {k: round(v, 3) for k, v in self.stage_ms_per_frame().items()},
            "stopped_early": self.stopped_early, "frame_accuracy": self.accuracy, "frame_auroc": self.auroc,
            "files": [str(p) for p in (self.csv_path, self.timeline_path, *self.artifacts)], **self.extra,
        }

    def report(self) -> str:
        """A short plain-text summary for the terminal."""
        stages = ", ".join(f"{k} {v:.1f}" for k, v in self.stage_ms_per_frame().items())
        lines = [
            f"video          {self.video_path} ({self.width}x{self.height}, {self.video_fps:.2f} fps)",
            f"output         {self.output_path}" + ("  (stopped early with q)" if self.stopped_early else ""),
            f"frames         {self.frames} scored, {self.defect_frames} above threshold {self.threshold:.4f}",
            f"speed          {self.measured_fps:.1f} FPS end to end; ms/frame: {stages}",
        ]
        if self.accuracy is not None:
            auroc = "n/a (one class only)" if self.auroc is None else f"{self.auroc:.4f}"
            lines.append(f"sidecar truth  frame accuracy {self.accuracy:.4f}, frame AUROC {auroc}")
        lines.extend(f"{key:<14} {value}" for key, value in self.extra.items() if not isinstance(value, (dict, list)))
        files = (self.csv_path, self.timeline_path, *self.artifacts)
        lines.append(f"files          {', '.join(str(p) for p in files)}")
        return "\n".join(lines)


def check_run(cfg: RunConfig, info: video_io.VideoInfo | None = None) -> video_io.VideoInfo:
    """Validates input and output before any work: readable video (unless already probed: info), usable
    output path, screen."""
    info = info or video_io.probe_video(cfg.video_path)
    check_settings(cfg)
    output = Path(cfg.output_path)
    if output.resolve() == Path(cfg.video_path).resolve():
        raise RunError(f"--output_path {output}: same file as --video_path; choose another name")
    if output.is_dir():
        raise RunError(f"--output_path {output}: is a folder; give a file name such as {output / 'out.mp4'}")
    create_folder(output.parent, f"--output_path {output}:")
    return info


def check_settings(cfg: RunConfig) -> None:
    """The checks that need no file: output name, screen for --display (max_frames: RunConfig itself)."""
    check_output_name(cfg.output_path)
    check_display(cfg.display)


def check_max_frames(max_frames: int | None) -> None:
    """--max_frames, when given, is at least 1."""
    if max_frames is not None and max_frames < 1:
        raise RunError(f"--max_frames {max_frames}: must be at least 1 (or left out for the whole video)")


def check_output_name(output_path: str | os.PathLike) -> None:
    """--output_path names an .mp4 file."""
    output = Path(output_path)
    if output.suffix.lower() != video_io.VIDEO_SUFFIX:
        suffix = video_io.VIDEO_SUFFIX
        raise RunError(f"--output_path {output}: only {suffix} output is written; name the file *{suffix}")


def check_display(display: bool) -> None:
    """--display has a screen to show the preview on."""
    if display and _no_screen():
        raise RunError("--display: no screen available (DISPLAY is not set); run without --display")


def create_folder(folder: Path, flag: str) -> list[Path]:
    """Creates a writable folder (else a one-line RunError starting with `flag`); returns the folders it made."""
    if folder.exists() and not folder.is_dir():
        raise RunError(f"{flag} {folder} is a file, not a folder; choose a folder")
    try:
        return make_writable_folder(folder)
    except OSError as err:
        raise RunError(f"{flag} cannot create or write in folder {folder} ({err.strerror}); "
                       "choose a writable folder") from None


def remove_interrupted(folders: Iterable[Path] = (), run_dirs: Iterable[Path] = ()) -> list[Path]:
    """Removes what killed runs left behind (`kill -9`, a power cut: no cleanup ran) and returns it.

    In each of `folders` the partial entries whose writer is gone (video_io.remove_stale_partials: a
    partial video, a staging folder, a run lock; an entry whose lock is held belongs to a live run and
    stays); in each of `run_dirs` (a run's own folder, e.g. output/<class>/<timestamp>/) also those in
    its subfolders, then the subfolders and the run folder itself when that left them empty. Logs one
    line when anything was removed; never fails the run.
    """
    removed: list[Path] = []
    for folder in folders:
        removed += video_io.remove_stale_partials(folder)
    emptied = []
    for run_dir in run_dirs:
        try:
            subfolders = [p for p in run_dir.iterdir() if p.is_dir() and not p.is_symlink()]
        except OSError:
            continue
        found = video_io.remove_stale_partials(run_dir)
        for sub in subfolders:
            found += video_io.remove_stale_partials(sub)
        if found:  # the run that owned this folder is dead: what it left empty goes too
            removed += found
            for folder in (*subfolders, run_dir):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty
            if not run_dir.exists():
                emptied.append(run_dir)
    if removed:
        shown = ", ".join(str(p) for p in removed[:4]) + (f" and {len(removed) - 4} more" if len(removed) > 4 else "")
        folders_note = f"; removed {len(emptied)} empty run folder(s)" if emptied else ""
        LOGGER.info("removed %d leftover(s) of interrupted run(s) whose process is gone: %s%s",
                    len(removed), shown, folders_note)
    return removed


def _no_screen() -> bool:
    """True on Linux without an X11/Wayland display (cv2.imshow would abort)."""
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_video(engine: Any, renderer: FrameRenderer, cfg: RunConfig,
              info: video_io.VideoInfo | None = None) -> RunSummary:
    """Scores every frame of cfg.video_path, writes the rendered video plus per-frame CSV and timeline
    (info: the video's probe, when the caller has it)."""
    info = check_run(cfg, info)
    remove_interrupted([Path(cfg.output_path).parent])
    sidecar = video_io.read_sidecar(cfg.video_path)
    truth = _truth_by_index(sidecar)
    output = Path(cfg.output_path)
    total = info.frame_count if cfg.max_frames is None else min(info.frame_count, cfg.max_frames)
    timings = dict.fromkeys(STAGES, 0.0)
    records: list[FrameRecord] = []
    written: list[Path] = []
    stopped = False
    try:
        with contextlib.ExitStack() as stack:
            frames = stack.enter_context(contextlib.closing(video_io.iter_frames(cfg.video_path, engine.batch_size,
                                                                                     check=False)))
            progress = stack.enter_context(
                tqdm.tqdm(total=total, unit="frame", desc=output.name, disable=not cfg.progress, leave=False)
            )
            if cfg.display:
                stack.callback(_close_window, cfg.window_name)
            writer = None
            start = time.perf_counter()
            for batch in _timed(frames, timings, "decode"):
                if cfg.max_frames is not None:
                    batch = batch[: cfg.max_frames - len(records)]
                tick = time.perf_counter()
                if cfg.grid_shifts is not None:
                    results = engine.predict(batch, cfg.grid_shifts(len(records), len(batch)))
                else:
                    results = engine.predict(batch)
                timings["score"] += time.perf_counter() - tick
                for frame, result in zip(batch, results):
                    index = len(records)
                    tick = time.perf_counter()
                    rendered = renderer.render(frame, result, index)
                    timings["render"] += time.perf_counter() - tick
                    tick = time.perf_counter()
                    if writer is None:
                        height, width = rendered.shape[:2]
                        writer = stack.enter_context(video_io.AtomicVideoWriter(output, info.fps, (width, height)))
                    writer.write(rendered)
                    timings["write"] += time.perf_counter() - tick
                    records.append(_record(index, result, truth))
                    progress.update(1)
                    if cfg.on_progress is not None:
                        cfg.on_progress(len(records), total)
                    if cfg.display and _show(cfg.window_name, rendered):
                        stopped = True
                        break
                if stopped or (cfg.max_frames is not None and len(records) >= cfg.max_frames):
                    break
            wall = time.perf_counter() - start
            if not records:
                raise video_io.VideoError(f"{cfg.video_path}: no frame could be decoded; check the file")
            if truth and len(truth) != len(records) and not stopped and cfg.max_frames is None:
                LOGGER.warning("sidecar lists %d frames, video has %d; scoring the frames it names",
                               len(truth), len(records))
            summary = _summarise(cfg, info, engine.threshold, records, timings, wall, stopped)
            summary.extra = dict(renderer.finish())
            files: dict[Path, Artifact] = {
                summary.csv_path: frames_csv(records),
                summary.timeline_path: timeline_png(records, engine.threshold, info.fps),
            }
            extra_files = renderer.artifacts(output, summary)
            files.update(extra_files)
            summary.artifacts = list(extra_files)
            for path, payload in files.items():
                save_artifact(path, payload)
                written.append(path)
        # leaving the ExitStack cleanly renamed the temporary video onto the output path
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return summary


def save_artifact(path: Path, payload: Artifact) -> None:
    """Writes text or bytes atomically, or moves a finished file (an atomic rename) onto path."""
    if isinstance(payload, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(payload, path)
    else:
        utils.atomic_write_bytes(path, payload.encode("utf-8") if isinstance(payload, str) else payload)


def _timed(frames: Iterator[list[np.ndarray]], timings: dict[str, float], stage: str) -> Iterator[list[np.ndarray]]:
    """Yields the batches of an iterator, adding the time spent producing each to timings[stage]."""
    while True:
        tick = time.perf_counter()
        batch = next(frames, None)
        timings[stage] += time.perf_counter() - tick
        if batch is None:
            return
        yield batch


def _show(window: str, frame: np.ndarray) -> bool:
    """Shows a frame in the preview window; True when the user pressed q (or Esc) to stop."""
    cv2.imshow(window, frame)
    return (cv2.waitKey(1) & 0xFF) in QUIT_KEYS


def _close_window(window: str) -> None:
    """Closes the preview window (ignores a window the user already closed)."""
    with contextlib.suppress(cv2.error):
        cv2.destroyWindow(window)
        cv2.waitKey(1)


def _truth_by_index(sidecar: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
    """Sidecar frame entries by frame index (empty without a sidecar)."""
    if not sidecar:
        return {}
    return {int(entry["index"]): entry for entry in sidecar.get("frames", [])}


def _record(index: int, result: FrameResult, truth: dict[int, dict[str, Any]]) -> FrameRecord:
    """The CSV row of one scored frame, with the sidecar's truth when it names the frame."""
    record = FrameRecord(index, float(result.score), bool(result.is_defect))
    entry = truth.get(index)
    if entry is not None:
        record.source = str(entry.get("source", ""))
        record.label = str(entry.get("label", ""))
        record.true_is_defect = bool(entry.get("is_defect"))
    return record


def _summarise(
    cfg: RunConfig, info: video_io.VideoInfo, threshold: float, records: Sequence[FrameRecord],
    timings: dict[str, float], wall: float, stopped: bool,
) -> RunSummary:
    """Counts, timings and (with sidecar truth) frame accuracy and AUROC."""
    summary = RunSummary(
        video_path=Path(cfg.video_path), output_path=Path(cfg.output_path), csv_path=cfg.csv_path,
        timeline_path=cfg.timeline_path, frames=len(records), video_fps=float(info.fps), width=info.width,
        height=info.height, threshold=float(threshold), defect_frames=sum(r.is_defect for r in records),
        stage_seconds=dict(timings), wall_seconds=wall, stopped_early=stopped,
    )
    summary.accuracy, summary.auroc = frame_metrics(records)
    return summary


def frame_metrics(records: Sequence[FrameRecord]) -> tuple[float | None, float | None]:
    """(accuracy, AUROC) of the frame decisions against sidecar truth; None where not computable."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    known = [r for r in records if r.true_is_defect is not None]
    if not known:
        return None, None
    truth = [r.true_is_defect for r in known]
    accuracy = float(accuracy_score(truth, [r.is_defect for r in known]))
    auroc = float(roc_auc_score(truth, [r.score for r in known])) if len(set(truth)) == 2 else None
    return accuracy, auroc


def frames_csv(records: Sequence[FrameRecord]) -> str:
    """The per-frame CSV text; truth columns only when some frame has sidecar truth."""
    with_truth = any(r.true_is_defect is not None for r in records)
    fields = ["frame", "score", "is_defect"] + (["source", "label", "true_is_defect"] if with_truth else [])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fields)
    for r in records:
        row: list[Any] = [r.frame, f"{r.score:.6f}", int(r.is_defect)]
        if with_truth:
            truth = "" if r.true_is_defect is None else int(r.true_is_defect)
            row += [r.source or "", r.label or "", truth]
        writer.writerow(row)
    return out.getvalue()


def timeline_png(records: Sequence[FrameRecord], threshold: float, fps: float) -> bytes:
    """Score-per-frame plot with the threshold and shaded true defect frames, as PNG bytes."""
    index = np.array([r.frame for r in records])
    scores = np.array([r.score for r in records])
    known = any(r.true_is_defect is not None for r in records)
    truth = np.array([bool(r.true_is_defect) for r in records]) if known else None
    return drawing.score_timeline_png(index, scores, threshold, scores >= threshold, fps, truth,
                                      {"score": "score", "truth": "true defect frames (sidecar)",
                                       "axis": "anomaly score"})


# ---- drawing: the frame verdict (the primitives are in drawing.py) --------------------------------

def draw_verdict(image: np.ndarray, result: FrameResult, threshold: float) -> np.ndarray:
    """Writes 'score S / T' and DEFECT or OK in the top-left corner (in place; returns image)."""
    scale = drawing.text_scale(image)
    line = int(32 * scale) + 4
    colour = DEFECT_COLOUR if result.is_defect else OK_COLOUR
    drawing.put_text(image, f"score {result.score:.3f} / {threshold:.3f}", (6, line), (255, 255, 255), scale)
    drawing.put_text(image, "DEFECT" if result.is_defect else "OK", (6, 2 * line), colour, scale)
    return image
