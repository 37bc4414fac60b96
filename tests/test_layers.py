"""The rooms of ``trodo_trace._internal`` keep their order: imports point downward only, with no loops.

Read from the source (module-level and function-level imports; ``TYPE_CHECKING`` blocks are types
only), so a deferred import cannot hide an upward reference.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "trodo_trace"

#: Bottom to top. A module may import its own room and the rooms below it.
RANKS = {
    "core": 0,
    "config": 0,
    "version": 0,
    "export": 1,
    "store": 2,  # stores trodo's own spans with export's attribute validation
    "lifecycle": 1,
    "runtime": 3,
    "display": 4,
    "propagation": 4,
    "api": 5,
    "events": 6,
    "transfer": 7,
}
TOP = 9  # outside _internal (callbacks, integrations, ui, cli, testing) and the CLI's demo


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _imports(modules: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """Each module's imports of other trodo_trace modules."""
    edges: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for node in ast.walk(block)
        }
        targets = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                candidates = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                    for alias in node.names
                ]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            for candidate in candidates:
                while candidate and candidate not in modules:
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name:
                    targets.add(candidate)
        edges[name] = targets
    return edges


def _rank(module: str) -> tuple[str, int]:
    parts = module.split(".")
    if len(parts) < 3 or parts[1] != "_internal" or parts[2] == "demo":
        return module, TOP
    return parts[2], RANKS[parts[2]]


def test_every_internal_module_is_in_a_ranked_room():
    """Each module under _internal belongs to a room this test ranks (a new room must be placed)."""
    rooms = {module.split(".")[2] for module in _modules() if module.startswith("trodo_trace._internal.")}
    assert rooms - {"demo"} <= set(RANKS), rooms - set(RANKS) - {"demo"}


def test_the_dashboard_is_imported_by_no_internal_room():
    """trodo_trace.ui (the web app) sits on top: nothing under _internal imports it, and importing
    trodo_trace loads no web stack."""
    edges = _imports(_modules())
    users = sorted(
        m
        for m, targets in edges.items()
        if m.startswith("trodo_trace._internal.") and any(t.startswith("trodo_trace.ui") for t in targets)
    )
    assert users == []
    ui_init = ast.parse((PACKAGE / "ui" / "__init__.py").read_text(encoding="utf-8"))
    top_level = [n for n in ui_init.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not [
        ast.unparse(n) for n in top_level if "starlette" in ast.unparse(n) or "uvicorn" in ast.unparse(n)
    ]


def test_imports_point_downward():
    """No module imports a room above its own (the span layer never imports display, the runtime or export)."""
    upward = [
        f"{module} -> {target}"
        for module, targets in _imports(_modules()).items()
        for target in targets
        if _rank(module)[1] < TOP
        and _rank(module)[0] != _rank(target)[0]
        and _rank(module)[1] <= _rank(target)[1]
    ]
    assert not upward, upward


def test_no_import_loops():
    """No chain of imports among trodo_trace modules leads back to where it started."""
    edges = _imports(_modules())
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    loops = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                loops.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not loops, loops
