"""The judge's side of the trust boundary: workers, their limits, and proxies that stand where the
implementation's classes stood.

``open_session(target, ...)`` starts a first worker, which imports the implementation (the judge's
process never does) and says which protocol classes it defines. ``session.impl`` is then a
``RemoteImpl``: ``impl.Conv2D(...)`` builds the layer in a worker and returns a ``RemoteObject``
whose ``forward``/``backward`` send arrays over and read the answer back as fresh arrays, whose
``params`` is a dict of ``RemoteArray`` handles (``params["W"][...] = w`` writes in the worker, so
whether a layer's params are live is the layer's business, as it would be in-process).

What the judges see of a worker's failure is an exception they already turn into a row:
``RemoteError`` (the implementation raised; its type, message and frame), ``WorkerLost`` (the
process ended, was killed, hung past its limit, or sent garbage; a fresh worker takes the next
case). Each scope (a layer type, a network, the training run) has its own worker, so process-wide
state one layer changes never reaches another.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from reference.sandbox import wire
from reference.sandbox.target import Target

SANDBOXES = ("auto", "process", "bwrap")
MARKER = "SCRATCH_CNN_WORKER_RUN"  # in every worker's environment: how its stray descendants are found


@dataclass
class Limits:
    """Limits on the judged code (README: "Judging code you do not trust")."""

    case_seconds: float = 60.0  # wall clock per case; a layer's remaining cases are not run after its first time-out
    run_seconds: float = 3600.0  # the whole run; cases left when it is spent are not run
    train_seconds: float = 1800.0  # the training judge's whole run (it is one case)
    startup_seconds: float = 60.0  # a worker's start and the implementation's import
    memory_mb: int = 4096  # address space per worker (RLIMIT_AS): a larger allocation fails in the worker
    log_bytes: int = 1 << 20  # of each worker's stdout and stderr kept in the log
    max_message_mb: int = 2048  # the largest answer a worker may send

    def describe(self) -> dict[str, Any]:
        return dict(self.__dict__)


class RemoteError(Exception):
    """The implementation raised (in its worker). ``mro`` names its classes, ``where`` its frame."""

    def __init__(self, info: dict[str, Any], during: str) -> None:
        self.type_name = str(info.get("type", "Exception"))[:100]
        mro = info.get("mro")
        self.mro = [str(m)[:100] for m in mro] if isinstance(mro, list) else [self.type_name]
        self.message = str(info.get("message", ""))[:4000]
        self.where = str(info.get("where", ""))[:300]
        self.during = during
        super().__init__(self.message)


class WorkerLost(Exception):
    """The worker did not answer: it ended, was killed, exceeded a limit, or sent malformed data."""

    def __init__(self, message: str, *, reason: str) -> None:
        self.reason = reason  # exit | signal | timeout | budget | malformed
        super().__init__(message)


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def resolve_sandbox(choice: str) -> str:
    """``auto`` -> bwrap where it is installed and works, else process. ``bwrap`` without it: ValueError."""
    if choice not in SANDBOXES:
        raise ValueError(f"--sandbox: {choice!r} is not one of {', '.join(SANDBOXES)}")
    if choice == "process":
        return "process"
    works = bwrap_works()
    if choice == "bwrap" and not works:
        raise ValueError("--sandbox bwrap: bubblewrap is not usable here (" + (
            "no 'bwrap' on PATH; on Debian: apt-get install bubblewrap" if not bwrap_path()
            else "'bwrap' is installed but cannot create its namespaces") + ")")  # fmt: skip
    return "bwrap" if works else "process"


_BWRAP_OK: dict[str, bool] = {}


def bwrap_works() -> bool:
    path = bwrap_path()
    if not path:
        return False
    if path not in _BWRAP_OK:
        try:
            probe = subprocess.run([*bwrap_argv(tempfile.gettempdir(), path), "true"], capture_output=True, timeout=20)
            _BWRAP_OK[path] = probe.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _BWRAP_OK[path] = False
    return _BWRAP_OK[path]


def bwrap_argv(workdir: str, path: str | None = None) -> list[str]:
    """The whole file system read-only, the worker's own directory writable, no network, own PIDs;
    the sandbox dies with the judge."""
    return [path or bwrap_path() or "bwrap", "--die-with-parent", "--new-session", "--unshare-all",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/dev/shm",
            "--bind", workdir, workdir, "--chdir", workdir, "--"]  # fmt: skip


class Log:
    """A worker's stdout and stderr, drained by a thread, at most ``cap`` bytes kept."""

    def __init__(self, stream: Any, path: Path | None, cap: int, title: str) -> None:
        self.cap, self.kept, self.cut = cap, 0, 0
        self.path = path
        self.file = open(path, "ab") if path else None  # noqa: SIM115 - closed by the drain thread
        if self.file:
            self.file.write(f"=== {title} ===\n".encode())
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream: Any) -> None:
        try:
            while chunk := stream.read1(1 << 16):
                room = max(0, self.cap - self.kept)
                if self.file and room:
                    self.file.write(chunk[:room])
                self.kept += min(room, len(chunk))
                self.cut += max(0, len(chunk) - room)
        except (OSError, ValueError):
            pass
        finally:
            if self.file:
                if self.cut:
                    self.file.write(
                        f"\n[... {self.cut} more bytes of output cut: the log keeps {self.cap} bytes]\n".encode()
                    )
                self.file.close()

    def join(self) -> None:
        self.thread.join(timeout=5)


class Worker:
    """One worker process: pipes, the implementation imported, a table of its objects."""

    def __init__(self, session: Session, scope: str) -> None:
        self.session, self.scope = session, scope
        self.dead: str = ""
        self.seq = 0
        self.pending_release: list[int] = []
        self.classes: dict[str, Any] = {}
        self.dir = tempfile.mkdtemp(prefix="scratch-cnn-worker-")
        to_worker_r, self.to_worker = os.pipe()
        self.from_worker, from_worker_w = os.pipe()
        for fd in (self.to_worker, self.from_worker):
            with contextlib.suppress(OSError):  # 1 MB pipes (Linux): a 6 MB activation in 6 writes, not 100
                fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ
        argv = [sys.executable, "-I", "-m", "reference.sandbox.worker", str(to_worker_r), str(from_worker_w)]
        if session.sandbox == "bwrap":
            argv = bwrap_argv(self.dir) + argv
        env = worker_env(self.dir, session.run_id)
        # NOTE: started from the session's one long-lived spawner thread, never from a judge's pool
        # thread: bubblewrap's --die-with-parent is PR_SET_PDEATHSIG, which fires when the *thread*
        # that forked it exits, so a worker started by a finished pool thread would be killed.
        self.proc = session.spawn(lambda: subprocess.Popen(
            argv, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            pass_fds=(to_worker_r, from_worker_w), start_new_session=True))  # fmt: skip
        os.close(to_worker_r)
        os.close(from_worker_w)
        for fd in (self.to_worker, self.from_worker):
            os.set_blocking(fd, False)
        self.log = Log(self.proc.stdout, session.log_path(scope), session.limits.log_bytes, f"worker for {scope}")
        deadline = time.monotonic() + session.limits.startup_seconds
        hello = {"impl": session.target.spec(), "names": list(session.names), "memory_mb": session.limits.memory_mb}
        self.answer = self._exchange(hello, [], deadline, "import of the implementation", first=True)

    # --- the exchange -----------------------------------------------------------------------------

    def _exchange(self, header: dict[str, Any], buffers: list[memoryview], deadline: float, during: str,
                  first: bool = False) -> tuple[dict[str, Any], list[memoryview]]:  # fmt: skip
        if self.dead:
            raise WorkerLost(f"the worker for {self.scope} was lost earlier ({self.dead})", reason="exit")
        if not first:
            self.seq += 1
            header = {**header, "seq": self.seq, "release": self.pending_release}
            self.pending_release = []
        limit = self.session.limits.max_message_mb << 20
        try:
            wire.send(self.to_worker, header, buffers, deadline)
            answer, data = wire.receive(self.from_worker, deadline, max_body=limit)
        except wire.Timeout:
            if first:
                raise self._lose(f"the implementation did not finish importing within "
                                 f"{self.session.limits.startup_seconds:g} s", "timeout") from None  # fmt: skip
            raise self._lose(*self.session.timeout_reason(during)) from None
        except wire.Closed:
            raise self._lose(self._ended(during), "exit") from None
        except wire.WireError as err:
            raise self._lose(
                f"the implementation's worker sent malformed data during {during} ({err})", "malformed"
            ) from None
        if not first and answer.get("seq") != self.seq:
            raise self._lose(f"the implementation's worker sent an answer out of turn during {during} (a second "
                             "process or thread writing to the judge's pipe)", "malformed")  # fmt: skip
        return answer, data

    def _ended(self, during: str) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return f"the implementation closed the judge's pipe during {during}"
        if self.session.sandbox == "bwrap" and 128 < code < 128 + 65:
            code = 128 - code  # bubblewrap reports its child's death by signal N as status 128 + N
        if code >= 0:
            return f"the implementation ended its process with status {code} during {during}"
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        why = " (out of memory, or killed from outside)" if -code == signal.SIGKILL else ""
        return f"the implementation's process was killed by signal {name}{why} during {during}"

    def _lose(self, message: str, reason: str) -> WorkerLost:
        self.dead = message
        self.kill()
        self.session.lost(self.scope, message, reason)
        return WorkerLost(message, reason=reason)

    def request(self, header: dict[str, Any], buffers: list[memoryview], during: str, encoder: Any = None) -> Any:
        answer, data = self._exchange(header, buffers, self.session.deadline(), during)
        try:
            if "raised" in answer:
                if not isinstance(answer["raised"], dict):
                    raise wire.WireError("an exception report that is not an object")
                raise RemoteError(answer["raised"], during)
            if "ok" not in answer:
                raise wire.WireError("an answer with neither a value nor an exception")
            dec = wire.Decoder(data, make_ref=lambda node: self.make_ref(node, during))
            value = dec.value(answer["ok"])
            if encoder is not None and encoder.rngs:
                self._sync_rngs(encoder.rngs, answer.get("rngs"))
            return value
        except wire.WireError as err:
            raise self._lose(
                f"the implementation's worker sent malformed data during {during} ({err})", "malformed"
            ) from None

    def _sync_rngs(self, sent: list[np.random.Generator], states: Any) -> None:
        """The Generators passed to a call advance as they would in-process (the worker sends their states back)."""
        if not isinstance(states, list) or len(states) != len(sent):
            raise wire.WireError("random generator states that do not match the generators sent")
        for item in states:
            if not (isinstance(item, list) and len(item) == 2 and type(item[0]) is int and 0 <= item[0] < len(sent)):
                raise wire.WireError("a random generator state without its slot")
            sent[item[0]].bit_generator.state = wire.rng_from_state(item[1]).bit_generator.state

    def make_ref(self, node: dict[str, Any], during: str) -> Any:
        ref_id = node.get("id")
        if type(ref_id) is not int:
            raise wire.WireError("a handle without an integer id")
        if node.get("kind") == "array":
            return RemoteArray(self, ref_id, wire.check_shape(node.get("shape")), wire.check_dtype(node.get("dtype")))
        obj = RemoteObject(self, ref_id, str(node.get("type", "object"))[:100], bool(node.get("callable")))
        methods = node.get("methods")
        if isinstance(methods, list) and len(methods) < 1000:
            obj._methods.update({m: RemoteMethod(obj, m) for m in methods if isinstance(m, str) and m.isidentifier()})
        return obj

    def release(self, ref_id: int) -> None:
        if not self.dead:
            self.pending_release.append(ref_id)

    # --- operations -------------------------------------------------------------------------------

    def call(self, ref_id: int, attr: str | None, args: tuple[Any, ...], kwargs: dict[str, Any], fetch: bool,
             during: str) -> Any:  # fmt: skip
        enc = wire.Encoder(by_ref=_by_ref(self))
        header = {"op": "call", "obj": ref_id, "attr": attr, "fetch": fetch,
                  "args": [enc.value(a) for a in args], "kwargs": {k: enc.value(v) for k, v in kwargs.items()}}  # fmt: skip
        return self.request(header, enc.buffers, during, enc)

    def simple(self, op: str, ref_id: int, during: str, **fields: Any) -> Any:
        enc = wire.Encoder(by_ref=_by_ref(self))
        header = {
            "op": op,
            "obj": ref_id,
            **{k: enc.value(v) if k in ("key", "value") else v for k, v in fields.items()},
        }
        return self.request(header, enc.buffers, during)

    def batch(self, items: list[tuple[Any, ...]], during: str, keep: list[int] | None = None) -> list[Any]:
        """Run ``("call", obj, method, args[, g])``, ``("getattr", obj, name, None)`` and ``("setitem", obj,
        key, value)`` items in order in one exchange; an object or argument may be ``wire.Res(k)``, the
        result of item k. Returns the results of items ``keep`` (default: every call) as data, or
        raises the first exception. The worker does exactly what the same requests one by one would;
        only the round trips are saved."""
        enc = wire.Encoder(by_ref=_by_ref(self))
        subs = []
        for kind, obj, name, payload, *dot in items:
            target = enc.value(obj) if isinstance(obj, wire.Res) else obj._id
            if kind == "call":
                subs.append({"op": "call", "obj": target, "attr": name, "args": [enc.value(a) for a in payload]})
                if dot:  # ("call", obj, name, args, g): the worker sends back sum(result * g), one float
                    subs[-1]["dot"] = enc.value(dot[0])
            elif kind == "getattr":
                subs.append({"op": "getattr", "obj": target, "attr": name})
            else:
                subs.append({"op": "setitem", "obj": target, "key": enc.value(name), "value": enc.value(payload)})
        header: dict[str, Any] = {"op": "batch", "items": subs}
        if keep is not None:
            header["keep"] = keep
        values = self.request(header, enc.buffers, during)
        wanted = len(keep) if keep is not None else sum(k == "call" for k, *_ in items)
        if not isinstance(values, list) or len(values) != wanted:
            raise self._lose(f"the implementation's worker sent malformed data during {during} (a batch of the "
                             "wrong length)", "malformed")  # fmt: skip
        return values

    def put(self, value: Any) -> Any:
        """``value`` copied into the worker, kept there: a handle to it."""
        enc = wire.Encoder(by_ref=_by_ref(self))
        return self.request({"op": "put", "value": enc.value(value)}, enc.buffers, "sending an input")

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def close(self) -> None:
        if not self.dead and self.proc.poll() is None:
            with contextlib.suppress(wire.Timeout, wire.Closed, OSError):
                wire.send(self.to_worker, {"op": "bye"}, [], time.monotonic() + 1)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=2)
        self.dead = self.dead or "closed"
        self.kill()
        for fd in (self.to_worker, self.from_worker):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.log.join()
        shutil.rmtree(self.dir, ignore_errors=True)


def _by_ref(worker: Worker) -> Any:
    def encode(v: Any) -> dict[str, Any]:
        if isinstance(v, (RemoteArray, RemoteObject)):
            if v._worker is not worker:
                raise TypeError(f"a handle of the worker for {v._worker.scope} passed to the worker for {worker.scope}")
            return {"t": "ref", "id": v._id}
        if isinstance(v, RemoteMethod):
            raise TypeError("a method of a judged object cannot be passed as an argument")
        raise TypeError(f"a {type(v).__name__} cannot cross the sandbox boundary")

    return encode


def worker_env(workdir: str, run_id: str) -> dict[str, str]:
    """A small, fresh environment: no PYTHON* variables, HOME and TMPDIR in the worker's own
    directory, BLAS pinned to the judges' thread count, and the marker of this run."""
    from reference.threads import thread_count

    n = str(thread_count())
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
           "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n, "MPLBACKEND": "Agg", MARKER: run_id}  # fmt: skip
    return env


# --- proxies --------------------------------------------------------------------------------------


class RemoteArray(NDArrayOperatorsMixin):
    """A handle to an array that lives in a worker. Reading it (``np.asarray``, arithmetic, indexing)
    fetches its current data; ``handle[...] = value`` writes into it there."""

    def __init__(self, worker: Worker, ref_id: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._worker, self._id = worker, ref_id
        self.shape, self.dtype = shape, dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self._worker.simple("fetch", self._id, "reading an array")
        if not isinstance(a, np.ndarray):
            raise wire.WireError("an array fetch that did not send an array")
        return a.astype(dtype) if dtype is not None else a

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        inputs = tuple(np.asarray(x) if isinstance(x, RemoteArray) else x for x in inputs)
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __getitem__(self, key: Any) -> Any:
        return np.asarray(self)[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._worker.simple("setitem", self._id, "writing into an array", key=key, value=np.asarray(value))

    def __float__(self) -> float:
        return float(np.asarray(self))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(np.asarray(self), name)  # .max(), .T, .copy(): of the data as it is now

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._worker.release(self._id)

    def __repr__(self) -> str:
        return f"RemoteArray(shape={self.shape}, dtype={self.dtype}, worker={self._worker.scope!r})"


class RemoteObject:
    """A handle to any other object in a worker: attributes, calls, items go there."""

    def __init__(self, worker: Worker, ref_id: int, type_name: str, is_callable: bool, label: str = "",
                 lazy: bool = False) -> None:  # fmt: skip
        d = self.__dict__
        d["_worker"], d["_id"], d["_type"], d["_callable"] = worker, ref_id, type_name, is_callable
        d["_label"], d["_lazy"], d["_methods"] = label or type_name, lazy, {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        if name in self._methods:
            return self._methods[name]
        try:
            value = self._worker.simple("getattr", self._id, f"{self._label}.{name}", attr=name)
        except RemoteError as err:
            if "AttributeError" in err.mro:
                raise AttributeError(f"{self._label} has no attribute {name!r}") from None
            raise
        if isinstance(value, RemoteObject) and value._callable and value._type in METHOD_TYPES:
            self._worker.release(value._id)
            value = self._methods[name] = RemoteMethod(self, name)
        return value

    def _fetched(self, name: str) -> Any:
        """``getattr(obj, name)`` with its arrays as data, read now (a copy, as the judges take at once)."""
        return self._worker.simple("getattr", self._id, f"{self._label}.{name}", attr=name, fetch=True)

    def __setattr__(self, name: str, value: Any) -> None:
        self._worker.simple("setattr", self._id, f"setting {self._label}.{name}", attr=name, value=value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._worker.call(self._id, None, args, kwargs, fetch=not self._lazy, during=f"{self._label}()")

    def __getitem__(self, key: Any) -> Any:
        return self._worker.simple("getitem", self._id, f"{self._label}[{key!r}]", key=key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._worker.simple("setitem", self._id, f"{self._label}[{key!r}] = ...", key=key, value=value)

    def __len__(self) -> int:
        n = self._worker.simple("len", self._id, f"len({self._label})")
        if type(n) is not int or n < 0:
            raise TypeError(f"len({self._label}) gave {n!r}")
        return n

    def __iter__(self) -> Iterator[Any]:
        keys = self._worker.simple("keys", self._id, f"iter({self._label})")
        if not isinstance(keys, list):
            raise TypeError(f"iterating {self._label} gave {type(keys).__name__}")
        return iter(keys)

    def __float__(self) -> float:
        return float(np.asarray(self._worker.simple("fetch", self._id, f"float({self._label})")))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self._worker.simple("fetch", self._id, f"reading {self._label} as an array")
        return a.astype(dtype) if dtype is not None else a

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._worker.release(self._id)

    def __repr__(self) -> str:
        return f"<{self._label} in the worker for {self._worker.scope}>"


METHOD_TYPES = ("method", "function", "builtin_function_or_method", "method-wrapper", "partial")


class RemoteMethod:
    """``obj.name`` where it is a method: each call is one exchange (looked up in the worker at call time)."""

    def __init__(self, obj: RemoteObject, name: str) -> None:
        self.obj, self.name = obj, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        obj = self.obj
        return obj._worker.call(
            obj._id, self.name, args, kwargs, fetch=not obj._lazy, during=f"{obj._label}.{self.name}"
        )


class RemoteClass:
    """``impl.Conv2D``: calling it builds the layer in the worker of the current scope."""

    def __init__(self, session: Session, name: str) -> None:
        self.session, self.name = session, name
        self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> RemoteObject:
        worker = self.session.worker()
        cls = worker.classes.get(self.name)
        if cls is None:
            cls = worker.classes[self.name] = worker.simple("getattr", 0, f"{self.name} (the class)", attr=self.name)
        obj = worker.call(cls._id, None, args, kwargs, fetch=False, during=f"{self.name}()")
        if isinstance(obj, RemoteObject):
            obj.__dict__.update(_label=self.name, _lazy=self.session.lazy)
        return obj

    def __repr__(self) -> str:
        return f"<{self.name} of {self.session.target.name}, judged in a sandboxed worker>"


class RemoteImpl:
    """Stands where the implementation's module stood: its protocol classes, as RemoteClass."""

    def __init__(self, session: Session) -> None:
        self.__dict__["_session"] = session

    def __getattr__(self, name: str) -> Any:
        session = self.__dict__["_session"]
        if session.names.get(name):
            return RemoteClass(session, name)
        raise AttributeError(f"the implementation defines no {name}")

    def __repr__(self) -> str:
        return f"<implementation {self._session.target.name!r}, judged in sandboxed workers>"


# --- the session ----------------------------------------------------------------------------------


@dataclass
class Session:
    """Workers for one implementation, by scope; the limits; what went wrong, for the report.

    The current scope, its laziness and its case deadline are per thread: different layers can be
    judged at once (``parallel`` threads), each in its own worker."""

    target: Target
    names: dict[str, bool]
    limits: Limits = field(default_factory=Limits)
    sandbox: str = "process"
    log_dir: Path | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    parallel: int = 1
    events: list[dict[str, Any]] = field(default_factory=list)
    not_run: dict[str, str] = field(default_factory=dict)  # scope -> why its remaining cases are not run

    def __post_init__(self) -> None:
        self.workers: dict[str, Worker] = {}
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.local = threading.local()
        self.impl = RemoteImpl(self)
        from concurrent.futures import ThreadPoolExecutor

        self.spawner = ThreadPoolExecutor(1, thread_name_prefix="scratch-cnn-spawner")

    def spawn(self, start: Any) -> subprocess.Popen[bytes]:
        """Run ``start`` (a Popen) on the session's spawner thread, which lives until close."""
        return self.spawner.submit(start).result()

    def _get(self, name: str, default: Any) -> Any:
        return getattr(self.local, name, default)

    scope = property(lambda self: self._get("scope", "load"))
    lazy = property(lambda self: self._get("lazy", False))
    case_deadline = property(lambda self: self._get("case_deadline", None))
    case_limit = property(lambda self: self._get("case_limit", self.limits.case_seconds))

    def log_path(self, scope: str) -> Path | None:
        if self.log_dir is None:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / ("".join(c if c.isalnum() or c in "-_." else "_" for c in scope) + ".log")

    def worker(self) -> Worker:
        scope = self.scope
        with self.lock:
            w = self.workers.get(scope)
        if w is None or w.dead:
            if w is not None:
                w.close()
            w = Worker(self, scope)
            with self.lock:
                self.workers[scope] = w
            if "raised" in w.answer[0]:
                info = w.answer[0]["raised"]
                w.dead = "the implementation did not import"
                raise RemoteError(info if isinstance(info, dict) else {}, "import of the implementation")
        return w

    def deadline(self) -> float:
        ends = [self.started + self.limits.run_seconds]
        if self.case_deadline is not None:
            ends.append(self.case_deadline)
        return min(ends)

    def timeout_reason(self, during: str) -> tuple[str, str]:
        now = time.monotonic()
        if now >= self.started + self.limits.run_seconds - 0.01:
            return (f"the run's time budget of {self.limits.run_seconds:g} s (--time-budget) was spent during {during}",
                    "budget")  # fmt: skip
        return (f"the implementation exceeded the time limit of {self.case_limit:g} s per case "
                f"({'--train-timeout' if self.scope == 'training' else '--case-timeout'}) during {during}", "timeout")  # fmt: skip

    def lost(self, scope: str, message: str, reason: str) -> None:
        with self.lock:
            self.events.append({"scope": scope, "reason": reason, "message": message})
            if reason in ("timeout", "budget"):
                self.not_run.setdefault(scope, message)

    def skip_reason(self, scope: str) -> str:
        """Why the cases of ``scope`` are not run ('' when they are): an earlier time-out, or the budget."""
        if scope in self.not_run:
            return f"not run: an earlier case of {scope} timed out ({self.not_run[scope]})"
        if time.monotonic() >= self.started + self.limits.run_seconds:
            return f"not run: the run's time budget of {self.limits.run_seconds:g} s (--time-budget) was spent"
        return ""

    @contextlib.contextmanager
    def case(self, scope: str, *, lazy: bool = False, seconds: float | None = None) -> Iterator[None]:
        """Everything built inside runs in the worker of ``scope``, under one case's time limit."""
        local = self.local
        saved = (self.scope, self.lazy, self.case_deadline, self.case_limit)
        local.scope, local.lazy = scope, lazy
        local.case_limit = seconds if seconds is not None else self.limits.case_seconds
        local.case_deadline = time.monotonic() + local.case_limit
        try:
            yield
        finally:
            local.scope, local.lazy, local.case_deadline, local.case_limit = saved

    def put(self, value: Any) -> Any:
        """A handle to a copy of ``value`` kept in the current scope's worker."""
        return self.worker().put(value)

    def close(self) -> None:
        """Stop every worker, then every process a worker left behind (found by this run's marker)."""
        for w in self.workers.values():
            w.close()
        self.workers.clear()
        self.spawner.shutdown(wait=True)
        reap_strays(self.run_id)


def reap_strays(run_id: str) -> int:
    """Kill processes that carry this run's marker (a fork or daemon a worker left running). Returns how many."""
    killed = 0
    needle = f"{MARKER}={run_id}".encode()
    for pid_dir in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (pid_dir / "environ").read_bytes().split(b"\0"):
                os.kill(int(pid_dir.name), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError):
            continue
    _reap_zombies()
    return killed


def _reap_zombies() -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


class ImportFailed(Exception):
    """The implementation does not import in its worker (message: what it raised, or how its process ended)."""


def open_session(target: Target, names: list[str] | tuple[str, ...], *, limits: Limits | None = None,
                 sandbox: str = "auto", log_dir: Path | None = None, parallel: int | None = None) -> Session:  # fmt: skip
    """A session whose first worker has imported the implementation. ImportFailed when it cannot.
    ``parallel``: layers judged at once (default: one per core)."""
    parallel = parallel if parallel is not None else max(1, len(os.sched_getaffinity(0)))
    session = Session(target, dict.fromkeys(names, False), limits or Limits(), resolve_sandbox(sandbox), log_dir,
                      parallel=parallel)  # fmt: skip
    try:
        worker = session.worker()
    except RemoteError as err:
        session.close()
        where = f" (at {err.where})" if err.where else ""
        raise ImportFailed(
            f"cannot import implementation {target.name!r}: {err.type_name}: {err.message}{where}"
        ) from None
    except WorkerLost as err:
        session.close()
        raise ImportFailed(f"cannot import implementation {target.name!r}: {err}") from None
    found = worker.answer[0].get("ok")
    dec = wire.Decoder([])
    try:
        flags = dec.value(found)
    except wire.WireError:
        flags = None
    if not isinstance(flags, dict) or not all(isinstance(v, bool) for v in flags.values()):
        session.close()
        raise ImportFailed(f"cannot import implementation {target.name!r}: its worker answered with malformed data")
    session.names = {n: bool(flags.get(n)) for n in names}
    if not any(session.names.values()):
        session.close()
        raise ImportFailed(f"implementation {target.name!r} defines none of the protocol's classes ({', '.join(names)}): "
                           "nothing to judge; code in other layouts or styles can be wrapped with reference.impl.adapters")  # fmt: skip
    return session
