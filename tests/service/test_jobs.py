"""The video job queue: one job at a time in order, progress, failures in one line, stopping; the tracking
command's flags of a job."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from inference.modes import build_command
from service import jobs as jobs_module
from service.http_errors import ApiError
from service.jobs import Job, JobQueue, JobSettings, report_name
from size_analyzer import SizeAnalysisError


class FakeTracking:
    """Stands in for run_tracking: records which jobs run at once, reports progress, waits for a release."""

    def __init__(self) -> None:
        self.running: list[str] = []
        self.most_at_once = 0
        self.order: list[str] = []
        self.release = threading.Event()

    def __call__(self, options, on_progress=None):
        folder = Path(options["output_path"]).parent
        self.running.append(folder.name)
        self.most_at_once = max(self.most_at_once, len(self.running))
        self.order.append(folder.name)
        on_progress(1, 4)
        assert self.release.wait(30)
        if "fail" in options["video_path"]:
            raise SizeAnalysisError("pixel_size must be positive; pass e.g. pixel_size=0.1")
        for done in range(2, 5):
            on_progress(done, 4)
        (folder / report_name()).write_text(json.dumps({"defects": [
            {"defect_id": 1, "severity": "low", "track_ids": [3], "defect_frame": str(folder / "defects" / "d1.png")},
            {"defect_id": 2, "severity": "high", "track_ids": [4], "defect_frame": None}]}))
        self.running.remove(folder.name)


def make_job(queue: JobQueue, video: str = "in.mp4") -> Job:
    """A job of the queue with a fresh folder."""
    job_id, folder = queue.new_folder()
    return Job(job_id, folder, folder / video, JobSettings(Path("m"), "cpu", "torch"), frames_total=4)


def wait_for(queue: JobQueue, job_id: str, states: tuple[str, ...], frames_done: int = 0) -> dict:
    """Polls a job until it is in one of the states with at least `frames_done` frames done (a job is running
    before its first progress report)."""
    deadline = time.monotonic() + 30
    while (state := queue.status(job_id))["state"] not in states or state["frames_done"] < frames_done:
        assert time.monotonic() < deadline, state
        time.sleep(0.01)
    return state


def test_jobs_run_one_at_a_time_in_order_and_report(tmp_path, monkeypatch):
    fake = FakeTracking()
    monkeypatch.setattr(jobs_module, "run_tracking", fake)
    queue = JobQueue(tmp_path)
    first, second, failing = make_job(queue), make_job(queue), make_job(queue, "fail.mp4")
    for job in (first, second, failing):
        queue.submit(job)
    running = wait_for(queue, first.job_id, ("running",), frames_done=1)
    assert running["frames_done"] == 1 and running["progress"] == 0.25 and running["video_url"] is None
    assert queue.status(second.job_id)["state"] == "queued"
    fake.release.set()
    done = wait_for(queue, second.job_id, ("done", "failed"))
    failed = wait_for(queue, failing.job_id, ("done", "failed"))
    queue.stop()
    assert fake.order == [first.job_id, second.job_id, failing.job_id] and fake.most_at_once == 1
    assert done["state"] == "done" and done["progress"] == 1.0 and done["frames_done"] == done["frames_total"] == 4
    assert done["video_url"] == f"/api/jobs/{second.job_id}/files/tracking.mp4"
    assert done["report_url"] == f"/api/jobs/{second.job_id}/files/tracking_report.json"
    assert done["defects"] == [
        {"defect_id": 1, "severity": "low", "frame_url": f"/api/jobs/{second.job_id}/files/defects/d1.png"},
        {"defect_id": 2, "severity": "high", "frame_url": None}]
    assert failed["state"] == "failed" and failed["report"] is None and failed["defects"] == []
    assert failed["error"] == "pixel_size must be positive; pass e.g. pixel_size=0.1"


def test_stopping_ends_the_running_job_and_fails_the_queued_ones(tmp_path, monkeypatch):
    fake = FakeTracking()
    monkeypatch.setattr(jobs_module, "run_tracking", fake)
    queue = JobQueue(tmp_path)
    running, waiting = make_job(queue), make_job(queue)
    queue.submit(running)
    queue.submit(waiting)
    wait_for(queue, running.job_id, ("running",))
    stopper = threading.Thread(target=queue.stop)
    stopper.start()
    time.sleep(0.05)
    fake.release.set()  # the job's next progress call sees the stop and ends the run
    stopper.join(30)
    assert queue.status(running.job_id)["error"] == "the service stopped while the job ran"
    assert queue.status(waiting.job_id)["state"] == "failed"
    with pytest.raises(ApiError) as error:
        queue.submit(make_job(queue))
    assert error.value.status == 503


def test_unknown_and_malformed_job_ids_are_404(tmp_path):
    queue = JobQueue(tmp_path)
    for job_id in ("0" * 32, "../../etc", "A" * 32, ""):
        with pytest.raises(ApiError) as error:
            queue.status(job_id)
        assert error.value.status == 404


def test_a_jobs_flags_parse_as_the_tracking_commands(tmp_path):
    settings = JobSettings(tmp_path / "models" / "mvtec_toy", "cpu", "onnx", threshold=0.25, pixel_size=0.1,
                           physical_unit="cm", max_frames=7)
    options = build_command("tracking").make_context("t", settings.argv(tmp_path / "in.mp4", tmp_path)).params
    assert options["model_path"] == str(tmp_path / "models" / "mvtec_toy") and options["backend"] == "onnx"
    assert (options["threshold"], options["pixel_size"], options["physical_unit"], options["max_frames"]) == (
        0.25, 0.1, "cm", 7)
    assert options["no_organized_output"] and options["save_defect_frames"]
    assert options["output_path"] == str(tmp_path / "tracking.mp4")
    assert options["defect_frames_dir"] == str(tmp_path / "defects") and options["pixel_threshold"] is None
    plain = build_command("tracking").make_context("t", JobSettings(tmp_path, "cpu", "torch").argv(
        tmp_path / "in.mp4", tmp_path)).params
    assert plain["threshold"] is None and plain["max_frames"] is None and plain["physical_unit"] == "mm"


def test_a_restarted_service_answers_for_its_earlier_jobs(tmp_path, monkeypatch):
    """job.json is written when a job is queued and when it ends: a new queue on the same folder knows the done
    and failed jobs (with the done one's report and defects) and fails the ones that never ended."""
    fake = FakeTracking()
    monkeypatch.setattr(jobs_module, "run_tracking", fake)
    first = JobQueue(tmp_path)
    done, failing = make_job(first), make_job(first, "fail.mp4")
    for job in (done, failing):
        first.submit(job)
    fake.release.set()
    wait_for(first, failing.job_id, ("done", "failed"))
    before = {job.job_id: first.status(job.job_id) for job in (done, failing)}
    first.stop()
    cut_off = make_job(first)  # queued by a service that died before running it: job.json says "queued"
    cut_off.save()
    (tmp_path / ("0" * 32)).mkdir()  # a folder without job.json (died while creating it): not a job
    (tmp_path / ("f" * 32)).mkdir()
    (tmp_path / ("f" * 32) / "job.json").write_text("{broken")  # unreadable: skipped with a warning

    restarted = JobQueue(tmp_path)
    for job_id, status in before.items():
        assert restarted.status(job_id) == status
    assert restarted.status(done.job_id)["state"] == "done" and restarted.status(done.job_id)["defects"]
    lost = restarted.status(cut_off.job_id)
    assert lost["state"] == "failed" and "send the video again" in lost["error"]
    assert json.loads((cut_off.folder / "job.json").read_text())["state"] == "failed"
    assert restarted.folder(done.job_id) == done.folder
    for job_id in ("0" * 32, "f" * 32):
        with pytest.raises(ApiError):
            restarted.status(job_id)


def test_job_json_that_cannot_be_written_never_stops_the_queue(tmp_path, monkeypatch, caplog):
    """Queueing: a 507 naming the folder; at a job's end: a warning, the job's state kept, the next job runs."""
    fake = FakeTracking()
    monkeypatch.setattr(jobs_module, "run_tracking", fake)
    queue = JobQueue(tmp_path)
    save = Job.save

    def disk_full(job):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Job, "save", disk_full)
    refused = make_job(queue)
    with pytest.raises(ApiError) as error:
        queue.submit(refused)
    assert error.value.status == 507 and str(refused.folder) in str(error.value)
    monkeypatch.setattr(Job, "save", save)
    first = make_job(queue)
    queue.submit(first)
    wait_for(queue, first.job_id, ("running",))
    monkeypatch.setattr(Job, "save", disk_full)  # the disk fills while it runs
    with caplog.at_level("WARNING", logger="service.jobs"):
        fake.release.set()
        assert wait_for(queue, first.job_id, ("done", "failed"))["state"] == "done"
    assert any("cannot write" in r.getMessage() and first.job_id in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(Job, "save", save)
    second = make_job(queue)
    queue.submit(second)
    assert wait_for(queue, second.job_id, ("done", "failed"))["state"] == "done"  # the worker lives on
    queue.stop()
