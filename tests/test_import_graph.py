"""The layering of harness/ and tricks/: no import cycles (imports inside functions
included), no private name imported across modules, no test hooks in production code."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "tricks")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages."""
    mods = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
    return mods


def _imports(name: str, path: Path) -> list[tuple[str, str | None]]:
    """(imported module or module.attr, imported name) for every import statement, anywhere."""
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            out += [(f"{base}.{a.name}", a.name) for a in node.names] + [(base, None)]
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports (a name from a package counts as the
    package unless the name is a submodule)."""
    mods = _modules()

    def resolve(target: str) -> str | None:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for target, _ in _imports(m, path):
            dep = resolve(target)
            if dep and dep != m:
                graph[m].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_cycle_finder_finds_a_known_cycle():
    """The finder itself: a -> b -> c -> a is one cycle, d hangs off it and is not in it."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    """harness/ and tricks/ import each other without a cycle, function-level imports included."""
    graph = import_graph()
    assert len(graph) > 50  # the walk found the packages
    assert cycles(graph) == []


def test_no_private_names_across_modules():
    """No module imports a _private name from another module of the project."""
    bad = []
    for m, path in _modules().items():
        for target, name in _imports(m, path):
            if name and name.startswith("_") and not name.startswith("__") \
                    and target.split(".")[0] in PACKAGES:
                bad.append(f"{m}: {target}")
    assert bad == []


def test_no_test_hooks_in_production_code():
    """No HARNESS_TEST_* switch (or other test seam read from the environment) in the packages."""
    hits = [str(p.relative_to(ROOT)) for p in _modules().values() if "HARNESS_TEST_" in p.read_text()]
    assert hits == []
