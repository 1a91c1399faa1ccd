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

from reference.sandbox import forkserver, tiers, wire
from reference.sandbox.reaper import Sweep
from reference.sandbox.target import Target
from reference.sandbox.tiers import SANDBOXES, SandboxUnavailable, bwrap_works, resolve_sandbox  # noqa: F401 (the API)


@dataclass
class Limits:
    """Limits on the judged code (README: "Judging code you do not trust")."""

    case_seconds: float = 60.0  # the least a call may take (more for a layer whose calls are slow: Session.call_limit); after a time-out its layer's remaining cases are not run
    run_seconds: float = 3600.0  # the whole run; cases left when it is spent are not run
    train_seconds: float = 1800.0  # the training judge's whole run (it is one case)
    startup_seconds: float = 60.0  # a worker's start and the implementation's import
    memory_mb: int = 4096  # address space per worker (RLIMIT_AS): a larger allocation fails in the worker
    log_bytes: int = 1 << 20  # of each worker's stdout and stderr kept in the log
    max_message_mb: int = 512  # the largest answer a worker may send (read as it arrives, never allocated ahead)
    processes: int = 64  # processes and threads of a worker's uid (RLIMIT_NPROC; where the worker is not root)
    open_files: int = 256  # per worker process (RLIMIT_NOFILE)
    file_mb: int = 256  # the largest file a worker may write into its own directory (RLIMIT_FSIZE)

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


class Log:
    """A worker's stdout and stderr, drained by a thread into memory, at most ``cap`` bytes kept.

    # NOTE: nothing on disk (a killed judge leaves no log folder behind), and what was read is kept
    # as it arrives: a child of the worker that keeps the pipe open cannot hold the log back."""

    def __init__(self, stream: Any, cap: int, title: str) -> None:
        self.cap, self.cut = cap, 0
        self.data = bytearray(f"=== {title} ===\n".encode())
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream: Any) -> None:
        try:
            while chunk := stream.read1(1 << 16):
                with self.lock:
                    room = max(0, self.cap - len(self.data))
                    self.data += chunk[:room]
                    self.cut += max(0, len(chunk) - room)
        except (OSError, ValueError):
            pass

    def text(self) -> bytes:
        with self.lock:
            cut = f"\n[... {self.cut} more bytes of output cut: the log keeps {self.cap} bytes]\n" if self.cut else ""
            return bytes(self.data) + cut.encode()

    def join(self) -> None:
        self.thread.join(timeout=2)


class Worker:
    """One worker process: pipes, the implementation imported, a table of its objects."""

    def __init__(self, session: Session, scope: str) -> None:
        self.session, self.scope = session, scope
        self.dead: str = ""
        self.seq = 0
        self.pending_release: list[int] = []
        self.classes: dict[str, Any] = {}
        self.born = time.monotonic()
        self.exchanges, self.exchange_seconds = 0, 0.0  # after the import: requests and their wall time
        self.cost = [0.0, 0.0, 0.0]  # what the worker last reported: see Room.cost
        self.startup = (0.0, 0.0, 0.0)  # (wall, worker CPU, CPU of the implementation's import) to import end
        self.dir = tempfile.mkdtemp(prefix="w-", dir=session.root)
        tiers.own_dir(self.dir, session.identity)
        to_worker_r, self.to_worker = os.pipe()
        self.from_worker, from_worker_w = os.pipe()
        for fd in (self.to_worker, self.from_worker):
            with contextlib.suppress(OSError):  # 1 MB pipes (Linux): a 6 MB activation in 6 writes, not 100
                fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ
        try:
            self.proc, stream = session.start_process(self.dir, to_worker_r, from_worker_w)
        finally:
            os.close(to_worker_r)
            os.close(from_worker_w)
        self.via_bwrap = session.sandbox == "bwrap" and isinstance(self.proc, subprocess.Popen)
        for fd in (self.to_worker, self.from_worker):
            os.set_blocking(fd, False)
        self.log = Log(stream, session.limits.log_bytes, f"worker for {scope}")
        session.logs.append((scope, self.log))
        deadline = time.monotonic() + session.limits.startup_seconds
        hello = {"impl": session.target.spec(), "names": list(session.names),
                 "confine": session.confinement.plan(self.dir)}  # fmt: skip
        self.ready = self._started(hello, deadline)
        self.answer = self._exchange({}, [], deadline, "import of the implementation", first=True, send=False)
        self.startup = (time.monotonic() - self.born, self.cost[1], self.cost[0])

    def _started(self, hello: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send the first message and wait for the worker to say it is confined and ready to import
        the implementation. Until then only the judges' own code has run: a worker that cannot get
        there is the judge's failure (JudgeWorkerFailed), never the implementation's."""
        try:
            wire.send(self.to_worker, hello, [], deadline)
            answer, _ = wire.receive(self.from_worker, deadline, max_body=1 << 20)
        except (wire.WireError, wire.Timeout, wire.Closed, OSError) as err:
            self.dead = "the judges' worker did not start"
            self.kill()
            self.log.join()
            raise JudgeWorkerFailed(self._why_not_started(err)) from None
        if "confine_failed" in answer:
            self.dead = "the judges' worker could not confine itself"
            self.kill()
            raise JudgeWorkerFailed(f"the worker could not enter the {self.session.sandbox} sandbox: "
                                    f"{str(answer['confine_failed'])[:500]}")  # fmt: skip
        if not isinstance(answer.get("ready"), dict):
            self.dead = "the judges' worker answered out of turn"
            self.kill()
            raise JudgeWorkerFailed("the judges' worker did not say it was ready")
        return answer["ready"]

    def _why_not_started(self, err: BaseException) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        tail = self.log.text().decode(errors="replace").strip().splitlines()[-6:]
        text = " | ".join(line.strip() for line in tail[1:] if line.strip())
        fix = ""
        if "No module named 'reference'" in text or "No module named 'numpy'" in text:
            fix = (
                f" (its interpreter {sys.executable} cannot import the judges: install them into it, e.g. "
                '`pip install -e ".[reference]"` from the checkout, or run the judge with the nox venv\'s python)'
            )
        what = "timed out" if isinstance(err, wire.Timeout) else f"ended with status {self.proc.returncode}"
        return f"the judges' own worker process could not start ({what}){fix}: {text or 'no output'}"

    # --- the exchange -----------------------------------------------------------------------------

    def _exchange(self, header: dict[str, Any], buffers: list[memoryview], deadline: float, during: str,
                  first: bool = False, send: bool = True) -> tuple[dict[str, Any], list[memoryview]]:  # fmt: skip
        if self.dead:
            raise WorkerLost(f"the worker for {self.scope} was lost earlier ({self.dead})", reason="exit")
        if not first:
            self.seq += 1
            header = {**header, "seq": self.seq, "release": self.pending_release}
            self.pending_release = []
        limit = self.session.limits.max_message_mb << 20
        start = time.monotonic()
        try:
            if send:
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
        self._account(answer.get("cost"), time.monotonic() - start, first)
        return answer, data

    def _account(self, cost: Any, seconds: float, first: bool) -> None:
        """Keep the worker's reported cost (three numbers; anything else is ignored: the figures are
        the bench's, never a verdict's) and count the exchange."""
        if isinstance(cost, list) and len(cost) == 3 and all(isinstance(v, (int, float)) for v in cost):
            self.cost = [float(v) for v in cost]
        if not first:
            self.exchanges += 1
            self.exchange_seconds += seconds

    def _ended(self, during: str) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return f"the implementation closed the judge's pipe during {during}"
        if self.via_bwrap and 128 < code < 128 + 65:
            code = 128 - code  # bubblewrap reports its child's death by signal N as status 128 + N
        said = ""
        if during == "import of the implementation":  # NOTE: only then: elsewhere a module could print into a verdict
            self.log.join()
            tail = self.log_tail()
            said = f"; the end of its output (worker log): {tail!r}" if tail else ""
        if code >= 0:
            return f"the implementation ended its process with status {code} during {during}{said}"
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        why = " (out of memory, or killed from outside)" if -code == signal.SIGKILL else ""
        return f"the implementation's process was killed by signal {name}{why} during {during}{said}"

    def log_tail(self, lines: int = 4, chars: int = 400) -> str:
        """The last lines the worker printed (its traceback's end, say), on one line."""
        text = self.log.text().decode(errors="replace").strip().splitlines()[1:]
        return " | ".join(line.strip() for line in text[-lines:] if line.strip())[-chars:]

    def _lose(self, message: str, reason: str) -> WorkerLost:
        self.dead = message
        self.kill()
        self.session.lost(self.scope, message, reason)
        return WorkerLost(message, reason=reason)

    def request(self, header: dict[str, Any], buffers: list[memoryview], during: str, encoder: Any = None,
                work: int | None = None, partial: bool = False, calls: int = 1) -> Any:  # fmt: skip
        """One exchange; its time limit is calibrated by the bytes sent, or by ``work``: the bytes the
        same calls one by one would have sent (a sweep sends its input once for many calls); ``calls``:
        how many calls into the implementation it holds that would each have had a limit of their own
        (each brings its floor, --case-timeout). With ``partial`` (a batch that says what failed):
        (value, None or (item index, what it raised))."""
        size = sum(b.nbytes for b in buffers) if work is None else work
        start = time.monotonic()
        answer, data = self._exchange(header, buffers, self.session.deadline(size, calls), during)
        self.session.calibrate(self.scope, time.monotonic() - start, size)
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
            if not partial:
                return value
            failed = answer.get("failed")
            if failed is None:
                return value, None
            if not (
                isinstance(failed, dict) and type(failed.get("at")) is int and isinstance(failed.get("raised"), dict)
            ):
                raise wire.WireError("a failed item without its index and exception")
            return value, (failed["at"], failed["raised"])
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

    def class_handle(self, name: str) -> Any:
        """The handle of the implementation's class ``name`` in this worker (read once)."""
        cls = self.classes.get(name)
        if cls is None:
            cls = self.classes[name] = self.simple("getattr", 0, f"{name} (the class)", attr=name)
        return cls

    def batch(self, items: list[tuple[Any, ...]], during: str, keep: list[int] | None = None,
              partial: bool = False, work: int | None = None, calls: int = 1) -> Any:  # fmt: skip
        """Run ``("call", obj, method, args, kwargs[, g])`` (``method`` '': ``obj`` itself is called),
        ``("getattr", obj, name, or_none)`` (``or_none``: None where it has no such attribute) and ``("setitem", obj,
        key, value)`` items in order in one exchange; an object or argument may be ``wire.Res(k)``, the
        result of item k. Returns the results of items ``keep`` (default: every call) as data, each
        as it was when its item ended, or raises the first exception; with ``partial``, (the results
        of the items that ran, None or (index, what the item that stopped it raised)). ``work``: the
        bytes the same requests one by one would send (the time limit's calibration, as a sweep's);
        ``calls``: the calls among them that would each have had a limit (Worker.request).
        The worker does exactly what the same requests one by one would; only the round trips are saved."""
        enc = wire.Encoder(by_ref=_by_ref(self))
        subs = []
        for kind, obj, name, payload, *rest in items:
            target = enc.value(obj) if isinstance(obj, wire.Res) else obj._id
            if kind == "call":
                kwargs, *dot = rest
                subs.append({"op": "call", "obj": target, "attr": name, "args": [enc.value(a) for a in payload]})
                if kwargs:
                    subs[-1]["kwargs"] = {k: enc.value(v) for k, v in kwargs.items()}
                if dot:  # ("call", obj, name, args, g[, rows]): the worker sends back sum(result * g), one float
                    subs[-1]["dot"] = enc.value(dot[0])
                    if len(dot) > 1 and dot[1]:  # that sum per row of the result: a list
                        subs[-1]["rows"] = True
            elif kind == "getattr":
                subs.append({"op": "getattr", "obj": target, "attr": name, **({"default": True} if payload else {})})
            else:
                subs.append({"op": "setitem", "obj": target, "key": enc.value(name), "value": enc.value(payload)})
        header: dict[str, Any] = {"op": "batch", "items": subs}
        if keep is not None:
            header["keep"] = keep
        if partial:
            header["partial"] = True
            values, failed = self.request(header, enc.buffers, during, work=work, partial=True, calls=calls)
        else:
            values, failed = self.request(header, enc.buffers, during, work=work, calls=calls), None
        ran = len(items) if failed is None else failed[0]
        order = keep if keep is not None else [i for i, (k, *_) in enumerate(items) if k == "call"]
        if not isinstance(values, list) or len(values) != sum(i < ran for i in order) or not 0 <= ran <= len(items):
            raise self._lose(f"the implementation's worker sent malformed data during {during} (a batch of the "
                             "wrong length)", "malformed")  # fmt: skip
        return (values, failed) if partial else values

    def sweep(self, calls: list[tuple[Any, str, tuple[Any, ...]]], plan: list[tuple[Any, Any, list[Any]]],
              during: str, *, target: Any = None, dot: np.ndarray | None = None, item: int | None = None,
              work: int) -> list[float]:  # fmt: skip
        """A finite-difference plan's trials in one exchange (the worker's ``sweep``): per trial, one
        number. ``calls``: ``(obj, method, args)``, an object or argument may be ``wire.Res(k)``, call k's
        result in the same trial; ``work``: the bytes the calls one by one would send (the time limit's
        calibration)."""
        enc = wire.Encoder(by_ref=_by_ref(self))
        steps = [{"obj": enc.value(obj) if isinstance(obj, wire.Res) else obj._id, "attr": name,
                  "args": [enc.value(a) for a in args]} for obj, name, args in calls]  # fmt: skip
        entries = [
            [enc.value(key), enc.value(restore), [enc.value(t) for t in trials]] for key, restore, trials in plan
        ]
        header: dict[str, Any] = {"op": "sweep", "calls": steps, "plan": entries}
        if target is not None:
            header["target"] = target._id
        if dot is not None:
            header["dot"] = enc.value(dot)
        if item is not None:
            header["item"] = item
        values = self.request(header, enc.buffers, during, work=work)
        if not isinstance(values, list) or len(values) != sum(len(t) for _k, _r, t in plan):
            raise self._lose(f"the implementation's worker sent malformed data during {during} (a sweep of the "
                             "wrong length)", "malformed")  # fmt: skip
        return values

    def put(self, value: Any) -> Any:
        """``value`` copied into the worker, kept there: a handle to it."""
        enc = wire.Encoder(by_ref=_by_ref(self))
        return self.request({"op": "put", "value": enc.value(value)}, enc.buffers, "sending an input")

    def kill(self) -> None:
        if self.proc.poll() is None:
            if isinstance(self.proc, subprocess.Popen):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()  # a forked worker: its server kills it and its process group
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


def worker_env(workdir: str) -> dict[str, str]:
    """A small, fresh environment: no PYTHON* variables, HOME and TMPDIR in the worker's own
    directory, BLAS pinned to the judges' thread count. No marker of the run: nothing a worker can
    read tells it apart from the same code run by a student at home (reference.sandbox.reaper finds
    its processes without one)."""
    from reference.threads import thread_count

    n = str(thread_count())
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "MPLBACKEND": "Agg",
    }


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
        cls = worker.class_handle(self.name)
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
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    parallel: int = 1
    events: list[dict[str, Any]] = field(default_factory=list)
    not_run: dict[str, str] = field(default_factory=dict)  # scope -> why its remaining cases are not run

    def __post_init__(self) -> None:
        self.workers: dict[str, Worker] = {}
        self.every_worker: list[Worker] = []  # started by this session, lost and closed ones too (costs)
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.local = threading.local()
        self.impl = RemoteImpl(self)
        self.logs: list[tuple[str, Log]] = []
        self.cost: dict[str, float] = {}  # scope -> the slowest seconds per byte sent of its finished calls
        self.slowest: dict[str, float] = {}  # scope -> its slowest finished call, in seconds
        self.identity = tiers.worker_identity()
        self.confinement = tiers.confinement(self.sandbox, self.identity, self.target.folders, self.limits.memory_mb,
                                             self.limits.processes, self.limits.open_files, self.limits.file_mb)  # fmt: skip
        self.root = run_root(self.run_id)
        self.sweep = Sweep()  # the judge's descendants so far are not ours to kill
        from concurrent.futures import ThreadPoolExecutor

        self.spawner = ThreadPoolExecutor(1, thread_name_prefix="scratch-cnn-spawner")
        self.server: forkserver.ForkServer | None = None
        self.forking = tiers.forking_problem(self.confinement)  # '' while workers are forked from the server

    def costs(self) -> dict[str, float]:
        """What this session's workers have cost so far, summed (reference/costs.py): workers started,
        their start-up (wall and CPU to the implementation's import end, that import's CPU), their CPU
        after start-up, the implementation's share of it and its calls, exchanges and their wall time."""
        with self.lock:
            workers = list(self.every_worker)
        server = self.server.cpu if self.server is not None else 0.0  # its imports: every forked worker's start
        return {"workers": float(len(workers)),
                "startup_wall_s": sum(w.startup[0] for w in workers),
                "startup_cpu_s": server + sum(w.startup[1] for w in workers),
                "import_cpu_s": sum(w.startup[2] for w in workers),
                "worker_cpu_s": sum(w.cost[1] - w.startup[1] for w in workers),
                "impl_cpu_s": sum(w.cost[0] - w.startup[2] for w in workers),
                "impl_calls": sum(max(w.cost[2] - 1, 0.0) for w in workers),
                "exchanges": float(sum(w.exchanges for w in workers)),
                "exchange_wall_s": sum(w.exchange_seconds for w in workers)}  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """The sandbox as run.json records it."""
        conf = self.confinement
        return {"tier": self.sandbox, "identity": self.identity.describe(), "landlock": conf.landlock,
                "no_new_privs": True, "capabilities": "none" if conf.drop_caps or self.identity.uid is not None else "the user's",
                "rlimits": conf.rlimits, "subreaper": True,
                "workers": f"fresh interpreters: {self.forking}" if self.forking
                else "forked from a server that imported NumPy once (each in its own Landlock domain)"}  # fmt: skip

    def worker_logs(self) -> list[tuple[str, bytes]]:
        """(file name, captured output) of every worker this session started, in order."""
        out: dict[str, bytes] = {}
        for scope, log in self.logs:
            name = "".join(c if c.isalnum() or c in "-_." else "_" for c in scope) + ".log"
            out[name] = out.get(name, b"") + log.text()
        return list(out.items())

    def start_process(self, folder: str, to_worker_r: int, from_worker_w: int) -> tuple[Any, Any]:
        """(process, its output stream) of a new worker in ``folder`` that reads requests from
        ``to_worker_r`` and answers on ``from_worker_w``: forked from the session's server where the
        tier allows it (reference.sandbox.forkserver), else a fresh interpreter; the caller closes
        both descriptors."""
        env = worker_env(folder)
        server = self._server()
        if server is not None:
            log_r, log_w = os.pipe()
            try:
                proc = server.fork(folder, env, (to_worker_r, from_worker_w, log_w),
                                   time.monotonic() + self.limits.startup_seconds)  # fmt: skip
                return proc, os.fdopen(log_r, "rb")
            except forkserver.ServerLost as err:  # refused (it could not fork: this one starts fresh), or lost
                os.close(log_r)
                if server.lost:
                    with self.lock:
                        self.forking = f"the worker server was lost ({err}): fresh workers from then on"
            finally:
                os.close(log_w)
        argv = [sys.executable, "-I", "-B", "-m", "reference.sandbox.worker", str(to_worker_r), str(from_worker_w)]
        if self.sandbox == "bwrap":
            argv = tiers.bwrap_argv(folder, self.confinement.read + self.confinement.read_exec) + argv
        # NOTE: started from the session's one long-lived spawner thread, never from a judge's pool
        # thread: bubblewrap's --die-with-parent is PR_SET_PDEATHSIG, which fires when the *thread*
        # that forked it exits, so a worker started by a finished pool thread would be killed.
        proc = self.spawn(lambda: subprocess.Popen(
            argv, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            pass_fds=(to_worker_r, from_worker_w), start_new_session=True,
            **tiers.popen_identity(self.identity)))  # fmt: skip
        return proc, proc.stdout

    def _server(self) -> forkserver.ForkServer | None:
        """The session's worker server, started on first use; None where workers are fresh interpreters."""
        with self.lock:
            if self.forking:
                return None
            if self.server is None or self.server.lost:
                if self.server is not None:
                    self.forking = f"the worker server was lost ({self.server.lost}): fresh workers from then on"
                    return None
                prefix = []
                if self.sandbox == "bwrap":
                    prefix = tiers.bwrap_argv(self.root, self.confinement.read + self.confinement.read_exec)
                try:
                    self.server = forkserver.ForkServer(prefix, worker_env(self.root), self.root, self.spawn,
                                                        tiers.popen_identity(self.identity), self.limits.startup_seconds)  # fmt: skip
                except (forkserver.ServerLost, OSError) as err:
                    self.forking = f"the worker server did not start ({err}): fresh workers"
                    return None
            return self.server

    def spawn(self, start: Any) -> subprocess.Popen[bytes]:
        """Run ``start`` (a Popen) on the session's spawner thread, which lives until close."""
        return self.spawner.submit(start).result()

    def _get(self, name: str, default: Any) -> Any:
        return getattr(self.local, name, default)

    scope = property(lambda self: self._get("scope", "load"))
    lazy = property(lambda self: self._get("lazy", False))
    case_deadline = property(lambda self: self._get("case_deadline", None))
    case_limit = property(lambda self: self._get("case_limit", None))

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
                self.every_worker.append(w)
            if "raised" in w.answer[0]:
                info = w.answer[0]["raised"]
                w.dead = "the implementation did not import"
                err = RemoteError(info if isinstance(info, dict) else {}, "import of the implementation")
                w.log.join()
                err.log = w.log_tail(lines=3)  # the traceback's last lines, as the worker printed them
                raise err
        return w

    # NOTE: time limits judge correctness, not speed. A call into the implementation may take at
    # least --case-timeout seconds, and SLOW_FACTOR times what its slowest call of the same layer
    # has cost so far per byte sent, for the bytes it is sent now: slow loop code, whose every call is
    # slow, is judged in full; a call that hangs is cut at the first limit. Only the run's budget
    # (and the training judge's own limit) bounds the total.
    SLOW_FACTOR = 20.0
    MIN_BYTES = 1 << 12

    def calibrate(self, scope: str, seconds: float, size: int) -> None:
        """Record a finished call's cost (seconds per byte sent, the slowest kept per scope)."""
        per_byte = seconds / max(size, self.MIN_BYTES)
        with self.lock:
            self.cost[scope] = max(self.cost.get(scope, 0.0), per_byte)
            self.slowest[scope] = max(self.slowest.get(scope, 0.0), seconds)

    def call_limit(self, size: int, calls: int = 1) -> float:
        """Seconds the next call of the current scope may take, sending ``size`` bytes; ``calls`` calls
        in one exchange (a batch) may take the floor once for each."""
        calibrated = self.SLOW_FACTOR * self.cost.get(self.scope, 0.0) * max(size, self.MIN_BYTES)
        return max(self.limits.case_seconds * calls, calibrated)

    def deadline(self, size: int = 0, calls: int = 1) -> float:
        self.local.call_limit = self.call_limit(size, calls)
        ends = [self.started + self.limits.run_seconds, time.monotonic() + self.local.call_limit]
        if self.case_deadline is not None:
            ends.append(self.case_deadline)
        return min(ends)

    def timeout_reason(self, during: str) -> tuple[str, str]:
        now = time.monotonic()
        if now >= self.started + self.limits.run_seconds - 0.01:
            return (f"the run's time budget of {self.limits.run_seconds:g} s (--time-budget) was spent during {during}",
                    "budget")  # fmt: skip
        if self.case_deadline is not None and now >= self.case_deadline - 0.01:
            return (f"the implementation exceeded the time limit of {self.case_limit:g} s for the whole "
                    f"{self.scope} case (--train-timeout) during {during}", "timeout")  # fmt: skip
        limit = getattr(self.local, "call_limit", self.limits.case_seconds)
        slowest = self.slowest.get(self.scope)
        seen = (f"; its slowest call of {self.scope} so far took {slowest:.3g} s" if slowest
                else f"; no call of {self.scope} had finished yet")  # fmt: skip
        return (f"the implementation exceeded the time limit of {limit:.3g} s per call (--case-timeout "
                f"{self.limits.case_seconds:g} s at least, {self.SLOW_FACTOR:g}x its measured cost){seen}, during {during}",
                "timeout")  # fmt: skip

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
        """Everything built inside runs in the worker of ``scope``, each call under its limit
        (``call_limit``) and, with ``seconds``, the whole case under that one too (the training run)."""
        local = self.local
        saved = (self.scope, self.lazy, self.case_deadline, self.case_limit)
        local.scope, local.lazy = scope, lazy
        local.case_limit = seconds
        local.case_deadline = time.monotonic() + seconds if seconds is not None else None
        try:
            yield
        finally:
            local.scope, local.lazy, local.case_deadline, local.case_limit = saved

    def put(self, value: Any) -> Any:
        """A handle to a copy of ``value`` kept in the current scope's worker."""
        return self.worker().put(value)

    def close(self) -> None:
        """Stop every worker, then every process a worker left behind (whatever it did to hide: the
        judge is their subreaper), then remove the workers' directories."""
        for w in self.workers.values():
            w.close()
        self.workers.clear()
        if self.server is not None:
            self.server.close()
        self.spawner.shutdown(wait=True)
        self.sweep.kill_new()
        for _, log in self.logs:
            log.join()
        remove_tree(self.root)
        if self.identity.uid is not None:  # what the workers' uid left in the shared temporary folders
            for shared in ("/tmp", "/var/tmp", "/dev/shm", tempfile.gettempdir()):
                remove_owned(shared, self.identity.uid)


def run_root(run_id: str) -> str:
    """This session's folder for its workers' directories (``<tmp>/scratch-cnn-runs-<uid>/<pid>-<run
    id>``: others may pass through, not list), after removing those of judges that are no longer
    running (killed before they could clean up)."""
    base = Path(tempfile.gettempdir()) / f"scratch-cnn-runs-{os.geteuid()}"
    base.mkdir(mode=0o711, exist_ok=True)
    if base.is_symlink() or base.stat().st_uid != os.geteuid():
        raise OSError(f"{base} is not this user's own folder: refusing to put workers' directories there")
    base.chmod(0o711)
    for old in base.iterdir():
        pid = old.name.partition("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            remove_tree(str(old))
    root = base / f"{os.getpid()}-{run_id}"
    root.mkdir(mode=0o711)
    return str(root)


def remove_owned(folder: str, uid: int) -> None:
    """Remove the entries of ``folder`` that ``uid`` owns (a worker's leftovers where it could write)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    if entry.is_dir(follow_symlinks=False):
                        remove_tree(entry.path)
                    else:
                        os.unlink(entry.path)


def remove_tree(path: str) -> None:
    """Remove ``path`` whatever modes a worker left on what it wrote (a 000 folder, say)."""

    def unlock(func: Any, p: str, _: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)

    shutil.rmtree(path, onerror=unlock)
    shutil.rmtree(path, ignore_errors=True)


class JudgeWorkerFailed(Exception):
    """The judges' own worker could not start or confine itself: the judge's failure (exit 2), never
    the implementation's; the message says why and how to fix it."""


class ImportFailed(Exception):
    """The implementation does not import in its worker (message: what it raised, or how its process ended)."""


def open_session(target: Target, names: list[str] | tuple[str, ...], *, limits: Limits | None = None,
                 sandbox: str = "auto", parallel: int | None = None) -> Session:  # fmt: skip
    """A session whose first worker has imported the implementation. ImportFailed when it cannot.
    ``parallel``: layers judged at once (default: one per core)."""
    parallel = parallel if parallel is not None else max(1, len(os.sched_getaffinity(0)))
    session = Session(target, dict.fromkeys(names, False), limits or Limits(), resolve_sandbox(sandbox),
                      parallel=parallel)  # fmt: skip
    try:
        worker = session.worker()
    except RemoteError as err:
        session.close()
        where = f" (at {err.where})" if err.where else ""
        log = getattr(err, "log", "")
        tail = f"; the end of its traceback (worker log): {log!r}" if log else ""
        raise ImportFailed(
            f"cannot import implementation {target.name!r}: {err.type_name}: {err.message}{where}{tail}"
        ) from None
    except WorkerLost as err:
        session.close()
        raise ImportFailed(f"cannot import implementation {target.name!r}: {err}") from None
    except BaseException:  # the judges' own worker could not start, an interrupt: nothing left behind
        session.close()
        raise
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
