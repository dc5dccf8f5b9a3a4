"""The layout the brief asks for, checked on the source: small modules and one dependency
direction (routes -> jobs -> workers -> engine -> model_registry; api_schemas for routes
only)."""

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


def _runtime_imports(path: Path) -> set[str]:
    """As `_imports`, less what sits under `if TYPE_CHECKING:` (never imported at run time)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


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
    # The device worker and pool know no HTTP; the job system above them replays requests
    # through the ASGI app, so it may use starlette, but neither routes nor FastAPI.
    ("service.workers", ("service.jobs", "service.routes", "service.app", "api_schemas")),
    ("service.workers", ("fastapi", "starlette")),
    ("service.jobs", ("service.routes", "service.app", "fastapi", "api_schemas")),
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


# The method registry imports every module of its package with pkgutil: edges the AST
# cannot see, added by hand so that a method importing the registry's callers is a loop.
DYNAMIC = {"service.engine.attribution.methods.registry": "service/engine/attribution/methods"}


def _import_graph() -> dict[str, set[str]]:
    paths = {_name(p).removesuffix(".__init__"): p for p in _modules(*PACKAGES)}
    graph = {m: {i for i in _runtime_imports(p) if i in paths} - {m} for m, p in paths.items()}
    for module, folder in DYNAMIC.items():
        graph[module] |= {_name(p) for p in _modules(folder) if p.stem != "__init__"} - {module}
    return graph


def _loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                found.append(sorted([*component, node]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_loop() -> None:
    """A loop (plan -> method registry -> a method -> plan, as once) makes the import order
    decide whether a module finds its names; none is allowed, run-time imports included."""
    graph = _import_graph()
    assert (
        "service.engine.attribution.methods.cam"
        in graph["service.engine.attribution.methods.registry"]
    )
    assert _loops(graph) == []


def test_the_loop_check_finds_a_loop() -> None:
    assert _loops({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
