"""A service started as a child process on 127.0.0.1: the load test, README's screenshot script and the tests.

`start` runs `python -m service --host 127.0.0.1 --port <free port> ...` from the repository (its output into a
log file, not a pipe, which could fill and block the server) and returns once `/api/status` answers; `stop`
ends it.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from errors import UserError

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0  # importing torch and loading nothing yet: seconds, not minutes, on 2 cores


class ServiceStartError(UserError):
    """The child service exited or did not answer in time."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
    """Polls GET {url}/api/status until it answers 200 (returns its JSON); ServiceStartError when the process
    ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceStartError(f"the service exited with code {process.returncode} before answering")
        try:
            response = httpx.get(f"{url}/api/status", timeout=2.0)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise ServiceStartError(f"{url}/api/status did not answer within {timeout:.0f} s")


def start(arguments: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
          timeout: float = START_TIMEOUT_S) -> tuple[subprocess.Popen, str]:
    """`python -m service` with these arguments on a free loopback port; (process, base URL) once it answers
    (the log's last line in the error when it does not)."""
    port = free_port()
    command = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port), *arguments]
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with log_path.open("wb") as log:  # the child keeps its own handle
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, timeout)
    except ServiceStartError as err:
        stop(process)
        last = log_path.read_text(errors="replace").strip().splitlines()[-1:]
        raise ServiceStartError(f"{err} (log {log_path}: {last[0] if last else 'empty'})") from None
    return process, url


def stop(process: subprocess.Popen) -> None:
    """Terminates the service (SIGTERM, then SIGKILL after 15 s)."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
