"""The project's modules import each other without a cycle.

Every import statement of every project file counts, at module level and inside functions alike
(a function-level import hides a cycle rather than removing it). An edge goes from a module to the
project module an import names, the longest dotted prefix that is one: `from pkg import mod` goes to
`pkg.mod` when that is a module, else to `pkg`; `import pkg.mod` to `pkg.mod`. Third-party imports are
left out.
"""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT_FOLDERS = ("onnx",)  # script folders without __init__.py: their files import, nobody imports them

Graph = dict[str, set[str]]


def project_files(root: Path) -> dict[str, Path]:
    """Module name -> file of the packages and top-level modules listed in pyproject.toml, and the scripts."""
    setup = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    files = {name: root / f"{name}.py" for name in setup["py-modules"]}
    for package in setup["packages"]:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for folder in SCRIPT_FOLDERS:
        for path in sorted((root / folder).glob("*.py")):
            files[f"{folder}/{path.name}"] = path  # a path, not a dotted name: `import onnx` is the library
    return files


def imported_names(module: str, path: Path) -> list[str]:
    """Absolute dotted names the file's import statements name (`from a import b`: a.b)."""
    is_package = path.name == "__init__.py"
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[:len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*package, base] if base else package)
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def import_graph(files: dict[str, Path]) -> Graph:
    """Module -> the project modules it imports."""
    graph: Graph = {}
    for module, path in files.items():
        targets = set()
        for name in imported_names(module, path):
            parts = name.split(".")
            prefixes = (".".join(parts[:end]) for end in range(len(parts), 0, -1))
            target = next((prefix for prefix in prefixes if prefix in files), None)
            if target is not None and target != module:
                targets.add(target)
        graph[module] = targets
    return graph


def find_cycle(graph: Graph) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None when the graph has none (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_returns_the_cycle_and_none_without_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_import_graph_counts_function_level_and_relative_imports(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("import os\nfrom pkg import b\n")
    (tmp_path / "pkg" / "b.py").write_text("def late():\n    from . import c\n")
    (tmp_path / "pkg" / "c.py").write_text("import pkg.a\nimport top\n")
    (tmp_path / "top.py").write_text("from pkg.b import late\n")
    files = {"pkg": tmp_path / "pkg" / "__init__.py", "top": tmp_path / "top.py",
             **{f"pkg.{name}": tmp_path / "pkg" / f"{name}.py" for name in "abc"}}
    graph = import_graph(files)
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"},
                     "pkg.c": {"pkg.a", "top"}, "top": {"pkg.b"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_project_modules_import_without_a_cycle():
    files = project_files(ROOT)
    assert {"inference.engine", "datasets.base", "main", "onnx/pth2onnx.py"} <= set(files)
    cycle = find_cycle(import_graph(files))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# The layers of docs/architecture.md, lowest first; a module imports only from its own layer or lower ones.
LAYERS: dict[str, tuple[str, ...]] = {
    "foundations": ("errors", "paths", "utils", "drawing", "preprocess", "perlin"),
    "model": ("backbones", "common", "model", "loss", "metrics", "methods"),
    "data": ("datasets",),
    "measuring": ("size_analyzer", "defect_tracking"),
    "runtime": ("inference.model_info", "inference.backends", "inference.onnx_export", "inference.onnx_runtime",
                "inference.engine", "inference.calibration"),
    "training": ("glass", "evaluation", "fitting", "scale_out"),
    "video": ("video_io", "inference.runner", "inference.cli", "inference.renderers", "inference.modes",
              "inference.tracking_run", "inference.calibrate_surface", "temporal"),
    "commands": ("main", "inference", "onnx/", "preprocessing", "service"),
}


def layer_of(module: str) -> int:
    """Index in LAYERS of the layer holding `module` (the longest listed prefix decides)."""
    best, found = -1, None
    for index, prefixes in enumerate(LAYERS.values()):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".") or module.startswith(prefix)
                    and prefix.endswith("/")) and len(prefix) > best:
                best, found = len(prefix), index
    if found is None:
        raise AssertionError(f"{module} is in no layer of docs/architecture.md")
    return found


def test_layer_of_takes_the_longest_prefix():
    assert layer_of("inference.engine") == list(LAYERS).index("runtime")
    assert layer_of("inference.video_inference") == list(LAYERS).index("commands")
    assert layer_of("size_analyzer.measure") == list(LAYERS).index("measuring")
    assert layer_of("onnx/ort.py") == list(LAYERS).index("commands")


def test_modules_import_only_their_own_or_lower_layers():
    graph = import_graph(project_files(ROOT))
    upward = sorted(f"{module} -> {target}" for module, targets in graph.items() for target in targets
                    if layer_of(target) > layer_of(module))
    assert upward == [], "imports from a higher layer of docs/architecture.md: " + "; ".join(upward)
