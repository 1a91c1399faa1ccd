"""Reports that cannot be stale or planted: written whole into a fresh staging directory after every
worker is gone, stamped, then swapped into place in one rename."""

from __future__ import annotations

import hashlib
import hmac
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
    test session, say) are carried over from the old ``latest``.

    # NOTE: the old report is moved aside under a name made fresh for this swap (never a fixed
    # ``.<out>.old`` that something else could have planted to make the rename fail). Should a rename
    # fail anyway, ``latest`` is removed rather than left holding a report this run did not write."""
    if latest.is_dir():
        for pattern in carry:
            for kept in latest.glob(pattern):
                if not (staging / kept.name).exists():
                    shutil.copy2(kept, staging / kept.name)
        old = Path(tempfile.mkdtemp(prefix=f".{latest.name}-old-", dir=latest.resolve().parent))
        try:
            latest.rename(old / "report")
            staging.rename(latest)
        except OSError:
            shutil.rmtree(latest, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        if latest.exists() or latest.is_symlink():
            latest.unlink()  # a file or a link where the report goes: never written through
        staging.rename(latest)


def stamp(staging: Path, run: dict[str, Any], key: bytes | None = None) -> None:
    """run.json: the run id, the time, what was judged (SHA-256 of its files), the sandbox, the limits,
    and the SHA-256 of every report file written before it. With ``key`` (a secret the caller gave
    the judge through a pipe, never a file or an argument) it also carries ``signature``, an
    HMAC-SHA256 of everything else in it: what a grader checks with ``verify_stamp``."""
    files = {p.relative_to(staging).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(staging.rglob("*")) if p.is_file()}  # fmt: skip
    body = {**run, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "reports": files}
    body = json.loads(json.dumps(body, default=str))  # plain data, as it will be read back
    if key is not None:
        body["signature"] = _sign(body, key)
    write_atomic(staging / "run.json", json.dumps(body, indent=1, sort_keys=True) + "\n")


def _sign(body: dict[str, Any], key: bytes) -> str:
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    return hmac.new(key, json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode(), "sha256").hexdigest()


def verify_stamp(files: dict[str, bytes], key: bytes, exit_code: int | None = None) -> tuple[dict[str, Any], str]:
    """(run.json's contents, '' ) when ``files`` ({relative path: bytes}, a report folder read back)
    is exactly what a judge holding ``key`` stamped: run.json signed with it, every other file listed
    in it with its SHA-256, nothing more, and (when given) its exit code the process's own. Else
    ({}, why it is no result)."""
    raw = files.get("run.json")
    if raw is None:
        return {}, "no run.json: the judge stamped no report"
    try:
        body = json.loads(raw)
    except ValueError:
        return {}, "run.json is not JSON"
    if not isinstance(body, dict) or not isinstance(body.get("signature"), str):
        return {}, "run.json carries no signature"
    if not hmac.compare_digest(body["signature"], _sign(body, key)):
        return {}, "run.json's signature does not match: it was not written by this run's judge"
    listed = body.get("reports")
    if not isinstance(listed, dict):
        return {}, "run.json lists no reports"
    others = {name for name in files if name != "run.json"}
    if others != set(listed):
        extra, gone = sorted(others - set(listed)), sorted(set(listed) - others)
        return {}, f"the report's files differ from what the judge stamped (extra: {extra[:3]}, missing: {gone[:3]})"
    for name in sorted(others):
        if hashlib.sha256(files[name]).hexdigest() != listed[name]:
            return {}, f"{name} differs from what the judge stamped"
    if exit_code is not None and body.get("exit_code") != exit_code:
        return {}, f"run.json says exit code {body.get('exit_code')!r}, the judge's process ended with {exit_code}"
    return body, ""
