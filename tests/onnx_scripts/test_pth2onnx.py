"""onnx/pth2onnx.py: the export command, its one-line errors (exit 2)."""
from __future__ import annotations

import importlib.util
import json

from inference import onnx_export
from tests.helpers import one_line_error


def test_pth2onnx_bad_model_dir_and_options_exit_2(pth2onnx, tiny_model, tmp_path, capsys):
    assert pth2onnx.cli(["--model_path", str(tmp_path / "missing"), "--class_name", "x"]) == 2
    assert "model directory not found" in one_line_error(capsys)
    assert pth2onnx.cli(["--model_path", str(tiny_model.model_path), "--class_name", "mvtec_nope"]) == 2
    assert "mvtec_toy" in one_line_error(capsys)
    args = ["--model_path", str(tiny_model.model_path), "--class_name", tiny_model.class_name]
    assert pth2onnx.cli([*args, "--batch", "2", "--dynamic_batch"]) == 2
    assert "--dynamic_batch" in one_line_error(capsys)
    assert pth2onnx.cli([*args, "--opset", "9", "--output", str(tmp_path / "m.onnx")]) == 2
    assert "--opset 9" in one_line_error(capsys)
    assert pth2onnx.cli([*args, "--form", "dense"]) == 2
    one_line_error(capsys)
    assert pth2onnx.cli([*args, "--batch", "0", "--output", str(tmp_path / "b0.onnx")]) == 2
    assert "--batch" in one_line_error(capsys)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert pth2onnx.cli([*args, "--output", str(blocker / "m.onnx")]) == 2
    assert "writable --output" in one_line_error(capsys)
    assert not list(tmp_path.glob("*.onnx*"))


def test_pth2onnx_cli_writes_model_and_sidecar(pth2onnx, tiny_model, tmp_path, caplog):
    out = tmp_path / "sub" / "m.onnx"
    args = ["--model_path", str(tiny_model.class_dir), "--output", str(out), "--dynamic_batch", "--simplify"]
    assert pth2onnx.cli(args) == 0
    assert out.is_file() and onnx_export.sidecar_path(out).is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx", "m.onnx.json"]  # no temp files left
    simplified = json.loads(onnx_export.sidecar_path(out).read_text())["simplified"]
    if importlib.util.find_spec("onnxsim") is None:
        assert not simplified and "onnxsim is not installed" in caplog.text
    import onnx

    onnx.checker.check_model(onnx.load(str(out)))
