"""The service's settings: one frozen dataclass, validated once when the service starts.

Binding to a loopback address (127.0.0.1, localhost, ::1) needs no token; any other host needs one (`--token`
or the GLASS_SERVICE_TOKEN environment variable): starting without it is a one-line error. Once a token is set,
every /api/ request but GET /api/status must carry it, whatever the host.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from errors import UserError

# This module (and `python -m service` up to the start) imports no torch: --help and a bad flag answer at once.
# The two defaults below are the commands' (inference_orchestrator.DEFAULT_RESULTS_PATH, cli.DEFAULT_OUTPUT_ROOT);
# tests/service/test_config.py checks that they agree.
DEFAULT_RESULTS_PATH = "results"
DEFAULT_JOBS_DIR = Path("output") / "service_jobs"  # beside the video commands' output/<class>/
TOKEN_ENV = "GLASS_SERVICE_TOKEN"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_PIXELS = 40_000_000


class ServiceConfigError(UserError):
    """A service setting that cannot work; the message names the flag and the fix."""


@dataclass(frozen=True)
class ServiceConfig:
    """Where the models are, where video jobs write, how the service binds and what it accepts."""

    results_path: Path = Path(DEFAULT_RESULTS_PATH)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = field(default=None, repr=False)
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_pixels: int = DEFAULT_MAX_PIXELS
    device: str = "auto"
    backend: str = "auto"
    jobs_dir: Path = DEFAULT_JOBS_DIR

    def __post_init__(self) -> None:
        object.__setattr__(self, "results_path", Path(self.results_path))
        object.__setattr__(self, "jobs_dir", Path(self.jobs_dir))
        object.__setattr__(self, "token", self.token or None)  # an empty token is no token
        if not self.results_path.is_dir():
            raise ServiceConfigError(f"--results_path {self.results_path}: folder not found; point it to the folder "
                                     "main.py trained into (e.g. --results_path results)")
        if not 0 <= self.port <= 65535:
            raise ServiceConfigError(f"--port {self.port}: not a TCP port; pass 1 to 65535 (0: any free one)")
        if not (math.isfinite(self.max_upload_mb) and self.max_upload_mb > 0):
            raise ServiceConfigError(f"--max_upload_mb {self.max_upload_mb}: must be a number > 0, e.g. 20")
        if self.max_pixels < 1:
            raise ServiceConfigError(f"--max_pixels {self.max_pixels}: must be at least 1, e.g. 40000000")
        if self.token is None and not self.loopback:
            raise ServiceConfigError(f"--host {self.host}: serving beyond this machine needs an API token; pass "
                                     f"--token or set {TOKEN_ENV} (or bind --host 127.0.0.1)")
        from inference.backends import BACKENDS, resolve_device  # torch: only once the cheap checks passed

        if self.backend not in BACKENDS:
            raise ServiceConfigError(f"--backend {self.backend}: use one of {', '.join(BACKENDS)}")
        resolve_device(self.device)  # EngineError (a UserError) naming --device

    @property
    def loopback(self) -> bool:
        """True when the service binds to this machine only."""
        return self.host in LOOPBACK_HOSTS

    @property
    def max_upload_bytes(self) -> int:
        """The largest upload (a whole request body, all its files together) in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def device_type(self) -> str:
        """'cpu' or 'cuda': where the models run."""
        from inference.backends import resolve_device

        return resolve_device(self.device).type


def token_from(flag: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The API token: --token, else the GLASS_SERVICE_TOKEN environment variable, else None."""
    return flag or environ.get(TOKEN_ENV) or None
