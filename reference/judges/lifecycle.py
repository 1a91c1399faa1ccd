"""Judge: one instance used twice gives what a fresh instance gives.

A layer is built once and run forward/backward on a first input, then on a second one (other
values; another batch size, spatial size or channel count where its configuration allows). The
second round's output, dx and parameter gradients must equal those of a fresh instance with the same
parameters on the second input. Real code fails this with gradients accumulated across calls
(``self.dW += ...`` never reset), a cache kept from the first call (``if self.x is None: self.x = x``),
or a shape fixed at the first call (a pool that allocates its channel count once). float64 only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.cases.grid import Case, case_inputs, repeatable, upstream_gradient
from reference.core.compare import compare, error_row, raised_row
from reference.core.diagnosis import UNEXPLAINED, Evidence, diagnose
from reference.core.tolerances import autograd_tolerance
from reference.impl.protocol import build_case_layer, read_grads
from reference.judges.runs import loss_outputs
from reference.layers import kind

from .base import Context, Judge, Result, case_rows

JUDGE = "lifecycle"


def one_round(layer: Any, layer_type: str, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Forward and backward once; copies of everything (a returned buffer may be reused later)."""
    x = inputs["x"]
    declared = kind(layer_type)
    if declared.loss:
        got = loss_outputs(declared, layer.forward(x.copy(), inputs["labels"]), x.dtype)
        # None: the implementation gives none (a loss's probabilities, say)
        return {
            **{k: None if v is None else np.array(v) for k, v in got.items()},
            declared.input_grad: np.array(layer.backward()),
        }
    out = np.array(layer.forward(x.copy()))
    dx = np.array(layer.backward(upstream_gradient(inputs, out.shape)))
    grads = read_grads(layer, layer_type, list(inputs["params"]))
    return {"out": out, "dx": dx, **{f"d{k}": v for k, v in grads.items()}}


def run_case(impl: Any, case: Case) -> list[dict[str, Any]]:
    """Rows comparing round 2 of a used instance with a fresh instance, tensor by tensor."""
    first, second = case_inputs(case, "float64"), case_inputs(case.second(), "float64")
    second["params"] = first["params"]  # one set of weights for both rounds and both instances
    extra = {"dtype": "float64", "values": case.values}
    fields = {"judge": JUDGE, "layer": case.layer, "case": case.id, "tensor": "*", **extra}
    try:
        fresh = one_round(
            build_case_layer(impl, case.layer, case.config, first["params"], "float64"), case.layer, second
        )
    except Exception as err:  # the second input alone is beyond the implementation: not a lifecycle finding
        return [raised_row(err, prefix="a fresh instance on the round-2 input: ", **fields)]
    try:
        used = build_case_layer(impl, case.layer, case.config, first["params"], "float64")
        round1 = one_round(used, case.layer, first)
    except Exception as err:
        return [raised_row(err, prefix="round 1: ", **fields)]
    try:
        round2 = one_round(used, case.layer, second)
    except Exception as err:  # a fresh instance managed this input: the first round left something behind
        row = raised_row(err, prefix="round 2 raised where a fresh instance did not: ", **fields)
        return [{**row, "status": "error"}]  # even a NotImplementedError: the declared limit is not this input
    rows = []
    tol = autograd_tolerance("float64")
    for tensor, want in fresh.items():
        if want is None and round2.get(tensor) is None:  # a loss that gives no probabilities: nothing to compare
            rows.append(error_row(judge=JUDGE, layer=case.layer, case=case.id, tensor=tensor, status="unsupported",
                                  message="the implementation gives no probabilities", **extra))  # fmt: skip
            continue
        row = compare(
            round2.get(tensor), want, tol, judge=JUDGE, layer=case.layer, case=case.id, tensor=tensor, **extra
        )
        if row["status"] == "fail" and isinstance(round2.get(tensor), np.ndarray):
            ev = Evidence(case.layer, tensor, round2[tensor], want, "float64", case.config, case.values,
                          x=second["x"], prior=round1.get(tensor), labels=second.get("labels"), own=round2,
                          reference="a fresh instance")  # fmt: skip
            row["diagnosis"] = diagnose(ev)
            # NOTE: state kept from round 1 is claimed only against a fresh instance that is itself finite
            if row["diagnosis"] == UNEXPLAINED and np.all(np.isfinite(np.asarray(want, dtype=np.float64))):
                row["note"] = (f"round 2 differs from a fresh instance's: state kept from round 1, or results that "
                               f"are no function of the input and the parameters (weights redrawn, randomness); {row['note']}")  # fmt: skip
        rows.append(row)
    return rows


class LifecycleJudge(Judge):
    name = JUDGE
    title = "Lifecycle judge (two rounds on one instance vs a fresh instance)"

    def run(self, ctx: Context) -> Result:
        cases = [c for c in ctx.cases if c.lifecycle and repeatable(c)]
        return Result(self.name, case_rows(ctx, JUDGE, cases, lambda c: run_case(ctx.impl, c), "lifecycle"))
