"""Measures of the house rules of reference/ (DESIGN.md, "One layer, one place"), read from the code
with ast: import cycles (module and package), branches on a layer kind's name outside its own
declaration, the sandbox's proxies named outside reference/sandbox/, and functions over 60 lines.

``python -m tests.architecture_checks`` prints every finding; tests/test_architecture.py asserts
there is none.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "reference"
MAX_LINES = 60
PROXY_NAMES = ("RemoteImpl", "RemoteObject", "RemoteArray", "RemoteMethod", "RemoteClass")
PROXY_ATTRS = ("_session", "_worker", "_fetched")


def modules() -> dict[str, Path]:
    """{dotted name: file} of every module of reference/."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of reference/ that ``name`` imports, at module level or inside a function alike."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def import_cycles() -> list[str]:
    """Cycles among modules, and among the first-level packages of reference/."""
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    found = [f"modules: {' <-> '.join(c)}" for c in cycles(graph)]

    def package(m: str) -> str:
        return ".".join(m.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for m, targets in graph.items():
        for t in targets:
            if package(m) != package(t) and package(m) != "reference" and package(t) != "reference":
                packages.setdefault(package(m), set()).add(package(t))
    return found + [f"packages: {' <-> '.join(c)}" for c in cycles(packages)]


def kind_names() -> set[str]:
    sys.path.insert(0, str(ROOT.parent))
    from reference.layers import KINDS

    return set(KINDS)


def name_branches() -> list[str]:
    """``file:line`` of each branch on a layer kind's name outside reference/layers/: the name compared,
    used as a dict key, or listed on the right of ``in``."""
    names, found = kind_names(), []
    for path in sorted(ROOT.rglob("*.py")):
        if path.is_relative_to(ROOT / "layers"):
            continue
        for node, line in _branch_constants(ast.parse(path.read_text()), names):
            found.append(f"{path.relative_to(ROOT.parent)}:{line}: {node!r}")
    return found


def _branch_constants(tree: ast.AST, names: set[str]) -> Iterator[tuple[str, int]]:
    def named(n: ast.AST) -> Iterator[ast.Constant]:
        if isinstance(n, ast.Constant) and n.value in names:
            yield n
        elif isinstance(n, (ast.Tuple, ast.List, ast.Set)):
            for e in n.elts:
                yield from named(e)

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for part in [node.left, *node.comparators]:
                for c in named(part):
                    yield c.value, c.lineno
        elif isinstance(node, ast.Dict):
            for key in node.keys:
                if key is not None:
                    for c in named(key):
                        yield c.value, c.lineno
        elif isinstance(node, ast.BinOp):  # set(LAYERS) | {"SoftmaxCrossEntropy"}: a set made of names
            for part in (node.left, node.right):
                for c in named(part):
                    yield c.value, c.lineno
        elif isinstance(node, ast.MatchValue):
            for c in named(node.value):
                yield c.value, c.lineno


def proxies_outside_sandbox() -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.is_relative_to(ROOT / "sandbox"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Name) and node.id in PROXY_NAMES) or (
                isinstance(node, ast.Attribute) and (node.attr in PROXY_ATTRS or node.attr in PROXY_NAMES)
            ):
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.alias) and node.name in PROXY_NAMES:
                found.append(f"{path.relative_to(ROOT.parent)}: imports {node.name}")
    return found


def long_functions(limit: int = MAX_LINES) -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: {node.name} ({lines} lines)")
    return found


CHECKS = {"import cycles": import_cycles, "branches on a layer kind's name outside reference/layers/": name_branches,
          "the sandbox's proxies outside reference/sandbox/": proxies_outside_sandbox,
          f"functions over {MAX_LINES} lines": long_functions}  # fmt: skip


def main() -> int:
    total = 0
    for title, check in CHECKS.items():
        found = check()
        total += len(found)
        print(f"{title}: {len(found)}")
        for line in found:
            print(f"  {line}")
    return 1 if total else 0


if __name__ == "__main__":
    raise SystemExit(main())
