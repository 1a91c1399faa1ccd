"""One task: one submission judged by ``reference judge`` in a process of its own, on whatever machine
the task runs (a Dask worker, or this process). What comes back is plain data: the exit code, the
seconds, and the report's files as bytes. The submission itself ran in the judge's sandboxed
workers; nothing it made comes back but numbers the judge wrote into its CSVs.

A result is only what this task's judge stamped. The task makes a key (never sent anywhere: it is
born and dies here) and hands it to the judge through an inherited pipe (``--secrets-fd``), with the
teacher's secret seed if any; the judge signs run.json with it. The report read back counts only
when ``verify_stamp`` finds exactly what that judge stamped, its exit code the process's own and its
judged file the submission's entry; anything else (a report rewritten after the judge exited, one
planted where a swap was blocked) is no result, scored like an error, with the reason.

Each submission is rebuilt in a private copy: a fresh ``scratch-cnn-grade-*`` folder (0o711: others
may pass through, not list it) holding the submission under an unguessable name (readable, so the
judge's sandboxed worker, perhaps another uid, can import it) and the judge's ``--out`` in a
separate 0o700 folder. Folders left by a killed task are removed by the next task on the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from reference.sandbox.reaper import die_with_parent

MAX_OUTPUT = 20_000  # characters of the judge's own terminal output kept per submission
MAX_REPORT_BYTES = 256 << 20  # a report folder larger than this is no result (the judge's are a few MB)
WORK_PREFIX = "scratch-cnn-grade-"
OWNER = "owner"  # in each task's folder: "PID START" of the process that made it (START: /proc's start time)
UNOWNED_STALE_SECONDS = 3600.0  # a task folder with no owner file this old is a leftover
START_TOPIC = "scratch-cnn-grade-start"  # Dask event: a task began (the grader's clock starts: run.GraderClock)


@lru_cache(maxsize=1)
def judge_version() -> str:
    """The project's version and a hash of the judges' and the network's source: a stored result is
    reused only when this matches (a changed judge rejudges the class)."""
    import scratch_cnn

    h = hashlib.sha256()
    reference_root = Path(__file__).resolve().parents[1]  # reference/ (not `import reference`: no import cycle)
    for root in (reference_root, Path(scratch_cnn.__file__).resolve().parent):
        for path in sorted(root.rglob("*.py")):
            h.update(path.relative_to(root.parent).as_posix().encode() + b"\0" + path.read_bytes())
    from importlib.metadata import PackageNotFoundError, version

    try:
        base = version("scratch-cnn")
    except PackageNotFoundError:
        base = "0"
    return f"{base}+{h.hexdigest()[:12]}"


def safe_path(root: Path, name: str) -> Path:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"a submission file named {name!r} would land outside its folder")
    return root.joinpath(*rel.parts)


def announce_start() -> None:
    """Tell the grader (a Dask event) that this task began, and on which worker: the grader's own clock
    for ``--submission-timeout`` starts here. Outside a Dask worker there is no one to tell."""
    with contextlib.suppress(Exception):
        from distributed import get_worker

        worker = get_worker()
        worker.log_event(START_TOPIC, {"key": str(worker.get_current_task()), "worker": worker.address})


# --- the private copy ------------------------------------------------------------------------------


@dataclass
class Workspace:
    """``root`` (0o711) holds ``submission`` (an unguessable name, 0o755, files 0o644) and ``out``
    (the judge's --out, inside a 0o700 folder of its own)."""

    root: Path
    submission: Path
    out: Path


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (field 22 of /proc/PID/stat), None when there is none: with
    the pid it names a process once, whatever pid reuse does."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rpartition(")")[2].split()  # the command name (field 2) may hold spaces and ')'
    return fields[19] if len(fields) > 19 else None


def _owner_line() -> str:
    return f"{os.getpid()} {process_start(os.getpid()) or '?'}\n"


def _is_stale(folder: Path, now: float) -> bool:
    """A task folder whose task is gone: its owner's pid names no process, or another one; or it has
    no owner file and is old (a task killed between making it and writing the file)."""
    try:
        pid_text, start = (folder / OWNER).read_text().split()
        pid = int(pid_text)
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            return now - folder.lstat().st_mtime > UNOWNED_STALE_SECONDS
        return False
    except (OSError, ValueError):
        return True  # unreadable or garbled: nothing of ours writes that
    return process_start(pid) != start


def clean_stale(tmp: Path | None = None) -> list[Path]:
    """Remove this user's ``scratch-cnn-grade-*`` folders left by killed tasks; returns them."""
    tmp = Path(tmp or tempfile.gettempdir())
    removed, now = [], time.time()
    for folder in tmp.glob(WORK_PREFIX + "*"):
        try:
            st = folder.lstat()
        except OSError:
            continue
        # NOTE: lstat, and only our own real folders: a link or another user's folder is never followed.
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and _is_stale(folder, now):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def make_workspace(files: dict[str, bytes]) -> Workspace:
    """A private copy of a submission's ``files`` (see Workspace for who may read what)."""
    root = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))  # 0o700 until the owner file is there
    fd = os.open(root / OWNER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(_owner_line())
    sub = root / secrets.token_hex(16)
    sub.mkdir()
    for name, data in files.items():
        path = safe_path(sub, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for path in [sub, *sub.rglob("*")]:  # explicit modes: never the umask's
        path.chmod(0o755 if path.is_dir() else 0o644)
    private = root / secrets.token_hex(16)
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    root.chmod(0o711)  # others may pass through to the submission, never list the names
    return Workspace(root, sub, private / "report")


# --- the judge and its secrets ----------------------------------------------------------------------


def new_key() -> bytes:
    """This task's stamp key. NOTE: made in the task and never sent anywhere: nothing else holds it."""
    return secrets.token_bytes(32)


def secrets_payload(key: bytes, secret_seed: int | None) -> bytes:
    """What the judge reads from ``--secrets-fd``: the stamp key (hex) and the secret seed."""
    return json.dumps({"stamp_key": key.hex(), "secret_seed": secret_seed}).encode()


def judge_command(entry: Path, out: Path, options: list[str], secrets_fd: int) -> list[str]:
    """The judge's argv: no secret in it (argv is readable by every process on the machine)."""
    return [sys.executable, "-I", "-m", "reference", "judge", "--impl", str(entry), "--out", str(out), *options,
            "--secrets-fd", str(secrets_fd)]  # fmt: skip


def run_judge(cmd: list[str], fd: int, cwd: Path, timeout: float) -> tuple[int, str]:
    """(exit code, output) of the judge, killed after ``timeout`` seconds (exit code -1): forked from
    this thread's judge template where it runs (reference.grade.template: the judges' imports paid
    once), else in a fresh process. This task's process is the subreaper of the judge's tree: whatever
    the judge left (killed before it could sweep its own workers) is killed before the report is read."""
    from reference.grade.template import SECRETS_FD, TemplateLost, forget, template
    from reference.sandbox.reaper import Sweep

    held = template() if _sandboxed(cmd) else None  # NOTE: before the sweep: never a stray
    sweep = Sweep()
    try:
        if held is not None:
            argv = cmd[cmd.index("reference") + 1 :]
            argv[argv.index("--secrets-fd") + 1] = SECRETS_FD  # the child's number for the same pipe
            try:
                return held.judge(argv, fd, cwd, timeout)
            except TemplateLost:
                forget(held)  # the judge never started: it runs in a fresh process below
        # the judge dies with the task's process: a Dask worker killed mid-task leaves no judge behind
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=timeout, pass_fds=(fd,),
                              preexec_fn=die_with_parent)  # fmt: skip
        return proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace")
    except subprocess.TimeoutExpired as err:
        text = ((err.stdout or b"") + (err.stderr or b"")).decode(errors="replace")
        return -1, f"error: the judge did not finish within {timeout:g} s (--submission-timeout)\n{text}"
    finally:
        sweep.kill_new()


def _sandboxed(cmd: list[str]) -> bool:
    """Whether the judge's workers run sandboxed (its ``--sandbox`` tier, resolved here).

    # NOTE: a judge template serves sandboxed judges only. An unsandboxed submission (``grade
    # --unsandboxed``) could reach the template as it can reach anything of this user, and every judge
    # forked after it would start from what it left; a fresh process per judge at least starts clean.
    """
    from reference.sandbox.tiers import resolve_sandbox

    tier = cmd[cmd.index("--sandbox") + 1] if "--sandbox" in cmd[:-1] else "auto"
    try:
        return resolve_sandbox(tier) != "process"
    except Exception:  # noqa: BLE001  # a tier that cannot run here: the judge itself says so, freshly started
        return False


def launch(cmd_for_fd: Any, payload: bytes, cwd: Path, timeout: float) -> tuple[int, str]:
    """Run the judge (``cmd_for_fd(fd)``) with ``payload`` waiting in a pipe it inherits as ``fd``:
    (exit code, output)."""
    r, w = os.pipe()
    try:
        # NOTE: written whole before the judge starts, then the write end closed: the payload is far
        # below a pipe's capacity (64 KiB), so this never blocks, and the judge reads it up to EOF.
        with os.fdopen(w, "wb") as f:
            f.write(payload)
        return run_judge(cmd_for_fd(r), r, cwd, timeout)
    finally:
        os.close(r)


# --- the report read back ----------------------------------------------------------------------------


def read_report(out: Path) -> tuple[dict[str, bytes], str]:
    """({relative posix path: bytes} of the judge's --out, '' or why it cannot be a result)."""
    files: dict[str, bytes] = {}
    if not out.is_dir() or out.is_symlink():
        return files, ""
    total = 0
    for p in sorted(out.rglob("*")):
        # NOTE: a link is never read (it could name any file of this user); its name is then
        # missing from the files, and the stamp check says so.
        if p.is_symlink() or not p.is_file():
            continue
        total += p.stat().st_size
        if total > MAX_REPORT_BYTES:
            return {}, f"the report holds more than {MAX_REPORT_BYTES >> 20} MB"
        files[p.relative_to(out).as_posix()] = p.read_bytes()
    return files, ""


def check_report(files: dict[str, bytes], key: bytes, exit_code: int, entry_bytes: bytes) -> tuple[dict[str, Any], str]:
    """(run.json, '') when ``files`` is what this task's judge stamped about this submission: signed with
    ``key``, every file as listed, its exit code the process's, a run id, and the judged file the
    entry (by SHA-256). Else ({}, why it is no result)."""
    from reference.report.publish import verify_stamp

    run, why = verify_stamp(files, key, exit_code)
    if why:
        return {}, why
    if run.get("command") != "judge" or not isinstance(run.get("run_id"), str) or not run["run_id"]:
        return {}, "run.json names no judge run"
    judged = run.get("judged_files")
    if not isinstance(judged, dict) or hashlib.sha256(entry_bytes).hexdigest() not in judged.values():
        return {}, "run.json's judged file is not this submission's entry"
    return run, ""


def clip(text: str) -> str:
    """At most MAX_OUTPUT characters: the first line (where the reason for no result stands) and the tail."""
    if len(text) <= MAX_OUTPUT:
        return text
    first = text.split("\n", 1)[0][:1000]
    return f"{first}\n[... cut ...]\n{text[-(MAX_OUTPUT - len(first) - 20) :]}"


def _no_result_output(text: str, exit_code: int, had_report: bool, why: str) -> str:
    """The judge's output with the reason there is no result first (what the gradebook shows)."""
    if had_report:
        return f"error: the judge's report is no result: {why}\n{text}"
    if exit_code in (0, 1):
        return f"error: the judge wrote no report ({why})\n{text}"
    return text  # a judge that could not run, or ran out of time: its own error line says why


def judge_submission(spec: dict[str, Any], options: list[str], timeout: float,
                     secret_seed: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Rebuild the submission in a private copy, run ``python -m reference judge`` on it (its own
    process, killed after ``timeout`` seconds), and return the report as plain data: only what the
    judge stamped with this task's key, else no files and the reason (``stamp``)."""
    from reference.grade.template import template

    template()  # NOTE: started (once per thread) before the task's clock: no submission pays for it
    start = time.perf_counter()
    announce_start()
    clean_stale()
    result: dict[str, Any] = {"id": spec["id"], "sha256": spec["sha256"], "judge_version": judge_version(),
                              "secret_seed": secret_seed is not None}  # fmt: skip
    key = new_key()
    ws = make_workspace(spec["files"])
    try:
        entry = safe_path(ws.submission, spec["entry"])
        shown = ["--shown-as", str(spec["shown_as"])] if spec.get("shown_as") else []  # the teacher's copy
        cmd_for_fd = lambda fd: judge_command(entry, ws.out, [*options, *shown], fd)
        code, text = launch(cmd_for_fd, secrets_payload(key, secret_seed), ws.out.parent, timeout)
        result["exit_code"] = code
        files, why = read_report(ws.out)
        run: dict[str, Any] = {}
        if not why:
            run, why = check_report(files, key, code, spec["files"][spec["entry"]])
        if why:
            text = _no_result_output(text, code, ws.out.exists() or ws.out.is_symlink(), why)
            files = {}
        result["stamp"] = why or "verified"
        text = text.replace(str(ws.submission) + "/", "").replace(str(ws.root), "<private>")  # the student's own names
        result["output"] = clip(text)
        result["files"] = files
        result["sandbox"] = run.get("sandbox", "")
        result["run_id"] = run.get("run_id", "")
    finally:
        shutil.rmtree(ws.root, ignore_errors=True)
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result
