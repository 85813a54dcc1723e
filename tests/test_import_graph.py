"""The modules of ``pymm`` import each other without a cycle, counting every import: at module
level, inside functions, and under ``TYPE_CHECKING`` (a cycle hidden there is still two
modules that each need the other to be understood)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pymm"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The pymm modules ``name`` imports. ``from pymm import x`` names module ``pymm.x`` when
    there is one, else the package; a package's own ``__init__`` is not its child's import."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    # `if __name__ == "__main__":` runs only as a script: no dependency of the module.
    tree.body = [n for n in tree.body if not _is_main_block(n)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in known else base)
    return {m for m in found if m in known and m != name}


def _is_main_block(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
    )


def graph() -> dict[str, set[str]]:
    mods = modules()
    # The compiled engine is a module too (its stub tells its name); it imports nothing of pymm.
    compiled = {module_name(p) for p in PACKAGE.rglob("*.pyi")}
    known = set(mods) | compiled
    edges = {name: imports_of(name, path, known) for name, path in mods.items()}
    return edges | {name: set() for name in compiled - set(mods)}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_pymm_has_no_import_cycle() -> None:
    edges = graph()
    # The graph is real: the package's modules and their known one-way edges are in it.
    assert "pymm.manager" in edges["pymm.agent"]
    assert "pymm.metrics" in edges["pymm.manager"]
    cycle = find_cycle(edges)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_agent_does_not_import_the_cli() -> None:
    edges = graph()
    reach: set[str] = set()
    todo = ["pymm.agent"]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in reach:
                reach.add(nxt)
                todo.append(nxt)
    assert not {m for m in reach if m.startswith("pymm.commands") or m == "pymm.cli"}


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
