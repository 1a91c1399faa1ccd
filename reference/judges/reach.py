"""Every layer reached: where an implementation declares most of the grid unsupported, find cases
inside what it can take, so its layer is judged on at least ``MIN_JUDGED`` cases or the report says
what was tried and why none fit.

A case is *supported* when the layer constructs and runs forward on its input without raising
``NotImplementedError`` (any other exception counts as supported: the judges will report it as an
error). The search goes through the run's own cases of the layer first, then through
``candidates(layer)``: configurations ordered from the tutorials' outward (one input channel, 3x3
'valid' without bias, stride 1, then more channels, other kernels, 'same' and explicit padding,
strides, bias), each on a small input whose values keep the kinks (exact ties, near-ties, zeros).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from reference.cases.grid import Case, case_inputs
from reference.impl.protocol import available, build_case_layer, classify

from .base import Context, judged_in, skip_reason

MIN_JUDGED = 3  # a layer judged on fewer of the run's cases than this gets more, from its supported region
MAX_TRIES = 150  # cases tried per layer beyond the run's own cases
SEARCHED = "searched"  # the tag of a case the search added
KINDS = ["ties", "zeros", "near_ties", "noise", "mnist"]
VARIANTS = [(2, (8, 8), 2, "ties"), (1, (7, 9), 8, "zeros"), (3, (6, 6), 3, "near_ties")]  # (m, (H, W), C_out, values)


@dataclass
class Reach:
    """What the search found: the cases it adds, and per layer a note on what it tried."""

    added: list[Case] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    reached: dict[str, int] = field(default_factory=dict)  # layer -> supported cases found (run's + added)
    lost: dict[str, tuple[Case, str]] = field(default_factory=dict)  # layer -> the probe whose worker was lost


def candidates(layer: str) -> list[Case]:
    """Small cases of ``layer`` in the order the search tries them (the tutorials' shapes first)."""
    out: list[Case] = []
    if layer == "Conv2D":
        space = itertools.product([1, 2], [3, 5, 1, 2], ["valid", "same", 1], [1, 2, 3], [False, True])
        i = 0
        for s, k, p, c_in, bias in space:
            if p == "same" and s > 1:
                continue
            # each configuration on three inputs (a batch of one too, and sides that differ), so a layer
            # that takes one configuration only is still judged on several cases
            for m, (H, W), c_out, kind in VARIANTS:
                config = {"in_ch": c_in, "out_ch": c_out, "kernel_size": k, "stride": s, "padding": p, "bias": bias}
                out.append(Case("Conv2D", config, (m, H, W, c_in), kind, seed=700 + i, tag=SEARCHED))
                i += 1
    elif layer in ("MaxPool2D", "AvgPool2D"):
        for i, (k, s, c, hw) in enumerate(itertools.product([2, 3, (2, 3)], [None, 1, 2], [1, 2], [(6, 6), (7, 9)])):
            kinds = ["ties", "near_ties", "mnist"]
            out.append(
                Case(layer, {"kernel_size": k, "stride": s}, (2, *hw, c), kinds[i % 3], seed=700 + i, tag=SEARCHED)
            )
    elif layer == "Dense":
        for i, (bias, n_in, m) in enumerate(itertools.product([True, False], [6, 1], [2, 1])):
            out.append(
                Case("Dense", {"n_in": n_in, "n_out": 3, "bias": bias}, (m, n_in), KINDS[i % 4], 700 + i, SEARCHED)
            )
    elif layer == "ReLU":
        for i, shape in enumerate([(2, 6, 6, 2), (2, 6), (1, 6, 6, 1), (6,), (2, 6, 6)]):
            out.append(Case("ReLU", {}, shape, "zeros", seed=700 + i, tag=SEARCHED))
    elif layer == "Flatten":
        for i, shape in enumerate([(2, 4, 4, 1), (2, 3, 4, 5), (1, 4, 4, 2)]):
            out.append(Case("Flatten", {}, shape, "noise", seed=700 + i, tag=SEARCHED))
    elif layer == "SoftmaxCrossEntropy":
        for i, shape in enumerate([(2, 10), (1, 10), (4, 3)]):
            out.append(Case("SoftmaxCrossEntropy", {}, shape, ["noise", "ties"][i % 2], seed=700 + i, tag=SEARCHED))
    return out


def probe(impl: Any, case: Case) -> tuple[bool, str]:
    """(supported, the refusal's message): construct the layer and run forward once, float64."""
    inputs = case_inputs(case, "float64")
    try:
        with judged_in(impl, case.layer):
            layer = build_case_layer(impl, case.layer, case.config, inputs["params"], "float64")
            if case.layer == "SoftmaxCrossEntropy":
                layer.forward(inputs["x"], inputs["labels"])
            else:
                layer.forward(inputs["x"].copy())
    except Exception as err:
        status, message = classify(err)
        return status != "unsupported", message
    return True, ""


def reach(ctx: Context, min_judged: int = MIN_JUDGED) -> Reach:
    """Search every layer of ``ctx.cases`` that the implementation has; lifecycle cases do not count."""
    found = Reach()
    layers = dict.fromkeys(c.layer for c in ctx.cases if not c.lifecycle)
    have = {c.id for c in ctx.cases}
    for layer in layers:
        if not available(ctx.impl, layer) or skip_reason(ctx.impl, layer):
            continue
        supported, refusals, tried = 0, [], 0
        for case in [c for c in ctx.cases if c.layer == layer and not c.lifecycle]:
            ok, why = probe(ctx.impl, case)
            tried += 1
            supported += ok
            if not ok:
                refusals.append(why)
            if skip_reason(ctx.impl, layer):  # the probe timed out or lost its worker: that is the finding
                found.lost[layer] = (case, why)
                break
            if supported >= min_judged:
                break
        added = 0
        if layer in found.lost:
            continue
        if supported < min_judged:
            for case in [c for c in candidates(layer) if c.id not in have][:MAX_TRIES]:
                ok, why = probe(ctx.impl, case)
                tried += 1
                if ok:
                    found.added.append(case)
                    supported, added = supported + 1, added + 1
                else:
                    refusals.append(why)
                if skip_reason(ctx.impl, layer):
                    found.lost[layer] = (case, why)
                    break
                if supported >= min_judged:
                    break
        found.reached[layer] = supported
        found.added += _lifecycle_in_region(ctx, layer, [c for c in [*ctx.cases, *found.added] if c.layer == layer])
        if added or not supported:
            distinct = list(dict.fromkeys(refusals))
            said = "; ".join(distinct[:3]) + (f"; and {len(distinct) - 3} other refusals" if len(distinct) > 3 else "")
            found.notes[layer] = (
                f"{layer}: {supported} supported case(s) found in {tried} tried "
                + (f"({added} added from its supported region: cases tagged '{SEARCHED}')" if added else
                   "(none fits: nothing of this layer was judged)")
                + (f"; refused with: {said}" if said else "")
            )  # fmt: skip
    return found


def _lifecycle_in_region(ctx: Context, layer: str, cases: list[Case]) -> list[Case]:
    """A two-round case on a supported configuration when every lifecycle case of the run is refused."""
    rounds = [c for c in cases if c.lifecycle]
    if not rounds or any(probe(ctx.impl, c)[0] for c in rounds):
        return []
    for case in (c for c in cases if not c.lifecycle and len(c.input_shape) >= 2):
        if probe(ctx.impl, case)[0]:
            return [lifecycle_of(case)]
    return []


def lifecycle_of(case: Case) -> Case:
    """Two rounds on ``case``'s configuration: round two another batch size and spatial size, the
    channels kept (the configuration fixes them), other values."""
    m, *rest = case.input_shape
    bigger = (*(n + 2 for n in rest[:2]), *rest[2:]) if len(rest) == 3 else tuple(rest)
    then = ((m + 1, *bigger), "zeros" if case.values != "zeros" else "noise", case.seed + 1000)
    return Case(case.layer, case.config, case.input_shape, case.values, case.seed + 900, SEARCHED, then)


def searchable(cases: list[Case]) -> list[Case]:
    """Every case the search can add to a run of ``cases``: for ``--case`` to find any id it printed."""
    found = [c for layer in dict.fromkeys(c.layer for c in cases) for c in candidates(layer)]
    return [*found, *(lifecycle_of(c) for c in [*cases, *found] if not c.lifecycle and len(c.input_shape) >= 2)]


def tried_rows(found: Reach, judge: str) -> list[dict[str, Any]]:
    """One ``unsupported`` row per layer of which no case fits, saying what was tried; one ``error``
    row per layer whose probe timed out or lost its worker (its cases are then not run)."""
    from reference.report.compare import error_row

    rows = [error_row(judge=judge, layer=layer, case="search for supported cases", tensor="*", dtype="",
                      status="unsupported", message=found.notes[layer], family="search")
            for layer, n in found.reached.items() if n == 0 and layer in found.notes and layer not in found.lost]  # fmt: skip
    if judge == "autograd":  # once, not once per judge
        rows += [error_row(judge=judge, layer=layer, case=case.id, tensor="*", dtype="float64", family=case.family,
                           message=f"while probing what the layer supports: {why}")
                 for layer, (case, why) in found.lost.items()]  # fmt: skip
    return rows
