"""Run the fault catalogue through the judges: the suite proves it can fail.

Each layer fault goes through the autograd and finite-difference judges on the cases of the layer it
replaces; each training-loop fault through a short lockstep run. A fault is caught when at least one
judge fails at least one row (or breaks the lockstep bound). The gate requires every fault caught.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reference.cases.grid import Case
from reference.core.diagnosis import UNEXPLAINED
from reference.impl.faults import CURVE_FAULTS, FAULTS
from reference.judges.autograd import run_case as autograd_case
from reference.judges.base import Context, Judge, Result
from reference.judges.curves import lockstep_verdict, run_lockstep
from reference.judges.finite_diff import ADJOINT_LAYERS, adjoint_rows
from reference.judges.finite_diff import run_case as fd_case
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
        impl, layer_cases = fault.impl(), [c for c in cases if c.layer == fault.layer]
        autograd = [r for c in layer_cases for d in ("float64", "float32") for r in autograd_case(impl, c, d)]
        fd = [r for c in layer_cases for r in fd_case(impl, c, attribution=False)]
        fd += [r for c in layer_cases if c.layer in ADJOINT_LAYERS for r in adjoint_rows(impl, c)]
        n_ag = sum(r["status"] != "pass" for r in autograd)
        n_fd = sum(r["status"] != "pass" for r in fd)
        rows.append({"fault": fault.name, "description": fault.description, "layer": fault.layer,
                     "autograd_failed": f"{n_ag}/{len(autograd)}", "finite_diff_failed": f"{n_fd}/{len(fd)}",
                     "lockstep_broken_at": "", "caught_by": ", ".join(j for j, n in (("autograd", n_ag), ("finite_diff", n_fd)) if n),
                     "diagnosis": leading_diagnosis(autograd + fd), "status": "pass" if n_ag or n_fd else "fail"})  # fmt: skip
        if progress:
            progress(i + 1, total)
    for j, fault in enumerate(CURVE_FAULTS):
        verdict = lockstep_verdict(
            run_lockstep(fault.impl(), data, steps=LOCKSTEP_FAULT_STEPS, labels_for_impl=fault.labels_for_impl)
        )
        broken = verdict["first_broken_step"]
        rows.append({"fault": fault.name, "description": fault.description, "layer": "training loop",
                     "autograd_failed": "", "finite_diff_failed": "",
                     "lockstep_broken_at": f"step {broken}: {verdict['broken_by']}" if broken else "",
                     "caught_by": "curves (lockstep)" if broken else "", "diagnosis": verdict["diagnosis"],
                     "status": "pass" if broken else "fail"})  # fmt: skip
        if progress:
            progress(len(FAULTS) + j + 1, total)
    return pd.DataFrame(rows)


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
