"""What is judged, found without running it: a file, a module by name, or a factory.

The judge's process never imports the implementation. A module name (``pkg.module``) is located
with the import system's path finders, which read directories and never execute a package's
``__init__``; the worker then imports it from a folder appended to its ``sys.path``. The SHA-256 of
the files judged stamps every report.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class TargetError(ValueError):
    """The implementation cannot be found (the message names the name and what was looked for)."""


@dataclass
class Target:
    """``kind``: file | module | factory; ``name``: what the user gave; ``files``: the judged files."""

    kind: str
    name: str
    path: str = ""
    search: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def spec(self) -> dict[str, Any]:
        """What the worker needs to import it (plain data)."""
        return {"kind": self.kind, "name": self.name, "path": self.path, "search": self.search}

    @property
    def folders(self) -> list[str]:
        """Folders the worker must be able to read (the sandbox binds them read-only)."""
        return sorted({*self.search, *(str(f.parent) for f in self.files)})

    def digest(self) -> dict[str, Any]:
        """{"sha256": of every judged file in order, "files": {path: sha256}}."""
        files, whole = {}, hashlib.sha256()
        for path in sorted(self.files):
            h = hashlib.sha256(path.read_bytes()).hexdigest()
            files[str(path)] = h
            whole.update(f"{path.name}\0{h}\n".encode())
        return {"sha256": whole.hexdigest(), "files": files}


def find_target(name: str) -> Target:
    """A Target for ``name``: a path to a ``.py`` file, a module name, or ``module:factory``."""
    if name.endswith(".py") or os.sep in name or "/" in name:
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise TargetError(f"cannot import implementation {name!r}: no such file")
        if path.suffix != ".py":
            raise TargetError(f"cannot import implementation {name!r}: not a .py file")
        return Target("file", name, str(path), [str(path.parent)], [path])
    module, _, factory = name.partition(":")
    if not all(part.isidentifier() for part in module.split(".")) or (factory and not factory.isidentifier()):
        raise TargetError(f"cannot import implementation {name!r}: not a module name, a module:factory or a .py file")
    root, files = _locate(module)
    return Target("factory" if factory else "module", name, "", [root] if root else [], files)


def _locate(module: str) -> tuple[str, list[Path]]:
    """(the folder to append to the worker's sys.path, the module's files); nothing is executed.

    # NOTE: ``importlib.util.find_spec("a.b")`` imports package ``a`` (runs its __init__) to find
    # ``b``. Only the top-level name goes through it (a lookup, no execution); the rest of a dotted
    # name is found by PathFinder in the package's folders.
    """
    import importlib.util

    parts = module.split(".")
    spec = importlib.machinery.PathFinder.find_spec(parts[0], [os.getcwd()])  # as `python -m` would: here first
    if spec is None:
        try:
            spec = importlib.util.find_spec(parts[0])
        except (ImportError, ValueError):
            spec = None
    for depth in range(1, len(parts)):
        if spec is None:
            break
        spec = importlib.machinery.PathFinder.find_spec(
            ".".join(parts[: depth + 1]), list(spec.submodule_search_locations or [])
        )
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        raise TargetError(f"cannot import implementation {module!r}: ModuleNotFoundError: no module named {module!r} "
                          "(give a module importable from here, or a path to a .py file)")  # fmt: skip
    origin = Path(spec.origin).resolve()
    package = (
        origin.parents[len(parts) - 1]
        if origin.name == "__init__.py"
        else origin.parents[len(parts) - 2]
        if len(parts) > 1
        else origin
    )
    if package.is_dir():
        files = sorted(f for f in package.rglob("*.py") if "__pycache__" not in f.parts)
        return str(package.parent), files
    return str(origin.parent), [origin]
