"""First-order mutants of a Python module, found in its AST and written back as a one-span text edit.

Each mutant changes one node: an arithmetic or comparison operator, a constant, a slice bound, a
boolean operator, a unary minus or ``not``, or removes one statement that has an effect (a call, an
augmented assignment, an assignment to an attribute or an element). The edit replaces only the
node's own characters, so the mutant's diff is one line a reviewer can read.

A mutant's ``key`` names it without line numbers (file, enclosing function, operator, the text
before and after, the occurrence), so a list of equivalent mutants survives edits elsewhere in the
file.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
from collections import Counter
from dataclasses import dataclass

BINOP_SWAPS: dict[type, type] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
    ast.BitOr: ast.BitAnd, ast.BitAnd: ast.BitOr,
}  # fmt: skip
COMPARE_SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In,
}  # fmt: skip


@dataclass(frozen=True)
class Mutant:
    """One first-order change of ``file`` (a path relative to the package), lines ``line..end_line``."""

    file: str
    function: str
    operator: str
    line: int
    col: int
    end_line: int
    end_col: int
    before: str
    after: str
    occurrence: int = 0

    @property
    def key(self) -> str:
        """Stable name: ``file::function::operator::before -> after::occurrence``."""
        return f"{self.file}::{self.function}::{self.operator}::{_one_line(self.before)} -> {_one_line(self.after)}::{self.occurrence}"

    @property
    def id(self) -> str:
        """Short id (10 hex digits of the key's SHA-256), for folder names and --only."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:10]

    def apply(self, source: str) -> str:
        """The mutated module's text."""
        lines = source.splitlines(keepends=True)
        start = sum(len(x) for x in lines[: self.line - 1]) + _char_offset(lines[self.line - 1], self.col)
        end = sum(len(x) for x in lines[: self.end_line - 1]) + _char_offset(lines[self.end_line - 1], self.end_col)
        return source[:start] + self.after + source[end:]

    def diff(self, source: str) -> str:
        """A unified diff of the change (three lines of context)."""
        return "".join(
            difflib.unified_diff(source.splitlines(keepends=True), self.apply(source).splitlines(keepends=True),
                                 f"a/{self.file}", f"b/{self.file}", n=1)
        )  # fmt: skip


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _char_offset(line: str, col: int) -> int:
    """ast columns count UTF-8 bytes; string slicing counts characters."""
    return len(line.encode()[:col].decode(errors="ignore"))


def _skipped_regions(tree: ast.Module) -> set[int]:
    """ids of nodes no mutant touches: docstrings, annotations, raise statements, f-strings, asserts."""
    skip: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                mark(first)
        if isinstance(node, (ast.FunctionDef,)):
            mark(node.returns)
            for a in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]:
                mark(a.annotation)
            for d in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
                mark(d)  # a default is the API's choice: the judges pass every argument
        if isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        if isinstance(node, (ast.Raise, ast.JoinedStr, ast.Assert, ast.Import, ast.ImportFrom)):
            mark(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"print", "TypeVar"}:
            mark(node)
    return skip


class _Finder(ast.NodeVisitor):
    def __init__(self, file: str, source: str, tree: ast.Module) -> None:
        self.file, self.source, self.found, self.scope = file, source, [], []
        self.skip = _skipped_regions(tree)  # node ids: of this very tree, kept alive by the caller

    def add(self, node: ast.AST, operator: str, after: str) -> None:
        before = ast.get_source_segment(self.source, node)
        if before is None or before == after:
            return
        self.found.append(
            Mutant(
                self.file,
                ".".join(self.scope) or "<module>",
                operator,
                node.lineno,
                node.col_offset,
                node.end_lineno,
                node.end_col_offset,
                before,
                after,
            )  # fmt: skip
        )

    def visit(self, node: ast.AST) -> None:
        if id(node) not in self.skip:
            super().visit(node)

    def _scoped(self, node: ast.FunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_ClassDef = _scoped  # type: ignore[assignment]

    def visit_BinOp(self, node: ast.BinOp) -> None:
        swap = BINOP_SWAPS.get(type(node.op))
        if swap:
            self.add(node, "binary operator", ast.unparse(ast.BinOp(node.left, swap(), node.right)))
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        swap = BINOP_SWAPS.get(type(node.op))
        if swap:
            self.add(node, "augmented assignment", ast.unparse(ast.AugAssign(node.target, swap(), node.value)))
        self.add(node, "statement removed", "pass")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        for i, op in enumerate(node.ops):
            swap = COMPARE_SWAPS.get(type(op))
            if swap:
                ops = [*node.ops[:i], swap(), *node.ops[i + 1 :]]
                self.add(node, "comparison", ast.unparse(ast.Compare(node.left, ops, node.comparators)))
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self.add(node, "boolean operator", ast.unparse(ast.BoolOp(other, node.values)))
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, (ast.USub, ast.Not)) and not isinstance(node.operand, ast.Constant):
            self.add(node, "unary operator removed", ast.unparse(node.operand))
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        v = node.value
        if isinstance(v, bool):
            self.add(node, "constant", repr(not v))
        elif isinstance(v, int):
            self.add(node, "constant", repr(v + 1))
            if v > 1:
                self.add(node, "constant", repr(v - 1))
        elif isinstance(v, float):
            self.add(node, "constant", repr(v * 2 if v else 1.0))

    def visit_Slice(self, node: ast.Slice) -> None:
        for name in ("lower", "upper"):
            bound = getattr(node, name)
            if bound is not None and not isinstance(bound, ast.Constant):
                self.add(bound, "slice bound", f"({ast.unparse(bound)}) + 1")
        self.generic_visit(node)

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Call):
            self.add(node, "statement removed", "pass")
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        if all(isinstance(t, (ast.Attribute, ast.Subscript)) for t in node.targets):
            self.add(node, "statement removed", "pass")
        self.generic_visit(node)


def find_mutants(file: str, source: str) -> list[Mutant]:
    """Every first-order mutant of ``source`` (the module at ``file``), in source order, keys unique."""
    tree = ast.parse(source)
    finder = _Finder(file, source, tree)
    finder.visit(tree)
    seen: Counter[str] = Counter()
    out = []
    for m in sorted(finder.found, key=lambda m: (m.line, m.col, m.operator, m.after)):
        base = Mutant(**{**m.__dict__, "occurrence": 0}).key
        out.append(Mutant(**{**m.__dict__, "occurrence": seen[base]}))
        seen[base] += 1
    for m in out:  # every mutant must still be valid Python
        ast.parse(m.apply(source))
    return out
