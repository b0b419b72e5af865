"""scale_out with small jobs: outcomes in task order, failures isolated, files through the driver's results store,
Ctrl-C cancelling what runs; on a local Ray instance and in one process per (CPU) device."""
from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

import scale_out
from errors import UserError
from scale_out import Outcome, RayConfig, Task, WorkerContext


# ---------------------------------------------------------------- jobs (module level: workers import them)

def square(value: int, context: WorkerContext) -> int:
    """A job's value."""
    return value * value


def sleep_then_square(value: int, seconds: float, context: WorkerContext) -> int:
    """A job that ends after `seconds`."""
    time.sleep(seconds)
    return value * value


def bad_data(context: WorkerContext) -> None:
    """A job stopped by a user error."""
    raise UserError("cannot decode image x.png; replace or remove the file")


def buggy(context: WorkerContext) -> None:
    """A job with a bug."""
    return {}["missing"]


def die(context: WorkerContext) -> None:
    """A job whose process dies."""
    os._exit(3)


def copy_input(context: WorkerContext) -> str:
    """Reads in/seed.txt, writes out/result.txt and out/deep/more.txt; returns where it ran."""
    seed = (context.root / "in" / "seed.txt").read_text()
    (context.root / "out" / "deep").mkdir(parents=True, exist_ok=True)
    (context.root / "out" / "result.txt").write_text(seed + "!")
    (context.root / "out" / "deep" / "more.txt").write_text("more")
    return str(context.root)


def checkpoint_then_die(context: WorkerContext) -> None:
    """Saves a checkpoint, reports it, then its process dies."""
    path = context.root / "ckpt" / "ckpt.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"epoch 1")
    context.checkpoint_saved(path)
    os._exit(3)


def beat(folder: str, context: WorkerContext) -> None:
    """Writes a growing heartbeat file every 0.1 s for a minute (a long job)."""
    path = Path(folder) / "heartbeat"
    for count in range(600):
        path.write_text(str(count))
        time.sleep(0.1)


def touch(folder: str, context: WorkerContext) -> str:
    """Writes a file saying it is done."""
    (Path(folder) / "fast-done").write_text("done")
    return "fast"


def tasks_of(*jobs) -> list[Task]:
    """Tasks named by position."""
    return [Task(f"t{index}", job) for index, job in enumerate(jobs)]


def collect() -> tuple[list[tuple[int, Outcome]], Callable[[int, Outcome], None]]:
    """A list the emit callback appends to, and the callback."""
    emitted: list[tuple[int, Outcome]] = []
    return emitted, lambda index, outcome: emitted.append((index, outcome))


@pytest.fixture
def default_sigint():
    """SIGINT raises KeyboardInterrupt during the test even when this process started with it ignored (as a
    shell's background job does: Python then installs no handler and os.kill(SIGINT) does nothing)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def interrupt_when(*paths: Path, timeout: float = 120.0) -> threading.Thread:
    """A thread that sends SIGINT to this process once every path exists (as Ctrl-C would)."""
    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not all(path.exists() for path in paths) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def assert_stopped(heartbeat: Path) -> None:
    """The heartbeat file stops changing (its writer was killed)."""
    time.sleep(1.0)
    before = heartbeat.read_text()
    time.sleep(1.5)
    assert heartbeat.read_text() == before


# ---------------------------------------------------------------- ordering, failures, this process

def test_ordered_emitter_hands_out_in_order_and_flushes_what_it_holds():
    emitted, emit = collect()
    ordered = scale_out.OrderedEmitter(4, emit)
    ordered.add(2, Outcome(2))
    ordered.add(1, Outcome(1))
    assert emitted == []
    ordered.add(0, Outcome(0))
    assert [index for index, _ in emitted] == [0, 1, 2]
    emitted.clear()
    held = scale_out.OrderedEmitter(3, emit)
    held.add(2, Outcome("late"))
    held.flush()  # Ctrl-C: what ended is emitted even though task 0 and 1 have not
    assert emitted == [(2, Outcome("late"))]


def test_costlier_tasks_start_first_and_ties_keep_list_order():
    tasks = [Task("a", square, cost=1), Task("b", square, cost=5), Task("c", square), Task("d", square, cost=5)]
    assert scale_out.start_order(tasks) == [1, 3, 0, 2]


def test_run_here_records_user_errors_and_bugs_and_goes_on(tmp_path, caplog):
    emitted, emit = collect()
    scale_out.run_here(tasks_of(bad_data, buggy, partial(square, 3)), tmp_path, emit)
    assert [index for index, _ in emitted] == [0, 1, 2]
    assert emitted[0][1] == Outcome(error="cannot decode image x.png; replace or remove the file")
    assert emitted[1][1].error.startswith("KeyError: 'missing'") and "bug" in emitted[1][1].error
    assert emitted[2][1] == Outcome(9)
    assert "Traceback" in caplog.text  # the bug's traceback is in the log


def test_ray_config_refuses_ray_client_and_bad_values():
    with pytest.raises(scale_out.ScaleOutError, match="Ray Client"):
        RayConfig("ray://head:10001")
    with pytest.raises(scale_out.ScaleOutError, match="--ray_cpus"):
        RayConfig("auto", cpus=0)
    with pytest.raises(scale_out.ScaleOutError, match="sync"):
        RayConfig("auto", sync="rsync")


def test_ray_address_comes_from_the_flag_or_the_environment(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert scale_out.ray_address(None) is None
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    assert scale_out.ray_address(None) == "head:6379"
    assert scale_out.ray_address("local") == "local"


def test_files_under_refuses_paths_outside_the_root(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.txt").write_text("x")
    (tmp_path / "a" / ".x.txt.123.tmp").write_text("half")  # an atomic write in progress is not sent
    assert list(scale_out.files_under(tmp_path, ["a", "missing"])) == ["a/b/x.txt"]
    for bad in ("../x", "/etc/passwd"):
        with pytest.raises(ValueError):
            scale_out.files_under(tmp_path, [bad])


# ---------------------------------------------------------------- one process per device

def test_device_processes_run_tasks_in_order_and_replace_a_dead_one(tmp_path):
    emitted, emit = collect()
    jobs = [partial(sleep_then_square, 1, 1.5), die, bad_data, partial(square, 4), partial(square, 5)]
    scale_out.run_on_devices(tasks_of(*jobs), tmp_path, emit, ["cpu", "cpu"])
    assert [index for index, _ in emitted] == [0, 1, 2, 3, 4]  # task 0 ends last, yet comes first
    assert [outcome.value for _, outcome in emitted] == [1, None, None, 16, 25]
    assert emitted[1][1].error == "the process on cpu died (exit code 3)"  # its replacement ran the rest
    assert emitted[2][1].error.startswith("cannot decode image")


def test_ctrl_c_stops_the_device_processes_and_keeps_finished_tasks(tmp_path, default_sigint):
    emitted, emit = collect()
    interrupt_when(tmp_path / "fast-done", tmp_path / "heartbeat")
    with pytest.raises(KeyboardInterrupt):
        scale_out.run_on_devices(tasks_of(partial(beat, str(tmp_path)), partial(touch, str(tmp_path))), tmp_path,
                                 emit, ["cpu", "cpu"])
    assert emitted == [(1, Outcome("fast"))]  # held behind task 0, emitted when interrupted
    assert_stopped(tmp_path / "heartbeat")


# ---------------------------------------------------------------- Ray

def test_ray_tasks_run_in_order_with_failures_isolated(ray_local, tmp_path):
    emitted, emit = collect()
    jobs = [partial(sleep_then_square, 1, 1.0), bad_data, buggy, partial(square, 4)]
    scale_out.run_on_ray(tasks_of(*jobs), tmp_path, emit, RayConfig("auto", retries=0))
    assert [index for index, _ in emitted] == [0, 1, 2, 3]
    assert emitted[0][1] == Outcome(1) and emitted[3][1] == Outcome(16)
    assert emitted[1][1].error.startswith("cannot decode image")
    assert emitted[2][1].error.startswith("KeyError") and "bug" in emitted[2][1].error
    assert list(tmp_path.iterdir()) == []  # the token is removed


@pytest.mark.parametrize("sync", ["auto", "copy"])
def test_ray_files_reach_the_driver_with_or_without_a_shared_filesystem(ray_local, tmp_path, sync):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "seed.txt").write_text("seed")
    emitted, emit = collect()
    task = Task("copy", copy_input, inputs=("in",), outputs=("out",))
    scale_out.run_on_ray([task], tmp_path, emit, RayConfig("auto", sync=sync))
    where = Path(emitted[0][1].value)
    assert (where == tmp_path.resolve()) == (sync == "auto")  # copy: a temporary folder of the worker
    assert (tmp_path / "out" / "result.txt").read_text() == "seed!"
    assert (tmp_path / "out" / "deep" / "more.txt").read_text() == "more"
    assert not where.exists() or sync == "auto"  # the worker's temporary folder is removed


def test_ray_checkpoint_reported_before_the_worker_died_is_on_the_driver(ray_local, tmp_path):
    emitted, emit = collect()
    task = Task("ckpt", checkpoint_then_die, inputs=("ckpt",), outputs=("ckpt",))
    scale_out.run_on_ray([task], tmp_path, emit, RayConfig("auto", retries=0, sync="copy"))
    assert "Error" in emitted[0][1].error  # died, no retry left
    assert (tmp_path / "ckpt" / "ckpt.pth").read_bytes() == b"epoch 1"


def test_ray_shared_sync_runs_where_the_filesystem_is_shared(ray_local, tmp_path):
    emitted, emit = collect()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "seed.txt").write_text("s")
    scale_out.run_on_ray([Task("copy", copy_input)], tmp_path, emit, RayConfig("auto", sync="shared"))
    assert emitted[0][1] == Outcome(str(tmp_path.resolve()))


def test_ctrl_c_cancels_the_ray_tasks_and_keeps_finished_ones(ray_local, tmp_path, default_sigint):
    emitted, emit = collect()
    interrupt_when(tmp_path / "fast-done", tmp_path / "heartbeat")
    with pytest.raises(KeyboardInterrupt):
        scale_out.run_on_ray(tasks_of(partial(beat, str(tmp_path)), partial(touch, str(tmp_path))), tmp_path, emit,
                             RayConfig("auto"))
    assert emitted == [(1, Outcome("fast"))]
    assert_stopped(tmp_path / "heartbeat")


def test_failure_summary_names_the_first_failure_and_counts_the_rest():
    """Some failed: 'the others finished'; all failed: not said; more than one: 'and k more'."""
    assert scale_out.failure_summary([("a", "bad file")], 3, "jobs") == \
        "1 of 3 jobs failed, the others finished: a (bad file)"
    assert scale_out.failure_summary([("a", "x"), ("b", "y")], 2, "videos") == "2 of 2 videos failed: a and 1 more (x)"
