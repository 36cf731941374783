"""Dependencies point one way: protocol <- server (engines) <- deployments
<- tools, and the clients beside them on the protocol only. Checked on
every import statement of every module, function-level ones included."""

from __future__ import annotations

import ast
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
    "server": {"protocol", "server"},
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
