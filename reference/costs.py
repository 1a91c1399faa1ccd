"""Where a judgement's time goes: the accounts `judge` writes to ``costs.csv`` and `nox -s bench`
reads (issue: a class in minutes).

Each judge's row holds, for its run: wall seconds; the judge process's CPU (user + system, every
thread); of that, the torch twins' CPU (each twin computation timed on its own thread with
``account("twins")``); the workers' CPU after their start-up, the implementation's share of it (the
worker times every entry into the implementation's code) and the calls; the workers started and
their start-up (interpreter, imports, the implementation's import); the exchanges between judge and
workers and their wall time. The rest of the judge process's CPU is the judge's own Python
(comparisons, diagnoses, the exchanges' judge side, reports).

# NOTE: the workers' figures are what each worker says of itself: a submission could falsify them.
# They go into the bench report only, never into a verdict.
"""

from __future__ import annotations

import contextlib
import functools
import resource
import threading
import time
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_spent: dict[str, float] = {}  # account -> CPU seconds, this process, every thread


@contextlib.contextmanager
def account(name: str) -> Iterator[None]:
    """Charge the CPU time of this thread inside the block to ``name`` (threads at once add up)."""
    start = time.thread_time()
    try:
        yield
    finally:
        spent = time.thread_time() - start
        with _lock:
            _spent[name] = _spent.get(name, 0.0) + spent


def charged(name: str) -> Any:
    """A decorator: every call of the function is charged to ``name`` (``account``)."""

    def wrap(fn: Any) -> Any:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with account(name):
                return fn(*args, **kwargs)

        return inner

    return wrap


def process_cpu() -> float:
    """CPU seconds (user + system) of this process so far, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def snapshot(session: Any | None) -> dict[str, float]:
    """Every account now: wall, this process's CPU, the twins', and the session's workers'."""
    with _lock:
        twins = _spent.get("twins", 0.0)
    workers = session.costs() if session is not None and hasattr(session, "costs") else {}
    return {"wall_s": time.monotonic(), "judge_cpu_s": process_cpu(), "twins_cpu_s": twins, **workers}


def difference(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What was spent between two snapshots, with the judge's own CPU (its process's, less the twins')."""
    spent = {k: after[k] - before.get(k, 0.0) for k in after}
    spent["judge_own_cpu_s"] = spent["judge_cpu_s"] - spent["twins_cpu_s"]
    return spent


COLUMNS = ["judge", "cases", "wall_s", "judge_cpu_s", "twins_cpu_s", "judge_own_cpu_s", "workers", "startup_wall_s",
           "startup_cpu_s", "import_cpu_s", "worker_cpu_s", "impl_cpu_s", "impl_calls", "exchanges",
           "exchange_wall_s"]  # fmt: skip
