"""The import directions of ARCHITECTURE.md section 1, read from the source with `ast`.

Layers, bottom to top: `shared/errors.py` and `shared/io.py` (stdlib only) -> `shared/nn` (torch only)
and `shared/tokenizer` (no torch) -> `shared/train` (Lightning) -> the tracks `text_lm`, `vision_lm`
-> `experiments`, `benchmarks`. Each layer imports only layers below it. Every import statement counts,
top-level or inside a function (the lazy imports that keep `--help` fast are imports all the same), so
a rule cannot be dodged by moving an import into a function. Import strings handed to the dispatcher
(`"experiments.ladder.run:main"`) are data, not imports: that is how the library reaches an experiment
without depending on it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shared", "text_lm", "vision_lm", "experiments", "benchmarks")
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module `source` imports, anywhere in the file, as absolute dotted names. For
    `from a import b` both `a` and `a.b` are listed (b may be a submodule); relative imports are
    resolved against `module`."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def project_files() -> dict[str, Path]:
    """Our source files (not the private venvs the benchmarks build beside themselves)."""
    paths = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    return {module_name(p): p for p in paths if not any(part.startswith(".") for part in p.parts)}


FILES = project_files()
IMPORTS = {name: imports(path.read_text(), name, path.name == "__init__.py") for name, path in FILES.items()}


def top(name: str) -> str:
    return name.split(".")[0]


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(modules: str, allowed=None, forbidden=()) -> list[str]:
    """`module imports name` for the modules under `modules` that import outside `allowed` (a
    predicate on the imported name) or inside one of `forbidden` (dotted prefixes)."""
    bad = []
    for name, found in sorted(IMPORTS.items()):
        if not within(name, modules):
            continue
        for imp in sorted(found):
            if (allowed is not None and not allowed(imp)) or any(within(imp, f) for f in forbidden):
                bad.append(f"{name} imports {imp}")
    return bad


def stdlib(imp: str) -> bool:
    return top(imp) in STDLIB


def test_the_scan_sees_function_level_and_relative_imports():
    source = "import os\ndef f():\n    from lightning import Trainer\n    from .rope import x\n"
    found = imports(source, "shared.nn.attention")
    assert {"os", "lightning", "lightning.Trainer", "shared.nn.rope", "shared.nn.rope.x"} <= found
    assert "shared.nn" in imports("from . import rope\n", "shared.nn", is_package=True)
    assert len(FILES) > 50 and "shared.nn.attention" in FILES and "experiments.ladder.run" in FILES


@pytest.mark.parametrize("base", ["shared.errors", "shared.io"])
def test_errors_and_io_are_stdlib_only(base):
    assert violations(base, allowed=stdlib) == []


def test_nn_imports_only_torch_stdlib_and_itself():
    def allowed(imp):
        return stdlib(imp) or top(imp) == "torch" or within(imp, "shared.errors") or within(imp, "shared.nn")

    assert violations("shared.nn", allowed=allowed) == []


def test_tokenizer_imports_no_torch_lightning_nn_or_train():
    assert violations("shared.tokenizer", forbidden=("torch", "lightning", "shared.nn", "shared.train")) == []


def test_shared_imports_neither_track_nor_experiments_nor_benchmarks():
    assert violations("shared", forbidden=("text_lm", "vision_lm", "experiments", "benchmarks")) == []


@pytest.mark.parametrize("track, other", [("text_lm", "vision_lm"), ("vision_lm", "text_lm")])
def test_tracks_never_import_each_other(track, other):
    assert violations(track, forbidden=(other, "experiments", "benchmarks")) == []


def test_experiments_never_import_benchmarks():
    assert violations("experiments", forbidden=("benchmarks",)) == []


def project_edges() -> dict[str, set[str]]:
    """module -> the project modules it imports (a `from a import b` edge goes to a.b when that is a
    module, else to a). A package's own `__init__` is not an edge of its submodules: Python runs it
    first, but it is the package importing its parts, not the parts depending on it."""
    edges = {}
    for name, found in IMPORTS.items():
        targets = {imp for imp in found if imp in FILES}
        edges[name] = {t for t in targets if t != name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_the_project_modules():
    assert find_cycle(project_edges()) is None
