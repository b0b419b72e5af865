"""Small utilities: atomic writes keep a normal file mode; the shared command-line error handling."""
from __future__ import annotations

import os
import stat

import click
import pytest

import utils
from errors import UserError


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


class UserMistake(UserError):
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
    ("user", 2, "error: --what user: first line"),
    ("oserror", 2, "error: /somewhere/out.mp4: Permission denied; choose a writable --out"),
    ("nonsense", 2, "error: Invalid value for '--what'"),
    ("interrupt", 130, "interrupted"),
])
def test_run_command_exit_codes_and_one_line_errors(capsys, what, code, message):
    assert utils.run_command(toy, ["--what", what], "choose a writable --out") == code
    err = capsys.readouterr().err.strip().splitlines()
    if message is None:
        assert err == []
    else:
        assert len(err) == 1 and err[0].startswith(message), err


def test_run_command_lets_bugs_keep_their_traceback():
    with pytest.raises(KeyError):
        utils.run_command(toy, ["--what", "bug"])


def _row(cls: str, value: float, selection: str = "last", epoch: int = 1, method: str = "glass") -> dict:
    return {"method": method, "class": cls, **{name: value for name in utils.METRIC_NAMES}, "epoch": epoch,
            "selection": selection}


def _table(path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


def test_results_csv_merge_keeps_other_rows_and_replaces_in_place(tmp_path):
    path = tmp_path / "results.csv"
    utils.update_results_csv(path, [_row("mvtec_a", 0.1), _row("mvtec_b", 0.2)])
    utils.update_results_csv(path, [_row("mvtec_c", 0.3, "test-best", 7)])
    utils.update_results_csv(path, [_row("mvtec_a", 0.5)])  # replaced where it was
    table = _table(path)
    assert table[0] == ["method", "class", *utils.METRIC_NAMES, "epoch", "selection"]
    assert [r[1] for r in table[1:]] == ["mvtec_a", "mvtec_b", "mvtec_c", "Mean"]
    assert table[1] == ["glass", "mvtec_a", *["0.5000"] * 5, "1", "last"]
    assert table[3] == ["glass", "mvtec_c", *["0.3000"] * 5, "7", "test-best"]  # each row keeps its own rule
    # Mean: every class row of the table, from the values as written; `mixed` when the rules differ.
    assert table[4] == ["glass", "Mean", *["0.3333"] * 5, "", "mixed"]
    assert [r["class"] for r in utils.read_results_csv(path)] == ["mvtec_a", "mvtec_b", "mvtec_c"]


def test_results_csv_keeps_the_mean_rule_when_all_rows_share_it(tmp_path):
    path = tmp_path / "results.csv"
    utils.update_results_csv(path, [_row("x", 0.25, "test-best"), _row("y", 0.75, "test-best")])
    assert _table(path)[-1] == ["glass", "Mean", *["0.5000"] * 5, "", "test-best"]


def test_results_csv_keys_rows_by_method_and_class_with_a_mean_per_method(tmp_path):
    path = tmp_path / "results.csv"
    utils.update_results_csv(path, [_row("mvtec_a", 0.2), _row("mvtec_a", 0.6, method="patchcore")])
    utils.update_results_csv(path, [_row("mvtec_b", 0.4, method="patchcore"), _row("mvtec_a", 0.8, method="padim")])
    utils.update_results_csv(path, [_row("mvtec_a", 0.1, method="patchcore")])  # replaces patchcore's row only
    table = _table(path)
    assert [r[:3] for r in table[1:]] == [
        ["glass", "mvtec_a", "0.2000"], ["patchcore", "mvtec_a", "0.1000"], ["patchcore", "mvtec_b", "0.4000"],
        ["padim", "mvtec_a", "0.8000"], ["glass", "Mean", "0.2000"], ["patchcore", "Mean", "0.2500"],
        ["padim", "Mean", "0.8000"]]


def test_a_table_written_before_the_method_column_reads_as_glass_rows(tmp_path):
    path = tmp_path / "results.csv"
    old_header = ",".join(("class", *utils.METRIC_NAMES, "epoch", "selection"))
    path.write_text(f"{old_header}\nmvtec_a,{','.join(['0.7000'] * 5)},3,last\nMean,{','.join(['0.7000'] * 5)},,last\n")
    assert [(r["method"], r["class"]) for r in utils.read_results_csv(path)] == [("glass", "mvtec_a")]
    utils.update_results_csv(path, [_row("mvtec_a", 0.3, method="patchcore")])
    assert [r[:3] for r in _table(path)[1:]] == [["glass", "mvtec_a", "0.7000"], ["patchcore", "mvtec_a", "0.3000"],
                                                 ["glass", "Mean", "0.7000"], ["patchcore", "Mean", "0.3000"]]


@pytest.mark.parametrize("content", [
    "class,image_auroc\nmvtec_a,0.5\n",  # another header
    "class,image_auroc,image_ap,pixel_auroc,pixel_ap,pixel_pro,epoch,selection\nmvtec_a,0.5,0.5,0.5\n",  # truncated
    "class,image_auroc,image_ap,pixel_auroc,pixel_ap,pixel_pro,epoch,selection\nmvtec_a,x,0.5,0.5,0.5,0.5,1,last\n",
    "",
    "\xff\xfe",
])
def test_unreadable_results_csv_is_moved_aside_not_dropped(tmp_path, caplog, content):
    path = tmp_path / "results.csv"
    path.write_bytes(content.encode("latin-1"))
    with caplog.at_level("WARNING", logger="utils"):
        utils.update_results_csv(path, [_row("mvtec_b", 0.2)])
    aside = list(tmp_path.glob("results.csv.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content.encode("latin-1")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and aside[0].name in warnings[0] and "\n" not in warnings[0]
    assert [r["class"] for r in utils.read_results_csv(path)] == ["mvtec_b"]


def test_interrupted_results_write_leaves_the_old_table(tmp_path, monkeypatch):
    path = tmp_path / "results.csv"
    utils.update_results_csv(path, [_row("mvtec_a", 0.1)])
    before = path.read_bytes()

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(utils.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        utils.update_results_csv(path, [_row("mvtec_b", 0.2)])
    assert path.read_bytes() == before
    monkeypatch.undo()
    (tmp_path / ".results.csv.abc123.tmp").write_text("half a tab")  # as a kill -9 during the write leaves
    utils.update_results_csv(path, [_row("mvtec_b", 0.2)])
    assert not list(tmp_path.glob(".results.csv.*.tmp"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.csv.lock"]


@click.command()
@click.option("--count", type=int, default=1, callback=utils.positive)
@click.option("--fps", type=float, default=None, callback=utils.positive)
def counted(count: int, fps: float | None) -> None:
    click.echo(f"{count} {fps}")


@pytest.mark.parametrize("args, code, shown", [
    (["--count", "3", "--fps", "0.5"], 0, "3 0.5"),
    ([], 0, "1 None"),
    (["--count", "0"], 2, "error: Invalid value for '--count': must be > 0, got 0"),
    (["--fps", "-2.5"], 2, "error: Invalid value for '--fps': must be > 0, got -2.5"),
])
def test_positive_accepts_numbers_above_zero_and_nothing(capsys, args, code, shown):
    assert utils.run_command(counted, args) == code
    out = capsys.readouterr()
    assert (out.out if code == 0 else out.err).strip() == shown


@pytest.mark.parametrize(("text", "expected"), [("1", 1), ("12", 12)])
def test_positive_int_reads_integers_above_zero(text, expected):
    assert utils.positive_int(text) == expected


@pytest.mark.parametrize(("text", "reason"), [("0", "must be > 0, got 0"), ("-3", "must be > 0, got -3"),
                                              ("2.5", "not an integer: '2.5'"), ("x", "not an integer: 'x'")])
def test_positive_int_refuses_the_rest_in_one_line(text, reason):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match=reason):
        utils.positive_int(text)


@pytest.mark.parametrize(("parse", "text", "outcome"), [
    (utils.non_negative_int, "0", 0), (utils.non_negative_int, "7", 7), (utils.non_negative_int, "-1", "must be >= 0"),
    (utils.non_negative_int, "1.5", "not an integer"), (utils.positive_float, "2.5e-4", 2.5e-4),
    (utils.positive_float, "0", "must be > 0"), (utils.positive_float, "nan", "must be > 0"),
    (utils.positive_float, "x", "not a number")])
def test_argparse_number_types(parse, text, outcome):
    import argparse

    if isinstance(outcome, str):
        with pytest.raises(argparse.ArgumentTypeError, match=outcome):
            parse(text)
    else:
        assert parse(text) == outcome
