"""Fixtures of the service tests (API and browser): a results folder holding the tiny trained GLASS model, the
app's configuration, a TestClient, sample uploads and a running `python -m service` on a free loopback port.

The model is the session's `tiny_model` (tests/conftest.py), copied once into a results folder of its own
(`models/backbone_0/mvtec_toy` + `results.csv`), so nothing the service does touches the shared fixture.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from service import local
from service.local import free_port
from tests.helpers import REPO, TinyModel, write_scrolling_clip

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from service.config import ServiceConfig

SERVICE_MODEL_ID = "models/backbone_0/mvtec_toy"  # the tiny model's id (its folder under the results path)
START_TIMEOUT_S = 60.0  # how long a started service may take to answer /api/status


@pytest.fixture(scope="session")
def service_results(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder with the tiny GLASS model (models/backbone_0/mvtec_toy) and its results.csv."""
    root = tmp_path_factory.mktemp("service_results") / "results"
    source = tiny_model.model_path.parent.parent  # <tiny_model root>/results
    shutil.copytree(tiny_model.class_dir, root / SERVICE_MODEL_ID, ignore=shutil.ignore_patterns("tb"))
    shutil.copy2(source / "results.csv", root / "results.csv")
    return root


@pytest.fixture(scope="session")
def service_model_id() -> str:
    """The model_id of the tiny model in service_results."""
    return SERVICE_MODEL_ID


@pytest.fixture
def service_config(service_results: Path, tmp_path: Path) -> ServiceConfig:
    """The app's configuration: the tiny results folder, CPU, PyTorch backend, jobs in tmp_path/jobs."""
    from service.config import ServiceConfig

    return ServiceConfig(results_path=service_results, device="cpu", backend="torch", jobs_dir=tmp_path / "jobs")


@pytest.fixture
def client(service_config: ServiceConfig) -> Iterator[TestClient]:
    """A TestClient of the app with no model loaded (its job worker stops when the test ends)."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    with TestClient(create_app(service_config)) as test_client:
        yield test_client


@pytest.fixture
def loaded_client(client: TestClient, service_model_id: str) -> TestClient:
    """The client with the tiny model loaded."""
    response = client.post("/api/load_model", json={"model_id": service_model_id})
    assert response.status_code == 200, response.text
    return client


@pytest.fixture(scope="session")
def defect_png(tiny_model: TinyModel) -> bytes:
    """A 64 px PNG with a dark red square defect (the tiny dataset's test/blob/000.png)."""
    return (tiny_model.data_path / "toy" / "test" / "blob" / "000.png").read_bytes()


@pytest.fixture(scope="session")
def good_png(tiny_model: TinyModel) -> bytes:
    """A 64 px defect-free PNG (the tiny dataset's test/good/000.png)."""
    return (tiny_model.data_path / "toy" / "test" / "good" / "000.png").read_bytes()


@pytest.fixture(scope="session")
def tiny_video(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-frame 64 px MP4 of the defective test image scrolling left (a defect that moves, as on a belt)."""
    return write_scrolling_clip(tiny_model, tmp_path_factory.mktemp("service_video") / "belt.mp4", 12)


def wait_for_status(url: str, process: subprocess.Popen, timeout: float = START_TIMEOUT_S) -> dict:
    """GET {url}/api/status's JSON once the started service answers (service.local.wait_until_up)."""
    return local.wait_until_up(url, process, timeout)


@pytest.fixture(scope="module")
def service_url(service_results: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m service` on the tiny results folder on a free 127.0.0.1 port (CPU, torch backend); yields its
    base URL (http://127.0.0.1:<port>) once /api/status answers, and terminates it after the module's tests."""
    port = free_port()
    jobs = tmp_path_factory.mktemp("service_jobs")
    command = [sys.executable, "-m", "service", "--results_path", str(service_results), "--host", "127.0.0.1",
               "--port", str(port), "--device", "cpu", "--backend", "torch", "--jobs_dir", str(jobs)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("GLASS_SERVICE_TOKEN", None)
    log = (jobs / "service.log").open("wb")  # a file, not a pipe: a full pipe would block the server
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_status(url, process)
        yield url
    finally:
        local.stop(process)
        log.close()
