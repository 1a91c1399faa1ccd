"""Judge 1: every layer against its PyTorch twin on the same numbers, float64 and float32.

For each case: the same input, parameters and random upstream gradient go through the layer under
judgement and its torch twin; the forward output, dx and every parameter gradient are compared
through reference.compare with the autograd tolerance of the dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from reference.cases.grid import FLOAT64_ONLY, Case, case_inputs, grid, input_stats, layer_cases, upstream_gradient
from reference.core.compare import compare, error_row, raised_row
from reference.core.diagnosis import Evidence, diagnose
from reference.core.tolerances import autograd_tolerance
from reference.impl.protocol import DEFAULT_IMPL, build_case_layer, load_impl
from reference.judges import conventions, shrink
from reference.judges.base import Context, Judge, Result, case_rows
from reference.judges.runs import Handoffs, alternative_run, handed, impl_run, loss_on, twin_run
from reference.layers import kind
from reference.report import heatmap

JUDGE = "autograd"
DTYPES = ("float64", "float32")


FORWARD_TENSORS = ("out", "loss", "probs")


def run_case(impl: Any, case: Case, dtype: str, handoffs: Handoffs | None = None) -> list[dict[str, Any]]:
    """Every discrepancy row of one case in one dtype: the forward's tensors and the backward's,
    each judged even when the other raised. With ``handoffs``, a float64 run of a layer (not a loss,
    not one judged against its own randomness) that went through is kept there for the
    finite-difference judge (reference.judges.runs.Handoffs)."""
    inputs = case_inputs(case, dtype)
    extra = {"dtype": dtype, "values": case.values, **input_stats(case, inputs["x"])}
    tol = autograd_tolerance(dtype)
    own_randomness = kind(case.layer).self_reference
    ref = twin_run(case, inputs) if own_randomness is None else {"g": upstream_gradient(inputs, case.input_shape)}
    try:
        layer = build_case_layer(impl, case.layer, case.config, inputs["params"], dtype, buffers=inputs["buffers"],
                                 reads=conventions.reads(case.layer))  # fmt: skip
        declared = conventions.declared(layer, case.layer)  # another valid subgradient at the kinks, said so
    except Exception as err:  # the implementation raised: one row (error / unsupported), the run goes on
        return [raised_row(err, judge=JUDGE, layer=case.layer, case=case.id, tensor="*", **extra)]
    if declared:
        ref = conventions.apply(ref, case, inputs, declared)
        extra["convention"] = conventions.describe(declared, case.layer)
    hand_on = handoffs is not None and dtype == "float64" and own_randomness is None and not kind(case.layer).loss
    ours = impl_run(layer, case, inputs, ref.get("g"), with_params=hand_on)
    if hand_on and (run := handed(layer, ours)) is not None:
        handoffs.put(case, inputs, run)
    if "!forward" in ours:  # nothing of this case ran: one row, its status the exception's (a declared limit too)
        return [raised_row(ours["!forward"], judge=JUDGE, layer=case.layer, case=case.id, tensor="*", **extra)]
    rows = []
    if own_randomness is not None:  # judged against its own randomness: the reference is read from what it did
        ref, checks = own_randomness(inputs, ours, ref["g"], case.config)
        rows += [check_row(case, name, ok, note, share, extra) for name, ok, note, share in checks]
    for tensor, ref_value in ref.items():
        if tensor == "g":
            continue
        side = "forward" if tensor in FORWARD_TENSORS else "backward"
        if tensor in ours and ours[tensor] is not None:
            rows.append(compare(ours[tensor], ref_value, tol, layer=case.layer, case=case.id, tensor=tensor,
                                judge=JUDGE, **extra))  # fmt: skip
        elif f"!{side}" in ours:
            rows.append(raised_row(ours[f"!{side}"], judge=JUDGE, layer=case.layer, case=case.id, tensor=tensor,
                                   prefix=f"{side}: ", **extra))  # fmt: skip
        elif tensor == "probs" and tensor in ours:
            rows.append(error_row(judge=JUDGE, layer=case.layer, case=case.id, tensor=tensor, status="unsupported",
                                  message="the implementation gives no probabilities (forward returned None for "
                                  "them): only the loss and dlogits are judged", **extra))  # fmt: skip
        else:
            rows.append(error_row(judge=JUDGE, layer=case.layer, case=case.id, tensor=tensor,
                                  message=f"the implementation produced no {tensor}", **extra))  # fmt: skip
    others = {r["tensor"]: r["status"] for r in rows}
    for row in rows:
        if row["status"] == "fail" and row["tensor"] in ours:  # a statistical check's row has its words already
            ev = Evidence(case.layer, row["tensor"], ours[row["tensor"]], ref[row["tensor"]], dtype, case.config,
                          case.values, x=inputs["x"], g=ref.get("g"), others=others, labels=inputs["labels"],
                          alternatives=lambda variant: alternative_run(case, inputs, variant, ours),
                          rerun=(lambda logits: loss_on(impl, case.layer, logits, inputs["labels"], dtype))
                          if kind(case.layer).loss else None)  # fmt: skip
            row["diagnosis"] = diagnose(ev)
            heatmap.offer(ev, row)
    return rows


def check_row(case: Case, name: str, ok: bool, note: str, share: float, extra: dict[str, Any]) -> dict[str, Any]:
    """The row of one statistical check of a kind judged against its own randomness (dropout's kept
    fraction): ``pass`` or ``fail``, the test and its figures in the note, and as its ``budget`` the
    share of the test's allowed deviation used (what the gate holds against the baseline)."""
    return error_row(judge=JUDGE, layer=case.layer, case=case.id, tensor=name, status="pass" if ok else "fail",
                     message=note, budget=share, **extra)  # fmt: skip


def dtypes_of(case: Case, dtypes: tuple[str, ...]) -> tuple[str, ...]:
    """The dtypes ``case`` is judged in: ``dtypes``, less float32 for values no float32 computation can
    get to its tolerance (FLOAT64_ONLY)."""
    return tuple(d for d in dtypes if d == "float64" or case.values not in FLOAT64_ONLY)


def run_autograd(
    impl: Any = None,
    cases: list[Case] | None = None,
    dtypes: tuple[str, ...] = DTYPES,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Run every case in every dtype; a DataFrame of rows, failures first."""
    impl = impl if impl is not None else load_impl(DEFAULT_IMPL)
    ctx = Context(impl, "", cases if cases is not None else grid(),
                  progress=(lambda _d, done, total: progress(done, total)) if progress else None)  # fmt: skip
    return AutogradJudge(dtypes).run(ctx).rows


class AutogradJudge(Judge):
    name = JUDGE
    title = "Autograd judge (vs PyTorch)"

    def __init__(self, dtypes: tuple[str, ...] = DTYPES) -> None:
        self.dtypes = dtypes

    def run(self, ctx: Context) -> Result:
        cases = [c for c in layer_cases(ctx.cases) if not c.lifecycle]
        run_one = lambda c: [r for d in dtypes_of(c, self.dtypes) for r in run_case(ctx.impl, c, d, ctx.handoffs)]  # noqa: E731
        if not ctx.explain:  # only the exit code is wanted: no pictures
            return Result(self.name, case_rows(ctx, JUDGE, cases, run_one, "autograd"))
        figures = heatmap.Collector()  # the worst failing case of each layer, drawn by write (heatmap-<layer>.png)
        rows = case_rows(ctx, JUDGE, cases, figures.around(run_one), "autograd")
        # each failing layer's worst case shrunk to its smallest failing input (autograd_shrunk.csv, its picture)
        found = shrink.shrink_failures(ctx, rows, cases, run_case)
        for pic in (f.picture for f in found if f.picture is not None):
            figures.add(pic)
        extra = {"shrunk": ("Smallest failing inputs", shrink.table(found))} if found else {}
        return Result(self.name, rows, extra=extra, figures=figures)
