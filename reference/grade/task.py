"""One task: one submission judged by ``reference judge`` in a process of its own, on whatever machine
the task runs (a Dask worker, or this process). What comes back is plain data: the exit code, the
seconds, and the report's files as bytes. The submission itself ran in the judge's sandboxed
workers; nothing it made comes back but numbers the judge wrote into its CSVs."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

MAX_OUTPUT = 20_000  # characters of the judge's own terminal output kept per submission


@lru_cache(maxsize=1)
def judge_version() -> str:
    """The project's version and a hash of the judges' and the network's source: a stored result is
    reused only when this matches (a changed judge rejudges the class)."""
    import reference
    import scratch_cnn

    h = hashlib.sha256()
    for package in (reference, scratch_cnn):
        root = Path(package.__file__).resolve().parent
        for path in sorted(root.rglob("*.py")):
            h.update(path.relative_to(root.parent).as_posix().encode() + b"\0" + path.read_bytes())
    from importlib.metadata import PackageNotFoundError, version

    try:
        base = version("scratch-cnn")
    except PackageNotFoundError:
        base = "0"
    return f"{base}+{h.hexdigest()[:12]}"


def _die_with_parent() -> None:
    """The judge dies with the task's process (a Dask worker killed mid-task leaves no judge behind)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def safe_path(root: Path, name: str) -> Path:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"a submission file named {name!r} would land outside its folder")
    return root.joinpath(*rel.parts)


def judge_submission(spec: dict[str, Any], options: list[str], timeout: float) -> dict[str, Any]:
    """Rebuild the submission in a temporary folder, run ``python -m reference judge`` on it (its own
    process, killed after ``timeout`` seconds), and return the report as plain data."""
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="scratch-cnn-grade-"))
    result: dict[str, Any] = {"id": spec["id"], "sha256": spec["sha256"], "judge_version": judge_version()}
    try:
        sub = work / "submission"
        for name, data in spec["files"].items():
            path = safe_path(sub, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        out = work / "report"
        cmd = [sys.executable, "-I", "-m", "reference", "judge", "--impl", str(safe_path(sub, spec["entry"])),
               "--out", str(out), *options]  # fmt: skip
        try:
            proc = subprocess.run(cmd, cwd=work, capture_output=True, timeout=timeout, preexec_fn=_die_with_parent)
            result["exit_code"] = proc.returncode
            text = (proc.stdout + proc.stderr).decode(errors="replace")
        except subprocess.TimeoutExpired as err:
            result["exit_code"] = -1  # stored like any verdict: the same submission would hang again
            text = f"error: the judge did not finish within {timeout:g} s (--submission-timeout)\n" + (
                (err.stdout or b"") + (err.stderr or b"")).decode(errors="replace")  # fmt: skip
        result["output"] = text.replace(str(sub) + "/", "")[-MAX_OUTPUT:]  # the student's own file names
        files = {}
        if out.is_dir():
            files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
        result["files"] = files
        run = json.loads(files["run.json"]) if "run.json" in files else {}
        result["sandbox"] = run.get("sandbox", "")
        result["run_id"] = run.get("run_id", "")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result
