"""The layout the brief asks for, checked on the source: small modules and one dependency
direction (routes -> workers -> engine -> model_registry; api_schemas for routes only)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "model_registry", "api_schemas")
MAX_LINES = 300


def _modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every module name `path` imports (absolute imports; the code base uses no others)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_no_module_is_over_300_lines() -> None:
    long = {
        _name(p): n
        for p in _modules(*PACKAGES)
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


# (importing package, packages it must never import)
RULES = [
    ("model_registry", ("service", "api_schemas", "fastapi")),
    ("service.engine", ("service.workers", "service.routes", "service.app", "fastapi")),
    ("service.engine", ("api_schemas",)),
    ("service.workers", ("service.routes", "service.app", "fastapi", "api_schemas")),
    ("api_schemas", ("torch", "service", "model_registry")),
]


@pytest.mark.parametrize(("package", "forbidden"), RULES)
def test_dependencies_point_one_way(package: str, forbidden: tuple[str, ...]) -> None:
    folder = ROOT.joinpath(*package.split("."))
    found = {
        _name(p): sorted(i for i in _imports(p) if i.startswith(forbidden))
        for p in _modules(str(folder.relative_to(ROOT)))
    }
    assert {m: i for m, i in found.items() if i} == {}


def test_no_route_module_imports_another() -> None:
    routers = {
        _name(p)
        for p in _modules("service/routes")
        if "APIRouter(" in p.read_text(encoding="utf-8")
    }
    assert len(routers) >= 10
    crossing = {
        module: sorted(routers & {i.rpartition(".")[0] for i in imports} | (routers & imports))
        for module in routers
        if (imports := _imports(ROOT / (module.replace(".", "/") + ".py")))
    }
    assert {m: i for m, i in crossing.items() if set(i) - {m}} == {}
