"""A class's submissions, found in a folder and turned into plain data a task can carry anywhere.

Each entry of the folder is one submission: a ``.py`` file, a folder (its entry module named by
``--entry``, default the only ``.py`` file or ``layers.py``), or a Jupyter notebook (its code cells
in order; IPython magics, cell magics and shell lines dropped and listed). With ``--adapter course.py`` the
student's code is importable as ``submission`` and the course's adapter is what is judged. A
submission travels as ``{relative path: bytes}``, so a task on any Dask worker rebuilds it.

Ids are unique and safe as folder names (``[A-Za-z0-9._-]``, never hidden, never one of the class
reports' names); the entry's own name is kept in ``name`` for the teacher to read (escaped wherever
it is rendered: reference.grade.gradebook).
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
MAX_ID = 80  # characters of an id (a folder name in --out)
# the class reports' own names in --out: a submission's folder must never take one
RESERVED_IDS = {"gradebook.csv", "summary.md", "index.html", "scores.png"}


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
    def name(self) -> str:
        """The entry's own name in the class folder (``alice.py``, ``carol``): for a person to read."""
        return Path(self.source).name

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.files):
            h.update(f"{name}\0{hashlib.sha256(self.files[name]).hexdigest()}\n".encode())
        return h.hexdigest()

    def spec(self) -> dict[str, Any]:
        return {"id": self.id, "files": self.files, "entry": self.entry, "sha256": self.sha256}


def notebook_code(raw: bytes) -> tuple[str, list[str]]:
    """(the code cells in order as one module, the magic and shell lines dropped).

    A line magic (``%time``), a shell line (``!pip``) or a help line (``np.dot?``) is dropped alone; a
    cell magic (``%%bash``, ``%%writefile f.py``, ...) takes its whole cell with it: its body is
    shell, a file's text or another language, never this module's Python."""
    try:
        nb = json.loads(raw)
        cells = nb["cells"]
    except (ValueError, KeyError, TypeError) as err:
        raise SubmissionError(f"not a Jupyter notebook ({type(err).__name__}: {err})") from None
    if not isinstance(cells, list):
        raise SubmissionError("not a Jupyter notebook (its 'cells' is not a list)")
    code, dropped = [], []
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        text = "".join(map(str, source)) if isinstance(source, list) else str(source)
        kept, gone = _cell_lines(text, i + 1)
        dropped += gone
        code.append(f"# --- cell {i + 1} ---\n" + "\n".join(kept))
    return "\n\n".join(code) + "\n", dropped


def _cell_lines(text: str, number: int) -> tuple[list[str], list[str]]:
    """(the cell's lines with every dropped one left blank, so line numbers hold; the dropped ones)."""
    lines = text.splitlines()
    first = next((line.lstrip() for line in lines if line.strip()), "")
    if first.startswith("%%"):  # a cell magic: the whole cell is not Python
        return [""] * len(lines), [f"cell {number}: {line.strip()}" for line in lines if line.strip()]
    kept, dropped = [], []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")) or re.match(r"^[A-Za-z_][\w.]*\?\??$", stripped):
            dropped.append(f"cell {number}: {line.strip()}")
            kept.append("")
        else:
            kept.append(line)
    return kept, dropped


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
                # NOTE: a link inside a submission is never followed: it could name another
                # student's file, or the teacher's, and the grader would read it as its own.
                if (
                    f.is_file()
                    and not f.is_symlink()
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
            module = f"{safe_id(sid)}.py"  # the notebook's module under a name that is safe anywhere
            chosen, files = module, {module: code.encode()}
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


def safe_id(name: str) -> str:
    """``name`` as a folder name that is safe anywhere: only ``[A-Za-z0-9._-]`` (each run of other
    characters one ``-``), never empty, never starting or ending with ``.`` or ``-`` (hidden, ``..``, an
    option), at most MAX_ID characters."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:MAX_ID].rstrip(".-")
    return text or "submission"


def unique_ids(names: list[str]) -> list[str]:
    """Unique, safe ids for ``names`` (in their order): each name's safe form where that is free; a
    repeat gets ``-2``, ``-3``, ... skipped past every id taken and every other name's safe form (so
    ``s1/``, ``s1.py``, ``s1~2.py``, a folder's sorted order, -> ``s1``, ``s1-3``, ``s1-2``: never two
    equal, and the same names always get the same ids)."""
    bases = [safe_id(n) for n in names]
    bases = [f"{b}-1" if b.lower() in RESERVED_IDS else b for b in bases]
    # NOTE: ids are compared case-folded: alice.py and Alice.py must not share a folder on a
    # case-insensitive file system (macOS, Windows) where --out may live.
    taken = {b.lower() for b in bases}
    ids: list[str] = []
    used: set[str] = set()
    for base in bases:
        chosen, n = base, 1
        while chosen.lower() in used or (n > 1 and chosen.lower() in taken):  # a repeat: never another's name
            n += 1
            chosen = f"{base}-{n}"
        ids.append(chosen)
        used.add(chosen.lower())
    return ids


def discover(folder: Path, entry: str | None = None, adapter: Path | None = None) -> list[Submission]:
    """Every submission in ``folder`` (hidden entries and caches skipped), sorted by name; ids unique."""
    if not folder.is_dir():
        raise SubmissionError(f"SUBMISSIONS {folder}: not a folder")
    subs = [load_submission(p, entry, adapter) for p in sorted(folder.iterdir())
            if not p.name.startswith((".", "_")) and p.name not in SKIP_DIRS]  # fmt: skip
    for sub, sid in zip(subs, unique_ids([s.id for s in subs]), strict=True):
        sub.id = sid
    return subs
