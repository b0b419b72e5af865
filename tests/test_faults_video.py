"""Interrupted video runs: SIGTERM is cleaned up like Ctrl-C (exit 143); after `kill -9` the next run removes
what the killed run left (partial video, staging folder, run lock, empty run folder), never a live run's files.

The tracking script runs as users run it (a real process) on a 300-frame clip, killed or paused mid-run.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

import utils
import video_io
from inference import runner
from tests.helpers import REPO, write_scrolling_clip

SCRIPT = REPO / "inference" / "video_inference_with_tracking.py"
SIZE = 64
N_FRAMES = 300  # long enough to be caught mid-video on a quiet machine (scored one frame at a time)
LEFTOVER_LINE = "leftover(s) of interrupted run(s)"

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")


@pytest.fixture(scope="module")
def long_clip(tiny_model, tmp_path_factory) -> Path:
    """300 frames of a defective test image scrolling left by 2 px per frame (the blob keeps crossing)."""
    return write_scrolling_clip(tiny_model, tmp_path_factory.mktemp("long") / "long.mp4", N_FRAMES)


class Run:
    """One tracking process in `cwd` (default organized output under cwd/output), stderr kept in a file."""

    def __init__(self, tiny_model, video: Path, cwd: Path, name: str) -> None:
        self.cwd = cwd
        self.err_path = cwd / f"{name}.stderr"
        self._err = open(self.err_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--model_path", str(tiny_model.model_path), "--class_name",
             tiny_model.class_name, "--device", "cpu", "--backend", "torch", "--video_path", str(video),
             "--threshold", "0.5", "--min_defect_area", "4", "--batch_size", "1"],
            cwd=cwd, stdout=subprocess.DEVNULL, stderr=self._err, text=True)

    def own(self, pattern: str) -> list[Path]:
        """This process's partial entries (their names carry its pid) under the output root."""
        return [p for p in (self.cwd / "output").rglob(pattern) if f"{self.proc.pid}-" in p.name]

    def mid_run(self) -> bool:
        """Whether the partial video and a staging folder of defect frames exist (the run is mid-video)."""
        assert self.proc.poll() is None, f"the run ended before it could be interrupted:\n{self.stderr()}"
        return bool(self.own(".*.partial.mp4") and self.own(".staging-*"))

    def wait(self, timeout: float = 600.0) -> int:  # budgets bound a hang only: CI may share its cores
        code = self.proc.wait(timeout=timeout)
        self._err.close()
        return code


    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.err_path.read_text()

    def stop(self) -> None:
        """Teardown: no process outlives its test."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._err.close()


def signal_mid_run(actions: dict[Run, int], timeout: float = 300.0) -> None:
    """Sends each run its signal as soon as it is mid-video (polled together: the runs go on meanwhile)."""
    waiting = dict(actions)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for run in [r for r in waiting if r.mid_run()]:
            run.proc.send_signal(waiting.pop(run))
        time.sleep(0.01)
    assert not waiting, f"no partial files after {timeout} s:\n" + "\n".join(r.stderr() for r in waiting)


def mentions(line: str, pid: int) -> bool:
    """Whether a log line names a partial entry of this pid (`.<pid>-` or `-<pid>-`)."""
    return re.search(rf"[.-]{pid}-", line) is not None


def everything_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


def assert_complete(run_dir: Path) -> None:
    """A finished organized run: whole video, CSV, timeline, report, defect frames, no hidden entry."""
    video = run_dir / "output-video" / "long_tracking.mp4"
    assert video_io.probe_video(video, exact=True).frame_count == N_FRAMES
    assert (run_dir / "output-video" / "long_tracking_frames.csv").read_text().count("\n") == N_FRAMES + 1
    assert (run_dir / "output-video" / "long_tracking_timeline.png").is_file()
    assert (run_dir / "report" / "tracking_report.json").is_file()
    assert any((run_dir / "defects").glob("defect_*.png"))
    assert [p for p in run_dir.rglob(".*")] == []


@pytest.fixture(scope="module")
def interrupted(tiny_model, long_clip, tmp_path_factory):
    """Three runs started together (one interpreter start-up for all): in one output root one is killed
    with -9 and one paused (SIGSTOP) mid-video; in another root one gets SIGTERM mid-video."""
    shared, alone = tmp_path_factory.mktemp("shared_root"), tmp_path_factory.mktemp("sigterm_root")
    runs = {"killed": Run(tiny_model, long_clip, shared, "killed"),
            "paused": Run(tiny_model, long_clip, shared, "paused"),
            "terminated": Run(tiny_model, long_clip, alone, "terminated")}
    try:
        signal_mid_run({runs["killed"]: signal.SIGKILL, runs["paused"]: signal.SIGSTOP,
                        runs["terminated"]: signal.SIGTERM})  # SIGTERM: what docker stop and systemd send
        runs["terminated"].wait()
        runs["killed"].wait()
        yield runs
    finally:
        for run in runs.values():
            if run.proc.poll() is None:
                run.proc.send_signal(signal.SIGCONT)
            run.stop()


def test_sigterm_mid_run_exits_143_and_leaves_nothing(interrupted):
    run = interrupted["terminated"]
    assert run.proc.returncode == 143, run.stderr()
    assert run.stderr().strip().splitlines()[-1] == "terminated"
    assert "Traceback" not in run.stderr()
    assert everything_under(run.cwd / "output") == []  # no partial video, no staging, no (empty) run folder
    assert not (run.cwd / "output").exists()


def test_next_run_removes_what_kill_9_left_but_never_a_live_runs_files(interrupted, tiny_model, long_clip):
    """A third run on the output root of a run killed with -9 and of a paused run removes the killed run's
    leftovers, says so in one line, and leaves the paused run's files alone; the paused run then finishes."""
    killed, paused = interrupted["killed"], interrupted["paused"]
    assert killed.proc.returncode == -signal.SIGKILL
    left = killed.own(".*")
    names = sorted(p.name.split(str(killed.proc.pid))[0] for p in left)
    assert names == [".long_tracking.", ".run-", ".staging-"], left  # video, run lock, staged frames
    dead_run_dir = next(p for p in left if p.name.startswith(".run-")).parent
    assert (dead_run_dir / "report").is_dir() and not any((dead_run_dir / "report").iterdir())
    live = paused.own(".*")  # video, staging folder and run lock of the paused run
    assert len(live) == 3

    later = Run(tiny_model, long_clip, killed.cwd, "later")
    try:
        assert later.wait() == 0, later.stderr()
    finally:
        later.stop()
    lines = [line for line in later.stderr().splitlines() if LEFTOVER_LINE in line]
    assert len(lines) == 1, later.stderr()
    assert mentions(lines[0], killed.proc.pid) and not mentions(lines[0], paused.proc.pid)
    assert "1 empty run folder" in lines[0]
    assert killed.own(".*") == [] and not dead_run_dir.exists()
    assert all(p.exists() for p in live)  # the paused run holds its locks: untouched

    paused.proc.send_signal(signal.SIGCONT)
    assert paused.wait() == 0, paused.stderr()
    run_dirs = sorted((killed.cwd / "output" / tiny_model.class_name).iterdir())
    assert len(run_dirs) == 2  # the later run's and the paused run's: nothing of the killed one
    for run_dir in run_dirs:
        assert_complete(run_dir)


# ---- in-process: the signal handler and the stale-partial rule ------------------------------------

def test_run_command_turns_sigterm_into_143_and_restores_the_handler(capsys):
    @click.command()
    def terminated_command() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
        raise AssertionError("SIGTERM did not interrupt the command")

    before = signal.getsignal(signal.SIGTERM)
    assert utils.run_command(terminated_command, []) == 143
    assert capsys.readouterr().err.strip() == "terminated"
    assert signal.getsignal(signal.SIGTERM) is before


def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def make(path: Path, seconds: float = 10.0, directory: bool = False) -> Path:
    """A file (or folder) last modified `seconds` ago."""
    if directory:
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))
    return path


def test_stale_partials_are_those_whose_lock_is_free_and_writer_gone(tmp_path):
    gone, alive, me = dead_pid(), os.getppid(), os.getpid()
    grace = video_io.PARTIAL_GRACE_SECONDS
    dead_video = make(tmp_path / f".clip.{gone}-0123abcd.partial.mp4")
    make(tmp_path / f".staging-{gone}-0123abcd" / "track_0001.png")
    dead_staging = make(tmp_path / f".staging-{gone}-0123abcd", directory=True)
    make(tmp_path / f".run-{gone}-0123abcd.lock", seconds=0)  # just created: its writer may not have locked it yet
    make(tmp_path / f".run-{alive}-0123abcd.lock")  # lock free, pid alive, recent: cannot tell, kept
    reused = make(tmp_path / f".run-{alive}-4567abcd.lock", seconds=grace + 10)  # old: the pid was reused
    own_old = make(tmp_path / f".clip.{me}-89abcdef.partial.mp4")  # this pid, not locked: a former process
    make(tmp_path / f".clip.{gone}-0123abcd.mp4", seconds=100)  # not a partial name (older format, a user file)
    make(tmp_path / "clip.mp4", seconds=100)
    held = video_io.PartialLock.create(tmp_path, lambda tag: f".staging-{tag}", directory=True)
    os.utime(held.path, (time.time() - grace - 10,) * 2)  # held: never removed, however old
    before = {p.name for p in tmp_path.iterdir()}

    removed = video_io.remove_stale_partials(tmp_path)
    assert sorted(removed) == sorted([dead_video, dead_staging, reused, own_old])
    assert {p.name for p in tmp_path.iterdir()} == before - {p.name for p in removed}
    held.remove()
    assert not held.path.exists()


def test_remove_interrupted_prunes_only_the_dead_run_folder_and_logs_one_line(tmp_path, caplog):
    gone = dead_pid()
    dead = tmp_path / "20260101_000000"
    for sub in ("output-video", "defects", "report"):
        (dead / sub).mkdir(parents=True)
    partial = make(dead / "output-video" / f".a.{gone}-0123abcd.partial.mp4")
    waiting = tmp_path / "20260101_000001"  # a live run that has made its folders, nothing written yet
    (waiting / "report").mkdir(parents=True)
    with caplog.at_level("INFO", logger=runner.LOGGER.name):
        removed = runner.remove_interrupted([], sorted(tmp_path.iterdir()))
    assert removed == [partial] and not dead.exists() and (waiting / "report").is_dir()
    lines = [r.getMessage() for r in caplog.records if LEFTOVER_LINE in r.getMessage()]
    assert len(lines) == 1 and str(partial) in lines[0] and "1 empty run folder" in lines[0]
    assert runner.remove_interrupted([], [waiting]) == []  # nothing stale: nothing said
