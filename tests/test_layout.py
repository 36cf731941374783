"""Dependencies point one way: server (the engines) <- deployments <- tools,
the protocol beneath deployments, and the clients beside them on the
protocol only; no two modules import each other, however indirectly.
Checked on every import statement of every module, function-level and
``TYPE_CHECKING`` ones included. And the units stay small enough to read:
no hand-written module over 300 lines, no function over 60."""

from __future__ import annotations

import ast
import itertools
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import REPOSITORY

pytestmark = pytest.mark.unit

PACKAGES = {
    "protocol": "protocol",
    "server": "server",
    "deployments": "deployments",
    "clients": "clients",
    "tools": "tools",
}
MAY_IMPORT = {
    "protocol": {"protocol"},
    "server": {"server"},
    "deployments": {"protocol", "server", "deployments"},
    "clients": {"protocol", "clients"},
    "tools": {"protocol", "server", "deployments", "clients", "tools"},
}


def _module_parts(path: Path, package: str) -> list[str]:
    return ["t5electra", package, *path.relative_to(REPOSITORY / PACKAGES[package]).with_suffix("").parts]


def _imports(source: str, module_parts: list[str]) -> set[str]:
    """The t5electra subpackages a module imports (the component after t5electra)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module_parts[: len(module_parts) - node.level]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
        for name in names:
            parts = name.split(".")
            if parts[0] == "t5electra" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_a_package_imports_only_what_lies_beneath_it(package: str) -> None:
    wrong = {}
    for path in sorted((REPOSITORY / PACKAGES[package]).rglob("*.py")):
        if "_pb2" in path.name:
            continue
        bad = _imports(path.read_text(), _module_parts(path, package)) - MAY_IMPORT[package]
        if bad:
            wrong[str(path.relative_to(REPOSITORY))] = sorted(bad)
    assert not wrong, f"imports against the layout: {wrong}"


def test_the_rules_leave_no_cycle() -> None:
    for package, allowed in MAY_IMPORT.items():
        for other in allowed - {package}:
            assert package not in MAY_IMPORT[other], f"{package} and {other} may import each other"


def test_the_check_sees_absolute_relative_and_late_imports() -> None:
    source = (
        "from t5electra.tools import bench\n"
        "from ..clients import Client\n"
        "def f():\n"
        "    import t5electra.deployments.app\n"
    )
    assert _imports(source, ["t5electra", "server", "generator"]) == {"tools", "clients", "deployments"}


def _modules() -> dict[str, Path]:
    """Every hand-written module of the package by dotted name (packages by
    their own name), generated stubs left out."""
    found = {}
    for package in PACKAGES:
        for path in (REPOSITORY / PACKAGES[package]).rglob("*.py"):
            if "_pb2" in path.name:
                continue
            parts = _module_parts(path, package)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _module_imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The modules of the package that ``path`` imports: ``from package
    import module`` names the module, not the package."""
    parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join([*parts[: len(parts) - node.level + 1], node.module or ""]).rstrip(".")
            else:
                base = node.module or ""
            candidates = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in modules:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                found.add(candidate)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    counter = itertools.count()
    found = []

    def visit(node: str) -> Iterator[None]:
        order[node] = low[node] = next(counter)
        stack.append(node)
        for other in graph[node]:
            if other not in order:
                yield from visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], order[other])
        if low[node] == order[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))
        yield

    for node in sorted(graph):
        if node not in order:
            list(visit(node))
    return found


def test_no_module_imports_itself_through_others() -> None:
    modules = _modules()
    graph = {name: _module_imports(path, name, modules) for name, path in modules.items()}
    assert not _cycles(graph), f"import cycles: {_cycles(graph)}"


def test_the_cycle_check_sees_a_cycle_under_type_checking(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    (tmp_path / "b.py").write_text("from . import c\n")
    (tmp_path / "c.py").write_text("from t5electra.server.a import A\n")
    modules = {f"t5electra.server.{n}": tmp_path / f"{n}.py" for n in "abc"}
    graph = {name: _module_imports(path, name, modules) for name, path in modules.items()}
    assert _cycles(graph) == [sorted(modules)]


def test_only_the_compatibility_test_imports_the_stubs_old_home() -> None:
    """``t5electra.clients.v1`` stays for code written against 0.1; the
    project itself imports the stubs from ``t5electra.protocol``."""
    users = [
        str(path.relative_to(REPOSITORY))
        for path in sorted(REPOSITORY.rglob("*.py"))
        if ".venv" not in path.parts
        and "compat" not in path.parts
        and path.name != "test_stubs.py"
        and path.parent.name != "v1"
        and "clients.v1" in path.read_text()
        and path != Path(__file__).resolve()
    ]
    assert not users, users


def _hand_written() -> list[Path]:
    roots = [REPOSITORY / PACKAGES[p] for p in PACKAGES] + [REPOSITORY / "tests"]
    return sorted(
        path
        for root in roots
        for path in root.rglob("*.py")
        if "_pb2" not in path.name and "compat" not in path.relative_to(REPOSITORY).parts
    )


def test_modules_and_functions_stay_short() -> None:
    long_modules, long_functions = {}, {}
    for path in _hand_written():
        source = path.read_text()
        where = str(path.relative_to(REPOSITORY))
        if source.count("\n") > 300:
            long_modules[where] = source.count("\n")
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.end_lineno is None:
                continue
            if (length := node.end_lineno - node.lineno + 1) > 60:
                long_functions[f"{where}:{node.name}"] = length
    assert not long_modules and not long_functions, (long_modules, long_functions)


def _documented_layout() -> dict[str, set[str]]:
    """The names each package's lines of docs/development.md's layout block
    list before their description, by package."""
    text = (REPOSITORY / "docs" / "development.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    named: dict[str, set[str]] = {}
    current = ""
    for line in block.splitlines():
        if not line.strip():
            continue
        head = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        if not line.startswith(" "):
            current = head.rstrip("/")
            named.setdefault(current, set())
        elif not line.startswith("   "):
            named[current].update(name.strip() for name in head.split(","))
    return named


def _hand_written_parts(root: Path) -> set[str]:
    """A package's modules and the subpackages that hold modules of their
    own (``name/``); generated stubs and bare re-export packages left out."""
    parts = {p.name for p in root.glob("*.py") if p.name != "__init__.py" and "_pb2" not in p.name}
    for sub in root.iterdir():
        modules = [p for p in sub.glob("*.py") if p.name != "__init__.py" and "_pb2" not in p.name]
        if sub.is_dir() and (sub / "__init__.py").exists() and modules:
            parts.add(f"{sub.name}/")
    return parts


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_the_documented_layout_names_every_module_and_no_other(package: str) -> None:
    root = REPOSITORY / PACKAGES[package]
    documented = _documented_layout()[PACKAGES[package]]
    undocumented = _hand_written_parts(root) - documented
    gone = {name for name in documented if "*" not in name and not (root / name.rstrip("/")).exists()}
    assert (undocumented, gone) == (set(), set())


def test_every_package_is_installed() -> None:
    """pyproject.toml lists the packages a wheel holds; one left out works
    in a checkout and is missing from an installed server."""
    listed = set(tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(_module_parts(init, package)[:-1])
        for package in PACKAGES
        for init in (REPOSITORY / PACKAGES[package]).rglob("__init__.py")
    }
    assert found == listed
