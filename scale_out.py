"""Independent jobs (a class's training and testing, a video's inspection) fanned out over a Ray cluster or
over the GPUs of one machine, with their results handed back in job order.

A `Task` is a picklable `run(context)` plus the folders it reads and writes, relative to a results root.
Three runners take a list of tasks and an `emit(index, outcome)` callback:

* `run_on_ray`: each task a Ray task (one GPU when the cluster has GPUs, else `RayConfig.cpus` CPUs),
  retried up to `RayConfig.retries` times when its worker process dies (killed, out of memory, node lost);
  a retried task finds the checkpoints its earlier attempt saved and resumes from them.
* `run_on_devices`: one process per listed device of this machine (`--gpu 0 1 2 3` without Ray); each
  process takes the next task when it finishes one. A process that dies fails its task (no retry).

Both start the tasks with the largest `cost` first (`start_order`): packed longest first, a few long jobs do
not start last while the other devices idle (`benchmarks/scale_out_model.py` models the wall time).
* `run_here`: one after the other in this process (`batch_inspect.py` without Ray).

**Order.** `emit` is called once per task, in task order, as soon as the task and every task before it
have ended (`OrderedEmitter`); on Ctrl-C (or any exception) the tasks that ended are emitted before the
exception goes on, so every finished job is recorded. A table written from `emit` (`results.csv`) is
therefore written in the order a sequential run writes it.

**Failures.** A job that raises a `UserError` or `OSError` (bad data, a full disk) ends with
`Outcome(error=<one line>)`; it is not retried (it would fail again) and the other tasks go on. Any other
exception is a bug: its traceback is logged and its task ends with a one-line error too.

**Ctrl-C** (or SIGTERM, which `utils.run_command` turns into Ctrl-C) on the driver cancels every
unfinished task (Ray: `ray.cancel(force=True)`, which kills their worker processes; devices: the processes
are terminated). Checkpoints are written atomically, so an interrupted class resumes on the next run.

**Files on a cluster.** Jobs write into `context.root`. Before a Ray run the driver writes a token file
into the results root; a worker that reads the same token there shares the driver's filesystem (same
machine, or NFS mounted at the same path) and writes its files straight into the results root (every
checkpoint and picture is written atomically: a temporary file, then a rename). A worker that does not
see the token (its own disk) works in a temporary folder: it first fetches the task's `inputs` (the
checkpoints of an earlier attempt or run, so that it resumes) from a `ResultsStore` actor pinned to the
driver's node, sends each checkpoint the job reports through `context.checkpoint_saved` (the first one at
once, then at most one every `CHECKPOINT_SYNC_S` seconds), and at the end sends the task's `outputs`
(files that changed); the store writes every file atomically under the driver's results root. This way
needs no shared storage and no configuration, and a shared filesystem is used when there is one, without
copying checkpoints through the driver. `sync="copy"` forces the copying (tested); `sync="shared"`
refuses a worker that does not share the filesystem (for jobs whose outputs name their own paths).
Input data (datasets, videos) must be readable at the same path on every node.

**Fault injection (tests).** When the environment variable `GLASS_KILL_ONCE_FILE` names an existing file,
the first job that reports a checkpoint after its checkpoint was saved (and sent) removes that file and
kills its own process with SIGKILL, as the out-of-memory killer would. The tests set it to prove that a
killed worker is retried and resumes; nothing else sets it.
"""
from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import tqdm

import utils
from errors import UserError, first_line

LOGGER = logging.getLogger(__name__)

KILL_ONCE_ENV = "GLASS_KILL_ONCE_FILE"
CHECKPOINT_SYNC_S = 60.0  # a worker without the driver's filesystem sends a checkpoint at most this often
SYNC_MODES = ("auto", "copy", "shared")
RAY_ADDRESS_ENV = "RAY_ADDRESS"
TOKEN_PREFIX = ".scale-out-"
WAIT_S = 1.0  # how long the driver blocks before it looks at Ctrl-C and dead processes again
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ScaleOutError(UserError):
    """A Ray address that cannot be reached or used, a bad runner setting."""


def inject_fault() -> None:
    """Test hook: when $GLASS_KILL_ONCE_FILE names an existing file, removes it and SIGKILLs this process."""
    marker = os.environ.get(KILL_ONCE_ENV)
    if not marker:
        return
    try:
        os.unlink(marker)  # one process wins: the others find no file
    except FileNotFoundError:
        return
    LOGGER.warning("%s: killing this worker (pid %d) as the test asked", KILL_ONCE_ENV, os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


def _checkpoint_here(path: Path) -> None:
    """A checkpoint written straight into the results root: nothing to send; the test hook may fire."""
    inject_fault()


@dataclass(frozen=True)
class WorkerContext:
    """What a job gets where it runs: the results root to write under, its device, and whom to tell when it
    saved a checkpoint (the path, under root) so that a retry can resume from it."""

    root: Path
    device: str  # "cpu" or "cuda:<index>"
    checkpoint_saved: Callable[[Path], None] = _checkpoint_here


@dataclass(frozen=True)
class Task:
    """One job: `run(context)` on a worker; `inputs` (fetched before it runs) and `outputs` (sent back after),
    files or folders relative to the results root, matter only to workers without the driver's filesystem."""

    name: str
    run: Callable[[WorkerContext], Any]
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    cost: float = 0.0  # expected run time, in any unit: Ray and the device processes start costlier tasks first


def failure_summary(failures: Sequence[tuple[str, str]], total: int, noun: str) -> str:
    """One line on the failed jobs of a run: how many of how many, the first one's name and error."""
    name, error = failures[0]
    others = f" and {len(failures) - 1} more" if len(failures) > 1 else ""
    rest = ", the others finished" if len(failures) < total else ""
    return f"{len(failures)} of {total} {noun} failed{rest}: {name}{others} ({error})"


def start_order(tasks: Sequence[Task]) -> list[int]:
    """The order tasks are started in: costliest first (ties in list order), so that the longest jobs do not
    start last and leave the other devices idle (longest processing time first); outcomes keep list order."""
    return sorted(range(len(tasks)), key=lambda index: -tasks[index].cost)


@dataclass(frozen=True)
class Outcome:
    """How a task ended: its job's return value, or the one-line error that stopped it."""

    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class RayConfig:
    """Where the Ray cluster is and what each task asks of it."""

    address: str  # "auto" (a cluster started with `ray start`), "local" (a new one on this machine) or HOST:PORT
    cpus: int = 1  # CPUs per task when the cluster has no GPU (with GPUs: one GPU per task)
    retries: int = 3  # times a task whose worker died is run again
    sync: str = "auto"

    def __post_init__(self) -> None:
        if self.address.startswith("ray://"):
            raise ScaleOutError(f"--ray {self.address}: Ray Client runs the driver on the head node, so results "
                                "would not reach --results_path here; run `ray start --address HEAD:6379` on this "
                                "machine and pass --ray auto")
        if self.cpus < 1:
            raise ScaleOutError(f"--ray_cpus must be >= 1, got {self.cpus}")
        if self.retries < 0:
            raise ScaleOutError(f"--ray_retries must be >= 0, got {self.retries}")
        if self.sync not in SYNC_MODES:
            raise ScaleOutError(f"sync must be one of {', '.join(SYNC_MODES)}, got {self.sync!r}")


def ray_address(flag: str | None) -> str | None:
    """The Ray address to use: --ray, else $RAY_ADDRESS, else None (no Ray)."""
    return flag or os.environ.get(RAY_ADDRESS_ENV) or None


class OrderedEmitter:
    """Hands outcomes to `emit(index, outcome)` in index order, each as soon as every earlier one is in."""

    def __init__(self, count: int, emit: Callable[[int, Outcome], None]) -> None:
        self.count = count
        self.emit = emit
        self.waiting: dict[int, Outcome] = {}
        self.next = 0

    def add(self, index: int, outcome: Outcome) -> None:
        """Records one task's outcome and emits every outcome now in order."""
        self.waiting[index] = outcome
        while self.next in self.waiting:
            self.emit(self.next, self.waiting.pop(self.next))
            self.next += 1

    def flush(self) -> None:
        """Emits the outcomes still held (tasks that ended after one that has not), in order."""
        for index in sorted(self.waiting):
            self.emit(index, self.waiting.pop(index))


def _run(task: Task, context: WorkerContext) -> Outcome:
    """Runs a task's job: its value, or the one-line error of a UserError or OSError (not retried)."""
    try:
        return Outcome(value=task.run(context))
    except (UserError, OSError) as err:
        return Outcome(error=first_line(err))


def _guarded(task: Task, context: WorkerContext) -> Outcome:
    """_run, where any other exception (a bug) is logged with its traceback and ends as a one-line error."""
    try:
        return _run(task, context)
    except Exception as err:  # one job's bug must not stop the others; its traceback is logged
        LOGGER.error("%s failed:\n%s", task.name, traceback.format_exc())
        return Outcome(error=f"{type(err).__name__}: {first_line(err)} (a bug: traceback in the log)")


# ------------------------------------------------------------------ this process, one after the other

def run_here(tasks: Sequence[Task], root: Path, emit: Callable[[int, Outcome], None], device: str = "cpu",
             desc: str = "tasks") -> None:
    """Runs the tasks one after the other in this process (failures recorded, the others go on)."""
    context = WorkerContext(Path(root), device)
    for index, task in enumerate(tqdm.tqdm(tasks, desc=desc, unit="task")):
        emit(index, _guarded(task, context))


# ------------------------------------------------------------------ processes, one per device

@dataclass
class _DeviceWorker:
    """A process bound to one device, the pipe it takes tasks on, and the task it is running."""

    device: str
    process: Any
    conn: Connection
    running: int | None = None


def _device_loop(device: str, root: Path, conn: Connection) -> None:
    """A device process: runs the tasks the driver sends until it sends None (Ctrl-C is the driver's)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    context = WorkerContext(Path(root), device)
    while (task := conn.recv()) is not None:
        conn.send(_guarded(task, context))


def _start_device_worker(mp: Any, device: str, root: Path) -> _DeviceWorker:
    """Starts the process of one device."""
    driver_end, worker_end = mp.Pipe()
    process = mp.Process(target=_device_loop, args=(device, root, worker_end), name=f"scale-out {device}",
                         daemon=True)
    process.start()
    worker_end.close()
    return _DeviceWorker(device, process, driver_end)


def run_on_devices(tasks: Sequence[Task], root: Path, emit: Callable[[int, Outcome], None],
                   devices: Sequence[str], desc: str = "tasks") -> None:
    """Runs the tasks in one process per device (spawned), each process taking the next task when free."""
    mp = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    ordered = OrderedEmitter(len(tasks), emit)
    queue = iter([(index, tasks[index]) for index in start_order(tasks)])
    workers: list[_DeviceWorker] = []
    try:
        for device in devices:
            workers.append(_start_device_worker(mp, device, root))
            _assign(workers[-1], queue)
        with tqdm.tqdm(total=len(tasks), desc=desc, unit="task") as bar:
            while any(worker.running is not None for worker in workers):
                for index, outcome in _collect_devices(mp, workers, root, queue):
                    ordered.add(index, outcome)
                    bar.update()
    except KeyboardInterrupt:
        LOGGER.warning("interrupted: stopping %d device process(es); finished tasks are kept",
                       sum(worker.running is not None for worker in workers))
        raise
    finally:
        ordered.flush()
        for worker in workers:
            _stop(worker)


def _assign(worker: _DeviceWorker, queue: Iterator[tuple[int, Task]]) -> None:
    """Sends the worker the next task, or None (stop) when there is none."""
    index, task = next(queue, (None, None))
    worker.running = index
    worker.conn.send(task)


def _collect_devices(mp: Any, workers: list[_DeviceWorker], root: Path,
                     queue: Iterator[tuple[int, Task]]) -> list[tuple[int, Outcome]]:
    """Waits up to WAIT_S for outcomes or dead processes; gives the next tasks out; returns what ended."""
    busy = [worker for worker in workers if worker.running is not None]
    ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=WAIT_S))
    ended = []
    for slot, worker in enumerate(workers):
        if worker.running is None or not ready & {worker.conn, worker.process.sentinel}:
            continue
        try:
            outcome = worker.conn.recv()
        except (EOFError, OSError):  # the process died
            worker.process.join()
            outcome = Outcome(error=f"the process on {worker.device} died (exit code {worker.process.exitcode})")
            LOGGER.error("%s", outcome.error)
            worker.conn.close()
            workers[slot] = worker = _replace_worker(mp, worker, root)
        ended.append((worker.running, outcome))
        _assign(worker, queue)
    return ended


def _replace_worker(mp: Any, dead: _DeviceWorker, root: Path) -> _DeviceWorker:
    """A new process for the device of one that died, marked as running its task (so it is accounted for)."""
    fresh = _start_device_worker(mp, dead.device, root)
    fresh.running = dead.running
    return fresh


def _stop(worker: _DeviceWorker) -> None:
    """Ends a device process: it stops by itself when idle (it got None); a busy one is terminated."""
    if worker.process.is_alive() and worker.running is not None:
        worker.process.terminate()
    worker.process.join(timeout=30)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join()
    worker.conn.close()


# ------------------------------------------------------------------ Ray

@dataclass(frozen=True)
class ShareCheck:
    """A token file in the driver's results root: a worker that reads it there shares the driver's filesystem."""

    root: Path
    token: str

    @property
    def path(self) -> Path:
        """The token file."""
        return self.root / f"{TOKEN_PREFIX}{self.token}"

    def visible(self) -> bool:
        """True when this process sees the driver's token file (the same filesystem at the same path)."""
        try:
            return self.path.read_text(encoding="utf-8") == self.token
        except OSError:
            return False


def safe_relative(name: str) -> Path:
    """A path relative to the results root, refused when absolute or reaching outside it."""
    path = Path(name)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{name}: not a path inside the results root")
    return path


def files_under(root: Path, names: Sequence[str]) -> dict[str, Path]:
    """Relative name -> path of every file among `names` (files, or folders walked) under root."""
    found = {}
    for name in names:
        path = root / safe_relative(name)
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in candidates:
            if file.is_file() and not file.name.endswith(".tmp"):
                found[file.relative_to(root).as_posix()] = file
    return found


class ResultsStore:
    """The Ray actor, pinned to the driver's node, that reads and writes files under the driver's results root
    for workers that do not share its filesystem; every file is written atomically."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def fetch(self, names: Sequence[str]) -> dict[str, bytes]:
        """The bytes of every file among `names` (files or folders) that exists under the root."""
        return {name: path.read_bytes() for name, path in files_under(self.root, names).items()}

    def put(self, files: dict[str, bytes]) -> int:
        """Writes the files under the root (each atomically); returns how many."""
        for name, payload in files.items():
            utils.atomic_write_bytes(self.root / safe_relative(name), payload)
        return len(files)


class Mirror:
    """A worker's local copy of a task's files, kept in step with the driver's results root through the store."""

    def __init__(self, ray: Any, store: Any, root: Path) -> None:
        self.ray = ray
        self.store = store
        self.root = root
        self.sent: dict[str, str] = {}  # relative name -> digest of what the driver holds
        self.last_sync = -float("inf")

    def fetch(self, names: Sequence[str]) -> int:
        """Writes the driver's copies of `names` under the local root; returns how many files."""
        files = self.ray.get(self.store.fetch.remote(list(names)))
        for name, payload in files.items():
            utils.atomic_write_bytes(self.root / safe_relative(name), payload)
            self.sent[name] = hashlib.blake2b(payload).hexdigest()
        return len(files)

    def send(self, names: Sequence[str]) -> int:
        """Sends the files among `names` that differ from the driver's copies; returns how many."""
        changed = {}
        for name, path in files_under(self.root, names).items():
            payload = path.read_bytes()
            digest = hashlib.blake2b(payload).hexdigest()
            if self.sent.get(name) != digest:
                changed[name] = (payload, digest)
        if changed:
            self.ray.get(self.store.put.remote({name: payload for name, (payload, _) in changed.items()}))
            self.sent.update({name: digest for name, (_, digest) in changed.items()})
        return len(changed)

    def checkpoint_saved(self, path: Path) -> None:
        """Sends a checkpoint the job just saved (the first at once, then at most every CHECKPOINT_SYNC_S)."""
        now = time.monotonic()
        if now - self.last_sync >= CHECKPOINT_SYNC_S:
            self.send([Path(path).relative_to(self.root).as_posix()])
            self.last_sync = now
        inject_fault()


def _ray_task(task: Task, share: ShareCheck, store: Any, sync: str, cpus: int) -> Outcome:
    """The body of every Ray task: pick the device, find or fetch the files, run the job, send the files back."""
    import ray

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    device = "cuda:0" if ray.get_gpu_ids() else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES to the task's GPU
    if device == "cpu":
        use_threads(cpus)
    shared = sync != "copy" and share.visible()
    if sync == "shared" and not shared:
        return Outcome(error=f"{share.root} is not on this worker's filesystem "
                             f"({ray.util.get_node_ip_address()}); mount it at the same path on every node")
    if shared:
        return _run(task, WorkerContext(share.root, device))
    local = Path(tempfile.mkdtemp(prefix="glass-scale-out-"))
    try:
        mirror = Mirror(ray, store, local)
        fetched = mirror.fetch(task.inputs)
        if fetched:
            LOGGER.info("%s: fetched %d file(s) of an earlier attempt or run from the driver", task.name, fetched)
        outcome = _run(task, WorkerContext(local, device, mirror.checkpoint_saved))
        mirror.send(task.outputs)
        return outcome
    finally:
        shutil.rmtree(local, ignore_errors=True)


def use_threads(cpus: int) -> None:
    """PyTorch's CPU threads in a reused worker: set now when torch is loaded, else through OMP_NUM_THREADS,
    which torch reads when it is first imported."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(cpus)
    else:
        os.environ["OMP_NUM_THREADS"] = str(cpus)


def connect(address: str) -> bool:
    """Connects to Ray (or starts a local instance for "local"); True when this call did it (so the caller
    shuts it down), False when this process was already connected."""
    import ray

    if ray.is_initialized():
        LOGGER.info("using the Ray instance this process is connected to")
        return False
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise ScaleOutError(f"--ray {address}: cannot connect to a Ray cluster ({first_line(err)}); start one with "
                            "`ray start --head` (or join one with `ray start --address HEAD:6379`), or pass "
                            "--ray local for a Ray instance on this machine alone") from None
    return True


def task_resources(ray: Any, cfg: RayConfig) -> dict[str, Any]:
    """What each task asks for: one GPU when the cluster has GPUs, else `cfg.cpus` CPUs."""
    if ray.cluster_resources().get("GPU", 0) >= 1:
        return {"num_gpus": 1}
    return {"num_cpus": cfg.cpus}


def run_on_ray(tasks: Sequence[Task], root: Path, emit: Callable[[int, Outcome], None], cfg: RayConfig,
               desc: str = "tasks") -> None:
    """Runs every task as a Ray task (retried when its worker dies) and emits the outcomes in task order."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    root = Path(root).resolve()
    started = connect(cfg.address)
    share = ShareCheck(root, secrets.token_hex(8))
    store = None
    try:
        utils.atomic_write_text(share.path, share.token)
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        store = ray.remote(num_cpus=0)(ResultsStore).options(scheduling_strategy=here).remote(str(root))
        resources = task_resources(ray, cfg)
        LOGGER.info("%d task(s) on Ray (%s each, up to %d retries)", len(tasks),
                    ", ".join(f"{k} {v}" for k, v in resources.items()), cfg.retries)
        remote = ray.remote(_ray_task).options(max_retries=cfg.retries, retry_exceptions=False, **resources)
        refs = {remote.remote(tasks[index], share, store, cfg.sync, cfg.cpus): index for index in start_order(tasks)}
        _collect_ray(ray, refs, tasks, emit, desc)
    finally:
        share.path.unlink(missing_ok=True)
        if store is not None:
            ray.kill(store)
        if started:
            ray.shutdown()


def _collect_ray(ray: Any, refs: dict[Any, int], tasks: Sequence[Task], emit: Callable[[int, Outcome], None],
                 desc: str) -> None:
    """Waits for the Ray tasks, emitting in order; Ctrl-C cancels the unfinished ones (their workers are killed)."""
    ordered = OrderedEmitter(len(tasks), emit)
    pending = list(refs)
    try:
        with tqdm.tqdm(total=len(refs), desc=desc, unit="task") as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=WAIT_S)
                for ref in done:
                    index = refs[ref]
                    ordered.add(index, _ray_outcome(ray, ref, tasks[index].name))
                    bar.update()
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        LOGGER.warning("interrupted: cancelled %d unfinished task(s); finished tasks are kept", len(pending))
        raise
    finally:
        ordered.flush()


def _ray_outcome(ray: Any, ref: Any, name: str) -> Outcome:
    """A finished Ray task's outcome; a task that raised (a bug) or whose worker died too often ends as one line."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        LOGGER.error("%s failed:\n%s", name, err)
        cause = err.cause if err.cause is not None else err
        return Outcome(error=f"{type(cause).__name__}: {first_line(cause)} (a bug: traceback in the log)")
    except ray.exceptions.RayError as err:  # the worker died more often than --ray_retries allows, a lost node
        LOGGER.error("%s failed: %s", name, err)
        return Outcome(error=f"{type(err).__name__}: {first_line(err)}")
