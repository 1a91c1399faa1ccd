"""Reports that cannot be stale or planted: written whole into a fresh staging directory after every
worker is gone, stamped, then swapped into place in one rename."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from reference.report.tables import write_atomic


class OutError(ValueError):
    """``--out`` cannot hold a report (it names a file, or its folder cannot be written)."""


def check_out(out: Path) -> None:
    """Refuse an unusable ``--out`` before any work is done."""
    if out.exists() and not out.is_dir():
        raise OutError(f"--out {out}: exists and is not a directory")
    parent = out.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutError(f"--out {out}: {probe} is not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryDirectory(dir=parent).cleanup()
    except OSError as err:
        raise OutError(f"--out {out}: cannot write into {parent} ({err.strerror or err})") from None


def new_staging(out: Path) -> Path:
    """A fresh, empty directory beside ``out`` (same file system, so the swap is one rename)."""
    out.resolve().parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.resolve().parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a report directory is for reading
    return staging


def swap_into_place(staging: Path, latest: Path, carry: tuple[str, ...] = ()) -> None:
    """Replace ``latest`` with ``staging``; files matching ``carry`` globs (JUnit XML written by the
    test session, say) are carried over from the old ``latest``."""
    if latest.is_dir():
        for pattern in carry:
            for kept in latest.glob(pattern):
                if not (staging / kept.name).exists():
                    shutil.copy2(kept, staging / kept.name)
        old = latest.with_name(f".{latest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        latest.rename(old)
        staging.rename(latest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(latest)


def stamp(staging: Path, run: dict[str, Any]) -> None:
    """run.json: the run id, the time, what was judged (SHA-256 of its files), the sandbox, the limits,
    and the SHA-256 of every report file written before it."""
    import hashlib

    files = {p.relative_to(staging).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(staging.rglob("*")) if p.is_file()}  # fmt: skip
    body = {**run, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "reports": files}
    write_atomic(staging / "run.json", json.dumps(body, indent=1, sort_keys=True, default=str) + "\n")
