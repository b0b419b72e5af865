"""benchmarks/bench_train.py: its --device is checked like the video commands' (one line, exit 2)."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from tests.helpers import REPO


@pytest.fixture
def bench_train(monkeypatch):
    """The benchmark script as a module (benchmarks/ is a script folder)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_train", REPO / "benchmarks" / "bench_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_auto_device_is_cuda_when_present_else_cpu(bench_train) -> None:
    """--device auto (the default) resolves to the device training would use."""
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert bench_train.parse_args([]).device.type == expected
    assert bench_train.parse_args(["--device", "cpu"]).device == torch.device("cpu")


@pytest.mark.parametrize("device, message", [
    ("tpu", "--device tpu: not a device"),
    pytest.param("cuda", "--device cuda: CUDA is not available", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="CUDA is present here")),
])
def test_bad_device_is_a_usage_error(bench_train, device: str, message: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A device that is not one, or CUDA on a machine without it: exit 2 and a line naming the flag."""
    with pytest.raises(SystemExit) as stop:
        bench_train.parse_args(["--device", device])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_compile_takes_main_py_modes(bench_train, capsys: pytest.CaptureFixture[str]) -> None:
    """--compile takes main.py's modes (default auto, as training) and refuses others with exit 2."""
    assert bench_train.parse_args([]).compile == "auto"
    assert bench_train.parse_args(["--compile", "off"]).compile == "off"
    with pytest.raises(SystemExit) as stop:
        bench_train.parse_args(["--compile", "maybe"])
    assert stop.value.code == 2 and "--compile" in capsys.readouterr().err
