"""Small utilities: atomic writes, seeds and RNG state, results table, visualisations."""
from __future__ import annotations

import argparse
import csv
import errno
import io
import logging
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterable, Sequence

import click
import cv2
import filelock
import numpy as np
import torch

from errors import UserError, first_line

LOGGER = logging.getLogger(__name__)

METRIC_NAMES = ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "pixel_pro")


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Writes a file so that readers see the old or the new content, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save through a temporary file and a rename."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes text atomically (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def fix_seeds(seed: int) -> None:
    """Seeds python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    """All random states a resumed run needs, in weights_only-loadable form."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def restore_rng_state(state: dict[str, Any], loader_generator: torch.Generator | None = None) -> None:
    """Inverse of capture_rng_state."""
    random.setstate(_as_tuple(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        ("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"], np_state["has_gauss"],
         np_state["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader_generator is not None and "loader" in state:
        loader_generator.set_state(state["loader"])


def _as_tuple(value: Any) -> Any:
    """Turns nested lists back into tuples (random.setstate needs tuples)."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


RESULTS_FIELDS = ("method", "class", *METRIC_NAMES, "epoch", "selection")
OLD_RESULTS_FIELDS = RESULTS_FIELDS[1:]  # tables written before other methods than GLASS existed
# A class that failed in a fanned-out run (scale_out) has a row without metrics and its one-line error in
# this column; the column is written only while some row has a note, so a table without failures is
# byte for byte what it was before the column existed (and what a sequential run writes).
NOTES_FIELD = "notes"
DEFAULT_METHOD = "glass"  # the method of a row without one
MEAN_ROW = "Mean"
RESULTS_LOCK_TIMEOUT_S = 300.0


class ResultsTableError(UserError):
    """An existing results.csv that is not a results table (truncated, edited, another format)."""


def read_results_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The class rows of results.csv as written (strings), without the Mean rows; [] when there is no file.

    ResultsTableError when the file is not a table with exactly the RESULTS_FIELDS columns (or those of a
    table written before the method column existed: its rows are GLASS's) and numeric metrics. A (method,
    class) that occurs twice (hand-edited file) keeps its last row, at its first position.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except UnicodeDecodeError as exc:
        raise ResultsTableError(f"not UTF-8 text ({exc.reason})") from exc
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = tuple(reader.fieldnames or ())
        if fields not in (RESULTS_FIELDS, (*RESULTS_FIELDS, NOTES_FIELD), OLD_RESULTS_FIELDS):
            raise ResultsTableError(f"header {','.join(fields) or '(empty file)'} is not "
                                    f"{','.join(RESULTS_FIELDS)}")
        rows: dict[tuple[str, str], dict[str, str]] = {}
        for row in reader:
            line = reader.line_num
            if None in row or any(value is None for value in row.values()):
                raise ResultsTableError(f"line {line} does not have the {len(fields)} columns of the header")
            row = {"method": DEFAULT_METHOD, **row}
            if not row["class"]:
                raise ResultsTableError(f"line {line} has no class name")
            if not (row.get(NOTES_FIELD) and is_failed_row(row)):  # a failed class's row has no metrics
                try:
                    [float(row[name]) for name in METRIC_NAMES]
                except ValueError as exc:
                    raise ResultsTableError(f"line {line}: {exc}") from exc
            if row["class"] != MEAN_ROW:
                rows[_row_key(row)] = row
    except csv.Error as exc:
        raise ResultsTableError(f"not CSV ({exc})") from exc
    return list(rows.values())


def _row_key(row: dict[str, Any]) -> tuple[str, str]:
    """A row's identity in the table: (method, class)."""
    return str(row.get("method") or DEFAULT_METHOD), str(row["class"])


def render_results_csv(rows: Sequence[dict[str, Any]]) -> str:
    """results.csv text: the class rows in order, then one Mean row per method.

    A method's Mean row averages every class row of that method in the table (this run's and those kept
    from earlier runs), from the values as written (4 decimals), so it can be recomputed from the file
    alone; its selection is the rule all of them share, or `mixed`; its epoch is empty. Rows of failed
    classes (no metrics, their error in `notes`) are left out of the Mean; the `notes` column is there
    only while some row has a note.
    """
    rows = [_format_row(row) for row in rows]
    fields = (*RESULTS_FIELDS, NOTES_FIELD) if any(r[NOTES_FIELD] for r in rows) else RESULTS_FIELDS
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    for method in dict.fromkeys(r["method"] for r in rows):
        own = [r for r in rows if r["method"] == method and not is_failed_row(r)]
        if not own:
            continue
        mean = {name: _fmt(float(np.mean([float(r[name]) for r in own]))) for name in METRIC_NAMES}
        rules = {r["selection"] for r in own}
        selection = rules.pop() if len(rules) == 1 else "mixed"
        writer.writerow({"method": method, "class": MEAN_ROW, **mean, "epoch": "", "selection": selection})
    return out.getvalue()


def update_results_csv(path: str | os.PathLike, new_rows: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """Merges class rows into results.csv; returns the table's class rows.

    Under a file lock (concurrent runs on one results folder take turns): reads the current table,
    replaces the row of each (method, class) in new_rows (in place) or appends it, keeps every other row,
    recomputes the Mean row and writes the file atomically, so a run killed at any point leaves the
    previous table or the new one. An existing file that is not a results table is moved aside to
    results.csv.corrupt-<time> with a warning, never dropped. Each row carries its own selection rule.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # FileLock (flock) leaves results.csv.lock behind on release: deleting it would let a waiting process
    # lock an unlinked inode while a third one creates a new file. The file is empty and harmless.
    lock_path = path.with_name(f"{path.name}.lock")
    try:
        with filelock.FileLock(lock_path, timeout=RESULTS_LOCK_TIMEOUT_S):
            for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a run killed while writing
                stale.unlink(missing_ok=True)
            try:
                current = read_results_csv(path)
            except ResultsTableError as err:
                aside = _move_aside(path)
                LOGGER.warning("%s is not a results table (%s); moved it to %s and started a new table",
                               path, err, aside.name)
                current = []
            table = {_row_key(row): row for row in current}
            for row in new_rows:
                formatted = _format_row(row)
                table[_row_key(formatted)] = formatted
            rows = list(table.values())
            atomic_write_text(path, render_results_csv(rows))
    except filelock.Timeout as exc:
        raise OSError(errno.EAGAIN, f"another run has held {lock_path.name} for over {RESULTS_LOCK_TIMEOUT_S:.0f} s; "
                      "the model is saved, rerun with --test test to add its results", str(path)) from exc
    return rows


def _format_row(row: dict[str, Any]) -> dict[str, str]:
    """A results row as written: metrics with 4 decimals (strings read back from the file are kept as they are;
    a failed class's missing metrics stay empty)."""
    formatted = {name: "" if row.get(name) is None else str(_fmt(row[name]))
                 for name in (*RESULTS_FIELDS, NOTES_FIELD)}
    formatted["method"] = formatted["method"] or DEFAULT_METHOD
    for name in METRIC_NAMES:
        if row.get(name) is not None and not isinstance(row[name], str):
            formatted[name] = _fmt(float(row[name]))
    return formatted


def is_failed_row(row: dict[str, Any]) -> bool:
    """True for the row of a class that failed: no metric values (its error is in `notes`)."""
    return all(row.get(name) in (None, "") for name in METRIC_NAMES)


def _fmt(value: Any) -> Any:
    """Rounds floats for the CSV."""
    return f"{value:.4f}" if isinstance(value, float) else value


def _move_aside(path: Path) -> Path:
    """Renames a file to <name>.corrupt-<YYYYmmdd-HHMMSS>[-n] beside it; returns the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 0
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.rename(path, aside)
    return aside


def format_table(rows: Iterable[dict[str, Any]]) -> str:
    """Plain-text table of results rows (percentages) for the terminal."""
    rows = list(rows)
    header = f"{'method':<11}{'class':<24}" + "".join(f"{n:>13}" for n in METRIC_NAMES) + f"{'epoch':>7}"
    lines = [header, "-" * len(header)]
    for row in rows:
        values = "".join(f"{100 * row[n]:>13.2f}" for n in METRIC_NAMES)
        lines.append(f"{row.get('method', DEFAULT_METHOD):<11}{row['class']:<24}{values}{row.get('epoch', ''):>7}")
    for method in dict.fromkeys(row.get("method", DEFAULT_METHOD) for row in rows):
        own = [r for r in rows if r.get("method", DEFAULT_METHOD) == method]
        values = "".join(f"{100 * np.mean([r[n] for r in own]):>13.2f}" for n in METRIC_NAMES)
        lines.append(f"{method:<11}{'Mean':<24}{values}")
    return "\n".join(lines)


def denormalise(image: torch.Tensor | np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised CHW tensor -> uint8 HWC RGB image."""
    array = np.asarray(image, dtype=np.float32)
    array = array * np.asarray(std, np.float32)[:, None, None] + np.asarray(mean, np.float32)[:, None, None]
    return (np.clip(array.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)


def save_visualisation(path: str | os.PathLike, image: np.ndarray, mask: np.ndarray, heat: np.ndarray) -> None:
    """Writes image | ground truth | heatmap side by side as a PNG (atomically)."""
    mask_rgb = np.repeat((np.clip(mask, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    panel = np.hstack([image, mask_rgb, heat])
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, encoded.tobytes())


def run_command(command: click.Command, argv: Sequence[str] | None,
                oserror_hint: str = "check the path and its permissions",
                message: Callable[[UserError], str] = first_line) -> int:
    """Runs a Click command line: user errors -> `error: <one line>` on stderr and 2, Ctrl-C -> 130,
    SIGTERM -> 143.

    A UserError is one a user can cause with a flag or a file (anything else is a bug and keeps
    its traceback); `message` turns it into one line (default: its first line); an OSError gets
    `oserror_hint`.
    While the command runs, SIGTERM (`kill`, `docker stop`, systemd) raises KeyboardInterrupt, so
    the cleanup that Ctrl-C gets runs for it too (a second SIGTERM does not cut that cleanup short).
    """
    import signal

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    terminated = []

    def on_sigterm(signum: int, frame: Any) -> None:
        if not terminated:
            terminated.append(signum)
            raise KeyboardInterrupt("SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread: signals stay as they are
        previous = False
    try:
        # Without standalone mode Click returns (not raises) the code of click.exceptions.Exit.
        result = command.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Exit as stop:
        return stop.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo("terminated" if terminated else "interrupted", err=True)
        return 143 if terminated else 130
    except click.ClickException as err:
        click.echo(f"error: {one_line(err.format_message())}", err=True)
        return 2
    except UserError as err:
        click.echo(f"error: {message(err)}", err=True)
        return 2
    except OSError as err:  # e.g. an output folder that cannot be created, disk full
        where = f"{err.filename}: " if err.filename else ""
        click.echo(f"error: {where}{err.strerror or err}; {oserror_hint}", err=True)
        return 2
    finally:
        if previous is not False:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    return result if isinstance(result, int) else 0


def positive(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Click callback: the value must be > 0."""
    if value is not None and value <= 0:
        raise click.BadParameter(f"must be > 0, got {value}")
    return value


def _integer(text: str) -> int:
    """An argparse value as an integer (ArgumentTypeError otherwise)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: an integer > 0 (a bad value is argparse's one-line usage error, exit 2)."""
    value = _integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def one_line(message: str) -> str:
    """A message's lines joined into one (Click wraps its own usage messages over several lines; an
    error of ours shows only its first line, errors.first_line)."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())
