"""ServiceConfig: checked once, one-line errors naming the flag; the token rule; defaults shared with the commands."""
from __future__ import annotations

from pathlib import Path

import pytest

from inference.cli import DEFAULT_OUTPUT_ROOT
from inference.inference_orchestrator import DEFAULT_RESULTS_PATH
from service import config as service_config
from service.config import ServiceConfig, ServiceConfigError, token_from


def test_defaults_are_the_commands_and_bind_loopback_only(tmp_path):
    assert service_config.DEFAULT_RESULTS_PATH == DEFAULT_RESULTS_PATH
    assert service_config.DEFAULT_JOBS_DIR == Path(DEFAULT_OUTPUT_ROOT) / "service_jobs"
    config = ServiceConfig(results_path=tmp_path, device="cpu")
    assert config.host == "127.0.0.1" and config.loopback and config.token is None
    assert config.max_upload_bytes == 20 * 1024 * 1024 and config.device_type == "cpu"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_a_public_host_needs_a_token(tmp_path, host):
    with pytest.raises(ServiceConfigError, match=f"--host {host}: .*--token or set GLASS_SERVICE_TOKEN"):
        ServiceConfig(results_path=tmp_path, host=host)
    with pytest.raises(ServiceConfigError):
        ServiceConfig(results_path=tmp_path, host=host, token="")  # an empty token is none
    assert ServiceConfig(results_path=tmp_path, host=host, token="t", device="cpu").token == "t"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_hosts_need_no_token(tmp_path, host):
    assert ServiceConfig(results_path=tmp_path, host=host, device="cpu").loopback


def test_the_token_comes_from_the_flag_else_the_environment():
    assert token_from("flag", {"GLASS_SERVICE_TOKEN": "env"}) == "flag"
    assert token_from(None, {"GLASS_SERVICE_TOKEN": "env"}) == "env"
    assert token_from(None, {"GLASS_SERVICE_TOKEN": ""}) is None and token_from(None, {}) is None


@pytest.mark.parametrize("changes, needle", [
    ({"results_path": "missing"}, "--results_path missing: folder not found"),
    ({"port": -1}, "--port -1"),
    ({"max_upload_mb": 0.0}, "--max_upload_mb 0.0"),
    ({"max_upload_mb": float("nan")}, "--max_upload_mb nan"),
    ({"max_pixels": 0}, "--max_pixels 0"),
    ({"backend": "tensorrt"}, "--backend tensorrt"),
    ({"device": "tpu"}, "--device tpu"),
])
def test_bad_settings_name_their_flag(tmp_path, monkeypatch, changes, needle):
    monkeypatch.chdir(tmp_path)
    from errors import UserError

    with pytest.raises(UserError) as error:
        ServiceConfig(**{"results_path": tmp_path, **changes})
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_the_token_stays_out_of_the_repr(tmp_path):
    assert "s3cret" not in repr(ServiceConfig(results_path=tmp_path, token="s3cret", device="cpu"))
