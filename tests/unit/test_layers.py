"""The import graph of `provider/`: each layer imports only the layers below it, and no module
imports itself back through others (every import counted, also those inside functions and under
TYPE_CHECKING)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# layer -> the layers it may import (besides itself). Bottom to top.
ALLOWED: dict[str, set[str]] = {
    "wit": set(),
    "nats": set(),
    "common": {"wit"},
    "observability": {"common", "wit"},
    "wrpc": {"wit", "nats", "common"},
    "postgres": {"wit", "common"},
    "lattice": {"wrpc", "nats", "wit", "common"},
    "sqldb": {"postgres", "lattice", "wrpc", "nats", "wit", "common", "observability"},
    "__main__": {"sqldb", "lattice", "observability", "common"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> Iterator[str]:
    """Every `provider...` module `path` imports, wherever in the file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in (ROOT / "provider").rglob("*.py")}
    return {
        name: {target for target in imported(path) if target in modules and target != name}
        for name, path in modules.items()
    }


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__main__"


def test_every_module_is_in_a_named_layer() -> None:
    assert {layer(module) for module in graph()} - {"provider"} <= set(ALLOWED) | {"__init__"}


def test_no_layer_imports_upward_or_sideways() -> None:
    wrong = sorted(
        f"{source} imports {target}"
        for source, targets in graph().items()
        for target in targets
        if layer(source) != layer(target) and layer(target) not in ALLOWED.get(layer(source), set())
    )
    assert not wrong, "\n".join(wrong)


def test_the_product_never_imports_tooling() -> None:
    tooling = ("host_shim", "tests", "bench", "provider_archive", "components")
    for path in (ROOT / "provider").rglob("*.py"):
        for target in imported(path):
            assert not target.startswith(tooling), f"{module_name(path)} imports {target}"


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
