"""A case run on the twin and on the implementation: the tensors every judge compares.

``twin_run``: the torch side (out, dx, parameter gradients, in the protocol's layout); ``impl_run``:
the implementation's side in the same names, forward and backward apart; ``alternative_run``: the
twin under a variant a common bug computes instead (for the diagnoses); ``loss_on``: a fresh
instance of the implementation's loss on other logits (a diagnosis testing its premise).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reference import costs
from reference.cases import twins
from reference.cases.grid import Case, _as_pair, upstream_gradient
from reference.impl.protocol import ProtocolViolation, backward_and_grads, backward_grads_and_params, build_case_layer
from reference.layers import kind, layout
from reference.sandbox import requests

_twin_memo: dict[str, dict[str, np.ndarray]] = {}
_twin_held = [0]  # bytes in the memo
_twin_lock = threading.Lock()
TWIN_MEMO_BYTES = 256 << 20  # the oldest results go first beyond this (a long test session judges thousands)


def _digest(value: Any, h: Any) -> None:
    """Feed ``value`` (arrays, numbers, strings, and dicts and lists of them) into the hash ``h``."""
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            h.update(f"<{key}>".encode())
            _digest(value[key], h)
    elif isinstance(value, (list, tuple)):
        h.update(f"[{len(value)}".encode())
        for item in value:
            _digest(item, h)
    elif isinstance(value, np.ndarray):
        h.update(f"{value.dtype.str}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    else:
        h.update(repr(value).encode())


def case_key(case: Case, inputs: dict[str, Any]) -> str:
    """A digest of a case and its inputs: equal only for the same case on the same arrays."""
    h = hashlib.sha256(f"{case.layer}|{case.id}|{sorted(case.config.items())!r}".encode())
    _digest(inputs, h)
    return h.hexdigest()


def twin_run(case: Case, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """The torch side: out, dx and param grads (a loss: its outputs and the gradient of its input), all
    in the protocol's layout. Computed once per case and inputs in a run (the autograd judge's
    float64 run is the finite-difference judge's attribution): later calls get copies."""
    key = case_key(case, inputs)
    with _twin_lock:
        known = _twin_memo.get(key)
    if known is None:
        known = _twin_computed(case, inputs)
        with _twin_lock:
            if key not in _twin_memo:
                _twin_memo[key] = known
                _twin_held[0] += _nbytes(known)
            while _twin_held[0] > TWIN_MEMO_BYTES and len(_twin_memo) > 1:
                _twin_held[0] -= _nbytes(_twin_memo.pop(next(iter(_twin_memo))))
    return {name: value.copy() if isinstance(value, np.ndarray) else value for name, value in known.items()}


def forget_twins() -> None:
    """Empty the memo of ``twin_run`` (the next run of each case computes it in torch again)."""
    with _twin_lock:
        _twin_memo.clear()
        _twin_held[0] = 0


def _nbytes(result: dict[str, Any]) -> int:
    return sum(v.nbytes for v in result.values() if isinstance(v, np.ndarray))


@costs.charged("twins")
def _twin_computed(case: Case, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """``twin_run``'s tensors, computed in torch now."""
    declared = kind(case.layer)
    if declared.loss:  # NOTE: a loss's input and target in the protocol's layout: the twin's is elementwise or rows
        xt = layout.to_torch(inputs["x"], requires_grad=True)
        got = declared.twin(case.config)(xt, torch.tensor(inputs["labels"]))
        got["loss"].backward()
        return {**{k: layout.to_numpy(v) for k, v in got.items()}, declared.input_grad: layout.to_numpy(xt.grad)}
    xt = layout.to_torch(layout.images_to_torch(inputs["x"]), requires_grad=True)
    twin = twins.make_twin(case.layer, case.config).to(xt.dtype)
    if inputs["params"]:
        twins.load_params(twin, case.layer, inputs["params"])
    if inputs.get("buffers"):
        twins.load_buffers(twin, case.layer, inputs["buffers"])
    out_t = twin(xt)
    out = layout.images_from_torch(layout.to_numpy(out_t))
    g = upstream_gradient(inputs, out.shape)
    backward_with(out_t, layout.to_torch(layout.images_to_torch(g)))
    result = {"out": out, "g": g, "dx": layout.images_from_torch(layout.to_numpy(xt.grad))}
    result.update(twins.buffers_of(twin, case.layer))  # after the step: what training mode updated
    for key, value in twins.param_grads(twin, case.layer, list(inputs["params"])).items():
        result[f"d{key}"] = value
    return result


def backward_with(out: torch.Tensor, g: torch.Tensor) -> None:
    """``out.backward(g)``: the same gradients, bit for bit, into every leaf (``g`` of ``out``'s shape
    and dtype).

    # NOTE: backward of the scalar <out, g>, not ``out.backward(g)``: torch checks a given gradient's
    # shape with its symbolic-shape machinery, whose first use imports sympy (0.4 s of CPU in every
    # judge process). The gradient reaching ``out`` is 1.0 * g, exactly g, and from there the graph is
    # the same."""
    (out * g).sum().backward()


def impl_run(layer: Any, case: Case, inputs: dict[str, Any], g: np.ndarray | None,
             with_params: bool = False) -> dict[str, Any]:  # fmt: skip
    """The implementation's side, in the same names as twin_run. Forward and backward are run apart:
    an exception in one is kept (under ``"!forward"`` / ``"!backward"``) and the other's tensors are
    still there to judge. Backward gets the reference's upstream gradient, of the shape a right
    forward returns, whatever shape this forward returned. ``with_params``: the parameters' values
    after the backward too, under ``"params"`` where they were read with it (in a sandbox, in the
    backward's exchange: protocol.backward_grads_and_params)."""
    if kind(case.layer).loss:
        return _loss_run(layer, case, inputs)
    result: dict[str, Any] = {}
    try:
        result["out"] = layer.forward(inputs["x"].copy())
        result.update(read_buffers(layer, case.layer))
    except Exception as err:
        result["!forward"] = err
        return result  # a backward after a failed forward has no cache to read
    if g is None:
        return result
    try:
        if with_params:
            result["dx"], grads, now = backward_grads_and_params(layer, case.layer, g.copy(), list(inputs["params"]))
            if now is not None:
                result["params"] = now
        else:
            result["dx"], grads = backward_and_grads(layer, case.layer, g.copy(), list(inputs["params"]))
        for key, value in grads.items():
            result[f"d{key}"] = value
    except Exception as err:
        result["!backward"] = err
    return result


@dataclass
class Handed:
    """A case's float64 run by the autograd judge, where it went through (forward and backward returned),
    for the finite-difference judge to start from instead of building, running forward and backward
    again: the layer as that run left it, and what it returned."""

    layer: Any
    out: Any  # what its forward returned
    dx: Any  # what its backward returned
    grads: dict[str, np.ndarray]  # its parameters' gradients, by key
    params: dict[str, np.ndarray] | None  # its parameters' values after the backward (None: not read so)


class Handoffs:
    """The autograd judge's float64 runs, by case and inputs (``case_key``), each taken once by the
    finite-difference judge. A run whose layer is gone (its worker lost since) is not handed on.

    # NOTE: the same calls on the same inputs, in the same worker, in the same order as the
    # finite-difference judge's own run (build, forward of a copy of x, backward of a copy of g, the
    # grads and params read after it): only the second build, forward and backward are saved."""

    def __init__(self) -> None:
        self._runs: dict[str, Handed] = {}
        self._lock = threading.Lock()

    def put(self, case: Case, inputs: dict[str, Any], handed: Handed) -> None:
        with self._lock:
            self._runs[case_key(case, inputs)] = handed

    def take(self, case: Case, inputs: dict[str, Any]) -> Handed | None:
        with self._lock:
            handed = self._runs.pop(case_key(case, inputs), None)
        return handed if handed is not None and requests.alive(handed.layer) else None

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()

    def __len__(self) -> int:
        return len(self._runs)


def handed(layer: Any, ours: dict[str, Any]) -> Handed | None:
    """What the finite-difference judge can start from after ``impl_run(..., with_params=True)`` of a
    float64 case: None where the forward or the backward raised, or where the layer is not a sandboxed
    one whose results came back as data.

    # NOTE: a worker's results are copies made as each call ended; a layer of this process returns its
    # own arrays, which its backward may have written into since (a ReLU keeping its mask in its output)"""
    if not requests.fusable(layer) or any(k.startswith("!") for k in ours) or "out" not in ours or "dx" not in ours:
        return None
    grads = {k[1:]: v for k, v in ours.items() if k.startswith("d") and k != "dx"}
    return Handed(layer, ours["out"], ours["dx"], grads, ours.get("params"))


def read_buffers(layer: Any, layer_type: str) -> dict[str, np.ndarray]:
    """Copies of the layer's buffers its kind declares (running statistics), as they are now; {} for a
    kind without buffers. ProtocolViolation when the layer has no such buffer."""
    names = list(kind(layer_type).buffers)
    if not names:
        return {}
    own = requests.read(layer, "buffers")
    absent = [k for k in names if not isinstance(own, dict) or own.get(k) is None]
    if absent:
        raise ProtocolViolation(f"{layer_type}.buffers has no {', '.join(map(repr, absent))} (the protocol's "
                                f"buffers: {', '.join(names)})")  # fmt: skip
    return {k: np.array(own[k], copy=True) for k in names}


def _loss_run(layer: Any, case: Case, inputs: dict[str, Any]) -> dict[str, Any]:
    """A loss's forward(logits, labels) -> (loss, ...) and backward() -> the gradient of its input."""
    declared, result = kind(case.layer), {}
    try:
        result.update(loss_outputs(declared, layer.forward(inputs["x"], inputs["labels"]), inputs["x"].dtype))
    except Exception as err:
        result["!forward"] = err
        return result  # the loss's backward reads what its forward kept: nothing to run it on
    try:
        result[declared.input_grad] = layer.backward()
    except Exception as err:
        result["!backward"] = err
    return result


def loss_outputs(declared: Any, got: Any, dtype: Any) -> dict[str, Any]:
    """What a loss's forward returned, by the names its kind gives them (the loss itself in ``dtype``:
    a Python float is fine)."""
    values = tuple(got) if isinstance(got, (tuple, list)) else (got,)
    if len(values) != len(declared.outputs):  # NOTE: as strict as unpacking them would be
        raise TypeError(f"{declared.name}.forward returned {len(values)} value(s); the protocol's returns "
                        f"({', '.join(declared.outputs)})")  # fmt: skip
    out = dict(zip(declared.outputs, values, strict=True))
    out["loss"] = np.asarray(out["loss"], dtype=dtype)
    return out


def loss_on(impl: Any, layer_type: str, logits: np.ndarray, labels: np.ndarray, dtype: str) -> dict[str, Any]:
    """A fresh instance of the implementation's loss on other logits (a diagnosis testing its premise)."""
    declared = kind(layer_type)
    layer = build_case_layer(impl, layer_type, {}, {}, dtype)
    return {
        **loss_outputs(declared, layer.forward(logits, labels), logits.dtype),
        declared.input_grad: layer.backward(),
    }


def alternative_run(case: Case, inputs: dict[str, Any], variant: str,
                    ours: dict[str, Any] | None = None) -> dict[str, np.ndarray] | None:  # fmt: skip
    """The tensors a common bug computes instead on this case: one of the kind's ``variants`` (from
    ``ours`` where it reads what the implementation did), or the twin's under a variant of the case:
    ``flipped_kernel`` (convolution, not correlation) or ``swapped_window`` (a pool's kh x kw read as kw x kh)."""
    declared = kind(case.layer)
    if variant in declared.variants:
        return declared.variants[variant][1](case.config, inputs, ours or {})
    if variant == "flipped_kernel" and "W" in inputs["params"]:
        flipped = {**inputs["params"], "W": np.ascontiguousarray(inputs["params"]["W"][::-1, ::-1])}
        return twin_run(case, {**inputs, "params": flipped})
    if variant == "swapped_window" and declared.windows is not None:
        k = _as_pair(case.config.get("kernel_size", 2))
        s = case.config.get("stride")
        config = {"kernel_size": k[::-1], "stride": None if s is None else _as_pair(s)[::-1]}
        swapped = Case(case.layer, config, case.input_shape, case.values, case.seed)
        try:
            return twin_run(swapped, inputs)
        except RuntimeError:  # the swapped window does not fit the input
            return None
    return None
