"""``check(...)``: judge the layers a student just wrote, from inside a Jupyter notebook (or a script).

    from reference import check
    check(Conv2D, MaxPool2D)          # these classes, by their protocol names
    check(globals())                  # every protocol class the notebook defines
    check(Conv2D=MyConv)              # a class whose name is not the protocol's
    check("my_layers.py")             # a file (or a module name)

The live objects are never judged: their *source* is. In a notebook that is the kernel's cell history
(``In``), in a script the script's file, cut down to its imports, functions, classes and the
assignments that call nothing of the student's own (so a training run in a cell is not rerun); it is
written to a fresh temporary module and judged like any other file, in sandboxed workers
(reference.api.judge), quick and fail-fast by default. A class imported from a module with a file of
its own is judged in that module. The result shows itself as HTML in Jupyter and as text elsewhere.
"""

from __future__ import annotations

import ast
import hashlib
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from reference.api import JudgeResult, judge
from reference.impl.protocol import CLASSES

KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


class CheckError(ValueError):
    """What was passed to check() cannot be judged (the message says what to pass instead)."""


def check(*things: Any, layers: str | list[str] | None = None, quick: bool = True, fail_fast: bool = True,
          case: str | None = None, sandbox: str = "auto", **aliases: type) -> JudgeResult:  # fmt: skip
    """Judge the given classes (or ``globals()``, a file, a module) and return the result; in Jupyter it
    renders as HTML with each layer's verdict, diagnosis, smallest failing input, heat map and the
    call that reruns the case. ``case``: rerun one case alone (its id, as the result prints it)."""
    names, impl = _target(things, aliases)
    chosen = layers if layers is not None else (sorted(names, key=CLASSES.index) if names else None)
    shown = ", ".join([*(n for n in names if n not in aliases), *(f"{k}={aliases[k].__name__}" for k in aliases)])
    call = f"check({shown or repr(impl)}, case={{case}})"
    return judge(
        impl,
        layers=chosen,
        case=case,
        quick=quick,
        fail_fast=fail_fast,
        sandbox=sandbox,
        rerun_call=call,
        title=f"check({shown})" if shown else str(impl),
    )


def _target(things: tuple[Any, ...], aliases: dict[str, Any]) -> tuple[list[str], str]:
    """(the protocol names to judge, the file or module to judge them in)."""
    bad = [k for k in aliases if k not in CLASSES]
    if bad:
        raise CheckError(f"check(): {', '.join(bad)} is not a layer of the protocol; name one of {', '.join(CLASSES)}")
    if len(things) == 1 and not aliases and isinstance(things[0], (str, Path, ModuleType)):
        thing = things[0]
        if isinstance(thing, ModuleType):
            if not getattr(thing, "__file__", None):
                raise CheckError(f"check(): module {thing.__name__} has no file to judge")
            return [], str(thing.__file__)
        return [], str(thing)
    classes: dict[str, type] = {}
    for thing in things:
        if isinstance(thing, dict):  # globals(): every protocol class it holds
            classes.update({k: v for k, v in thing.items() if k in CLASSES and isinstance(v, type)})
        elif isinstance(thing, type):
            if thing.__name__ not in CLASSES:
                raise CheckError(f"check(): class {thing.__name__} is not named as a layer of the protocol; pass it "
                                 f"by the name it stands for, e.g. check(Conv2D={thing.__name__})")  # fmt: skip
            classes[thing.__name__] = thing
        else:
            raise CheckError(f"check(): cannot judge {thing!r}; pass classes, globals(), a file or a module")
    for name, cls in aliases.items():
        if not isinstance(cls, type):
            raise CheckError(f"check(): {name}= must be a class, not {cls!r}")
        classes[name] = cls
    if not classes:
        raise CheckError(f"check(): no layer class to judge (the protocol's are {', '.join(CLASSES)})")
    return list(classes), _module_for(classes, aliases)


def _module_for(classes: dict[str, type], aliases: dict[str, Any]) -> str:
    """What to judge ``classes`` in: their module, by name, when they all come from one importable module
    and keep their names; else, for classes written in a notebook or a script, a fresh module written
    from its source (``source_of``)."""
    modules = {cls.__module__ for cls in classes.values()}
    interactive = "__main__" in modules
    if not interactive and len(modules) == 1 and not any(cls.__name__ != name for name, cls in aliases.items()):
        return modules.pop()
    if not interactive or len(modules) > 1:
        raise CheckError(f"check(): the classes come from {', '.join(sorted(modules))}; check one module at a time "
                         "(or write a module importing them under the protocol's names and check that file)")  # fmt: skip
    body = source_of(next(iter(classes.values())))
    body += "".join(f"\n{name} = {cls.__name__}\n" for name, cls in aliases.items() if cls.__name__ != name)
    digest = hashlib.sha256(body.encode()).hexdigest()[:12]
    folder = Path(tempfile.mkdtemp(prefix="scratch-cnn-check-"))
    path = folder / f"checked_{digest}.py"
    path.write_text(body)
    return str(path)


def source_of(cls: type) -> str:
    """The definitions ``cls`` was written among: the notebook's cells run so far (``In``) where it
    comes from a notebook, else its script (``__main__``), cut down by ``definitions_only``."""
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    if cls.__module__ == "__main__" and not path:
        cells = _notebook_cells()
        if cells is None:
            raise CheckError(f"check(): class {cls.__name__} was defined interactively, outside Jupyter: "
                             "save it in a .py file and pass the file")  # fmt: skip
        return definitions_only(cells)
    if path is None:
        raise CheckError(f"check(): no source for class {cls.__name__}")
    return definitions_only([Path(path).read_text()])


def _notebook_cells() -> list[str] | None:
    """The source of every cell the kernel has run, in order (None outside IPython)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None  # type: ignore[attr-defined]
    if shell is None:
        return None
    return [str(c) for c in shell.user_ns.get("In", []) if c]


def definitions_only(texts: list[str]) -> str:
    """``texts`` (a notebook's cells in order, or a script) cut down to what defines things: imports (not
    of the judges), function and class definitions, and assignments whose calls all go into a module
    imported somewhere in ``texts`` (``np.zeros(3)``, not ``train(model)``), each of those guarded so a
    failing one leaves its name undefined rather than the module unimportable. A cell that does not
    parse is left out."""
    # NOTE: a notebook's cells include the training runs, the plots and the check() call itself; running
    # them again in the worker would cost minutes (or judge recursively), so only definitions are kept.
    trees = []
    for text in texts:
        try:
            trees.append((text, ast.parse(text)))
        except SyntaxError:
            continue
    imported = {(a.asname or a.name).split(".")[0] for _, tree in trees for n in ast.walk(tree)
                if isinstance(n, (ast.Import, ast.ImportFrom)) and not _imports_the_judges(n) for a in n.names}  # fmt: skip
    kept: list[str] = []
    for text, tree in trees:
        lines = text.splitlines()
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)) and _imports_the_judges(node):
                continue
            if isinstance(node, KEPT):
                kept.append(_segment(lines, node))
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None \
                    and _calls_only(node, imported):  # fmt: skip
                body = "".join(f"    {line}\n" for line in _segment(lines, node).splitlines())
                kept.append(f"try:\n{body}except Exception:\n    pass")
    return "\n\n".join(kept) + "\n"


def _segment(lines: list[str], node: ast.stmt) -> str:
    """A top-level statement's own lines, its decorators included."""
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return "\n".join(lines[first - 1 : node.end_lineno])


def _imports_the_judges(node: ast.Import | ast.ImportFrom) -> bool:
    roots = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
    return any(r.split(".")[0] == "reference" for r in roots)


def _calls_only(node: ast.AST, imported: set[str]) -> bool:
    """Every call in ``node`` goes to a name rooted in an imported module (or a builtin type)."""
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        func = call.func
        while isinstance(func, ast.Attribute):
            func = func.value
        if not (isinstance(func, ast.Name) and (func.id in imported or func.id in SAFE_BUILTINS)):
            return False
    return True


SAFE_BUILTINS = {"int", "float", "str", "tuple", "list", "dict", "set", "range", "len", "min", "max", "abs", "round"}
