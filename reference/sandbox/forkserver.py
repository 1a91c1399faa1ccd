"""Workers forked from a server that imported the worker's room once (issue: a class in minutes).

A fresh worker spends about 0.2 s of CPU before it reads its first request, nearly all of it in
``import numpy``; a judgement starts about twenty workers (one per scope, and one after each lost
one). Where the kernel can keep forked workers apart, a session starts one server instead
(``python -I -B -m reference.sandbox.forkserver FD``, in the session's sandbox tier, as the workers'
uid, inside bubblewrap with the session's folder bound writable where that is the tier) that imports
NumPy and reference.sandbox.worker, then forks one child per worker. The child is exactly a fresh
worker from the point where it reads its first message: it confines itself (limits, no new
privileges, Landlock: writes to its own folder only), then imports the implementation.

What keeps the children apart (and the server out of their reach) is Landlock, so the server is used
only where Landlock's ABI has signal scoping (ABI >= 6; reference.sandbox.tiers.forking_problem):
each child restricts itself into its own domain, which cannot ptrace or signal a process outside it
(the server, the other workers) nor reach them by abstract unix socket, and writes only its own
folder. The server never runs implementation code: it holds no submission's state, only the
interpreter's and NumPy's after their imports, the same for every child (NumPy's global random state
is reseeded in each child, as a fresh interpreter's is).

Protocol on a SOCK_SEQPACKET socket, one JSON object per message:
judge -> server ``{"op": "fork", "dir": D, "env": {...}}`` with three descriptors (the worker's
request pipe, its answer pipe, its log pipe); ``{"op": "kill", "pid": N}``; an empty message ends the
server (its children die with it). server -> judge ``{"ready": true, "cpu": s}`` once, then
``{"pid": N, "cpu": s}`` for each fork (N: the child's pid as the server sees it; ``cpu``: the
server's CPU seconds so far) or ``{"refused": why}``, and ``{"exit": code, "pid": N}`` when a child
has ended (code: its status, -signal when killed).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from reference.sandbox.reaper import die_with_parent

MAX_MESSAGE = 1 << 16


# --- the server's side ---------------------------------------------------------------------------------


def serve(fd: int) -> None:
    """The server: import the worker's room, say so, then fork a worker per request until told to end."""
    die_with_parent(os.getppid())
    import numpy  # noqa: F401  # what every worker imports first: once here

    import reference.sandbox.worker  # noqa: F401

    sock = socket.socket(fileno=fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    children: set[int] = set()
    _say(sock, {"ready": True, "cpu": time.process_time()})
    while True:
        ready, _, _ = select.select([sock, wake_r], [], [])
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                os.read(wake_r, 4096)
            _reap(sock, children)
        if sock not in ready:
            continue
        try:
            message, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 3)
        except InterruptedError:
            continue
        except OSError:
            message, fds = b"", []
        if not message:
            _end(children)
        try:
            request = json.loads(message)
            if request.get("op") == "kill":
                _kill(int(request["pid"]), children)
                continue
            if request.get("op") != "fork" or len(fds) != 3:
                raise ValueError(f"not a fork request with three descriptors: {request.get('op')!r}, {len(fds)}")
            folder, env = str(request["dir"]), {str(k): str(v) for k, v in dict(request["env"]).items()}
        except (ValueError, KeyError, TypeError) as err:
            for f in fds:
                os.close(f)
            _say(sock, {"refused": str(err)})
            continue
        server = os.getpid()
        try:
            pid = os.fork()
        except OSError as err:  # NOTE: the uid's process limit, spent by a worker's children: refused, not ended
            pid, refused = 0, f"fork: {err}"
        else:
            refused = ""
            if pid == 0:
                _child(server, sock, folder, env, *fds)
            children.add(pid)
        for f in fds:
            os.close(f)
        _say(sock, {"refused": refused} if refused else {"pid": pid, "cpu": time.process_time()})


def _say(sock: socket.socket, value: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        sock.send(json.dumps(value).encode())


def _reap(sock: socket.socket, children: set[int]) -> None:
    """Report every child that has ended."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        _say(sock, {"exit": os.waitstatus_to_exitcode(status), "pid": pid})


def _kill(pid: int, children: set[int]) -> None:
    """SIGKILL a child and its process group (its own session: what it started stays in it unless it
    left; the judge's sweep kills those at the end)."""
    if pid not in children:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _end(children: set[int]) -> None:
    for pid in list(children):
        _kill(pid, children)
    os._exit(0)


def _child(server: int, sock: socket.socket, folder: str, env: dict[str, str], fd_in: int, fd_out: int,
           fd_log: int) -> None:  # fmt: skip
    """The worker: its own session, its own folder and environment, its output into the log pipe,
    no descriptor of the server's; then reference.sandbox.worker.main, which confines it. Never returns."""
    code = 1
    try:
        os.setsid()
        die_with_parent(server)  # NOTE: a server that ended between the fork and here: this child ends too
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sock.close()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fd_log, 1)
        os.dup2(fd_log, 2)
        keep = {0, 1, 2, fd_in, fd_out}
        for fd in _open_fds():
            if fd not in keep:
                with contextlib.suppress(OSError):
                    os.close(fd)
        os.chdir(folder)
        os.environ.clear()
        os.environ.update(env)
        import tempfile

        tempfile.tempdir = None  # NOTE: TMPDIR is the worker's own folder now: not what the server found

        import numpy as np

        np.random.seed()  # NOTE: a fresh interpreter's global random state, not the server's copy of it
        from reference.sandbox import worker

        worker.main(["scratch-cnn-worker", str(fd_in), str(fd_out)])
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _open_fds() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(3, 1024))


# --- the judge's side ------------------------------------------------------------------------------------


class ServerLost(Exception):
    """The server could not start, refused, or ended: the session starts fresh workers instead."""


class Forked:
    """A worker forked by the server: the few things of subprocess.Popen the session uses."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server, self.pid = server, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        self.returncode = self.server.exits.get(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.server.changed:
            while self.pid not in self.server.exits:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
                if self.server.lost:  # the server ended: its children died with it
                    self.server.exits.setdefault(self.pid, -signal.SIGKILL)
                    break
                self.server.changed.wait(timeout=left if left is not None else 1.0)
        self.returncode = self.server.exits[self.pid]
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the worker and its process group (the server does it: in bubblewrap this pid is the
        sandbox's, not ours)."""
        if self.poll() is None:
            self.server.kill(self.pid)


class ForkServer:
    """The server of one session, started by ``start`` (a function that runs a Popen on the session's
    spawner thread, so the server dies with that thread)."""

    def __init__(self, argv_prefix: list[str], env: dict[str, str], cwd: str, start: Any, popen_kw: dict[str, Any],
                 startup_seconds: float) -> None:  # fmt: skip
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = mine
        argv = [*argv_prefix, sys.executable, "-I", "-B", "-m", "reference.sandbox.forkserver", str(theirs.fileno())]
        self.proc = start(lambda: subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),), start_new_session=True, **popen_kw))  # fmt: skip
        theirs.close()
        self.lock = threading.Lock()  # one fork request at a time
        self.changed = threading.Condition()
        self.exits: dict[int, int] = {}
        self.replies: list[dict[str, Any]] = []
        self.lost = ""
        self.cpu = 0.0  # the server's CPU seconds, as it last said (the workers' start-up: reference/costs.py)
        self.reader = threading.Thread(target=self._read, daemon=True, name="scratch-cnn-forkserver")
        self.reader.start()
        try:
            self.cpu = float(self._reply(time.monotonic() + startup_seconds, "ready")["cpu"])
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(MAX_MESSAGE)
            except OSError:
                data = b""
            try:
                message = json.loads(data) if data else None
            except ValueError:
                message = None
            with self.changed:
                if not isinstance(message, dict):
                    self.lost = self.lost or (
                        "the worker server ended" if not data else "the worker server sent garbage"
                    )
                    self.changed.notify_all()
                    return
                if type(message.get("exit")) is int and type(message.get("pid")) is int:
                    self.exits[message["pid"]] = message["exit"]
                else:
                    self.replies.append(message)
                self.changed.notify_all()

    def _reply(self, deadline: float, key: str) -> dict[str, Any]:
        with self.changed:
            while not self.replies:
                left = deadline - time.monotonic()
                if not self.lost and left <= 0:
                    self.lost = "the worker server did not answer in time"
                if self.lost:
                    raise ServerLost(self.lost)
                self.changed.wait(timeout=left)
            reply = self.replies.pop(0)
        if key not in reply:
            raise ServerLost(f"the worker server refused: {str(reply.get('refused', reply))[:300]}")
        return reply

    def fork(self, folder: str, env: dict[str, str], fds: tuple[int, int, int], deadline: float) -> Forked:
        """A worker in ``folder`` reading requests from fds[0], answering on fds[1], printing into fds[2]."""
        with self.lock:
            try:
                socket.send_fds(self.sock, [json.dumps({"op": "fork", "dir": folder, "env": env}).encode()], list(fds))
            except OSError as err:
                raise ServerLost(f"the worker server did not take the request: {err}") from None
            reply = self._reply(deadline, "pid")
        pid = reply["pid"]
        if type(pid) is not int or pid <= 0:
            raise ServerLost(f"the worker server answered with no pid: {reply}")
        self.cpu = float(reply.get("cpu", self.cpu))
        return Forked(self, pid)

    def kill(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            self.sock.send(json.dumps({"op": "kill", "pid": pid}).encode())

    def close(self) -> None:
        """End the server; its children die with it (PR_SET_PDEATHSIG)."""
        with contextlib.suppress(OSError):
            self.sock.send(b"")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        with contextlib.suppress(OSError):
            self.sock.close()
        self.reader.join(timeout=2)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
