"""Every public top-level name of the project is used by the project's own code, not by tests alone.

A name counts as used when some non-test file (the project's modules, its scripts and the benchmark
scripts) mentions it outside import statements and `__all__` lists, beyond its definition (its own
module's calls count). Entry points (`main`, `cli`) and
loggers are left out. A helper only tests need belongs in the tests (tests/helpers.py).
"""
from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tests.test_imports import ROOT, project_files

ENTRY_POINTS = {"main", "cli", "LOGGER"}


def code_without_imports(text: str) -> str:
    """The file's text without its import statements and `__all__` assignments (by line ranges)."""
    skipped: set[int] = set()
    for node in ast.parse(text).body:
        names = [t.id for t in node.targets if isinstance(t, ast.Name)] if isinstance(node, ast.Assign) else []
        if isinstance(node, (ast.Import, ast.ImportFrom)) or "__all__" in names:
            skipped.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    for node in ast.walk(ast.parse(text)):  # function-level imports too
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            skipped.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return "\n".join(line for number, line in enumerate(text.splitlines(), 1) if number not in skipped)


def public_names(text: str) -> list[str]:
    """Top-level functions, classes and assigned names not starting with an underscore."""
    names: list[str] = []
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in names if not n.startswith("_") and n not in ENTRY_POINTS]


def unused_public_names(files: dict[str, Path], users: Sequence[Path] = ()) -> list[str]:
    """`module: name` for each public name of `files` that no non-test code (the files and `users`,
    e.g. the benchmark scripts) mentions beyond its definition."""
    texts = {module: path.read_text(encoding="utf-8") for module, path in files.items()}
    bodies = [*texts.values(), *(path.read_text(encoding="utf-8") for path in users)]
    mentions = Counter(word for text in bodies for word in re.findall(r"\w+", code_without_imports(text)))
    return sorted(f"{module}: {name}" for module, text in texts.items() for name in public_names(text)
                  if mentions[name] <= 1)


def test_unused_public_names_finds_a_name_only_its_definition_mentions(tmp_path):
    (tmp_path / "a.py").write_text("import b\n__all__ = ['used', 'lonely']\n\ndef used():\n    pass\n\n"
                                   "def lonely():\n    pass\n\ndef _private():\n    pass\n")
    (tmp_path / "b.py").write_text("from a import lonely\n\ndef caller():\n    return used()\n\ncaller()\n")
    files = {"a": tmp_path / "a.py", "b": tmp_path / "b.py"}
    assert unused_public_names(files) == ["a: lonely"]  # imported by b, but never called


def test_every_public_name_is_used_outside_the_tests():
    unused = unused_public_names(project_files(ROOT), sorted((ROOT / "benchmarks").glob("*.py")))
    assert unused == [], "public names only tests (or nobody) use: " + "; ".join(unused)
