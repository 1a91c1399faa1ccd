"""Run the fault catalogue through the judges: the suite proves it can fail.

Each layer fault goes through the autograd and finite-difference judges on the cases of the layer it
replaces (an optimiser's through the optimiser judge); each training-loop fault through a short
lockstep run. A fault is caught when at least one
judge fails at least one row (or breaks the lockstep bound). The gate requires every fault caught.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reference.cases.grid import Case, repeatable
from reference.core.diagnosis import UNEXPLAINED
from reference.impl.faults import CURVE_FAULTS, FAULTS
from reference.judges.autograd import dtypes_of
from reference.judges.autograd import run_case as autograd_case
from reference.judges.base import Context, Judge, Result
from reference.judges.curves import lockstep_verdict, run_lockstep
from reference.judges.finite_diff import ADJOINT_LAYERS, adjoint_rows
from reference.judges.finite_diff import run_case as fd_case
from reference.judges.optimizers import run_case as optimizer_case
from reference.layers import kind
from reference.report.tables import write_atomic

LOCKSTEP_FAULT_STEPS = 6


def leading_diagnosis(rows: list[dict[str, Any]]) -> str:
    """The diagnosis most failing rows share (explained ones first), the fault's one-line explanation."""
    found = [r.get("diagnosis") for r in rows if r["status"] == "fail" and isinstance(r.get("diagnosis"), str)]
    explained = [d for d in found if d != UNEXPLAINED]
    pool = explained or found
    return Counter(pool).most_common(1)[0][0] if pool else ""


def run_catalogue(
    cases: list[Case],
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """One row per fault: which judges caught it, and how many rows each failed."""
    rows: list[dict[str, Any]] = []
    total = len(FAULTS) + len(CURVE_FAULTS)
    for i, fault in enumerate(FAULTS):
        impl, own = fault.impl(), [c for c in cases if c.layer == fault.layer]
        judged = _judged(impl, own)
        failed = {name: sum(r["status"] != "pass" for r in found) for name, found in judged.items()}
        rows.append({"fault": fault.name, "description": fault.description, "layer": fault.layer,
                     **{f"{name}_failed": f"{failed[name]}/{len(found)}" if found else "" for name, found in judged.items()},
                     "lockstep_broken_at": "", "caught_by": ", ".join(name for name, n in failed.items() if n),
                     "diagnosis": leading_diagnosis([r for found in judged.values() for r in found]),
                     "status": "pass" if any(failed.values()) else "fail"})  # fmt: skip
        if progress:
            progress(i + 1, total)
    for j, fault in enumerate(CURVE_FAULTS):
        verdict = lockstep_verdict(
            run_lockstep(fault.impl(), data, steps=LOCKSTEP_FAULT_STEPS, labels_for_impl=fault.labels_for_impl)
        )
        broken = verdict["first_broken_step"]
        rows.append({"fault": fault.name, "description": fault.description, "layer": "training loop",
                     "autograd_failed": "", "finite_diff_failed": "", "optimizer_failed": "",
                     "lockstep_broken_at": f"step {broken}: {verdict['broken_by']}" if broken else "",
                     "caught_by": "curves (lockstep)" if broken else "", "diagnosis": verdict["diagnosis"],
                     "status": "pass" if broken else "fail"})  # fmt: skip
        if progress:
            progress(len(FAULTS) + j + 1, total)
    return pd.DataFrame(rows)


def _judged(impl: Any, cases: list[Case]) -> dict[str, list[dict[str, Any]]]:
    """The rows of each judge that applies to ``cases`` (one kind's): autograd and finite differences
    for a layer or a loss (differences only where the case is repeatable), the optimiser judge for an
    optimiser."""
    if cases and kind(cases[0].layer).optimizer:
        return {"autograd": [], "finite_diff": [],
                "optimizer": [r for c in cases for d in ("float64", "float32") for r in optimizer_case(impl, c, d)]}  # fmt: skip
    autograd = [r for c in cases for d in dtypes_of(c, ("float64", "float32")) for r in autograd_case(impl, c, d)]
    fd = [r for c in cases if repeatable(c) for r in fd_case(impl, c, attribution=False)]
    fd += [r for c in cases if c.layer in ADJOINT_LAYERS for r in adjoint_rows(impl, c)]
    return {"autograd": autograd, "finite_diff": fd, "optimizer": []}


class CatalogueJudge(Judge):
    """The fault catalogue (scratch_cnn's wrong twins) through the judges: proves the suite can fail.
    Its rows are faults (``pass`` = caught); they judge the suite, not the implementation."""

    name = "faults"
    title = "Fault catalogue"

    def run(self, ctx: Context) -> Result:
        assert ctx.data is not None, "the training-loop faults need MNIST"
        faults = run_catalogue([c for c in ctx.cases if not c.lifecycle], ctx.data(),
                               progress=lambda d, t: ctx.tick("fault catalogue", d, t))  # fmt: skip
        return Result(self.name, faults, ok=bool((faults["status"] == "pass").all()))

    def write(self, result: Result, out: Path, impl_name: str) -> None:
        write_atomic(out / "faults.csv", result.rows.to_csv(index=False))

    def lines(self, result: Result) -> list[str]:
        faults = result.rows
        return [f"{int((faults['status'] == 'pass').sum())} of {len(faults)} faults caught"]
