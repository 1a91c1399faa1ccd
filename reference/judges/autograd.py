"""Judge 1: every layer against its PyTorch twin on the same numbers, float64 and float32.

For each case: the same input, parameters and random upstream gradient go through the layer under
judgement and its torch twin; the forward output, dx and every parameter gradient are compared
through reference.compare with the autograd tolerance of the dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from reference.cases import layout, twins
from reference.cases.grid import Case, _as_pair, case_inputs, grid, input_stats, upstream_gradient
from reference.impl.protocol import DEFAULT_IMPL, build_case_layer, load_impl, read_grads
from reference.judges import conventions, shrink
from reference.judges.base import Context, Judge, Result, case_rows
from reference.report import heatmap
from reference.report.compare import compare, error_row, raised_row
from reference.report.diagnosis import Evidence, diagnose
from reference.report.tolerances import autograd_tolerance

JUDGE = "autograd"
DTYPES = ("float64", "float32")


def twin_run(case: Case, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """The torch side: out, dx and param grads, all converted to scratch_cnn layout."""
    x = inputs["x"]
    xt = layout.to_torch(layout.images_to_torch(x), requires_grad=True)
    if case.layer == "SoftmaxCrossEntropy":
        yt = torch.tensor(inputs["labels"])
        loss = F.cross_entropy(xt, yt, reduction="mean")
        loss.backward()
        probs = torch.softmax(xt.detach(), dim=1)
        return {"loss": layout.to_numpy(loss), "probs": layout.to_numpy(probs), "dlogits": layout.to_numpy(xt.grad)}
    twin = twins.make_twin(case.layer, case.config).to(xt.dtype)
    if inputs["params"]:
        twins.load_params(twin, case.layer, inputs["params"])
    out_t = twin(xt)
    out = layout.images_from_torch(layout.to_numpy(out_t))
    g = upstream_gradient(inputs, out.shape)
    out_t.backward(layout.to_torch(layout.images_to_torch(g)))
    result = {"out": out, "g": g, "dx": layout.images_from_torch(layout.to_numpy(xt.grad))}
    for key, value in twins.param_grads(twin, case.layer, list(inputs["params"])).items():
        result[f"d{key}"] = value
    return result


def impl_run(layer: Any, case: Case, inputs: dict[str, Any], g: np.ndarray | None) -> dict[str, Any]:
    """The implementation's side, in the same names as twin_run. Forward and backward are run apart:
    an exception in one is kept (under ``"!forward"`` / ``"!backward"``) and the other's tensors are
    still there to judge. Backward gets the reference's upstream gradient, of the shape a right
    forward returns, whatever shape this forward returned."""
    result: dict[str, Any] = {}
    if case.layer == "SoftmaxCrossEntropy":
        try:
            loss, probs = layer.forward(inputs["x"], inputs["labels"])
            result.update(loss=np.asarray(loss, dtype=inputs["x"].dtype), probs=probs)
        except Exception as err:
            result["!forward"] = err
            return result  # the loss's backward reads what its forward kept: nothing to run it on
        try:
            result["dlogits"] = layer.backward()
        except Exception as err:
            result["!backward"] = err
        return result
    try:
        result["out"] = layer.forward(inputs["x"].copy())
    except Exception as err:
        result["!forward"] = err
        return result  # a backward after a failed forward has no cache to read
    if g is None:
        return result
    try:
        result["dx"] = layer.backward(g.copy())
        for key, value in read_grads(layer, case.layer, list(inputs["params"])).items():
            result[f"d{key}"] = value
    except Exception as err:
        result["!backward"] = err
    return result


FORWARD_TENSORS = ("out", "loss", "probs")


def run_case(impl: Any, case: Case, dtype: str) -> list[dict[str, Any]]:
    """Every discrepancy row of one case in one dtype: the forward's tensors and the backward's,
    each judged even when the other raised."""
    inputs = case_inputs(case, dtype)
    extra = {"dtype": dtype, "values": case.values, **input_stats(case, inputs["x"])}
    tol = autograd_tolerance(dtype)
    ref = twin_run(case, inputs)
    try:
        layer = build_case_layer(impl, case.layer, case.config, inputs["params"], dtype)
        declared = conventions.declared(layer, case.layer)  # another valid subgradient at the kinks, said so
    except Exception as err:  # the implementation raised: one row (error / unsupported), the run goes on
        return [raised_row(err, judge=JUDGE, layer=case.layer, case=case.id, tensor="*", **extra)]
    if declared:
        ref = conventions.apply(ref, case, inputs["x"], declared)
        extra["convention"] = conventions.describe(declared)
    ours = impl_run(layer, case, inputs, ref.get("g"))
    if "!forward" in ours:  # nothing of this case ran: one row, its status the exception's (a declared limit too)
        return [raised_row(ours["!forward"], judge=JUDGE, layer=case.layer, case=case.id, tensor="*", **extra)]
    rows = []
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
        if row["status"] == "fail":
            ev = Evidence(case.layer, row["tensor"], ours[row["tensor"]], ref[row["tensor"]], dtype, case.config,
                          case.values, x=inputs["x"], g=ref.get("g"), others=others, labels=inputs["labels"],
                          alternatives=lambda variant: alternative_run(case, inputs, variant),
                          rerun=(lambda logits: loss_on(impl, logits, inputs["labels"], dtype))
                          if case.layer == "SoftmaxCrossEntropy" else None)  # fmt: skip
            row["diagnosis"] = diagnose(ev)
            heatmap.offer(ev, row)
    return rows


def loss_on(impl: Any, logits: np.ndarray, labels: np.ndarray, dtype: str) -> dict[str, Any]:
    """A fresh instance of the implementation's loss on other logits (a diagnosis testing its premise)."""
    layer = build_case_layer(impl, "SoftmaxCrossEntropy", {}, {}, dtype)
    loss, probs = layer.forward(logits, labels)
    return {"loss": np.asarray(loss, dtype=logits.dtype), "probs": probs, "dlogits": layer.backward()}


def alternative_run(case: Case, inputs: dict[str, Any], variant: str) -> dict[str, np.ndarray] | None:
    """The twin's tensors under a variant of the case that a common bug computes instead:
    ``flipped_kernel`` (convolution, not correlation) or ``swapped_window`` (a pool's kh x kw read as kw x kh)."""
    if variant == "flipped_kernel" and "W" in inputs["params"]:
        flipped = {**inputs["params"], "W": np.ascontiguousarray(inputs["params"]["W"][::-1, ::-1])}
        return twin_run(case, {**inputs, "params": flipped})
    if variant == "swapped_window" and case.layer in ("MaxPool2D", "AvgPool2D"):
        k = _as_pair(case.config.get("kernel_size", 2))
        s = case.config.get("stride")
        config = {"kernel_size": k[::-1], "stride": None if s is None else _as_pair(s)[::-1]}
        swapped = Case(case.layer, config, case.input_shape, case.values, case.seed)
        try:
            return twin_run(swapped, inputs)
        except RuntimeError:  # the swapped window does not fit the input
            return None
    return None


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
        cases = [c for c in ctx.cases if not c.lifecycle]
        run_one = lambda c: [r for d in self.dtypes for r in run_case(ctx.impl, c, d)]  # noqa: E731
        if ctx.fail_fast:  # only the exit code is wanted: no pictures
            return Result(self.name, case_rows(ctx, JUDGE, cases, run_one, "autograd"))
        figures = heatmap.Collector()  # the worst failing case of each layer, drawn by write (heatmap-<layer>.png)
        rows = case_rows(ctx, JUDGE, cases, figures.around(run_one), "autograd")
        # each failing layer's worst case shrunk to its smallest failing input (autograd_shrunk.csv, its picture)
        found = shrink.shrink_failures(ctx, rows, cases, run_case)
        for pic in (f.picture for f in found if f.picture is not None):
            figures.add(pic)
        extra = {"shrunk": ("Smallest failing inputs", shrink.table(found))} if found else {}
        return Result(self.name, rows, extra=extra, figures=figures)
