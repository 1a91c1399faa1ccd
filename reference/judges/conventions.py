"""Declared conventions at kinks: a layer may take another valid subgradient than the protocol's, if
it says so.

The protocol's conventions are torch's: ReLU'(0) = 0, and a max-pool window's gradient goes to its
first maximum in row-major order. Any value in ReLU's subdifferential at 0, [0, 1], is a valid
gradient there, and so is any split of a window's gradient over its tied maxima. A layer (an adapted
one through ``kinks=``) declares its own in the attribute ``kink_conventions``:

| key | values | the reference then computes |
|---|---|---|
| ``relu_grad_at_zero`` | a number in [0, 1] | ``dx = g`` where x > 0, ``value * g`` where x == 0 |
| ``maxpool_ties`` | ``"first"``, ``"last"``, ``"split"`` | each window's gradient to its first / last maximum, or split evenly |
| ``running_var`` (batch norm) | ``"unbiased"`` (torch's), ``"biased"`` (CS231n's) | the running variance moved towards the batch's unbiased or biased variance |

The judges then compare against the declaration, never silently: every row of such a case carries
the convention in its ``convention`` column and the verdict names it. A declaration outside the
subdifferential (ReLU'(0) = 2, ties routed to every maximum) is not a convention but a wrong
gradient: the case is an ``error`` row saying so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.cases.grid import Case
from reference.impl.protocol import ProtocolViolation
from reference.layers import KINDS, kind
from reference.sandbox import requests

READ = "kink_conventions"  # the attribute a layer declares its conventions in


def reads(layer_type: str) -> tuple[str, ...]:
    """What ``declared`` reads of a layer of this kind, for build_case_layer to read with its
    construction (in a sandbox: the same exchange); () where the kind has no conventions to declare."""
    return (READ,) if layer_type in KINDS and KINDS[layer_type].conventions else ()


PROTOCOL_WORDS = "the protocol's: ReLU'(0) = 0, ties to the first maximum, the unbiased running variance"


def declared(layer: Any, layer_type: str) -> dict[str, Any]:
    """The layer's declared conventions that differ from the protocol's ({} when none); raises
    ProtocolViolation for a declaration that is no valid subgradient. Which a kind may declare is its
    declaration's (``LayerKind.conventions``)."""
    known = KINDS[layer_type].conventions if layer_type in KINDS else ()
    if not known:
        return {}
    got = requests.read_at_build(layer, READ)  # in a sandbox, read with the layer's construction
    if got is requests.NOT_READ:
        try:
            got = getattr(layer, READ, None)
        except Exception:  # an attribute that raises declares nothing
            return {}
    if not isinstance(got, dict):
        return {}
    out: dict[str, Any] = {}
    for convention in known:
        if convention.key not in got:
            continue
        try:
            differs = convention.check(got[convention.key])
        except ValueError as err:
            raise ProtocolViolation(str(err)) from None
        if differs:
            out[convention.key] = got[convention.key]
    return out


def describe(conventions: dict[str, Any], layer_type: str) -> str:
    """The declaration as the verdict names it."""
    words = {c.key: c.words for c in kind(layer_type).conventions}
    parts = [words[key](value) for key, value in conventions.items() if key in words]
    return ", ".join(parts) + f" (declared; {PROTOCOL_WORDS})"


def apply(ref: dict[str, np.ndarray], case: Case, inputs: dict[str, Any], conventions: dict[str, Any]) -> dict[str, np.ndarray]:  # fmt: skip
    """The reference's tensors under the declared conventions (dx, or the tensors a convention
    replaces), each in the reference's dtype."""
    out = dict(ref)
    for convention in kind(case.layer).conventions:
        if convention.key not in conventions:
            continue
        value = conventions[convention.key]
        if convention.replaces is not None:
            got = convention.replaces(inputs, case.config, value)
            out.update({k: np.asarray(v).astype(out[k].dtype) for k, v in got.items() if k in out})
        elif convention.reference is not None and "dx" in out and "g" in out:
            x64, g = np.asarray(inputs["x"], dtype=np.float64), out["g"].astype(np.float64)
            out["dx"] = np.asarray(convention.reference(x64, g, case.config, value)).astype(out["dx"].dtype)
    return out
