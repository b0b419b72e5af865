"""Video jobs: queued, run one at a time by a worker thread, independent of the client that sent them.

A job is a tracking run (`tracking_run.run_tracking`, what `video_inference_with_tracking.py` runs, with its
flags parsed by that command itself) over an uploaded video, written into a folder of its own:

    <jobs_dir>/<job_id>/
        input.mp4                    the upload
        tracking.mp4                 the annotated video (+ tracking_frames.csv, tracking_timeline.png)
        tracking_report.json         the tracking report
        defects/defect_<id>_frame_<n>.png   one annotated frame per defect
        job.json                     the job's settings and how it ended (written atomically)

Progress lives in memory and comes from the runner's per-frame callback; stopping the service ends a running
job through that callback, so the run cleans up as after Ctrl-C (no partial output). A job's `job.json` is
written when it is queued and when it ends: a restarted service answers for every earlier job of its jobs
folder (one that was queued or running when the service died is failed, with the reason).
"""
from __future__ import annotations

import json
import logging
import queue
import re
import threading
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

import utils
from errors import UserError, first_line
from inference.modes import build_command
from inference.tracking_run import run_tracking
from service.http_errors import ApiError

LOGGER = logging.getLogger(__name__)

JOB_ID = re.compile(r"[0-9a-f]{32}")  # uuid4 hex
MAX_WAITING_JOBS = 32  # queued, not yet running
VIDEO_NAME = "tracking.mp4"
DEFECTS_FOLDER = "defects"
REPORT_SUFFIX = "report.json"  # the tracking report beside the video: tracking_report.json
JOB_FILE = "job.json"
INTERRUPTED = "the service stopped before the job finished; send the video again"


class JobStopped(Exception):
    """Raised from the progress callback when the service stops while a job runs."""


@dataclass(frozen=True)
class JobSettings:
    """What a job runs: the model's folder, the engine's device and backend, and the request's fields."""

    class_dir: Path
    device: str
    backend: str
    threshold: float | None = None
    pixel_size: float = 1.0
    physical_unit: str = "mm"
    max_frames: int | None = None

    def argv(self, video: Path, folder: Path) -> list[str]:
        """The tracking command's flags for this job (flat output into its folder, defect frames saved)."""
        args = ["--model_path", str(self.class_dir), "--device", self.device, "--backend", self.backend,
                "--video_path", str(video), "--output_path", str(folder / VIDEO_NAME), "--no_organized_output",
                "--save_defect_frames", "--defect_frames_dir", str(folder / DEFECTS_FOLDER),
                "--pixel_size", repr(self.pixel_size), "--physical_unit", self.physical_unit]
        if self.threshold is not None:
            args += ["--threshold", repr(self.threshold)]
        if self.max_frames is not None:
            args += ["--max_frames", str(self.max_frames)]
        return args


@dataclass
class Job:
    """One video job and how far it got (changed only under the queue's lock)."""

    job_id: str
    folder: Path
    video: Path
    settings: JobSettings
    state: str = "queued"
    frames_done: int = 0
    frames_total: int = 0
    error: str | None = None
    report: dict[str, Any] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of GET /api/jobs/{id}."""
        if self.state == "done":
            progress = 1.0
        else:
            progress = min(self.frames_done / self.frames_total, 1.0) if self.frames_total else 0.0
        done = self.state == "done"
        return {
            "job_id": self.job_id, "state": self.state, "progress": progress, "frames_done": self.frames_done,
            "frames_total": self.frames_total, "error": self.error, "report": self.report,
            "defects": self.defects() if done else [],
            "video_url": self.file_url(VIDEO_NAME) if done else None,
            "report_url": self.file_url(report_name()) if done else None,
        }

    def save(self) -> None:
        """Writes job.json into the job's folder (atomically): its settings and state, no report."""
        settings = {key: str(value) if isinstance(value, Path) else value
                    for key, value in asdict(self.settings).items()}
        record = {"job_id": self.job_id, "video": self.video.name, "settings": settings, "state": self.state,
                  "frames_done": self.frames_done, "frames_total": self.frames_total, "error": self.error}
        utils.atomic_write_text(self.folder / JOB_FILE, json.dumps(record, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Job:
        """The job of a folder's job.json, its report read back when done; one that never ended is failed."""
        record = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
        settings = dict(record["settings"])
        settings["class_dir"] = Path(settings["class_dir"])
        job = cls(folder.name, folder, folder / record["video"], JobSettings(**settings), record["state"],
                  int(record["frames_done"]), int(record["frames_total"]), record.get("error"))
        if job.state in ("queued", "running"):
            job.state, job.error = "failed", INTERRUPTED
            _record(job)  # an unwritable folder must not lose the job: its state is right in memory
        elif job.state == "done":
            job.report = json.loads((folder / report_name()).read_text(encoding="utf-8"))
        return job

    def file_url(self, name: str) -> str:
        """The URL of a file of this job's folder (name relative to it, POSIX)."""
        return f"/api/jobs/{self.job_id}/files/{name}"

    def defects(self) -> list[dict[str, Any]]:
        """Per defect of the report: its id, the URL of its frame and the scalar fields of its report entry."""
        rows = []
        for defect in (self.report or {}).get("defects", []):
            row = {key: value for key, value in defect.items() if not isinstance(value, (list, dict))}
            frame = row.pop("defect_frame", None)
            row["frame_url"] = self.file_url(f"{DEFECTS_FOLDER}/{Path(frame).name}") if frame else None
            rows.append(row)
        return rows


def report_name() -> str:
    """The tracking report's file name in a job folder (beside tracking.mp4)."""
    return f"{Path(VIDEO_NAME).stem}_{REPORT_SUFFIX}"


def _record(job: Job) -> None:
    """Writes a job's job.json; a failed write is logged (the job's state stays right in memory)."""
    try:
        job.save()
    except OSError as err:
        LOGGER.warning("video job %s: cannot write %s (%s); a restarted service will not know how it ended",
                       job.job_id, job.folder / JOB_FILE, err.strerror)


def recover_jobs(jobs_dir: Path) -> dict[str, Job]:
    """The jobs an earlier service left in jobs_dir, by id (folders without a readable job.json are skipped,
    with a warning)."""
    jobs: dict[str, Job] = {}
    for folder in sorted(jobs_dir.iterdir()) if jobs_dir.is_dir() else []:
        if not (JOB_ID.fullmatch(folder.name) and (folder / JOB_FILE).is_file()):
            continue
        try:
            jobs[folder.name] = Job.load(folder)
        except (OSError, ValueError, KeyError, TypeError) as err:
            LOGGER.warning("video job folder %s: not recovered (%s)", folder, first_line(err))
    if jobs:
        LOGGER.info("%d earlier video jobs recovered from %s", len(jobs), jobs_dir)
    return jobs


class JobQueue:
    """The jobs and the one worker thread that runs them in order (started with the first job)."""

    def __init__(self, jobs_dir: Path) -> None:
        self.jobs_dir = Path(jobs_dir)
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = recover_jobs(self.jobs_dir)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None

    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and its (created) folder."""
        job_id = uuid.uuid4().hex
        folder = self.jobs_dir / job_id
        folder.mkdir(parents=True)
        return job_id, folder

    def submit(self, job: Job) -> None:
        """Queues a job (503 when MAX_WAITING_JOBS are already waiting)."""
        with self._lock:
            waiting = sum(j.state == "queued" for j in self._jobs.values())
            if waiting >= MAX_WAITING_JOBS:
                raise ApiError(503, f"{waiting} video jobs are waiting already; send this one later")
            if self._stopping.is_set():
                raise ApiError(503, "the service is stopping; send the video again once it is back")
            try:
                job.save()
            except OSError as err:
                raise ApiError(507, f"cannot write the job's state into {job.folder} ({err.strerror}); free space "
                                    "in --jobs_dir and send the video again") from None
            self._jobs[job.job_id] = job
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="video-jobs", daemon=True)
                self._worker.start()
        self._queue.put(job.job_id)

    def status(self, job_id: str) -> dict[str, Any]:
        """A job's JSON (404 for an unknown id)."""
        with self._lock:
            return self._job(job_id).to_dict()

    def folder(self, job_id: str) -> Path:
        """A job's folder (404 for an unknown id)."""
        with self._lock:
            return self._job(job_id).folder

    def _job(self, job_id: str) -> Job:
        """The job of an id (called under the lock)."""
        job = self._jobs.get(job_id) if JOB_ID.fullmatch(job_id) else None
        if job is None:
            raise ApiError(404, f"job {job_id!r}: no such job; POST a video to /api/video to start one")
        return job

    def stop(self, timeout: float = 30.0) -> None:
        """Ends the worker: a running job stops at its next frame (cleaned up, marked failed); queued ones fail."""
        self._stopping.set()
        self._queue.put(None)
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        with self._lock:
            for job in self._jobs.values():
                if job.state == "queued":
                    job.state, job.error = "failed", "the service stopped before the job ran"
                    _record(job)

    def _work(self) -> None:
        """The worker loop: runs the queued jobs one after the other until stop()."""
        while (job_id := self._queue.get()) is not None:
            if self._stopping.is_set():
                break
            with self._lock:
                job = self._jobs[job_id]
                job.state = "running"
            self._run(job)

    def _run(self, job: Job) -> None:
        """Runs one job's tracking and records how it ended."""
        try:
            command = build_command("tracking")
            options = command.make_context("service", job.settings.argv(job.video, job.folder)).params
            run_tracking(options, on_progress=lambda done, total: self._progress(job, done, total))
            report = json.loads((job.folder / report_name()).read_text(encoding="utf-8"))
        except JobStopped:
            self._end(job, "failed", "the service stopped while the job ran")
        except (UserError, click.ClickException) as err:
            self._end(job, "failed", first_line(err) if isinstance(err, UserError) else err.format_message())
        except Exception as err:  # a bug: keep serving, log the traceback, tell the client in one line
            LOGGER.exception("video job %s failed", job.job_id)
            self._end(job, "failed", f"internal error ({type(err).__name__}); see the service log")
        else:
            self._end(job, "done", None, report)

    def _progress(self, job: Job, done: int, total: int) -> None:
        """The runner's per-frame callback: records progress; ends the run when the service stops."""
        if self._stopping.is_set():
            raise JobStopped
        with self._lock:
            job.frames_done, job.frames_total = done, max(total, done)

    def _end(self, job: Job, state: str, error: str | None, report: dict[str, Any] | None = None) -> None:
        """Records a job's end."""
        with self._lock:
            job.state, job.error, job.report = state, error, report
            if state == "done":
                job.frames_total = job.frames_done
            _record(job)
        LOGGER.info("video job %s %s%s", job.job_id, state, f": {error}" if error else "")
