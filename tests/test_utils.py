"""Small utilities: atomic writes keep a normal file mode; the shared command-line error handling."""
from __future__ import annotations

import os
import stat

import click
import pytest

import utils


def test_atomic_write_gives_the_mode_a_plain_open_would(tmp_path):
    old = os.umask(0o022)
    try:
        utils.atomic_write_text(tmp_path / "report.json", "{}\n")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "report.json").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o644
    assert (tmp_path / "report.json").read_text() == "{}\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


class UserMistake(ValueError):
    pass


@click.command()
@click.option("--what", type=click.Choice(["ok", "code", "user", "oserror", "bug", "interrupt"]), required=True)
def toy(what: str) -> int:
    if what == "code":
        raise click.exceptions.Exit(3)
    if what == "user":
        raise UserMistake("--what user: first line\n  second line")
    if what == "oserror":
        raise PermissionError(13, "Permission denied", "/somewhere/out.mp4")
    if what == "bug":
        raise KeyError("not a user error")
    if what == "interrupt":
        raise KeyboardInterrupt
    return 0


@pytest.mark.parametrize("what, code, message", [
    ("ok", 0, None),
    ("code", 3, None),
    ("user", 2, "error: --what user: first line second line"),
    ("oserror", 2, "error: /somewhere/out.mp4: Permission denied; choose a writable --out"),
    ("nonsense", 2, "error: Invalid value for '--what'"),
    ("interrupt", 130, "interrupted"),
])
def test_run_command_exit_codes_and_one_line_errors(capsys, what, code, message):
    assert utils.run_command(toy, ["--what", what], (UserMistake,), "choose a writable --out") == code
    err = capsys.readouterr().err.strip().splitlines()
    if message is None:
        assert err == []
    else:
        assert len(err) == 1 and err[0].startswith(message), err


def test_run_command_lets_bugs_keep_their_traceback():
    with pytest.raises(KeyError):
        utils.run_command(toy, ["--what", "bug"], (UserMistake,))
