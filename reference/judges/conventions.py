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

The judges then compare against the declaration, never silently: every row of such a case carries
the convention in its ``convention`` column and the verdict names it. A declaration outside the
subdifferential (ReLU'(0) = 2, ties routed to every maximum) is not a convention but a wrong
gradient: the case is an ``error`` row saying so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.cases.grid import Case, _as_pair
from reference.impl.protocol import ProtocolViolation

ROUTES = ("first", "last", "split")


def declared(layer: Any, layer_type: str) -> dict[str, Any]:
    """The layer's declared conventions that differ from the protocol's ({} when none); raises
    ProtocolViolation for a declaration that is no valid subgradient."""
    if layer_type not in ("ReLU", "MaxPool2D"):
        return {}
    try:
        got = getattr(layer, "kink_conventions", None)
    except Exception:  # an attribute that raises declares nothing
        return {}
    if not isinstance(got, dict):
        return {}
    out: dict[str, Any] = {}
    if layer_type == "ReLU" and "relu_grad_at_zero" in got:
        value = got["relu_grad_at_zero"]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
            raise ProtocolViolation(f"declared ReLU'(0) = {value!r} is not a subgradient of ReLU at 0 (one in [0, 1])")
        if float(value) != 0.0:
            out["relu_grad_at_zero"] = float(value)
    if layer_type == "MaxPool2D" and "maxpool_ties" in got:
        route = got["maxpool_ties"]
        if route not in ROUTES:
            raise ProtocolViolation(
                f"declared max-pool tie rule {route!r} is no subgradient rule ({', '.join(ROUTES)})"
            )
        if route != "first":
            out["maxpool_ties"] = route
    return out


def describe(conventions: dict[str, Any]) -> str:
    """The declaration as the verdict names it."""
    parts = []
    if "relu_grad_at_zero" in conventions:
        parts.append(f"ReLU'(0) = {conventions['relu_grad_at_zero']:g}")
    if "maxpool_ties" in conventions:
        parts.append(f"max-pool ties to the {conventions['maxpool_ties']} maximum"
                     if conventions["maxpool_ties"] != "split" else "max-pool ties split evenly")  # fmt: skip
    return ", ".join(parts) + " (declared; the protocol's: ReLU'(0) = 0, ties to the first maximum)"


def apply(ref: dict[str, np.ndarray], case: Case, x: np.ndarray, conventions: dict[str, Any]) -> dict[str, np.ndarray]:
    """The reference's tensors under the declared conventions (only dx changes), in dx's dtype."""
    if not conventions or "dx" not in ref or "g" not in ref:
        return ref
    g, dtype = ref["g"].astype(np.float64), ref["dx"].dtype
    x64 = np.asarray(x, dtype=np.float64)
    if "relu_grad_at_zero" in conventions:
        dx = np.where(x64 > 0, g, 0.0) + np.where(x64 == 0, conventions["relu_grad_at_zero"] * g, 0.0)
        return {**ref, "dx": dx.astype(dtype)}
    if "maxpool_ties" in conventions:
        from reference.core.diagnosis import route_max_pool

        k = _as_pair(case.config.get("kernel_size", 2))
        s = k if case.config.get("stride") is None else _as_pair(case.config["stride"])
        return {**ref, "dx": route_max_pool(x64, g, k, s, conventions["maxpool_ties"]).astype(dtype)}
    return ref
