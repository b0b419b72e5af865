"""The inspection service: a REST API (FastAPI) and a web page over the trained models of a results folder.

    python -m service --results_path results --host 127.0.0.1 --port 8000

`config` (the settings), `app` (the endpoints), `models` (listing and loaded engines), `inspection` (one image
through the engine), `uploads` (decoding uploads by content, within limits), `jobs` (the video job queue).
The API contract is service/CONTRACT.md.
"""
from __future__ import annotations

from importlib import metadata

PACKAGE = "glass-toolkit"  # the project's distribution name (pyproject.toml)


def service_version() -> str:
    """The installed project's version (pyproject.toml), or 'unknown' when it is not installed."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"
