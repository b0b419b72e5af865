"""The Docker files, checked without a Docker daemon: docker-compose.yml's services, profile, volumes, port and
token; the Dockerfile's one install step equal to README's; its entry command, run here, starts the service."""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers import REPO
from tests.service.conftest import free_port, wait_for_status

DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
CONTAINER_PORT = "8000"
TOKEN = "docker-test-token"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def entry_command() -> list[str]:
    """The Dockerfile's CMD (exec form)."""
    commands = [rest for keyword, rest in dockerfile_instructions() if keyword == "CMD"]
    assert len(commands) == 1
    return json.loads(commands[0])


def flag_value(command: list[str], flag: str) -> str:
    """The value following `flag` in an argument list."""
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def compose() -> dict:
    """docker-compose.yml, parsed."""
    return yaml.safe_load(COMPOSE.read_text())


def volume_targets(service: dict) -> dict[str, str]:
    """Container path -> host path of a compose service's bind mounts."""
    targets = {}
    for volume in service["volumes"]:
        host, target = volume.split(":")[:2]
        targets[target] = host
    return targets


def test_compose_service_port_token_and_volumes():
    """The service publishes the entry command's port, gets the token from the environment and mounts the
    folders its command names (results, job outputs) and the datasets and weights."""
    service = compose()["services"]["service"]
    command = entry_command()
    assert flag_value(command, "--port") == CONTAINER_PORT
    assert any(str(port).split(":")[-1] == CONTAINER_PORT for port in service["ports"])
    token = service["environment"]["GLASS_SERVICE_TOKEN"]
    assert token.startswith("${GLASS_SERVICE_TOKEN:?")  # compose refuses to start it without a token
    targets = volume_targets(service)
    assert {"/data/datasets", "/data/results", "/data/outputs", "/data/weights"} <= set(targets)
    for flag in ("--results_path", "--jobs_dir"):  # what the service writes or reads lies on a volume
        path = flag_value(command, flag)
        assert any(path == target or path.startswith(target + "/") for target in targets), (flag, path)
    assert service["build"]["args"]["TORCH_VARIANT"] == "${TORCH_VARIANT:-cpu}"


def test_compose_train_profile_runs_the_demo_training():
    """The train service is in the `train` profile only, shares the volumes and runs the demo's training script
    with its data and results on the volumes."""
    services = compose()["services"]
    train = services["train"]
    assert train["profiles"] == ["train"]
    assert "profiles" not in services["service"]  # `docker compose up` starts the service alone
    assert train["volumes"] == services["service"]["volumes"]
    script = train["command"][-1]
    assert (REPO / script).is_file()
    assert "main.py" in (REPO / script).read_text()
    targets = volume_targets(train)
    for variable in ("DEMO_ROOT", "RESULTS"):
        path = train["environment"][variable]
        assert any(path.startswith(target + "/") for target in targets), (variable, path)


def test_dockerfile_installs_as_readme_says():
    """One `pip install` step, identical to README's install command; a CPU default and a CUDA build argument."""
    readme_commands = re.findall(r"^(pip install [^&#\n]*?)\s*(?:&&|#|$)", (REPO / "README.md").read_text(), re.M)
    assert readme_commands, "README has no pip install command"
    installs = [rest for keyword, rest in dockerfile_instructions() if keyword == "RUN" and "pip install" in rest]
    assert installs == [readme_commands[0]]
    instructions = dockerfile_instructions()
    args = dict(rest.split("=", 1) for keyword, rest in instructions if keyword == "ARG" and "=" in rest)
    assert args["TORCH_VARIANT"] == "cpu"
    assert args["BASE_IMAGE"].startswith("python:3.11-slim")
    assert ("FROM", "${BASE_IMAGE}") in instructions
    env = " ".join(rest for keyword, rest in instructions if keyword == "ENV")
    assert "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}" in env


def dockerignore_patterns() -> list[str]:
    """The .dockerignore patterns (comments and blank lines dropped)."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """True when `path` or a folder above it matches a pattern (a superset of Docker's matching)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatchcase(prefix, pattern.removeprefix("**/")) or fnmatch.fnmatchcase(prefix, pattern)
               for prefix in prefixes for pattern in patterns)


def test_dockerignore_keeps_the_code_and_drops_data_and_secrets():
    """Every module and package pyproject installs, the service's page and the demo script reach the image;
    data, results, the virtualenv and the .env holding the token do not."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    needed = ["requirements.txt", "pyproject.toml", "service/app.py", "service/static/index.html",
              "service/static/app.js", "service/static/style.css", "shell/run-demo.sh",
              *(f"{module}.py" for module in project["py-modules"]),
              *(f"{package}/__init__.py" for package in project["packages"])]
    patterns = dockerignore_patterns()
    assert [path for path in needed if ignored(path, patterns)] == []
    for path in (".env", ".git/config", ".venv/bin/python", "results/results.csv", "demo_data/mvtec/x.png",
                 "output/service_jobs/a.mp4", "service/__pycache__/app.cpython-311.pyc"):
        assert ignored(path, patterns), path


def container_to_local(command: list[str], data_root: Path, port: int) -> list[str]:
    """The entry command as it runs here: this Python, /data/... under data_root, the given port."""
    local = [sys.executable if command[0] == "python" else command[0]]
    for arg in command[1:]:
        local.append(str(data_root / arg.removeprefix("/data/")) if arg.startswith("/data/") else arg)
    local[local.index("--port") + 1] = str(port)
    return local


def run_entry(command: list[str], token: str | None) -> subprocess.Popen:
    """Starts the entry command from the repository root (the image's WORKDIR), with or without the token."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("GLASS_SERVICE_TOKEN", None)
    if token is not None:
        env["GLASS_SERVICE_TOKEN"] = token
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(process: subprocess.Popen) -> str:
    """Terminates a started service; its output."""
    process.terminate()
    try:
        output, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output


@pytest.fixture
def data_root(service_results: Path, tmp_path: Path) -> Path:
    """A local stand-in for the container's /data: results (the tiny model), outputs."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "results").symlink_to(service_results, target_is_directory=True)
    return root


def test_entry_command_starts_the_service_with_the_token(data_root: Path, service_model_id: str):
    """The Dockerfile's CMD, run outside Docker on a local results folder and a free port with
    GLASS_SERVICE_TOKEN set, serves /api/status to anyone and the models only with the token."""
    port = free_port()
    process = run_entry(container_to_local(entry_command(), data_root, port), TOKEN)
    url = f"http://127.0.0.1:{port}"
    try:
        status = wait_for_status(url, process)
        assert status["auth_required"] is True
        assert httpx.get(f"{url}/api/models", timeout=10).status_code == 401
        answer = httpx.get(f"{url}/api/models", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert answer.status_code == 200
        assert [model["model_id"] for model in answer.json()["models"]] == [service_model_id]
        assert httpx.get(f"{url}/", timeout=10).status_code == 200  # the page itself needs no token
    finally:
        output = stop(process)
    assert process.returncode is not None, output


def test_entry_command_without_token_refuses_to_start(data_root: Path):
    """Without GLASS_SERVICE_TOKEN the entry command (bound to 0.0.0.0) ends with a one-line error, exit 2."""
    command = container_to_local(entry_command(), data_root, free_port())
    process = run_entry(command, None)
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2, shlex.join(command) + "\n" + output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "GLASS_SERVICE_TOKEN" in lines[0] and "Traceback" not in output
