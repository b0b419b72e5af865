"""errors.py: the first line of an error, one UserError base for every error a command shows in one line."""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import click
import pytest

import errors
import utils
from errors import UserError, first_line
from tests.helpers import REPO

_SETUP = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
TOP_LEVEL_MODULES = tuple(_SETUP["py-modules"])  # every module and package the project installs
PACKAGES = tuple(_SETUP["packages"])
SCRIPT_FOLDERS = ("onnx",)  # no __init__.py (it would shadow the onnx package): loaded by file
# ValueError subclasses that only wrong calls from code can raise: a bug, which keeps its traceback.
NOT_USER_ERRORS = {"loss.FocalLossInputError"}


@pytest.mark.parametrize("message, expected", [
    ("--fps 0: must be positive", "--fps 0: must be positive"),
    ("first line\nsecond line\nthird", "first line"),
    ("\n\n   \n  cannot read x.png  \nTraceback ...", "cannot read x.png"),
    ("  padded  ", "padded"),
])
def test_first_line_is_the_first_non_empty_line_stripped(message, expected):
    assert first_line(ValueError(message)) == expected


@pytest.mark.parametrize("error", [KeyError(), RuntimeError(""), OSError(" \n\t\n ")])
def test_first_line_of_an_empty_message_is_the_type_name(error):
    assert first_line(error) == type(error).__name__


def test_first_line_of_a_key_error_keeps_its_quotes():
    assert first_line(KeyError("discriminator")) == "'discriminator'"


def _script_module(path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A script (a file outside any package) imported under a private name, for this test only."""
    spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _project_modules(monkeypatch: pytest.MonkeyPatch) -> list[ModuleType]:
    """Every module of the toolkit: top-level modules, package modules and the ONNX scripts."""
    modules = [importlib.import_module(name) for name in TOP_LEVEL_MODULES]
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        modules.append(package)
        modules += [importlib.import_module(info.name)
                    for info in pkgutil.iter_modules(package.__path__, f"{package_name}.")]
    for folder in SCRIPT_FOLDERS:
        modules += [_script_module(path, monkeypatch) for path in sorted((REPO / folder).glob("*.py"))]
    return modules


def _value_error_classes(monkeypatch: pytest.MonkeyPatch) -> dict[str, type]:
    """'<module file stem>.<class name>' -> class, for each *Error class a project module defines that is a
    ValueError."""
    found = {}
    for module in _project_modules(monkeypatch):
        for name, obj in vars(module).items():
            if (isinstance(obj, type) and name.endswith("Error") and issubclass(obj, ValueError)
                    and obj.__module__ == module.__name__):
                found[f"{module.__name__.rsplit('.', 1)[-1].removeprefix('_script_')}.{name}"] = obj
    return found


def test_every_error_a_command_shows_in_one_line_is_a_user_error(monkeypatch):
    classes = _value_error_classes(monkeypatch)
    assert {"common.ConfigError", "base.CheckpointError", "base.DatasetError",
            "video_io.VideoError", "runner.RunError", "ort.InputError", "onnx_export.OnnxModelError",
            "inference_orchestrator.SelectionError", "surface_bytetrack.TrackingError",
            "utils.ResultsTableError", "loss.FocalLossInputError"} <= set(classes)
    not_user_errors = sorted(name for name, cls in classes.items() if not issubclass(cls, UserError))
    assert not_user_errors == sorted(NOT_USER_ERRORS)


class Mistake(UserError):
    """A user error of a toy command."""


@click.command()
@click.option("--what", type=click.Choice(["user", "bug", "empty"]), required=True)
def toy(what: str) -> None:
    """Raises what it is told to."""
    if what == "user":
        raise Mistake("--what user: not allowed\n  second line with details")
    if what == "empty":
        raise Mistake()
    raise RuntimeError("a bug")


@pytest.mark.parametrize("what, shown", [
    ("user", "error: --what user: not allowed"),
    ("empty", "error: Mistake"),
])
def test_run_command_shows_a_user_error_as_its_first_line_and_exits_2(capsys, what, shown):
    assert utils.run_command(toy, ["--what", what]) == 2
    assert capsys.readouterr().err.splitlines() == [shown]


def test_run_command_lets_any_other_error_raise_with_its_traceback():
    with pytest.raises(RuntimeError, match="a bug"):
        utils.run_command(toy, ["--what", "bug"])


def test_user_errors_are_still_value_errors():
    with pytest.raises(ValueError):
        raise Mistake("old `except ValueError` blocks keep catching it")


def test_run_script_gives_argparse_scripts_the_one_line_error_and_exit_2(capsys):
    def bad() -> int:
        raise errors.UserError("--frames 0: must be at least 1\nsecond line")

    def boom() -> int:
        raise RuntimeError("a bug")

    assert errors.run_script(bad) == 2
    assert capsys.readouterr().err == "error: --frames 0: must be at least 1\n"
    assert errors.run_script(lambda: None) == 0 and errors.run_script(lambda: 3) == 3
    with pytest.raises(RuntimeError, match="a bug"):
        errors.run_script(boom)
