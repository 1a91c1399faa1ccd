"""Every layer reached: where an implementation declares most of the grid unsupported, find cases
inside what it can take, so its layer is judged on at least ``MIN_JUDGED`` cases or the report says
what was tried and why none fit.

A case is *supported* when the layer constructs and runs forward on its input without raising
``NotImplementedError`` (any other exception counts as supported: the judges will report it as an
error). The search goes through the run's own cases of the layer first, then through
``candidates(layer)``: configurations ordered from the tutorials' outward (one input channel, 3x3
'valid' without bias, stride 1, then more channels, other kernels, 'same' and explicit padding,
strides, bias), each on a small input whose values keep the kinks (exact ties, near-ties, zeros).

The checks with a configuration of their own search too, whenever a layer errors *or* is
unsupported there (an error on one configuration must not hide the bugs the check is for):

- lifecycle: where no lifecycle case of the run *takes* (a fresh instance runs forward and backward
  on both rounds' inputs without raising anything), a two-round case is made on a configuration
  that takes (``_lifecycle_in_region``); a convolution that raises on 'same' padding and accumulates
  its gradient across calls is convicted there;
- protocol rules: ``smoke_choices`` (``reference.judges.rules``);
- whole networks: ``network_variants`` (``reference.judges.finite_diff``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reference.cases.grid import Case, case_inputs, family
from reference.impl.protocol import available, build_case_layer, classify
from reference.layers import kind

from .base import Context, judged_in, skip_reason

MIN_JUDGED = 3  # a layer judged on fewer of the run's cases than this gets more, from its supported region
MAX_TRIES = 150  # cases tried per layer beyond the run's own cases
SEARCHED = "searched"  # the tag of a case the search added
MAX_LIFECYCLE_TRIES = 24  # configurations tried for a two-round case, where no lifecycle case of the run takes
MAX_SMOKE_TRIES = 40  # configurations tried for the protocol rules beyond their own few


@dataclass
class Reach:
    """What the search found: the cases it adds, and per layer a note on what it tried."""

    added: list[Case] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    reached: dict[str, int] = field(default_factory=dict)  # layer -> supported cases found (run's + added)
    lost: dict[str, tuple[Case, str]] = field(default_factory=dict)  # layer -> the probe whose worker was lost


def candidates(layer: str) -> list[Case]:
    """Small cases of ``layer`` in the order the search tries them (the tutorials' shapes first): its
    kind's declaration."""
    return kind(layer).candidates()


def probe(impl: Any, case: Case) -> tuple[bool, str]:
    """(supported, the refusal's message): construct the layer and run forward once, float64."""
    inputs = case_inputs(case, "float64")
    try:
        with judged_in(impl, case.layer):
            layer = build_case_layer(impl, case.layer, case.config, inputs["params"], "float64")
            if kind(case.layer).loss:
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
        rounds, why = _lifecycle_in_region(ctx, layer, [c for c in [*ctx.cases, *found.added] if c.layer == layer])
        found.added += rounds
        if rounds:
            found.notes[f"{layer} lifecycle"] = (
                f"{layer}: no lifecycle case of the run runs on a fresh instance ({why}): a two-round case on "
                f"{rounds[0].config} added from its supported region (tagged '{SEARCHED}')"
            )
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


def takes(impl: Any, case: Case) -> tuple[bool, str]:
    """(whether a fresh instance runs forward and backward on ``case``'s input without raising
    anything, what it raised): float64; for a lifecycle case, on each round's input, each on a fresh
    instance."""
    from .lifecycle import one_round

    for one in (case, case.second()) if case.lifecycle else (case,):
        inputs = case_inputs(one, "float64")
        try:
            with judged_in(impl, case.layer):
                layer = build_case_layer(impl, case.layer, case.config, inputs["params"], "float64")
                one_round(layer, case.layer, inputs)
        except Exception as err:  # an error or a declared limit alike: this case cannot show a lifecycle finding
            return False, classify(err)[1]
    return True, ""


def _lifecycle_in_region(ctx: Context, layer: str, cases: list[Case]) -> tuple[list[Case], str]:
    """([a two-round case on a configuration the layer takes], what the first lifecycle case of the
    run raised), where no lifecycle case of the run takes; ([], "") where one does or none is found.

    # NOTE: "takes", not "supports": a lifecycle case whose input the layer raises on (a ValueError on
    # 'same' padding, say) gives an error row about that input and compares nothing, so a gradient
    # accumulated across calls would go unseen there exactly as behind a declared limit.
    """
    rounds, why = [c for c in cases if c.lifecycle], ""
    for case in rounds:
        if skip_reason(ctx.impl, layer):  # a probe timed out: the lifecycle judge's own rows say so
            return [], ""
        ok, raised = takes(ctx.impl, case)
        if ok:
            return [], ""
        why = why or raised
    if not rounds:
        return [], ""
    own = sorted((c for c in cases if not c.lifecycle and not c.network_layer and len(c.input_shape) >= 2),
                 key=lambda c: int(np.prod(c.input_shape)))  # fmt: skip
    for case in [*own, *candidates(layer)][:MAX_LIFECYCLE_TRIES]:
        if skip_reason(ctx.impl, layer):
            break
        if takes(ctx.impl, lifecycle_of(case))[0]:
            return [lifecycle_of(case)], why
    return [], ""


def lifecycle_of(case: Case) -> Case:
    """Two rounds on ``case``'s configuration: round two another batch size and spatial size, the
    channels kept (the configuration fixes them), other values."""
    m, *rest = case.input_shape
    bigger = (*(n + 2 for n in rest[:2]), *rest[2:]) if len(rest) == 3 else tuple(rest)
    then = ((m + 1, *bigger), "zeros" if case.values != "zeros" else "noise", case.seed + 1000)
    return Case(case.layer, case.config, case.input_shape, case.values, case.seed + 900, SEARCHED, then)


def smoke_choices(layer: str) -> list[tuple[dict[str, Any], tuple[int, ...]]]:
    """(config, input shape) for the protocol rules beyond their own few: ``candidates(layer)``, one
    input per configuration, at most ``MAX_SMOKE_TRIES``."""
    seen: dict[str, tuple[dict[str, Any], tuple[int, ...]]] = {}
    for case in candidates(layer):
        seen.setdefault(repr(sorted(case.config.items())), (case.config, case.input_shape))
    return list(seen.values())[:MAX_SMOKE_TRIES]


def network_variants(spec: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(label, spec) of networks to judge where the implementation raises on ``spec`` (a built-in
    network's layers, ``{"type", "config"}`` each, on 28x28x1 input), in order: every convolution
    'valid', then also without bias, then the tutorials' network (one 3x3 'valid' convolution of 8
    filters without bias, 2x2 max pooling, ReLU, a 1352-to-10 dense layer). Each dense layer's n_in
    is recomputed for the shapes the changes give; a variant equal to an earlier one is left out."""

    def changed(conv: dict[str, Any]) -> list[dict[str, Any]]:  # every layer that takes a padding, changed
        return [{**e, "config": {**e["config"], **conv}} if "padding" in kind(e["type"]).signature else e for e in spec]

    tutorial = [{"type": "Conv2D", "config": {"in_ch": 1, "out_ch": 8, "kernel_size": 3, "stride": 1,
                                              "padding": "valid", "bias": False}},
                {"type": "MaxPool2D", "config": {"kernel_size": 2, "stride": 2}}, {"type": "ReLU", "config": {}},
                {"type": "Flatten", "config": {}}, {"type": "Dense", "config": {"n_in": 0, "n_out": 10, "bias": True}}]  # fmt: skip
    variants = [("every convolution 'valid'", changed({"padding": "valid"})),
                ("every convolution 'valid' and without bias", changed({"padding": "valid", "bias": False})),
                ("the tutorials' network", tutorial)]  # fmt: skip
    out: list[tuple[str, list[dict[str, Any]]]] = []
    seen = [_sized(spec)]
    for label, layers in variants:
        layers = _sized(layers)
        if layers not in seen:
            seen.append(layers)
            out.append((label, layers))
    return out


def _sized(spec: list[dict[str, Any]], shape: tuple[int, ...] = (1, 28, 28, 1)) -> list[dict[str, Any]]:
    """``spec`` with each Dense layer's n_in the size that reaches it from an input of ``shape``."""
    from reference.cases.grid import expected_output_shape

    out = []
    for e in spec:
        sized = "n_in" in kind(e["type"]).signature  # a layer told its input's size: it follows the shapes
        config = {**e["config"], "n_in": int(np.prod(shape[1:]))} if sized else e["config"]
        out.append({**e, "config": config})
        shape = expected_output_shape(Case(e["type"], config, shape))
    return out


def searchable(cases: list[Case]) -> list[Case]:
    """Every case the search can add to a run of ``cases``: for ``--case`` to find any id it printed."""
    found = [c for layer in dict.fromkeys(c.layer for c in cases) for c in candidates(layer)]
    return [*found, *(lifecycle_of(c) for c in [*cases, *found] if not c.lifecycle and len(c.input_shape) >= 2)]


def tried_rows(found: Reach, judge: str) -> list[dict[str, Any]]:
    """One ``unsupported`` row per layer of which no case fits, saying what was tried; one ``error``
    row per layer whose probe timed out or lost its worker (its cases are then not run)."""
    from reference.core.compare import error_row

    rows = [error_row(judge=judge, layer=layer, case="search for supported cases", tensor="*", dtype="",
                      status="unsupported", message=found.notes[layer], family="search")
            for layer, n in found.reached.items() if n == 0 and layer in found.notes and layer not in found.lost]  # fmt: skip
    if judge == "autograd":  # once, not once per judge
        rows += [error_row(judge=judge, layer=layer, case=case.id, tensor="*", dtype="float64", family=family(case),
                           message=f"while probing what the layer supports: {why}")
                 for layer, (case, why) in found.lost.items()]  # fmt: skip
    return rows
