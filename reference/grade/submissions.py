"""A class's submissions, found in a folder and turned into plain data a task can carry anywhere.

Each entry of the folder is one submission: a ``.py`` file, a folder (its entry module named by
``--entry``, default the only ``.py`` file or ``layers.py``), or a Jupyter notebook (its code cells
in order; IPython magics and shell lines dropped and listed). With ``--adapter course.py`` the
student's code is importable as ``submission`` and the course's adapter is what is judged. A
submission travels as ``{relative path: bytes}``, so a task on any Dask worker rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 8 << 20  # a submission's file larger than this is refused (data sets do not belong in a submission)
SKIP_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints", ".venv", "venv", "node_modules"}


class SubmissionError(ValueError):
    """A submission that cannot be judged at all (the message names it and why)."""


@dataclass
class Submission:
    """``files``: what the task rebuilds; ``entry``: the file judged; ``dropped``: notebook lines removed."""

    id: str
    source: str
    files: dict[str, bytes]
    entry: str
    dropped: list[str] = field(default_factory=list)
    problem: str = ""  # why it cannot be judged ('' when it can)

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.files):
            h.update(f"{name}\0{hashlib.sha256(self.files[name]).hexdigest()}\n".encode())
        return h.hexdigest()

    def spec(self) -> dict[str, Any]:
        return {"id": self.id, "files": self.files, "entry": self.entry, "sha256": self.sha256}


def notebook_code(raw: bytes) -> tuple[str, list[str]]:
    """(the code cells in order as one module, the magic and shell lines dropped)."""
    try:
        nb = json.loads(raw)
        cells = nb["cells"]
    except (ValueError, KeyError, TypeError) as err:
        raise SubmissionError(f"not a Jupyter notebook ({type(err).__name__}: {err})") from None
    code, dropped = [], []
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        lines = []
        for line in text.splitlines():
            stripped = line.lstrip()
            if stripped.startswith(("%", "!")) or re.match(r"^[A-Za-z_][\w.]*\?\??$", stripped):
                dropped.append(f"cell {i + 1}: {line.strip()}")
                lines.append("")  # keep line numbers of the rest
            else:
                lines.append(line)
        code.append(f"# --- cell {i + 1} ---\n" + "\n".join(lines))
    return "\n\n".join(code) + "\n", dropped


def _read(path: Path) -> bytes:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise SubmissionError(f"{path.name} is {path.stat().st_size >> 20} MB (at most {MAX_FILE_BYTES >> 20} MB)")
    return path.read_bytes()


def load_submission(path: Path, entry: str | None = None, adapter: Path | None = None) -> Submission:
    """One entry of the folder. A problem (no .py to judge, a broken notebook) is recorded, not raised."""
    sid = path.stem if path.is_file() else path.name
    try:
        files, dropped = {}, []
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if (
                    f.is_file()
                    and not SKIP_DIRS & set(f.relative_to(path).parts)
                    and f.suffix in (".py", ".ipynb", ".txt", ".json")
                ):
                    files[f.relative_to(path).as_posix()] = _read(f)
            pys = [n for n in files if n.endswith(".py") and "/" not in n]
            notebooks = [n for n in files if n.endswith(".ipynb") and "/" not in n]
            if entry:
                chosen = entry if entry in files else None
            elif len(pys) == 1:
                chosen = pys[0]
            elif "layers.py" in pys:
                chosen = "layers.py"
            elif not pys and len(notebooks) == 1:
                chosen = notebooks[0]
            else:
                chosen = None
            if chosen is None:
                raise SubmissionError(
                    f"no entry module: {'--entry ' + entry + ' is not there' if entry else 'several .py files and none is layers.py (name one with --entry)' if pys else 'no .py file'}"
                )
            if chosen.endswith(".ipynb"):
                code, dropped = notebook_code(files.pop(chosen))
                chosen = chosen[: -len(".ipynb")] + ".py"
                files[chosen] = code.encode()
        elif path.suffix == ".py":
            chosen, files = path.name, {path.name: _read(path)}
        elif path.suffix == ".ipynb":
            code, dropped = notebook_code(_read(path))
            chosen, files = f"{sid}.py", {f"{sid}.py": code.encode()}
        else:
            raise SubmissionError(f"{path.name} is not a .py file, a notebook or a folder")
        if adapter is not None:
            files, chosen = _with_adapter(files, chosen, adapter)
        return Submission(sid, str(path), files, chosen, dropped)
    except (SubmissionError, OSError) as err:
        return Submission(sid, str(path), {}, "", problem=str(err))


def _with_adapter(files: dict[str, bytes], entry: str, adapter: Path) -> tuple[dict[str, bytes], str]:
    """The student's entry importable as ``submission``; the course adapter is what is judged."""
    files = dict(files)
    if entry != "submission.py":
        if "submission.py" in files:
            raise SubmissionError(
                "a file named submission.py beside the entry: the adapter imports the entry under that name"
            )
        files["submission.py"] = files.pop(entry)
    name = "course_adapter.py"
    files[name] = _read(adapter)
    return files, name


def discover(folder: Path, entry: str | None = None, adapter: Path | None = None) -> list[Submission]:
    """Every submission in ``folder`` (hidden entries and caches skipped), sorted by id; ids unique."""
    if not folder.is_dir():
        raise SubmissionError(f"SUBMISSIONS {folder}: not a folder")
    subs = [load_submission(p, entry, adapter) for p in sorted(folder.iterdir())
            if not p.name.startswith((".", "_")) and p.name not in SKIP_DIRS]  # fmt: skip
    seen: dict[str, int] = {}
    for s in subs:
        n = seen[s.id] = seen.get(s.id, 0) + 1
        if n > 1:
            s.id = f"{s.id}~{n}"  # alice.py and alice/ are two submissions
    return subs
