"""Judge: the protocol's rules, checked where they bite, one line each.

Run first, at load: a rule broken here would otherwise surface later as a wrong number with the
wrong explanation (a ``params`` property that returns copies makes every comparison look like a
maths bug). Per layer class the module defines:

| check | what must hold |
|---|---|
| runs | the layer constructs, runs forward and backward on a small input (NotImplementedError: unsupported) |
| params and grads are dicts with the same keys | after a backward, each gradient of its parameter's shape |
| inputs left unchanged | forward does not write into x, backward not into dout (a ReLU computed in place on its input corrupts the previous layer's cache) |
| params are live | a value written into ``params[k][...]`` reads back and is what forward computes with |
| grads survive a later forward | a forward after the backward leaves ``grads`` as they were |
| dtype kept, float32 / float64 | the output, dx and every parameter gradient have the input's dtype |
| params and grads, bias=False | (layers with a ``bias`` option) without a bias, ``grads`` has exactly the keys of ``params`` (no ``b`` in either) |
| returned arrays stay the caller's | a second round on the same instance leaves the arrays the first returned (output and dx; probs and dlogits) as they were: a returned view of a buffer the layer reuses changes under the caller |
| dtype kept after a float32 round | the same instance, given float64 after float32 (parameters converted by ``astype`` where the layer has one), returns float64 |
| labels outside [0, K) refused | (the loss) a label K or -1 raises; it is never scored against some class (-1 indexes the last one) |
| output_shape agrees with forward | (a layer with the optional ``output_shape(input_shape)``) it gives the shape forward returns, on a configuration whose kernel, stride and padding differ per axis |
| Sequential agrees with its layers | (a module with the optional ``Sequential(layers)``, judged when every layer is) a conv-relu-pool-flatten-dense network's forward, ``backward(dout)`` (dx), ``grads`` (named ``"{index}.{key}"``) and ``backward(dout, input_grad=False)`` equal the same layers chained by hand |
| backward_params agrees with backward | (only for a layer with parameters that has the optional ``backward_params``, which networks call on their first layer in training) it fills the grads ``backward`` fills for the same forward, not those of an earlier round |
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reference.cases.grid import layer_cases
from reference.impl.protocol import PARAMETRIC, REQUIRED, available, construct
from reference.judges.runs import loss_outputs
from reference.layers import kind

from .base import Context, Judge, Result, held_by, in_parallel, judged_in, missing_row, skip_reason

JUDGE = "protocol"


def _row(layer: str, check: str, ok: bool | str, note: str = "") -> dict[str, Any]:
    status = ok if isinstance(ok, str) else ("pass" if ok else "fail")
    return {"judge": JUDGE, "layer": layer, "case": check, "dtype": "", "tensor": "-", "status": status,
            "note": note, "family": "protocol"}  # fmt: skip


def _round(layer: Any, layer_type: str, x: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """One forward and backward: {an output's name: it, the input gradient's name: it} (a loss's value
    itself is left out: it may be a Python float)."""
    declared = kind(layer_type)
    if declared.loss:
        got = loss_outputs(declared, layer.forward(x, declared.draw_target(rng, x.shape)), x.dtype)
        return {**{k: v for k, v in got.items() if k != "loss"}, declared.input_grad: layer.backward()}
    out = layer.forward(x)
    return {"out": out, "dx": layer.backward(rng.standard_normal(np.shape(out)).astype(x.dtype))}


def _runs(impl: Any, layer_type: str, config: dict[str, Any], shape: tuple[int, ...]) -> tuple[Any, dict[str, Any]]:
    """(the layer after one round, or None; the ``runs`` row) on one configuration."""
    from reference.impl.protocol import classify

    rng = np.random.default_rng(0)
    try:
        layer = construct(impl, layer_type, config, dtype=np.float64)
        needs = ("forward", "backward") if kind(layer_type).loss else ("forward", "backward", "params", "grads")
        for attr in needs[:3]:  # grads may appear only with the first backward
            if not hasattr(layer, attr):
                return None, _row(layer_type, "runs", False, f"instances have no {attr!r} (the protocol needs {', '.join(needs)})")  # fmt: skip
        _round(layer, layer_type, rng.standard_normal(shape), rng)
        if not hasattr(layer, needs[-1]):
            return None, _row(layer_type, "runs", False, f"instances have no {needs[-1]!r} after backward")
    except Exception as err:
        status, message = classify(err)
        return None, _row(layer_type, "runs", status, f"config {config} on input {shape}: {message}")
    return layer, _row(layer_type, "runs", True, f"config {config} on input {shape}")


def supported_smoke(impl: Any, layer_type: str) -> tuple[Any, dict[str, Any], tuple[dict[str, Any], tuple[int, ...]]]:
    """(layer or None, ``runs`` row, (config, shape)): the first smoke configuration the layer runs,
    for the other rules. The ``runs`` row is the first configuration's that is not declared
    unsupported: where that one raised or broke a rule, it stays the finding, and the other rules
    still run on a later configuration that runs (a bug on one configuration hides no other). After
    the few configurations here, the search's (``reference.judges.reach.smoke_choices``)."""
    from reference.judges.reach import smoke_choices

    # NOTE: where the first configuration is declared unsupported, the rules run on the first of the
    # kind's alternatives it takes (the tutorials' shapes: one input channel, 'valid', no bias; ...)
    choices = [kind(layer_type).smoke, *kind(layer_type).smoke_alternatives]
    choices += [c for c in smoke_choices(layer_type) if c not in choices]
    declared, finding = None, None
    for i, (config, shape) in enumerate(choices):
        if i and skip_reason(impl, layer_type):  # a configuration timed out: no more tries, the row says so
            choices = choices[:i]
            break
        layer, row = _runs(impl, layer_type, config, shape)
        if row["status"] == "unsupported":
            declared = declared or row
            continue
        if row["status"] != "pass":
            finding = finding or row
            continue
        if finding is not None:
            finding["note"] += f"; the other rules ran on config {config} on input {shape}, which runs"
            return layer, finding, (config, shape)
        if i:
            row["note"] += f" (the first configuration the layer supports of {i + 1} tried; {declared['note']})"
        return layer, row, (config, shape)
    if finding is not None:
        finding["note"] += f"; no other of {len(choices)} configurations ran, so no other rule of this layer ran"
        return None, finding, choices[0]
    assert declared is not None
    declared["note"] += f"; none of {len(choices)} configurations supported, so no rule of this layer ran"
    return None, declared, choices[0]


def check_layer(impl: Any, layer_type: str) -> list[dict[str, Any]]:
    layer, runs, (config, shape) = supported_smoke(impl, layer_type)
    if layer is None:
        return [runs]
    rng = np.random.default_rng(0)
    smoke = (config, shape)
    rows = [runs]
    rows.append(
        _guarded(layer_type, "returned arrays stay the caller's", lambda: _returns_kept(impl, layer_type, smoke))
    )
    if kind(layer_type).per_axis is not None and _has(layer, "output_shape"):
        check = "output_shape agrees with forward"
        rows.append(_guarded(layer_type, check, lambda: _output_shape(impl, layer_type, smoke)))
    rows += _round_trip(impl, layer_type, smoke)
    if kind(layer_type).class_targets:
        refused = _guarded(
            layer_type, "labels outside [0, K) refused", lambda: _labels_refused(impl, layer_type, shape)
        )
        rows.append(refused)
    if kind(layer_type).loss:
        return [*rows, *_dtypes(impl, layer_type, config, shape)]
    rows.append(
        _guarded(layer_type, "inputs left unchanged", lambda: _inputs_unchanged(impl, layer_type, config, shape))
    )
    keys_row = _guarded(
        layer_type, "params and grads are dicts with the same keys", lambda: _same_keys(layer, layer_type)
    )
    rows.append(keys_row)
    same = keys_row["status"] == "pass"
    if layer_type in PARAMETRIC and same:
        rows.append(_guarded(layer_type, "params are live", lambda: _live(layer, layer_type, shape, rng)))
        rows.append(_guarded(layer_type, "grads survive a later forward",
                             lambda: _grads_survive(layer, layer_type, shape, rng)))  # fmt: skip
    if "bias" in config:
        rows.append(
            _guarded(layer_type, "params and grads, bias=False", lambda: _without_bias(impl, layer_type, smoke))
        )
    if layer_type in PARAMETRIC and same and _has(layer, "backward_params"):  # without params: nothing to agree on
        rows.append(_params_only_agrees(impl, layer_type, config, shape))
    rows += _dtypes(impl, layer_type, config, shape)
    return rows


def _has(layer: Any, name: str) -> bool:
    """``layer.name`` is callable; False when asking raised (a lost worker: the rules that follow say so)."""
    try:
        return callable(getattr(layer, name, None))
    except Exception:
        return False


def _same_keys(layer: Any, layer_type: str) -> dict[str, Any]:
    # NOTE: reading params and grads is a call into the implementation (its worker may be lost): guarded
    params, grads = layer.params, layer.grads
    same = isinstance(params, dict) and isinstance(grads, dict) and set(params) == set(grads)
    why = "" if same else f"params {_keys(params)}, grads {_keys(grads)} after backward"
    if same:
        shapes = {
            k: (np.shape(params[k]), np.shape(grads[k])) for k in params if np.shape(params[k]) != np.shape(grads[k])
        }
        same, why = (
            not shapes,
            "; ".join(f"grads[{k!r}] has shape {g}, params[{k!r}] {p}" for k, (p, g) in shapes.items()),
        )
    return _row(layer_type, "params and grads are dicts with the same keys", same, why)


def _inputs_unchanged(impl: Any, layer_type: str, config: dict[str, Any], shape: tuple[int, ...]) -> dict[str, Any]:
    check = "inputs left unchanged"
    rng = np.random.default_rng(2)
    layer = construct(impl, layer_type, config, dtype=np.float64)
    x_seen = rng.standard_normal(shape)
    x = held_by(impl, x_seen)  # in a sandbox: the worker's own array, read back after the call
    if kind(layer_type).loss:
        layer.forward(x, kind(layer_type).draw_target(rng, shape))
        layer.backward()
        g = g_seen = np.zeros(0)
    else:
        out = layer.forward(x)
        g_seen = rng.standard_normal(np.shape(out))
        g = held_by(impl, g_seen)
        layer.backward(g)
    changed = [name for name, now, was in (("x", x, x_seen), ("dout", g, g_seen))
               if not np.array_equal(np.asarray(now), was)]  # fmt: skip
    return _row(layer_type, check, not changed, f"{' and '.join(changed)} modified in place by "
                f"{'forward' if changed[0] == 'x' else 'backward'}: a layer must not write into arrays it is given "
                "(the previous layer may still hold them)" if changed else "")  # fmt: skip


def _output_shape(impl: Any, layer_type: str, smoke: tuple[dict[str, Any], tuple[int, ...]]) -> dict[str, Any]:
    """On the kind's ``per_axis`` configuration; where the layer raises there, the row says so and the rule runs again on the
    smoke configuration (on sides that differ, else the smoke input), which the layer runs."""
    from reference.impl.protocol import classify

    config, shape = smoke
    # NOTE: the width grown to 2W + 1, so that an output size computed from the wrong side differs
    tries = [kind(layer_type).per_axis, (config, (shape[0], shape[1], 2 * shape[2] + 1, *shape[3:])), smoke]
    refused = []
    for config, shape in tries:
        try:
            row = _output_shape_on(impl, layer_type, config, shape)
        except Exception as err:
            refused.append((*classify(err), config, shape))
            continue
        if not refused:
            return row
        status, message, config0, shape0 = refused[0]
        # NOTE: an error on the first configuration stays the finding (a declared limit does not), and
        # the rule's own result on a configuration that runs is kept beside it either way
        row["note"] += f" (on config {config} on input {shape}; on config {config0} on input {shape0}: {message})"
        return {**row, "status": "error"} if status == "error" and row["status"] == "pass" else row
    status, message, config0, shape0 = refused[0]
    return _row(layer_type, "output_shape agrees with forward", status,
                f"config {config0} on input {shape0}: {message}; none of {len(tries)} configurations ran")  # fmt: skip


def _output_shape_on(impl: Any, layer_type: str, config: dict[str, Any], shape: tuple[int, ...]) -> dict[str, Any]:
    check = "output_shape agrees with forward"
    layer = construct(impl, layer_type, config, dtype=np.float64)
    said = tuple(int(n) for n in layer.output_shape(shape))
    got = tuple(np.shape(layer.forward(np.random.default_rng(10).standard_normal(shape))))
    return _row(layer_type, check, said == got, f"output_shape{shape} = {said}, forward returns {got} (config {config})"
                if said != got else f"{got} for input {shape}")  # fmt: skip


def _without_bias(impl: Any, layer_type: str, smoke: tuple[dict[str, Any], tuple[int, ...]]) -> dict[str, Any]:
    check = "params and grads, bias=False"
    config, shape = smoke
    layer = construct(impl, layer_type, {**config, "bias": False}, dtype=np.float64)
    _round(layer, layer_type, np.random.default_rng(4).standard_normal(shape), np.random.default_rng(5))
    params, grads = set(layer.params), set(layer.grads)
    why = [f"params has {sorted(params)}, grads {sorted(grads)}"] if params != grads else []
    why += [f"{name} holds 'b' though the layer has no bias" for name, keys in (("params", params), ("grads", grads))
            if "b" in keys]  # fmt: skip
    return _row(layer_type, check, not why, "; ".join(why) or f"params and grads: {sorted(params)}")


def _returns_kept(impl: Any, layer_type: str, smoke: tuple[dict[str, Any], tuple[int, ...]]) -> dict[str, Any]:
    """Round 1's returned arrays, read again after round 2 on the same instance (the same shapes)."""
    check = "returned arrays stay the caller's"
    config, shape = smoke
    rng = np.random.default_rng(6)
    with judged_in(impl, layer_type, lazy=True):  # in a sandbox: handles to the worker's very arrays
        layer = construct(impl, layer_type, config, dtype=np.float64)
        first = _round_kept(layer, layer_type, rng.standard_normal(shape), rng)
        seen = {k: np.array(v, copy=True) for k, v in first.items()}
        _round_kept(layer, layer_type, rng.standard_normal(shape), rng)
        changed = [k for k, v in first.items() if not np.array_equal(np.asarray(v), seen[k])]
    return _row(layer_type, check, not changed, f"{', '.join(changed)} returned by round 1 changed during round 2: "
                "the layer returns a view of a buffer it reuses; return a fresh array" if changed else
                f"{', '.join(first)} of round 1 unchanged by round 2")  # fmt: skip


def _round_kept(layer: Any, layer_type: str, x: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """One round; what it returned, uncopied."""
    declared = kind(layer_type)
    if declared.loss:
        got = loss_outputs(declared, layer.forward(x, declared.draw_target(rng, x.shape)), x.dtype)
        return {**{k: v for k, v in got.items() if k != "loss"}, declared.input_grad: layer.backward()}
    out = layer.forward(x)
    return {"out": out, "dx": layer.backward(rng.standard_normal(np.shape(out)))}


def _round_trip(impl: Any, layer_type: str, smoke: tuple[dict[str, Any], tuple[int, ...]]) -> list[dict[str, Any]]:
    """float32 then float64 on one instance; a layer with parameters and no ``astype`` is not asked."""
    from reference.impl.protocol import classify, read_grads

    check = "dtype kept after a float32 round"
    config, shape = smoke
    rng = np.random.default_rng(7)
    try:
        layer = construct(impl, layer_type, config, dtype=np.float32)
        _round(layer, layer_type, rng.standard_normal(shape).astype(np.float32), rng)
        if layer_type in PARAMETRIC:
            if not callable(getattr(layer, "astype", None)):
                return []
            layer.astype(np.float64)
        got = _round(layer, layer_type, rng.standard_normal(shape), rng)
        if layer_type in PARAMETRIC:
            got.update({f"d{k}": v for k, v in read_grads(layer, layer_type, list(layer.params)).items()})
    except Exception as err:
        status, message = classify(err)
        return [_row(layer_type, check, status, message)]
    wrong = {k: np.asarray(v).dtype.name for k, v in got.items() if v is not None and np.asarray(v).dtype != np.float64}
    note = ", ".join(f"{k} is {d}" for k, d in wrong.items())
    return [_row(layer_type, check, not wrong, f"{note} for float64 input after a float32 round" if wrong else "")]


def _labels_refused(impl: Any, layer_type: str, shape: tuple[int, ...]) -> dict[str, Any]:
    check = "labels outside [0, K) refused"
    logits = np.random.default_rng(8).standard_normal(shape)
    scored = []
    for bad in (shape[1], -1):
        labels = np.zeros(shape[0], dtype=np.int64)
        labels[-1] = bad
        layer = construct(impl, layer_type, {}, dtype=np.float64)
        try:
            layer.forward(logits, labels)
        except Exception:  # any exception is a refusal  # noqa: S112
            continue
        scored.append(str(bad))
    return _row(layer_type, check, not scored, f"label {' and '.join(scored)} of K={shape[1]} classes was "
                "scored, not refused (-1 is silently the last class; K reads past the row or wraps): check the labels "
                "in forward and raise ValueError for any outside [0, K), e.g. `if labels.min() < 0 or labels.max() "
                ">= K: raise ValueError(...)`" if scored else f"labels {shape[1]} and -1 raise")  # fmt: skip


def _guarded(layer_type: str, check: str, run: Any) -> dict[str, Any]:
    """The check's row, or an error/unsupported row when the implementation raised during it."""
    from reference.impl.protocol import classify

    try:
        return run()
    except Exception as err:
        status, message = classify(err)
        return _row(layer_type, check, status, message)


def _keys(d: Any) -> str:
    return str(sorted(d)) if isinstance(d, dict) else type(d).__name__


def _live(layer: Any, layer_type: str, shape: tuple[int, ...], rng: np.random.Generator) -> dict[str, Any]:
    check = "params are live"
    for key in list(layer.params):
        layer.params[key][...] = 0.0
        if np.any(np.asarray(layer.params[key]) != 0):
            return _row(layer_type, check, False, f"params[{key!r}][...] = 0 does not read back as zeros: "
                        "`params` returns copies, so nothing written into it reaches the layer")  # fmt: skip
    out = np.asarray(layer.forward(rng.standard_normal(shape)))
    if np.any(out != 0):
        return _row(layer_type, check, False, "with every parameter written to zero in place, forward still gives "
                    "nonzero output: the layer computes with arrays other than those in `params`")  # fmt: skip
    return _row(layer_type, check, True, "zeros written in place read back and zero the output")


def _grads_survive(layer: Any, layer_type: str, shape: tuple[int, ...], rng: np.random.Generator) -> dict[str, Any]:
    check = "grads survive a later forward"
    for key in list(layer.params):
        layer.params[key][...] = rng.standard_normal(np.shape(layer.params[key]))
    _round(layer, layer_type, rng.standard_normal(shape), rng)
    kept = {k: np.array(v, copy=True) for k, v in layer.grads.items()}
    layer.forward(rng.standard_normal(shape))
    changed = [k for k in kept if k not in layer.grads or not np.array_equal(np.asarray(layer.grads[k]), kept[k])]
    return _row(layer_type, check, not changed, f"forward changed or cleared grads {changed}; the protocol keeps "
                "them until the next backward (optimisers and checkers read them after later forwards)" if changed else "")  # fmt: skip


def _params_only_agrees(impl: Any, layer_type: str, config: dict[str, Any], shape: tuple[int, ...]) -> dict[str, Any]:
    """A round of backward, then one forward answered by backward_params and the same forward by backward."""
    from reference.impl.protocol import classify, read_grads

    check = "backward_params agrees with backward"
    rng = np.random.default_rng(3)
    x0, x = rng.standard_normal(shape), rng.standard_normal(shape)
    try:
        layer = construct(impl, layer_type, config, dtype=np.float64)
        keys = list(layer.params)
        layer.backward(rng.standard_normal(np.shape(layer.forward(x0))))  # an earlier round, whose grads must go
        g = rng.standard_normal(np.shape(layer.forward(x)))
        layer.backward_params(g.copy())
        params_only = read_grads(layer, layer_type, keys)
        layer.forward(x)
        layer.backward(g.copy())
        full = read_grads(layer, layer_type, keys)
    except Exception as err:
        status, message = classify(err)
        return _row(layer_type, check, status, f"backward_params: {message}")
    # NOTE: the same sums in float64; a different but correct order of summation moves them by ~1e-16
    # of their scale, a forgotten term or a stale gradient by far more than 1e-12.
    wrong = [k for k in keys if not np.allclose(params_only[k], full[k], rtol=0,
                                                 atol=1e-12 * max(float(np.abs(full[k]).max(initial=0)), 1e-300))]  # fmt: skip
    return _row(layer_type, check, not wrong, f"grads {wrong} after backward_params differ from backward's for the "
                "same forward (networks call backward_params on their first layer in training, so a training run "
                "would use these)" if wrong else f"grads {keys} equal within 1e-12 of their scale")  # fmt: skip


def _dtypes(impl: Any, layer_type: str, config: dict[str, Any], shape: tuple[int, ...]) -> list[dict[str, Any]]:
    from reference.impl.protocol import classify, read_grads

    rows = []
    for dtype in (np.float32, np.float64):
        check = f"dtype kept, {np.dtype(dtype).name}"
        rng = np.random.default_rng(1)
        try:
            layer = construct(impl, layer_type, config, dtype=dtype)
            got = _round(layer, layer_type, rng.standard_normal(shape).astype(dtype), rng)
            if layer_type in PARAMETRIC:
                got.update({f"d{k}": v for k, v in read_grads(layer, layer_type, list(layer.params)).items()})
        except Exception as err:
            status, message = classify(err)
            rows.append(_row(layer_type, check, status, message))
            continue
        wrong = {k: np.asarray(v).dtype.name for k, v in got.items() if v is not None and np.asarray(v).dtype != dtype}
        note = ", ".join(f"{k} is {d}" for k, d in wrong.items())
        rows.append(_row(layer_type, check, not wrong, f"{note} for {np.dtype(dtype).name} input" if wrong else ""))
    return rows


# the network of the Sequential rule: (layer, config); input (2, 4, 4, 2) -> logits (2, 3)
SEQUENTIAL_NET = [("Conv2D", kind("Conv2D").smoke[0]), ("ReLU", {}), ("MaxPool2D", {"kernel_size": 2, "stride": None}),
                  ("Flatten", {}), ("Dense", {"n_in": 12, "n_out": 3, "bias": True})]  # fmt: skip


def _sequential(impl: Any) -> dict[str, Any]:
    """The implementation's Sequential against its own layers chained by hand (the same objects)."""
    check = "Sequential agrees with its layers"
    rng = np.random.default_rng(9)
    layers = [construct(impl, t, c, dtype=np.float64) for t, c in SEQUENTIAL_NET]
    x, dout = rng.standard_normal((2, 4, 4, 2)), rng.standard_normal((2, 3))
    h = x
    for layer in layers:
        h = layer.forward(h)
    want = {"out": np.array(h)}
    g = dout
    for layer in reversed(layers):
        g = layer.backward(g)
    want["dx"] = np.array(g)
    want_grads = {f"{i}.{k}": np.array(v) for i, layer in enumerate(layers) for k, v in dict(layer.grads).items()}
    try:
        net = impl.Sequential(layers)
    except Exception as err:  # another container API: not this protocol's Sequential
        return _row(
            "Sequential", check, "unsupported", f"Sequential(list of layers) raised {type(err).__name__}: {err}"
        )
    got = {"out": np.array(net.forward(x)), "dx": np.array(net.backward(dout.copy()))}
    wrong = [f"{k} has shape {got[k].shape}, expected {v.shape}" if got[k].shape != v.shape else f"{k} differs"
             for k, v in want.items() if got[k].shape != v.shape or not _close(got[k], v)]  # fmt: skip
    grads = {k: np.array(v) for k, v in dict(net.grads).items()}
    if set(grads) != set(want_grads):
        wrong.append(f"grads has {sorted(grads)}, the layers' grads are {sorted(want_grads)}")
    wrong += [f"grads[{k!r}] differs" for k in want_grads if k in grads and not _close(grads[k], want_grads[k])]
    net.forward(x)
    net.backward(dout.copy(), input_grad=False)
    later = {k: np.array(v) for k, v in dict(net.grads).items()}
    wrong += [f"grads[{k!r}] after backward(input_grad=False) differs" for k in want_grads
              if k not in later or not _close(later[k], want_grads[k])]  # fmt: skip
    wrong += _sequential_dtype(net, x)
    return _row("Sequential", check, not wrong, "; ".join(wrong) + " (against the same layers chained by hand)" if wrong
                else "out, dx and every gradient equal the layers chained by hand")  # fmt: skip


def _sequential_dtype(net: Any, x: np.ndarray) -> list[str]:
    """The optional ``dtype`` and ``astype`` of a Sequential: float64 layers say float64; after
    ``astype(float32)`` the network computes and says float32."""
    wrong = []
    if hasattr(net, "dtype") and np.dtype(net.dtype) != np.float64:
        wrong.append(f"dtype is {np.dtype(net.dtype)} for float64 layers")
    if callable(getattr(net, "astype", None)):
        net.astype(np.float32)
        try:
            out = np.asarray(net.forward(x.astype(np.float32)))
        except Exception as err:  # the layers kept float64 parameters and refuse float32 input, say
            from reference.impl.protocol import classify

            return [*wrong, f"after astype(float32), forward on float32 input raised {classify(err)[1]}"]
        if out.dtype != np.float32:
            wrong.append(f"after astype(float32) forward returns {out.dtype}")
        if hasattr(net, "dtype") and np.dtype(net.dtype) != np.float32:
            wrong.append(f"after astype(float32) dtype is {np.dtype(net.dtype)}")
    return wrong


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to float64 rounding of one order of summation and another (1e-12 of the scale)."""
    return a.shape == b.shape and bool(
        np.allclose(a, b, rtol=0, atol=1e-12 * max(float(np.abs(b).max(initial=0)), 1e-300))
    )


def check_protocol(impl: Any, layers: tuple[str, ...] | list[str] = REQUIRED) -> pd.DataFrame:
    """Every rule for every layer (layers at once in a sandbox, each in its own worker); the
    Sequential rule too when every layer is judged and the module has one."""

    def one(layer_type: str) -> list[dict[str, Any]]:
        if not available(impl, layer_type):  # a kind courses add is judged where the implementation has it
            return [] if kind(layer_type).optional else [missing_row(JUDGE, layer_type)]
        if why := skip_reason(impl, layer_type):
            return [_row(layer_type, "runs", "timeout", why)]
        with judged_in(impl, layer_type):
            try:
                return check_layer(impl, layer_type)
            except Exception as err:  # NOTE: a rule the guards above missed: a row, never a crashed judge
                from reference.impl.protocol import classify

                status, message = classify(err)
                return [_row(layer_type, "the protocol's rules", status, f"the rules stopped: {message}")]

    def network() -> list[dict[str, Any]]:
        if not all(available(impl, t) for t, _ in SEQUENTIAL_NET):
            return [_row("Sequential", "Sequential agrees with its layers", "missing",
                         "not judged: needs " + ", ".join(t for t, _ in SEQUENTIAL_NET if not available(impl, t)))]  # fmt: skip
        with judged_in(impl, "Sequential"):
            return [_guarded("Sequential", "Sequential agrees with its layers", lambda: _sequential(impl))]

    tasks = [lambda t=t: one(t) for t in layers]
    if set(REQUIRED) <= set(layers) and callable(getattr(impl, "Sequential", None)):
        tasks.append(network)
    # NOTE: no layer asked for (a network case rerun alone) is no rows, with the rows' columns all the same
    found = [r for rows in in_parallel(impl, tasks) for r in rows]
    return pd.DataFrame(found) if found else pd.DataFrame(columns=list(_row("", "", True)))


def protocol_lines(df: pd.DataFrame) -> list[str]:
    """One line per broken rule (and per layer that is missing or does not run)."""
    bad = df[df["status"] != "pass"]
    return [
        f"protocol: {r.layer}: {r.status.upper()}"
        + (f" {r.case}" if r.case != "*" else "")
        + (f": {r.note}" if r.note else "")
        for r in bad.itertuples()
    ]


class ProtocolJudge(Judge):
    name = JUDGE
    title = "Protocol rules"

    def run(self, ctx: Context) -> Result:
        layers = list(dict.fromkeys(c.layer for c in layer_cases(ctx.cases)))
        return Result(self.name, check_protocol(ctx.impl, layers))
