"""The one interface every judge has, and the loop over cases they share.

A judge has a ``name`` (the ``judge`` column of its rows and the stem of its files), a ``title``,
``run(ctx) -> Result`` (rows of the discrepancy schema, plus any extra tables) and ``write(result,
out)``. The commands ``autograd``, ``finite-diff``, ``curves``, ``judge`` and ``verify`` are loops
over judges: one pipeline (reference.pipeline), whose REGISTRY names each judge once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reference.cases.grid import Case, family
from reference.core.compare import FAILING, ROW_COLUMNS, error_row
from reference.impl.protocol import available
from reference.layers import kind
from reference.report.tables import failures_first, verdict_lines, write_table
from reference.sandbox import requests

Progress = Callable[[str, int, int], None]


@dataclass
class Context:
    """What a judge runs on: the implementation, its cases and the run's options."""

    impl: Any
    impl_name: str
    cases: list[Case]
    quick: bool = False
    progress: Progress | None = None
    data: Callable[[], dict[str, Any]] | None = None  # MNIST, loaded on first use (curve judges only)
    epochs: int = 3
    steps: int = 200
    networks: dict[str, int] | None = None  # whole-network checks of the finite-difference judge
    full_curves: bool = True  # the float32 MNIST curves beside the lockstep
    search: bool = False  # look for supported cases of layers that refuse most of ``cases`` (reference.judges.reach)
    fail_fast: bool = False  # stop each judge at each layer's own first failing case
    explain: bool = True  # draw and shrink each failing layer's worst case (the mutation run: only the exit code)
    handoffs: Any = None  # the autograd judge's float64 runs for the finite-difference judge (runs.Handoffs), or None

    def tick(self, desc: str, done: int, total: int) -> None:
        if self.progress:
            self.progress(desc, done, total)


@dataclass
class Result:
    """A judge's rows (the discrepancy schema), extra tables ({suffix: (title, table)}), and for judges
    whose verdict is not row by row (curves) an explicit ``ok``."""

    name: str
    rows: pd.DataFrame
    extra: dict[str, tuple[str, pd.DataFrame]] = field(default_factory=dict)
    ok: bool | None = None
    figures: Any = None  # pictures drawn into the run's folder by write: an object with write(out) (report.heatmap)
    # (rows, Judge.lines of them): made once, shown, written
    verdict_lines: tuple[pd.DataFrame, list[str]] | None = None


class Judge:
    name = ""
    title = ""

    def run(self, ctx: Context) -> Result:  # pragma: no cover - the interface
        raise NotImplementedError

    def write(self, result: Result, out: Path, impl_name: str) -> None:
        write_table(result.rows, out, self.name, f"{self.title}: {impl_name}", extra=result.extra,
                    lines=Judge.lines(self, result))  # fmt: skip
        if result.figures is not None:
            result.figures.write(out)

    def lines(self, result: Result) -> list[str]:
        """What the terminal shows of the result: one verdict line per layer (made once per result)."""
        if result.verdict_lines is None or result.verdict_lines[0] is not result.rows:  # rows replaced: made again
            result.verdict_lines = (result.rows, verdict_lines(result.rows))
        return result.verdict_lines[1]


def judged_in(impl: Any, scope: str, **kw: Any) -> contextlib.AbstractContextManager[None]:
    """Run what is built inside in the sandboxed worker of ``scope`` (a layer type, ``network lenet``,
    ``training``), each call under its time limit; a no-op for an implementation object in this
    process (the unit tests' own layers)."""
    return requests.scope(impl, scope, **kw)


def skip_reason(impl: Any, scope: str) -> str:
    """Why the cases of ``scope`` are not run ('' when they are): an earlier time-out, the run's budget."""
    return requests.skip_reason(impl, scope)


def held_by(impl: Any, value: np.ndarray) -> Any:
    """``value`` as the implementation will hold it: in a sandbox a handle to the worker's copy (so a
    layer that writes into its input is seen doing so), in this process a copy."""
    return requests.keep(impl, value)


def not_run_row(
    judge: str, layer: str, case: str, why: str, family: str = "*", status: str = "error"
) -> dict[str, Any]:
    return error_row(
        judge=judge, layer=layer, case=case, tensor="*", dtype="", message=why, family=family, status=status
    )


def judge_failed_row(judge: str, case: Case, err: Exception) -> dict[str, Any]:
    """The ``error`` row of a case whose judging raised outside the implementation's own calls: what
    it returned (a wrong shape, a wrong type) could not be used. The row names the exception and the
    judge's frame, so a judge bug reads as one too; the implementation's exceptions keep their own
    classification."""
    from reference.core.compare import raised_row
    from reference.sandbox.client import RemoteError, WorkerLost

    if isinstance(err, (RemoteError, WorkerLost)):
        return {"family": family(case), **raised_row(err, judge=judge, layer=case.layer, case=case.id, tensor="*",
                                                    dtype="")}  # fmt: skip
    import traceback

    frame = traceback.extract_tb(err.__traceback__)[-1]
    where = f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
    return error_row(judge=judge, layer=case.layer, case=case.id, tensor="*", dtype="", family=family(case),
                     message=f"the judge could not use what the implementation returned: {type(err).__name__}: "
                     f"{err} (in the judge, at {where})")  # fmt: skip


def missing_row(judge: str, layer: str) -> dict[str, Any]:
    return error_row(judge=judge, layer=layer, case="*", tensor="*", dtype="", status="missing",
                     message=f"the implementation has no {layer} class", family="*")  # fmt: skip


def case_rows(ctx: Context, judge: str, cases: list[Case], run_one: Callable[[Case], list[dict[str, Any]]],
              desc: str) -> pd.DataFrame:  # fmt: skip
    """Run ``run_one`` on every case whose layer the implementation has; one ``missing`` row per
    layer it lacks. Failures first. In a sandbox, different layers' cases run at the same time in
    their own workers (``parallel_layers``): the judge waits on a worker's pipe most of the time."""
    import threading

    rows_of: dict[int, list[dict[str, Any]]] = {}
    groups: dict[str, list[tuple[int, Case]]] = {}
    missing: set[str] = set()
    for i, case in enumerate(cases):
        if not available(ctx.impl, case.layer):
            if kind(case.layer).optional:  # a kind courses add: judged where the implementation has it
                continue
            if case.layer not in missing:
                rows_of[i] = [missing_row(judge, case.layer)]
                missing.add(case.layer)
        else:
            groups.setdefault(case.layer, []).append((i, case))
    lock, done = threading.Lock(), [len(cases) - sum(len(g) for g in groups.values())]

    def run_group(group: list[tuple[int, Case]]) -> None:
        # NOTE: --fail-fast stops a layer at its own first failing case, never another layer: a layer
        # left unjudged because its neighbour failed would read as failing (its rows are ``error``)
        stopped = False
        for i, case in group:
            if stopped:
                found = [not_run_row(judge, case.layer, case.id, "not run: --fail-fast stopped at the first failing case",
                                     family(case))]  # fmt: skip
            elif why := skip_reason(ctx.impl, case.layer):
                found = [not_run_row(judge, case.layer, case.id, why, family(case), status="timeout")]
            else:
                try:
                    with judged_in(ctx.impl, case.layer):
                        found = [{"family": family(case), **r} for r in run_one(case)]
                except Exception as err:  # what the implementation returned broke the judge: a row, not a crash
                    found = [judge_failed_row(judge, case, err)]
            if ctx.fail_fast and any(r.get("status") in FAILING for r in found):
                stopped = True
            with lock:
                rows_of[i] = found
                done[0] += 1
                ctx.tick(desc, done[0], len(cases))

    # the largest groups first, so the last one to finish is a short one
    in_parallel(ctx.impl, [lambda g=g: run_group(g) for g in sorted(groups.values(), key=len, reverse=True)])
    rows = [r for i in sorted(rows_of) for r in rows_of[i]]
    return failures_first(pd.DataFrame(rows)) if rows else pd.DataFrame(columns=[*ROW_COLUMNS, "family"])


def in_parallel(impl: Any, jobs: list[Callable[[], Any]]) -> list[Any]:
    """Each job's result, in order; jobs that judge different scopes run at once in a sandbox
    (``parallel_layers`` threads, each waiting on its own worker), one after another otherwise."""
    threads = parallel_layers(impl)
    if threads <= 1 or len(jobs) <= 1:
        return [job() for job in jobs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(threads, len(jobs))) as pool:
        return [f.result() for f in [pool.submit(job) for job in jobs]]


def parallel_layers(impl: Any) -> int:
    """How many layers are judged at once: the session's setting in a sandbox, 1 in this process."""
    return requests.parallel(impl)
