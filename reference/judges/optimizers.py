"""Judge: an optimiser, step by step, against torch.optim from the same gradients.

An optimiser kind (``role="optimizer"``: Adam, RMSprop) is built as ``Kind(params, **hyper)`` on a
dict of parameters and given ``STEPS`` gradient dicts through ``step(grads)``; after every step its
``params`` are read and held to torch.optim's on the same parameters and gradients (weight decay on
the weights only: two parameter groups). One row per parameter and dtype, over the whole trajectory
(steps x the parameter's shape); a failing row says the first step that is off, and which of the
kind's named variants (its classic bugs) ours follows instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.cases.grid import Case
from reference.core.compare import compare, raised_row
from reference.core.diagnosis import UNEXPLAINED
from reference.core.tolerances import autograd_tolerance
from reference.impl.protocol import ProtocolViolation
from reference.judges.base import Context, Judge, Result, case_rows
from reference.layers import kind, optimizer
from reference.sandbox import requests

JUDGE = "optimizer"
DTYPES = ("float64", "float32")


def hyper_of(case: Case) -> dict[str, Any]:
    """The keywords the optimiser is built with: its kind's defaults, then the case's (``_``-keys are the
    case's own: the gradients' scale)."""
    declared = kind(case.layer)
    return {**declared.defaults, **{k: v for k, v in case.config.items() if not k.startswith("_")}}


def trajectory(impl: Any, case: Case, params: dict[str, np.ndarray], grads: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:  # fmt: skip
    """The implementation's parameters after each step (copies). Raises what the implementation raised
    (``ProtocolViolation`` for params it does not keep as a dict)."""
    start = ({k: v.copy() for k, v in params.items()},)
    # NOTE: in a sandbox the construction and every step with its params read after it are one
    # exchange, under the case's time limit calibrated by what the steps one by one would send
    then = [item for g in grads for item in (requests.Call(requests.Result(0), "step", (g,)),
                                             requests.Read(requests.Result(0), "params"))]  # fmt: skip
    work = sum(v.nbytes for v in params.values()) + sum(v.nbytes for g in grads for v in g.values())
    batched = requests.construct_then(impl, case.layer, start, hyper_of(case), then, work)
    if batched is None:
        opt = getattr(impl, case.layer)(*start, **hyper_of(case))
        read: Any = (_stepped(opt, g) for g in grads)  # one step at a time, each checked before the next
    else:
        read = batched[0][1::2]  # each step's result, then the params after it (those that ran)
    after = []
    for step, now in enumerate(read, start=1):
        if not isinstance(now, dict) or set(now) != set(params):
            raise ProtocolViolation(f"{case.layer}.params after step {step} is "
                                    f"{sorted(now) if isinstance(now, dict) else type(now).__name__}, not the dict "
                                    f"it was given (keys {sorted(params)}), updated in place")  # fmt: skip
        after.append({k: np.array(v, copy=True) for k, v in now.items()})
    if batched is not None and batched[1] is not None:
        raise batched[1]
    return after


def _stepped(opt: Any, g: dict[str, np.ndarray]) -> Any:
    """``opt.step`` of a copy of ``g``, then ``opt.params`` as it is now."""
    opt.step({k: v.copy() for k, v in g.items()})
    return requests.read(opt, "params")


def first_step_off(ours: np.ndarray, ref: np.ndarray, dtype: str) -> int:
    """The first step (from 1) whose parameters are outside the tolerance; 0 when none is."""
    tol = autograd_tolerance(dtype)
    for step in range(len(ref)):
        row = compare(ours[step], ref[step], tol, judge="", layer="", case="", tensor="")
        if row["status"] not in ("pass", "vacuous"):
            return step + 1
    return 0


def variant_followed(case: Case, params: dict[str, np.ndarray], grads: list[dict[str, np.ndarray]], name: str,
                     ours: np.ndarray, dtype: str) -> str:  # fmt: skip
    """Which of the kind's classic bugs (its ``variants``, computed in float64) parameter ``name``
    follows over every step, in words; ``unexplained`` when none does."""
    tol = autograd_tolerance(dtype)
    wide = {k: v.astype(np.float64) for k, v in params.items()}
    wide_grads = [{k: v.astype(np.float64) for k, v in g.items()} for g in grads]
    for variant, (words, compute) in kind(case.layer).variants.items():
        alt = np.stack([a[name] for a in compute(hyper_of(case), wide, wide_grads)])
        row = compare(ours.astype(np.float64), alt, tol, judge="", layer="", case="", tensor="")
        if row["status"] == "pass":
            return f"{name} follows {words} at every step ({variant})"
    return UNEXPLAINED


def run_case(impl: Any, case: Case, dtype: str) -> list[dict[str, Any]]:
    """One row per parameter: ours after every step against torch.optim's."""
    declared = kind(case.layer)
    params, grads = optimizer.draw(case, dtype)
    want = optimizer.torch_steps(declared.twin(case.config), hyper_of(case), params, grads)
    extra = {"dtype": dtype, "values": case.values}
    try:
        got = trajectory(impl, case, params, grads)
    except Exception as err:
        return [raised_row(err, judge=JUDGE, layer=case.layer, case=case.id, tensor="*", **extra)]
    rows = []
    for name in params:
        ours, ref = np.stack([a[name] for a in got]), np.stack([a[name] for a in want])
        row = compare(ours, ref, autograd_tolerance(dtype), judge=JUDGE, layer=case.layer, case=case.id,
                      tensor=name, **extra)  # fmt: skip
        if row["status"] == "fail" and ours.shape == ref.shape:
            step = first_step_off(ours, ref, dtype)
            row["note"] = f"first off after step {step} of {len(ref)}; {row['note']}"
            row["diagnosis"] = variant_followed(case, params, grads, name, ours, dtype)
        rows.append(row)
    return rows


class OptimizerJudge(Judge):
    name = JUDGE
    title = "Optimiser judge (step by step vs torch.optim)"

    def __init__(self, dtypes: tuple[str, ...] = DTYPES) -> None:
        self.dtypes = dtypes

    def run(self, ctx: Context) -> Result:
        cases = [c for c in ctx.cases if kind(c.layer).optimizer]
        run_one = lambda c: [r for d in self.dtypes for r in run_case(ctx.impl, c, d)]  # noqa: E731
        return Result(self.name, case_rows(ctx, JUDGE, cases, run_one, "optimisers"))
