"""`python -m service`: --help, bad flags (one line, exit 2), a real server on a free port, jobs that outlive their
client."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from service.__main__ import main
from tests.helpers import REPO


def run_service(*args: str, env_token: str | None = None) -> subprocess.CompletedProcess:
    """`python -m service ARGS` run to its end (for the commands that stop at once)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("GLASS_SERVICE_TOKEN", None)
    if env_token is not None:
        env["GLASS_SERVICE_TOKEN"] = env_token
    return subprocess.run([sys.executable, "-m", "service", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_help_lists_the_flags_without_loading_torch():
    done = run_service("--help")
    assert done.returncode == 0
    for flag in ("--results_path", "--host", "--port", "--token", "--max_upload_mb", "--max_pixels", "--device",
                 "--backend", "--jobs_dir"):
        assert flag in done.stdout
    probe = subprocess.run([sys.executable, "-c", "import sys, service.__main__ as m, service.config as c; "
                            "m.parser(); print('torch' in sys.modules)"], cwd=REPO, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert probe.stdout.strip() == "False"  # --help and the flag checks answer at once


def test_a_public_host_without_token_is_one_line_and_exit_2(service_results, tmp_path):
    done = run_service("--results_path", str(service_results), "--host", "0.0.0.0", "--jobs_dir", str(tmp_path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --host 0.0.0.0:") and "GLASS_SERVICE_TOKEN" in lines[0]
    with_token = run_service("--results_path", str(service_results), "--host", "0.0.0.0", "--port", "-5",
                             env_token="t")  # a token from the environment: the host passes, the port does not
    assert with_token.returncode == 2 and with_token.stderr.startswith("error: --port -5:")


@pytest.mark.parametrize("flags, needle", [
    (["--results_path", "no/such/folder"], "--results_path no/such/folder: folder not found"),
    (["--port", "70000"], "--port 70000"),
    (["--device", "tpu"], "--device tpu"),
])
def test_bad_flags_are_one_line_and_exit_2(service_results, tmp_path, capsys, flags, needle):
    from errors import run_script

    argv = ["--results_path", str(service_results), "--jobs_dir", str(tmp_path / "jobs"), *flags]
    assert run_script(lambda: main(argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


def test_an_unwritable_jobs_dir_is_one_line_and_exit_2(service_results, tmp_path, capsys):
    from errors import run_script

    blocker = tmp_path / "file"
    blocker.write_text("a file where the jobs folder should go")
    argv = ["--results_path", str(service_results), "--jobs_dir", str(blocker / "jobs")]
    assert run_script(lambda: main(argv)) == 2
    assert capsys.readouterr().err.startswith(f"error: --jobs_dir {blocker / 'jobs'}: cannot create")


def test_the_started_service_answers_and_a_job_outlives_its_client(service_url, service_model_id, tiny_video):
    status = httpx.get(f"{service_url}/api/status", timeout=10).json()
    assert status["loaded_models"] == [] and status["auth_required"] is False
    with httpx.Client(base_url=service_url, timeout=60) as first:
        assert first.post("/api/load_model", json={"model_id": service_model_id}).status_code == 200
        job_id = first.post("/api/video", files={"file": ("belt.mp4", tiny_video.read_bytes())},
                            data={"threshold": "0.5"}).json()["job_id"]
    # the client that sent the video is gone; another one follows the job to its end
    with httpx.Client(base_url=service_url, timeout=60) as second:
        deadline = time.monotonic() + 120
        while (state := second.get(f"/api/jobs/{job_id}").json())["state"] not in ("done", "failed"):
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        assert state["state"] == "done" and state["frames_done"] == 12
        assert second.get(state["video_url"]).status_code == 200
