"""The import graph of hubkit/ has no cycle, counting every import: module-level, inside functions and
under TYPE_CHECKING. An import of a hubkit module inside a function is allowed only to keep a heavy library
out of a light command, and says so in a `# lazy: <reason>` comment on its line or the line above."""

from __future__ import annotations

import ast
from pathlib import Path

import hubkit

PACKAGE = Path(hubkit.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imported(node: ast.AST, module: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """The hubkit modules an import statement loads (the deepest module each name resolves to)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - node.level + 1]
            base = ".".join(anchor + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    else:
        return set()
    hits = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name.startswith("hubkit") and name != module:
            hits.add(name)
    return hits


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    unexplained = []
    for module, path in modules.items():
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        in_function = {
            id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) for n in ast.walk(f)
        }
        for node in ast.walk(tree):
            hits = _imported(node, module, path.name == "__init__.py", modules)
            edges[module] |= hits
            if hits and id(node) in in_function:
                here, above = lines[node.lineno - 1], lines[node.lineno - 2]
                if "# lazy:" not in here and "# lazy:" not in above:
                    unexplained.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {here.strip()}")
    return edges, unexplained


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle() -> None:
    edges, _ = _graph()
    assert _cycles(edges) == []


def test_function_level_imports_say_why() -> None:
    _, unexplained = _graph()
    assert unexplained == [], "imports inside functions need a `# lazy: <reason>` comment:\n" + "\n".join(unexplained)


def test_the_cycle_finder_finds_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_relative_and_from_imports_resolve_to_modules() -> None:
    modules = {"hubkit.x": Path(), "hubkit.x.y": Path(), "hubkit.z": Path()}
    node = ast.parse("from . import y").body[0]
    assert _imported(node, "hubkit.x", True, modules) == {"hubkit.x.y"}
    node = ast.parse("from hubkit.x import helper, y").body[0]
    assert _imported(node, "hubkit.z", False, modules) == {"hubkit.x", "hubkit.x.y"}
    node = ast.parse("import hubkit.z").body[0]
    assert _imported(node, "hubkit.z", False, modules) == set()  # a module is not its own import


def _unit(module: str) -> str:
    """The package map's name for a module: its top-level module or package under hubkit."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "hubkit"


def _package_map() -> dict[str, int]:
    """Layer number of every name in the map at the top of hubkit/__init__.py."""
    layers: dict[str, int] = {}
    current = None
    for line in (hubkit.__doc__ or "").splitlines():
        head, sep, names = line.strip().partition(": ")
        number = head.split(" ")[0]
        if line.startswith("    ") and sep and number.isdigit():
            current = int(number)
        elif not (line.startswith("        ") and current is not None):
            current = None
            continue
        for name in (names if sep and number.isdigit() else line).split():
            assert name not in layers, f"{name} is listed twice in the package map"
            layers[name] = current
    return layers


def test_package_map_is_true() -> None:
    layers = _package_map()
    edges, _ = _graph()
    assert {_unit(m) for m in edges} == set(layers), "the package map lists exactly hubkit's modules and packages"
    upward = sorted(
        f"{source} (layer {layers[_unit(source)]}) imports {target} (layer {layers[_unit(target)]})"
        for source, targets in edges.items()
        for target in targets
        if layers[_unit(target)] > layers[_unit(source)]
    )
    assert upward == []
