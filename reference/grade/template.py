"""A judge per submission forked from a template process that imported the judges once (issue: a
class in minutes).

A fresh ``python -m reference judge`` spends about 3 s of CPU on imports before it judges anything
(torch alone 2.2 s; the judges import everything before their first worker starts, so that nothing
they import later comes from a file a worker could have touched), and a curve judge 1 s more on
torch's ``_dynamo`` (imported by its ``torch.optim.SGD``). ``grade`` pays that once
per Dask worker thread instead: the template (``python -I -m reference.grade.template FD``) imports
what the judges import, then forks one child per submission; the child is the judge, exactly the
``judge`` command line it is given, and exits.

What the template never holds: a submission's secrets. The grading task sends the request (the
judge's argv and its folder) over a socket together with two file descriptors: the pipe holding the
secrets (the judge reads it as ``--secrets-fd``, as a fresh judge reads the same pipe inherited) and
the file that takes the judge's output. Only the child reads the pipe; the template passes the
descriptor on and closes it. The template runs no
submission code and no judge: each child starts from the same state, the one the imports left.

The child is the task's to time out: it runs in its own session (``os.setsid``), so the task kills
its whole process group; it dies with the template (``PR_SET_PDEATHSIG``), and the template with the
task's thread. A worker the killed judge leaves behind is re-parented past the template (which is no
subreaper) to the task's process, whose sweep (reference.sandbox.reaper) kills it.

Protocol, one request at a time: the task sends ``{"argv": [...], "cwd": "..."}`` with the two
descriptors (``socket.send_fds``); the template answers a line ``{"pid": N}`` when the child is
started and a line ``{"pid": N, "exit": CODE}`` when it has ended. It first sends ``{"ready": true}``
once its imports are done. An empty message ends it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from reference.sandbox.reaper import die_with_parent

SECRETS_FD = "{secrets_fd}"  # in a request's argv: the number the secrets' descriptor has in the child
START_SECONDS = 120.0  # the template's imports (about 4 s alone; far more on a loaded machine)
MAX_REQUEST = 1 << 16


# --- the template's side -----------------------------------------------------------------------------


def serve(fd: int) -> None:
    """The template: import what the judges import, say so, then fork a judge per request."""
    from reference.judging import preload

    # NOTE: with training: the first torch.optim step imports torch._dynamo (1 s): once here, not in
    # every judge that judges curves (their twin trains with torch.optim.SGD; the optimiser judge's
    # twins do not use the classes: reference.layers.optimizer.FunctionalTwin)
    preload(training=True)
    warm()
    # NOTE: what the imports and the warm-up made (about 240,000 objects) lives as long as the
    # template: out of the cyclic collector's sight, so no collection in a judge forked from it writes
    # (and so copies) the pages that hold it. Only here: a process that goes on to do other work (a
    # test run, a grader holding a Dask client) keeps its collector's timing as it was
    gc.freeze()

    sock = socket.socket(fileno=fd)
    _reply(sock, {"ready": True})
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(sock, MAX_REQUEST, 2)
        except OSError:
            os._exit(0)
        if not message:
            os._exit(0)
        try:
            request = json.loads(message)
            argv, cwd = [str(a) for a in request["argv"]], str(request["cwd"])
            if len(fds) != 2:
                raise ValueError(f"{len(fds)} descriptors, expected the secrets' and the output's")
        except (ValueError, KeyError, TypeError) as err:
            for f in fds:
                os.close(f)
            _reply(sock, {"refused": str(err)})
            continue
        pid = os.fork()
        if pid == 0:
            _child(sock, argv, cwd, fds[0], fds[1])
        for f in fds:
            os.close(f)
        _reply(sock, {"pid": pid})
        _, status = os.waitpid(pid, 0)
        _reply(sock, {"pid": pid, "exit": os.waitstatus_to_exitcode(status)})


def warm() -> int:
    """The torch twin's results for grade's default cases (the quick grid, every layer, in each dtype
    the autograd judge uses), computed here once with torch on one thread: every judge forked
    afterwards finds them in its copy of the memo (reference.judges.runs.twin_run) instead of computing
    them again. A secret seed's cases are never among them (the template is never told the seed).
    Returns how many results it holds."""
    from reference.cases.grid import QUICK, case_inputs, grid, layer_cases, sample
    from reference.judges.autograd import DTYPES, dtypes_of
    from reference.judges.runs import twin_run
    from reference.layers import kind
    from reference.threads import pin_threads

    pin_threads()
    done = 0
    for case in layer_cases(sample(grid(), QUICK)):  # what `judge --quick` takes of every layer
        if case.lifecycle or kind(case.layer).self_reference is not None:
            continue
        for dtype in dtypes_of(case, DTYPES):
            try:
                twin_run(case, case_inputs(case, dtype))
                done += 1
            except Exception:  # noqa: BLE001  # the judge that needs it computes it and reports what it raises
                continue
    return done


def _reply(sock: socket.socket, value: dict[str, Any]) -> None:
    sock.sendall(json.dumps(value).encode() + b"\n")


def _child(sock: socket.socket, argv: list[str], cwd: str, secrets_fd: int, out_fd: int) -> None:
    """The judge: ``reference judge`` on ``argv`` in ``cwd``, its output into ``out_fd``; never returns."""
    code = 1
    try:
        os.setsid()
        die_with_parent()
        sock.close()
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        os.chdir(cwd)
        argv = [str(secrets_fd) if a == SECRETS_FD else a for a in argv]
        sys.argv = ["reference", *argv]
        # NOTE: `python -m reference` itself (reference/__main__.py), so this package imports no command line
        runpy.run_module("reference", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


# --- the grading task's side ---------------------------------------------------------------------------


class TemplateLost(Exception):
    """The template could not start or answer: the caller judges in a fresh process instead."""


class Template:
    """A template process, started by (and dying with) the calling thread."""

    def __init__(self) -> None:
        mine, theirs = socket.socketpair()
        self.sock = mine
        self.proc = subprocess.Popen([sys.executable, "-I", "-m", "reference.grade.template", str(theirs.fileno())],
                                     pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)  # fmt: skip
        theirs.close()
        self.buffer = b""
        try:
            if self._line(time.monotonic() + START_SECONDS).get("ready") is not True:
                raise TemplateLost("the judge template did not say it was ready")
        except BaseException:
            self.close()
            raise

    def _line(self, deadline: float) -> dict[str, Any]:
        """The next line of the template (a JSON object); TimeoutError past ``deadline``."""
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                raise
            except OSError as err:
                raise TemplateLost(f"the judge template's socket failed: {err}") from None
            if not chunk:
                raise TemplateLost("the judge template ended")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        value = json.loads(line)
        if not isinstance(value, dict):
            raise TemplateLost("the judge template said something that is no object")
        return value

    def judge(self, argv: list[str], secrets_fd: int, cwd: Path, timeout: float) -> tuple[int, str]:
        """(exit code, output) of ``reference judge`` on ``argv`` (its ``--secrets-fd`` value
        ``SECRETS_FD``), run as a child of the template that reads the secrets from ``secrets_fd`` (a
        pipe of this process, passed on); killed after ``timeout`` seconds (exit code -1).
        TemplateLost before the child started (the pipe then still holds the secrets)."""
        with tempfile.TemporaryFile() as out:
            request = json.dumps({"argv": argv, "cwd": str(cwd)}).encode()
            try:
                socket.send_fds(self.sock, [request], [secrets_fd, out.fileno()])
                started = self._line(time.monotonic() + START_SECONDS)
            except (OSError, TimeoutError) as err:
                raise TemplateLost(f"the judge template did not take the request: {err}") from None
            pid = started.get("pid")
            if type(pid) is not int or pid <= 0:
                raise TemplateLost(f"the judge template refused the request: {started.get('refused', started)}")
            killed, lost = False, ""
            try:
                try:
                    ended = self._line(time.monotonic() + timeout)
                except TimeoutError:
                    killed = True
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
                    ended = self._line(time.monotonic() + 30)
                if ended.get("pid") != pid or type(ended.get("exit")) is not int:
                    lost = "it sent a malformed end of the judge"
            except (TemplateLost, TimeoutError) as err:  # NOTE: the judge had started: an error, not a rerun
                lost = str(err) or "it did not say the judge had ended"
            if lost:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            out.seek(0)
            text = out.read().decode(errors="replace")
        if killed:
            return -1, f"error: the judge did not finish within {timeout:g} s (--submission-timeout)\n{text}"
        if lost:
            self.close()
            return -1, f"error: the judge's template process failed during the judgement ({lost})\n{text}"
        return ended["exit"], text

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


_local = threading.local()


def template() -> Template | None:
    """This thread's template, started on first use; None where it cannot start (the caller judges in
    a fresh process) or where ``SCRATCH_CNN_NO_TEMPLATE`` is set."""
    if os.environ.get("SCRATCH_CNN_NO_TEMPLATE") or not hasattr(socket, "send_fds") or not hasattr(os, "fork"):
        return None
    held = getattr(_local, "template", None)
    if held is not None and held.proc.poll() is None:
        return held
    if getattr(_local, "failed", False):
        return None
    try:
        _local.template = Template()
    except (TemplateLost, TimeoutError, OSError):
        _local.failed = True  # once: a thread whose template cannot start judges in fresh processes
        return None
    return _local.template


def forget(held: Template) -> None:
    """Drop a template that failed a request (the next request starts another)."""
    held.close()
    if getattr(_local, "template", None) is held:
        _local.template = None


if __name__ == "__main__":
    serve(int(sys.argv[1]))
