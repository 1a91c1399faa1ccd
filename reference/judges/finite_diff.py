"""Judge 2: central differences in float64, aware of kinks. Needs no torch (only the optional
three-way attribution and the gradcheck cross-check use it).

For a layer f and a fixed random g, the scalar projection ``L = <f(x), g>`` has gradient
``backward(g)`` w.r.t. x and each parameter. Per element e of a tensor we evaluate L at
``v ± h`` and ``v ± 2h`` with ``h = H0 * max(1, |v|)`` (rounded so ``v + h`` is exact) and form

    D1 = (L(v+h) - L(v-h)) / 2h        (error  |L'''| h^2 / 6  +  rounding)
    D2 = (L(v+2h) - L(v-2h)) / 4h      (error  4x the truncation of D1)

Error estimate (the tolerance derives from it, not from a bare constant):
- truncation: Richardson, ``|D2 - D1| / 3`` (exact when L is smooth to third order; zero for the
  piecewise-linear layers, where D1 has no truncation error at all away from kinks);
- rounding: each L carries an error of about ``eps * S`` with ``S = sum |f(x)| |g|`` (the size of the
  terms of the projection), so the difference carries ``~ 2 eps S / 2h``; we take ``4 eps S / h``.
The element passes when ``|analytic - D1| <= FD_SAFETY * (truncation + rounding) + FD_RTOL * |D1|``.
With H0 = 1e-6 and S ~ 10 the bound is ~1e-8 absolute: a 1% error in a gradient of size 1e-4 shows.

Kinks: the one-sided slopes ``right = (L(v+h) - L(v)) / h`` and ``left = (L(v) - L(v-h)) / h`` agree
to O(h) where L is smooth, and jump by O(|g|) where a ReLU changes sign or a pooling window's winner
changes between v-h and v+h (an exact tie inside a window is such a point). Such an element is a
``kink``: counted, and judged by the subgradient rule ``min(left, right) <= analytic <= max(left, right)``
(within the bound), never by D1 and never failed for the kink alone. For max pooling the whole dx is
also held to the window rule: a window's gradient sums to its upstream gradient and sits on one of
its tied maxima. (The rule cannot tell which subgradient a layer picks at 0 or at a tie; that
convention is the autograd judge's to hold.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reference import costs
from reference.cases.grid import (
    Case,
    case_inputs,
    expected_output_shape,
    grid,
    input_stats,
    layer_cases,
    make_values,
    plain_config,
    repeatable,
    upstream_gradient,  # fmt: skip
)
from reference.core.compare import compare, error_row, raised_row
from reference.core.diagnosis import Evidence, diagnose, route_max_pool
from reference.core.tolerances import ADJOINT_RTOL, FD_RTOL, FD_SAFETY, Tolerance
from reference.impl.protocol import (
    DEFAULT_IMPL,
    available,
    backward_grads_and_params,
    build_case_layer,
    construct,
    forward_backward_reads,
    load_impl,
    missing_layers,
    read_grads,  # fmt: skip
)
from reference.judges.base import Context, Judge, Result, case_rows, in_parallel, judged_in, skip_reason
from reference.judges.runs import Handed, Handoffs, loss_outputs
from reference.layers import KINDS, kind
from reference.layers import NETWORK_LOSS as LOSS
from reference.report.tables import failures_first
from reference.sandbox import requests

JUDGE = "finite_diff"
H0 = 1e-6
EPS = float(np.finfo(np.float64).eps)
MAX_ELEMENTS = 512  # larger tensors: a fixed random subset of this many elements (seeded, recorded)
# The built-in networks' own layer shapes (lenet's conv2 has 51,200 weights; one probe costs four
# forwards of a 14x14x32x64 convolution): a smaller fixed subset keeps the judge within its budget.
# A wrong formula shows in almost every element, so 64 random ones still catch it; the small grid
# cases, probed whole, are where single-element faults are hunted.
ARCH_ELEMENTS = 64
NETWORK_ELEMENTS = 24  # per parameter tensor in the whole-network check
FD_TOL = Tolerance(atol=0.0, rtol=FD_RTOL, reason="per-element bound from the step h (see module doc)")
ADJOINT_TOL = Tolerance(atol=0.0, rtol=ADJOINT_RTOL, reason="two float64 reductions of the same products")
# Random directions tried before any element sweep (gradcheck's fast mode): each moves every element
# at once, 4 forwards for all of them where the sweep spends 4 per element. A wrong gradient moves the
# projection on a Gaussian direction unless it is orthogonal to it (probability 0); two directions
# against a coincidence. A direction that fails or crosses a kink sends the tensor to the sweep.
DIRECTIONS = 2
KINK_JUMP = 1e-4  # one-sided slopes differing by more than this fraction (plus rounding) mark a kink


@dataclass
class Probe:
    """Finite-difference results over the checked elements of one tensor (1-D arrays)."""

    index: list[tuple[int, ...]]
    central: np.ndarray
    left: np.ndarray
    right: np.ndarray
    bound: np.ndarray
    kink: np.ndarray
    h: np.ndarray
    checked: str
    side_err: np.ndarray  # truncation estimate of the one-sided slopes, O(h |L''|)
    interval: tuple[np.ndarray, np.ndarray] | None = None  # a layer-specific subgradient interval, if any
    directions: list[np.ndarray] | None = None  # a directional probe's displacements (index: their numbers)

    def values(self, gradient: np.ndarray) -> np.ndarray:
        """What ``gradient`` predicts for each probed slope: its elements, or its projections on the
        directions (float64, 1-D)."""
        if self.directions is not None:
            return np.array([float(np.sum(gradient * d)) for d in self.directions])
        return np.array([gradient[e] for e in self.index], dtype=np.float64)

    def clean(self, gradient: np.ndarray) -> bool:
        """Every slope within its bound of ``gradient``'s, and no kink: nothing for an element sweep to find."""
        return bool(not self.kink.any() and np.all(np.abs(self.values(gradient) - self.central) <= self.bound))

    def subgradient_interval(self) -> tuple[np.ndarray, np.ndarray]:
        """[min(left, right), max(left, right)], widened by the error of each side."""
        slack = self.bound + FD_SAFETY * self.side_err
        return np.minimum(self.left, self.right) - slack, np.maximum(self.left, self.right) + slack


def choose_elements(shape: tuple[int, ...], limit: int, seed: Any) -> tuple[list[tuple[int, ...]], str]:
    """Every element, or a fixed random subset of ``limit`` (recorded as 'n/N seed=...')."""
    size = int(np.prod(shape))
    if size <= limit:
        return _indices(np.arange(size), shape), f"{size}/{size}"
    flat = np.sort(np.random.default_rng(seed).choice(size, limit, replace=False))
    return _indices(flat, shape), f"{limit}/{size} seed={seed}"


def _indices(flat: np.ndarray, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The index tuple of each flat position (C order), as Python ints."""
    if not shape or not len(flat):  # a 0-d tensor's one element: ()
        return [() for _ in flat]
    return [tuple(row) for row in np.stack(np.unravel_index(flat, shape), axis=-1).tolist()]


def probe(
    f: Callable[[], float],
    arr: np.ndarray,
    elements: list[tuple[int, ...]],
    scale: float,
    checked: str,
    many: Callable[[list[tuple[tuple[int, ...], float, list[float]]]], list[float]] | None = None,
    known: np.ndarray | None = None,
) -> Probe:
    """Central/one-sided differences of ``f`` w.r.t. ``arr[e]`` for each element e (arr is modified
    in place and restored). ``many(plan)``, where given, evaluates the same plan (per element: the
    values to try, then the original back) in fewer exchanges with a sandboxed worker; ``known``,
    where given, is ``arr``'s values as they are now (read already: not fetched again)."""
    f0 = f()
    base = np.array(arr if known is None else known, dtype=np.float64)
    steps = []
    for e in elements:
        v = float(base[e])
        steps.append((e, v, (v + H0 * max(1.0, abs(v))) - v))  # NOTE: the step actually representable at v
    plan = [(e, v, [v + mult * h for mult in (1, -1, 2, -2)]) for e, v, h in steps]
    flat = evaluate(f, arr, plan, many)
    h = np.array([step for _e, _v, step in steps])
    return _slopes(elements, np.array(flat).reshape(-1, 4), f0, h, scale, checked)


Plan = list[tuple[Any, Any, list[Any]]]  # (index, value to restore, values to try there)


def evaluate(f: Callable[[], float], arr: np.ndarray, plan: Plan, many: Callable[[Plan], list[float]] | None,
             ) -> list[float]:  # fmt: skip
    """``f`` at every trial of ``plan`` in order (``arr[index] = trial``, the value restored after each
    index's trials), through ``many`` for a layer in a worker."""
    if many is not None:
        return many(plan)
    flat = []
    for e, v, trials in plan:
        for t in trials:
            arr[e] = t
            flat.append(f())
        arr[e] = v
    return flat


def _slopes(index: list[Any], at: np.ndarray, f0: float, h: np.ndarray, scale: float, checked: str,
            directions: list[np.ndarray] | None = None) -> Probe:  # fmt: skip
    """A probe from ``at`` (n x 4: f at +h, -h, +2h, -2h along each probed element or direction) and
    f0 = f unmoved; ``h`` the step of each (1 for a direction: its displacement is the step)."""
    p1, m1, p2, m2 = at.T
    d1, d2 = (p1 - m1) / (2 * h), (p2 - m2) / (4 * h)
    rounding = 4 * EPS * scale / h
    bound = FD_SAFETY * (np.abs(d2 - d1) / 3 + rounding) + FD_RTOL * np.abs(d1)
    right, left = (p1 - f0) / h, (f0 - m1) / h
    # one-sided slopes carry an O(h |L''|) truncation error; the slope over the next step estimates it
    side_err = np.maximum(np.abs((p2 - p1) / h - right), np.abs((m1 - m2) / h - left))
    # NOTE: a kink is a jump between the one-sided slopes that neither curvature nor rounding explains.
    # Relative to the slopes alone (the first test) a small jump hides beside a large slope: a pooling
    # tie whose window has a tiny upstream gradient (|g| 6e-5 beside slopes of 1.6) moved the central
    # difference by g/2 unflagged. The second test holds the jump against the element's own error
    # bound plus the measured truncation of the one-sided slopes, which is ~h|L''| where L is smooth.
    jump = np.abs(right - left)
    kink = (jump > KINK_JUMP * (np.abs(left) + np.abs(right)) + 2 * FD_SAFETY * rounding) | (
        jump > bound + FD_SAFETY * side_err
    )
    return Probe(list(index), d1, left, right, bound, kink, np.asarray(h, dtype=np.float64), checked, side_err,
                 directions=directions)  # fmt: skip


def directions(base: np.ndarray, count: int, seed: Any) -> list[np.ndarray]:
    """``count`` random displacements of ``base`` (float64, its shape): Gaussian, each element scaled
    as the element sweep's step is (H0 * max(1, |v|)), and rounded so that base ± d and base ± 2d are
    exact in float64 (as the sweep's steps are)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        d = H0 * rng.standard_normal(base.shape) * np.maximum(1.0, np.abs(base))
        # NOTE: a multiple of the coarsest ulp that base ± 2d can meet is exact at every trial
        grid = np.spacing(np.abs(base) + 4 * np.abs(d))
        out.append(np.round(d / grid) * grid)
    return out


def direction_probe(f: Callable[[], float], arr: np.ndarray, count: int, seed: Any, scale: float,
                    many: Callable[[Plan], list[float]] | None = None, known: np.ndarray | None = None) -> Probe:  # fmt: skip
    """Central/one-sided differences of ``f`` along ``count`` random directions moving every element
    of ``arr`` at once (gradcheck's fast mode): slopes per unit of each displacement, which the
    analytic gradient predicts as its projection on it (``Probe.values``); ``known`` as ``probe``'s."""
    base = np.array(arr if known is None else known, dtype=np.float64)
    dirs = directions(base, count, seed)
    # NOTE: f unmoved is the plan's first trial (base written over itself): the same forward as f()
    # alone, in the same exchange as the directions' trials
    plan = [(Ellipsis, base, [base])] + [(Ellipsis, base, [base + mult * d for mult in (1, -1, 2, -2)]) for d in dirs]
    f0, *flat = evaluate(f, arr, plan, many)
    checked = f"{count} random directions over all {base.size} elements"
    return _slopes([("direction", k) for k in range(count)], np.array(flat).reshape(-1, 4), f0, np.ones(count),
                   scale, checked, directions=dirs)  # fmt: skip


def _chunks(plan: Plan, trials: int) -> list[Plan]:
    """``plan`` cut at entry boundaries into pieces of at most ``trials`` trials (one entry at least)."""
    out: list[Plan] = [[]]
    count = 0
    for entry in plan:
        if out[-1] and count + len(entry[2]) > trials:
            out.append([])
            count = 0
        out[-1].append(entry)
        count += len(entry[2])
    return out if out[0] else []


def batched(layer: Any, arr: Any, x: np.ndarray, g: np.ndarray | None, labels: np.ndarray | None) -> Any:
    """For a layer in a sandboxed worker: ``probe``'s plan as sweeps (reference.sandbox.requests.sweep):
    the same calls (forward on a perturbed copy of x, or on x after a write into the parameter), x and g
    sent once per sweep, the projection taken there. None for a layer in this process (probe then calls
    ``f`` itself)."""
    if not requests.sandboxed(layer):
        return None
    extra = (labels,) if labels is not None else ()
    # NOTE: <forward(x), g> is taken in the worker (the same float64 sum as here): one number comes
    # back per trial instead of the whole output. A worker that lies about it could as well lie about
    # the output; the comparison with the analytic gradient stays here.
    call = requests.Call(layer, "forward", (x, *extra), None if labels is not None else g)
    param = arr if requests.sandboxed(arr) else None  # a parameter of the layer (an array in the worker), else x
    per_trial = x.nbytes + (g.nbytes if labels is None and g is not None else 0)  # what one call alone would send
    per_batch = max(1, (32 << 20) // max(per_trial, 1))  # the trials of ~32 MB of calls one by one per exchange

    def many(plan: Plan) -> list[float]:
        if param is None:  # a fresh copy of x each trial: nothing to restore
            plan = [(e, None, trials) for e, _v, trials in plan]
        values: list[float] = []
        for chunk in _chunks(plan, per_batch):
            trials = sum(len(t) for _e, _v, t in chunk)
            got = requests.sweep([call], chunk, f"{requests.label(layer)}.forward", target=param,
                                 item=0 if labels is not None else None, work=trials * per_trial)  # fmt: skip
            values += _sent(got)
        return values

    return many


def _sent(values: list[float] | None) -> list[float]:
    if values is None:  # the layer and its parameter in different workers: cannot happen for one layer's own
        raise RuntimeError("a sweep whose objects are not one worker's")
    return values


def stacked(layer: Any, x: np.ndarray, g: np.ndarray, f: Callable[[], float]) -> Callable[[Plan], list[float]]:
    """For a per-sample layer (``LayerKind.per_sample``): ``probe``'s element sweep of x with each
    sample's trials stacked along the batch axis, one forward for many trials (in a worker or here).

    A trial at element (n, ...) = t changes sample n's term of ``<forward(x), g>`` alone, so its value
    is ``f() + T(t) - T(0)``, T the term ``<forward(stack)[k], g[n]>`` of its row k in a stack that
    also holds sample n unmoved (row 0): the same differences as ``f`` on the whole batch, without the
    other samples' rounding.
    # NOTE: only where the layer's kind is per-sample; a forward that mixes the samples of a batch is
    # the autograd judge's to find (its forward against torch's), not this sum's to hide.
    """
    per_call = max(1, (32 << 20) // max(x[0].nbytes, 1) - 1)  # trials of at most ~32 MB of stacked inputs

    def rows(stack: np.ndarray, gn: np.ndarray) -> list[float]:
        if requests.sandboxed(layer):
            (got,) = _sent(requests.run([requests.Call(layer, "forward", (stack,), gn, rows=True)],
                                        f"{requests.label(layer)}.forward"))  # fmt: skip
        else:
            product = np.asarray(layer.forward(stack), dtype=np.float64) * gn
            got = list(product.reshape(len(product), -1).sum(axis=1))
        if not isinstance(got, list) or len(got) != len(stack):
            raise ValueError(f"forward of {len(stack)} samples stacked returned "
                             f"{len(got) if isinstance(got, list) else 'no'} rows")  # fmt: skip
        return [float(v) for v in got]

    def many(plan: Plan) -> list[float]:
        f0 = f()
        trials = [(e, t) for e, _v, ts in plan for t in ts]
        by_sample: dict[int, list[int]] = {}
        for pos, (e, _t) in enumerate(trials):
            by_sample.setdefault(int(e[0]), []).append(pos)
        values = [0.0] * len(trials)
        for n, positions in by_sample.items():
            for start in range(0, len(positions), per_call):
                part = positions[start : start + per_call]
                stack = np.repeat(x[n : n + 1], len(part) + 1, axis=0)
                for k, pos in enumerate(part, start=1):
                    e, t = trials[pos]
                    stack[(k, *e[1:])] = t
                terms = rows(stack, g[n : n + 1])
                for k, pos in enumerate(part, start=1):
                    values[pos] = f0 + (terms[k] - terms[0])
        return values

    return many


def batched_network(layers: list[Any], loss_fn: Any, arr: Any, x: np.ndarray, labels: np.ndarray) -> Any:
    """For a network in a sandboxed worker: ``probe``'s plan as sweeps: per trial a write into the
    parameter, the forward through every layer, the loss, the activations handed on inside the worker;
    only the losses come back. None for a network of this process."""
    if not requests.same_worker(arr, *layers, loss_fn):
        return None
    per_batch = 32  # trials per exchange
    calls = [requests.Call(layers[0], "forward", (x,))]
    calls += [requests.Call(layer, "forward", (requests.Result(k),)) for k, layer in enumerate(layers[1:])]
    calls.append(requests.Call(loss_fn, "forward", (requests.Result(len(layers) - 1), labels)))

    def many(plan: Plan) -> list[float]:
        values: list[float] = []
        for chunk in _chunks(plan, per_batch):
            values += _sent(requests.sweep(calls, chunk, "the network's forward", target=arr, item=0,
                                           work=x.nbytes + labels.nbytes))  # fmt: skip
        return values

    return many


def judge_probe(analytic: np.ndarray, p: Probe, *, layer: str, case: str, tensor: str, kind: str,
                **extra: Any) -> dict[str, Any]:  # fmt: skip
    """One row: analytic values at the probed elements vs the central differences; kink elements must
    lie in ``p.interval`` (default: between the one-sided slopes)."""
    ours = p.values(analytic)
    lo, hi = p.subgradient_interval() if p.interval is None else p.interval
    kink_ok = (ours >= lo) & (ours <= hi)
    row = compare(ours, p.central, FD_TOL, layer=layer, case=case, tensor=tensor, judge=JUDGE, bound=p.bound,
                  kinks=p.kink, kink_ok=kink_ok, kind=kind, h=float(np.median(p.h)), checked=p.checked, **extra)  # fmt: skip
    if row["worst_index"]:
        row["worst_index"] = str(p.index[int(row["worst_index"].strip("(),"))])
    return row


def maxpool_window_rule(x: np.ndarray, dx: np.ndarray, g: np.ndarray, kernel: tuple[int, int],
                        stride: tuple[int, int]) -> str | None:  # fmt: skip
    """None if max-pool's dx routes each window's gradient to one of its tied maxima, else why not.

    Non-overlapping windows are checked one by one (sum over the window == its upstream gradient,
    support on the window's maxima); overlapping windows by total mass and support.
    """
    (kh, kw), (sh, sw) = kernel, stride
    Ho, Wo = g.shape[1:3]
    is_max = np.zeros(x.shape, dtype=bool)
    sums = np.zeros(g.shape)
    for i in range(Ho):
        for j in range(Wo):
            win = x[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :]
            peak = win.max(axis=(1, 2), keepdims=True)
            is_max[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :] |= win == peak
            sums[:, i, j, :] = dx[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :].sum(axis=(1, 2))
    tol = 1e-12 * max(1.0, float(np.abs(g).max()))
    if np.any((dx != 0) & ~is_max):
        return "gradient sent to an element that is no window's maximum"
    if sh >= kh and sw >= kw:
        bad = np.abs(sums - g) > tol
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            return f"window {idx} receives {sums[idx]:.6g}, its upstream gradient is {g[idx]:.6g}"
    elif abs(dx.sum() - g.sum()) > tol * g.size:
        return f"total gradient {dx.sum():.6g} != total upstream gradient {g.sum():.6g}"
    return None


def maxpool_kink_interval(x: np.ndarray, g: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                          p: Probe) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The subgradient interval of max-pool's dx at each probed element.

    # NOTE: with overlapping windows an element can tie in several windows at once, and the chosen
    # subgradient's coordinate need not lie between the two one-sided slopes along that coordinate.
    # Each window w containing the element contributes g_w if it is the window's clear winner, and
    # anything in [min(0, g_w), max(0, g_w)] if it is within 2h of the window's maximum (a contender);
    # the interval is the union of that range and the one-sided slopes'.
    """
    (kh, kw), (sh, sw) = kernel, stride
    Ho, Wo = g.shape[1:3]
    lo, hi = p.subgradient_interval()
    lo, hi = lo.copy(), hi.copy()
    for k, (m, r, c, ch) in enumerate(p.index):
        fixed = low = high = 0.0
        for i in range(max(0, (r - kh) // sh), min(Ho, r // sh + 1)):
            for j in range(max(0, (c - kw) // sw), min(Wo, c // sw + 1)):
                if not (i * sh <= r < i * sh + kh and j * sw <= c < j * sw + kw):
                    continue
                others = x[m, i * sh : i * sh + kh, j * sw : j * sw + kw, ch].ravel().tolist()  # Python floats: exact
                del others[(r - i * sh) * kw + (c - j * sw)]
                gap = float(x[m, r, c, ch]) - (max(others) if others else -np.inf)
                if gap > 2 * p.h[k]:
                    fixed += g[m, i, j, ch]
                elif gap >= -2 * p.h[k]:
                    low += min(0.0, g[m, i, j, ch])
                    high += max(0.0, g[m, i, j, ch])
        lo[k] = min(lo[k], fixed + low - p.bound[k])
        hi[k] = max(hi[k], fixed + high + p.bound[k])
    return lo, hi


@dataclass
class _Ran:
    """A case's layer after its forward and backward: what the probes need of it."""

    layer: Any
    grads: dict[str, np.ndarray]  # the analytic gradients, by tensor name
    f: Callable[[], float]  # the scalar the finite differences are taken of
    scale: float  # the size of its terms (the rounding estimate's S)
    g: np.ndarray | None  # the upstream gradient (None for a loss)
    tensors: dict[str, Any]  # the arrays probed, by the name of their gradient
    forward: dict[str, np.ndarray]  # what the forward returned (for the attribution)
    values: dict[str, np.ndarray] = field(default_factory=dict)  # a probed parameter's values, read with its grads


def run_case(impl: Any, case: Case, attribution: bool = True, handoffs: Handoffs | None = None) -> list[dict[str, Any]]:
    """Element rows (x and every parameter) of one case, float64. With ``handoffs``, the autograd
    judge's float64 run of the same case and inputs, where it went through, is the start: its layer,
    forward and backward (runs.Handoffs), instead of the same calls made again."""
    inputs = case_inputs(case, "float64")
    x = inputs["x"].copy()
    extra = {"dtype": "float64", "values": case.values, **input_stats(case, x)}
    stage, declared = "forward", kind(case.layer)
    start = handoffs.take(case, inputs) if handoffs is not None and not declared.loss else None
    try:
        layer = start.layer if start is not None else build_case_layer(
            impl, case.layer, case.config, inputs["params"], "float64", buffers=inputs["buffers"])  # fmt: skip
        if declared.loss:
            labels = inputs["labels"]
            loss0 = float(loss_outputs(declared, layer.forward(x, labels), np.float64)["loss"])
            stage = "backward"
            ran = _loss_backward(layer, declared, x, labels, loss0)
        else:
            out = np.array(layer.forward(x.copy()) if start is None else start.out)
            if out.shape != (want := expected_output_shape(case)):  # no probe means anything against it
                return [error_row(judge=JUDGE, layer=case.layer, case=case.id, tensor="out", kind="element",
                                  message=f"forward returned shape {out.shape}, expected {want}", **extra)]  # fmt: skip
            g = upstream_gradient(inputs, out.shape)
            stage = "backward"
            ran = _layer_backward(layer, case, inputs, x, out, g, start)
    except Exception as err:  # the implementation raised: error, or unsupported for a declared limit
        if stage == "forward":  # nothing ran: one row
            return [raised_row(err, judge=JUDGE, layer=case.layer, case=case.id, tensor="*", kind="element", **extra)]
        # the forward ran (its rows are the autograd judge's): each gradient this backward owed, named
        names = [declared.input_grad, *(f"d{k}" for k in inputs["params"])]
        return [raised_row(err, judge=JUDGE, layer=case.layer, case=case.id, tensor=t, kind="element",
                           prefix="backward: ", **extra) for t in names]  # fmt: skip
    rows, probes = _element_rows(case, inputs, x, ran, extra)
    ref = attribute(case, inputs, ran.grads, probes, rows, ran.forward) if attribution else None
    for row in rows:
        if row["status"] == "fail" and row["tensor"] in probes:
            row["diagnosis"] = diagnose(fd_evidence(case, inputs, row, ran.grads, probes[row["tensor"]], ran.g, ref))
    return rows


def _loss_backward(layer: Any, declared: Any, x: np.ndarray, labels: Any, loss0: float) -> _Ran:
    """A loss after its forward gave ``loss0``: its backward, and the loss of a copy of x to probe."""
    grads = {declared.input_grad: np.array(layer.backward(), dtype=np.float64)}
    f = lambda: float(loss_outputs(declared, layer.forward(x.copy(), labels), np.float64)["loss"])  # noqa: E731
    scale = max(abs(loss0), float(np.abs(x).max()))
    return _Ran(layer, grads, f, scale, None, {declared.input_grad: x}, {"loss": np.asarray(loss0, dtype=np.float64)})


def _layer_backward(layer: Any, case: Case, inputs: dict[str, Any], x: np.ndarray, out: np.ndarray,
                    g: np.ndarray, start: Handed | None = None) -> _Ran:  # fmt: skip
    """A layer after its forward gave ``out``: its backward of ``g`` and its parameters' gradients (the
    autograd judge's, where it ran them: ``start``), and the projection ``<forward(x), g>`` to probe,
    of x and of each parameter."""
    if start is None:
        dx, own, now = backward_grads_and_params(layer, case.layer, g.copy(), list(inputs["params"]))
    else:
        dx, own, now = start.dx, start.grads, start.params
    grads = {"dx": np.array(dx, dtype=np.float64)}
    grads.update({f"d{k}": v.astype(np.float64) for k, v in own.items()})
    # a copy each time: a forward that writes into its input must not corrupt the probe
    f = lambda: float(np.sum(layer.forward(x.copy()) * g))  # noqa: E731
    scale = max(float(np.sum(np.abs(out) * np.abs(g))), 1e-300)
    held = layer.params if inputs["params"] else {}  # read once (in a sandbox: one exchange, its arrays as handles)
    tensors = {"dx": x, **{f"d{k}": held[k] for k in inputs["params"]}}
    # NOTE: in a sandbox the parameters' values came back with the grads (as the requests one by one
    # read them next): their probes need not fetch them again, one exchange each
    values = {f"d{k}": v for k, v in (now or {}).items() if np.shape(v) == np.shape(held[k])}
    return _Ran(layer, grads, f, scale, g, tensors, {"out": out}, values)


def _element_rows(case: Case, inputs: dict[str, Any], x: np.ndarray, ran: _Ran,
                  extra: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Probe]]:  # fmt: skip
    """One row per probed tensor, in order, and the probe of each tensor that was probed."""
    labels = inputs.get("labels") if kind(case.layer).loss else None
    rows, probes = [], {}
    limit = ARCH_ELEMENTS if case.network_layer else MAX_ELEMENTS
    for tensor, arr in ran.tensors.items():
        row, p = _tensor_row(case, tensor, arr, x, ran, labels, limit, extra)
        if p is not None:
            probes[tensor] = p
        rows.append(row)
    return rows, probes


def _tensor_row(case: Case, tensor: str, arr: Any, x: np.ndarray, ran: _Ran, labels: Any, limit: int,
                extra: dict[str, Any]) -> tuple[dict[str, Any], Probe | None]:  # fmt: skip
    """The row of one tensor (its analytic gradient against the central differences, max pool's dx
    also held to the window rule) and its probe (None where it could not be probed)."""
    declared, g = kind(case.layer), ran.g
    if ran.grads[tensor].shape != arr.shape:
        return error_row(judge=JUDGE, layer=case.layer, case=case.id, tensor=tensor, kind="element",
                         message=f"gradient shape {ran.grads[tensor].shape}, expected {arr.shape}", **extra), None  # fmt: skip
    many = batched(ran.layer, arr, x, g, labels)
    try:
        # NOTE: the random directions first (DIRECTIONS): a tensor they find clean is judged on them;
        # one that fails or meets a kink along any of them gets the element sweep, which localises
        known = ran.values.get(tensor)
        p = direction_probe(ran.f, arr, DIRECTIONS, [case.seed, 98, len(tensor)], ran.scale, many, known)
        if not p.clean(ran.grads[tensor]):
            if tensor == declared.input_grad and declared.per_sample and g is not None:
                many = stacked(ran.layer, x, g, ran.f)
            elements, checked = choose_elements(arr.shape, limit, [case.seed, 99, len(tensor)])
            p = probe(ran.f, arr, elements, ran.scale, checked, many=many, known=known)
    except Exception as err:  # forward failed on a perturbed input
        return raised_row(err, judge=JUDGE, layer=case.layer, case=case.id, tensor=tensor, kind="element",
                          prefix="while probing: ", **extra), None  # fmt: skip
    if declared.window_max and g is not None:
        kernel, stride = declared.windows(case.config)
        if p.directions is None:
            p.interval = maxpool_kink_interval(x, g, kernel, stride, p)
    row = judge_probe(ran.grads[tensor], p, layer=case.layer, case=case.id, tensor=tensor, kind="element", **extra)
    if declared.window_max and g is not None and row["status"] == "pass":
        why = maxpool_window_rule(x, ran.grads["dx"], g, kernel, stride)
        if why:
            row.update(status="fail", note=f"window rule: {why}")
    return row, p


# finite differences in float64 are good to ~1e-7 of the scale (truncation and rounding, see above):
# a hypothesis judged against them must be held to that, not to the autograd tolerance
FD_EVIDENCE_TOL = Tolerance(atol=1e-6, rtol=1e-6, reason="the accuracy of central differences")


def fd_evidence(case: Case, inputs: dict[str, Any], row: dict[str, Any], grads: dict[str, np.ndarray], p: Probe,
                g: np.ndarray | None, ref: dict[str, np.ndarray] | None) -> Evidence:  # fmt: skip
    """The evidence for a failing finite-difference row: the whole tensor against torch's where torch
    sides with the finite differences (or the forward is to blame), max pool's dx against the
    first-maximum routing, else the probed elements against their central differences."""
    from reference.judges.runs import alternative_run

    tensor, x = row["tensor"], inputs["x"]
    common = {"config": case.config, "values": case.values, "x": x, "g": g, "attribution": row.get("attribution", ""),
              "labels": inputs.get("labels")}  # fmt: skip
    if ref is not None and tensor in ref and row.get("attribution") in ("ours", "forward"):
        return Evidence(case.layer, tensor, grads[tensor], ref[tensor], "float64",
                        alternatives=lambda variant: alternative_run(case, inputs, variant), **common)  # fmt: skip
    if kind(case.layer).window_max and tensor == "dx" and g is not None:
        kernel, stride = kind(case.layer).windows(case.config)
        first = route_max_pool(x, g, kernel, stride, "first")
        return Evidence(case.layer, tensor, grads[tensor], first, "float64", **common)
    ours = p.values(grads[tensor])
    return Evidence(case.layer, tensor, ours, p.central, "float64", tol=FD_EVIDENCE_TOL,
                    **{**common, "x": None, "g": None})  # fmt: skip


def attribute(case: Case, inputs: dict[str, Any], grads: dict[str, np.ndarray], probes: dict[str, Probe],
              rows: list[dict[str, Any]], forward: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # fmt: skip
    """Three-way attribution: which of ours, torch autograd and finite differences disagrees with the
    other two. Adds an ``attribution`` column: none / ours / torch / forward / finite_diff / ambiguous.

    # NOTE: the finite differences are taken of the implementation's OWN forward. When its analytic
    # gradient agrees with torch's but not with those differences, and its forward disagrees with
    # torch's forward, the fault is the forward (a clamp such as -log(p + eps), an epsilon, another
    # function): the backward differentiates the right function, the forward computes a different one.
    # Only when the forwards agree too is it the finite differences that are off.
    """
    from reference.core.tolerances import autograd_tolerance
    from reference.judges.runs import twin_run

    ref = twin_run(case, inputs)
    forward_agrees = all(
        compare(value, ref[name], autograd_tolerance("float64"), layer="", case="", tensor="", judge="")["status"]
        in ("pass", "vacuous")
        for name, value in forward.items()
        if name in ref
    )
    for row in rows:
        tensor = row["tensor"]
        p = probes.get(tensor)
        if tensor not in ref or p is None:
            continue
        torch_vals = p.values(ref[tensor])
        lo, hi = p.subgradient_interval() if p.interval is None else p.interval
        kink_ok_torch = (torch_vals >= lo) & (torch_vals <= hi)
        torch_fd = compare(torch_vals, p.central, FD_TOL, layer="", case="", tensor="", judge="", bound=p.bound,
                           kinks=p.kink, kink_ok=kink_ok_torch)["status"] == "pass"  # fmt: skip
        ours_torch = compare(grads[tensor], ref[tensor], autograd_tolerance("float64"), layer="", case="", tensor="",
                             judge="")["status"] == "pass"  # fmt: skip
        ours_fd = row["status"] == "pass"
        if ours_torch and ours_fd and torch_fd:
            verdict = "none"
        elif torch_fd and not ours_torch and not ours_fd:
            verdict = "ours"
        elif ours_fd and not ours_torch and not torch_fd:
            verdict = "torch"
        elif ours_torch and not ours_fd and not torch_fd:
            verdict = "finite_diff" if forward_agrees else "forward"
        else:
            verdict = "ambiguous"
        row["attribution"] = verdict
    return ref


ADJOINT_LAYERS = tuple(n for n, k in KINDS.items() if k.adjoint)  # linear in their input


def adjoint_rows(impl: Any, case: Case) -> list[dict[str, Any]]:
    """Exact adjoint identities for a linear layer: <A x, y> == <x, A^T y> in x (and in W)."""
    inputs = case_inputs(case, "float64")
    params = {k: (np.zeros_like(v) if k == "b" else v) for k, v in inputs["params"].items()}  # linear, not affine
    x = inputs["x"]
    extra = {"dtype": "float64", "values": case.values, "kind": "adjoint"}
    try:
        layer = build_case_layer(impl, case.layer, case.config, params, "float64")
        y = upstream_gradient(inputs, expected_output_shape(case))
        keys = ["W"] if "W" in params else []
        # NOTE: in a sandbox the four requests below in one exchange (a limit's floor for each call)
        got = forward_backward_reads(layer, case.layer, x.copy(), y.copy(), keys)
        if got is None:
            out = layer.forward(x.copy())
            dx = layer.backward(y.copy())
            now = {k: layer.params[k] for k in keys}
            grads = read_grads(layer, case.layer, keys) if keys else {}
        else:
            out, dx, now, grads = got
        pairs = {"x": (x, dx), **{k: (now[k], grads[k]) for k in keys}}
    except Exception as err:
        return [raised_row(err, judge=JUDGE, layer=case.layer, case=case.id, tensor="adjoint", **extra)]
    out, pairs = np.asarray(out), {name: (np.asarray(v), np.asarray(adj)) for name, (v, adj) in pairs.items()}
    wrong = [f"{name} {got.shape}, expected {want}" for name, got, want in
             [("forward", out, y.shape), *((f"d{n}", adj, v.shape) for n, (v, adj) in pairs.items())]
             if got.shape != want]  # fmt: skip
    if wrong:  # an identity between arrays of the wrong shapes says nothing: the shapes are the finding
        return [error_row(judge=JUDGE, layer=case.layer, case=case.id, tensor="adjoint",
                          message=f"wrong shapes, adjoint identity not evaluated: {'; '.join(wrong)}", **extra)]  # fmt: skip
    lhs = float(np.sum(out * y))
    rows = []
    for name, (v, adj) in pairs.items():
        rhs = float(np.sum(v * adj))
        size = float(np.sum(np.abs(out * y)) + np.sum(np.abs(v * adj)))
        rows.append(compare(np.array(lhs), np.array(rhs), ADJOINT_TOL, layer=case.layer, case=case.id,
                            tensor=f"<Ax,y> vs <{name},A^T y>", judge=JUDGE, bound=np.array(ADJOINT_RTOL * size),
                            **extra))  # fmt: skip
    return rows


NETWORKS = {"seed": 3, "tiny": 4}  # architecture -> number of 28x28 images


def network_rows(impl: Any, arch: str, n_images: int, seed: int = 0) -> list[dict[str, Any]]:
    """The loss of a whole network w.r.t. every parameter (a fixed subset of each), float64. In a
    sandbox the network's layers share one worker and hand activations on as handles (only the loss,
    the gradients and the probed parameters cross)."""
    why = skip_reason(impl, f"network {arch}")
    if why:
        return [error_row(judge=JUDGE, layer=arch, case=f"{arch} network, {n_images} images 28x28", tensor="*",
                          message=why, dtype="float64", family="whole network", status="timeout")]  # fmt: skip
    with judged_in(impl, f"network {arch}", lazy=True):
        return _network_rows(impl, arch, n_images, seed)


def _network_rows(impl: Any, arch: str, n_images: int, seed: int) -> list[dict[str, Any]]:
    import scratch_cnn

    spec = [{**e, "config": plain_config(e["config"])} for e in scratch_cnn.build(arch, np.random.default_rng(seed)).spec()["layers"]]  # fmt: skip
    extra = {"dtype": "float64", "values": "mnist", "kind": "network", "family": "whole network"}
    case = f"{arch} network, {n_images} images 28x28"
    absent = missing_layers(impl, [*dict.fromkeys(e["type"] for e in spec), LOSS])
    if absent:
        return [error_row(judge=JUDGE, layer=arch, case=case, tensor="*", status="missing",
                          message=f"needs {', '.join(absent)}, which the implementation lacks", **extra)]  # fmt: skip
    rows = _network_spec_rows(impl, arch, spec, case, n_images, seed)
    if not _raised(rows):
        return rows
    # NOTE: the network raised (a layer errs on, or declares beyond, a configuration of it): that row is
    # the finding, and the check goes on with a network the layers take (reference.judges.reach), so the
    # error hides no other bug. A searched network's rows name it in their case.
    from reference.judges.reach import network_variants

    variants = network_variants(spec)
    for label, variant in variants:
        if skip_reason(impl, f"network {arch}"):
            break
        found = _network_spec_rows(impl, arch, variant, f"{case} (searched: {label})", n_images, seed)
        if not _raised(found):
            rows[0]["note"] += f"; judged instead on a network it runs: {label} (case '{found[0]['case']}')"
            return [*rows, *found]
    rows[0]["note"] += f"; none of {len(variants)} other networks ran either ({', '.join(v for v, _ in variants)})"
    return rows


def _raised(rows: list[dict[str, Any]]) -> bool:
    """Whether ``rows`` is the one row of a network that raised (nothing of it was probed)."""
    return len(rows) == 1 and rows[0]["tensor"] == "*" and rows[0]["status"] in ("error", "unsupported")


def _network_spec_rows(impl: Any, arch: str, spec: list[dict[str, Any]], case: str, n_images: int,
                       seed: int) -> list[dict[str, Any]]:  # fmt: skip
    """The check of the network ``spec`` (``{"type", "config"}`` per layer) on 28x28 images."""
    rng = np.random.default_rng([seed, 5])
    extra = {"dtype": "float64", "values": "mnist", "kind": "network", "family": "whole network"}
    try:
        layers = [construct(impl, e["type"], e["config"], rng=rng, dtype=np.float64) for e in spec]
        loss_fn = impl.SoftmaxCrossEntropy()
        # NOTE: biases start at zero; over the exact-zero pixels of MNIST-like input whole regions of
        # pre-activations would then sit exactly on the ReLU kink, and one bias coordinate would cross
        # thousands of nested kinks at once, where no coordinate-wise subgradient rule holds. Small
        # random biases (as in any trained network) keep the check meaningful.
        for layer in layers:
            if "b" in layer.params:
                layer.params["b"][...] = rng.uniform(-0.1, 0.1, layer.params["b"].shape)
        x = make_values(rng, (n_images, 28, 28, 1), "mnist")
        labels = rng.integers(0, 10, n_images)

        def loss() -> float:
            h = x
            for layer in layers:
                h = layer.forward(h)
            return float(loss_fn.forward(h, labels)[0])

        loss0 = loss()
        d = loss_fn.backward()
        for layer in reversed(layers):
            d = layer.backward(d)
        # the gradients as backward left them, before any probing forward runs
        analytic = [read_grads(layer, e["type"], list(layer.params)) for layer, e in zip(layers, spec, strict=True)]
        rows = []
        for i, layer in enumerate(layers):
            for key, arr in layer.params.items():
                elements, checked = choose_elements(arr.shape, NETWORK_ELEMENTS, [seed, i, len(key)])
                many = batched_network(layers, loss_fn, arr, x, labels)
                scale, want = max(abs(loss0), 1.0), analytic[i][key]
                # NOTE: random directions first, as for a layer's own tensors: a network forward costs
                # what all its layers cost, and a tensor found clean along them needs no element sweep
                p = direction_probe(loss, arr, DIRECTIONS, [seed, i, len(key), 97], scale, many)
                if not p.clean(want.astype(np.float64)):
                    p = probe(loss, arr, elements, scale, checked, many=many)
                row = judge_probe(want.astype(np.float64), p, layer=arch, case=case, tensor=f"{i}.{key}",
                                  **extra)  # fmt: skip
                if row["status"] == "fail":
                    row["diagnosis"] = (f"the network's loss gradient w.r.t. {i}.{key} (layer {i}, {spec[i]['type']}) "
                                        "disagrees with finite differences of its own loss: a layer at or after "
                                        f"layer {i}, or the loss, computes a wrong gradient or a forward its "
                                        "backward does not differentiate (their own rows say which)")  # fmt: skip
                rows.append(row)
    except Exception as err:
        return [raised_row(err, judge=JUDGE, layer=arch, case=case, tensor="*", **extra)]
    return rows


def gradcheck_crosscheck(impl: Any, cases: list[Case], fd: pd.DataFrame | None = None) -> pd.DataFrame:
    """torch.autograd.gradcheck on the twin beside our judge, float64: on kink-free cases both must
    agree (pass); where ours found kinks, gradcheck's central difference straddles them and fails
    while ours, judging those elements by the subgradient rule, passes. ``fd``: this judge's rows
    already computed for these cases (their ``dx`` rows are reused rather than probed again)."""
    import torch

    from reference.cases import twins
    from reference.layers import layout

    rows = []
    for case in (c for c in cases if available(impl, c.layer)):
        done = None if fd is None else fd[(fd["case"] == case.id) & (fd["tensor"].isin(["dx", "*"]))]
        if done is not None and len(done):
            x_row = done.iloc[0].to_dict()
        else:
            with judged_in(impl, case.layer):
                own = run_case(impl, case, attribution=False)
            x_row = next((r for r in own if r["tensor"] == "dx"), own[0])
        if (
            x_row["tensor"] != "dx"
        ):  # the implementation raised on this case (counted in its own rows): nothing to set beside gradcheck
            rows.append({"layer": case.layer, "case": case.id, "kinks": 0, "gradcheck": "not run", "ours": x_row["status"],
                         "status": "skip", "note": f"ours did not run: {x_row['note']}"})  # fmt: skip
            continue
        inputs = case_inputs(case, "float64")
        twin = twins.make_twin(case.layer, case.config).double()
        if inputs["params"]:
            twins.load_params(twin, case.layer, inputs["params"])
        xt = layout.to_torch(layout.images_to_torch(inputs["x"]), requires_grad=True)
        with costs.account("twins"):
            ok = torch.autograd.gradcheck(twin, (xt,), eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=False)
        kinks = int(np.nan_to_num(x_row.get("kinks", 0)))
        ours = x_row["status"] == "pass"
        if kinks == 0:
            status = "pass" if ok and ours else "fail"
            note = "kink-free: gradcheck and ours must both pass"
        else:
            status = "pass" if ours else "fail"
            note = (f"{kinks} kink(s): gradcheck {'passes' if ok else 'fails'} (its central difference averages the "
                    "slopes on both sides of a ReLU zero / pooling tie); ours judges them by the subgradient rule")  # fmt: skip
        rows.append({"layer": case.layer, "case": case.id, "kinks": kinks, "gradcheck": "pass" if ok else "fail",
                     "ours": x_row["status"], "status": status, "note": note})  # fmt: skip
    return pd.DataFrame(rows)


def gradcheck_cases(cases: list[Case]) -> list[Case]:
    """The cross-check's cases: the pooling and ReLU cases (where ties and zeros sit) and a few others."""
    plain = [c for c in layer_cases(cases) if not c.lifecycle and not c.tag and repeatable(c)]
    chosen = [c for c in plain if kind(c.layer).kink_needs]  # where ties and zeros sit
    for layer in ADJOINT_LAYERS:
        chosen += [c for c in plain if c.layer == layer][:4]
    return chosen


def case_and_adjoint_rows(impl: Any, case: Case, attribution: bool = True,
                          handoffs: Handoffs | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Element rows of a case, and its adjoint rows when the layer is linear and the case ran at all
    (an implementation that raised on the case is counted once, not once per row kind)."""
    rows = run_case(impl, case, attribution, handoffs)
    ran = any(r["tensor"] != "*" for r in rows)
    if ran and case.layer in ADJOINT_LAYERS:
        rows += adjoint_rows(impl, case)
    return rows


def run_finite_diff(
    impl: Any = None,
    cases: list[Case] | None = None,
    networks: dict[str, int] | None = None,
    attribution: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Element rows for every case, adjoint rows for the linear layers, network rows; failures first."""
    impl = impl if impl is not None else load_impl(DEFAULT_IMPL)
    ctx = Context(impl, "", cases if cases is not None else grid(), networks=networks,
                  progress=(lambda _d, done, total: progress(done, total)) if progress else None)  # fmt: skip
    return FiniteDiffJudge(attribution).rows(ctx)


class FiniteDiffJudge(Judge):
    name = JUDGE
    title = "Finite-difference judge"

    def __init__(self, attribution: bool = True, crosscheck: bool = True) -> None:
        self.attribution = attribution
        self.crosscheck = crosscheck  # torch's gradcheck beside ours: a check of this judge, not of the implementation

    def rows(self, ctx: Context) -> pd.DataFrame:
        cases = [c for c in layer_cases(ctx.cases) if not c.lifecycle and repeatable(c)]
        networks = NETWORKS if ctx.networks is None else ctx.networks
        df = case_rows(ctx, JUDGE, cases, lambda c: case_and_adjoint_rows(ctx.impl, c, self.attribution, ctx.handoffs),
                       "finite differences")  # fmt: skip
        if ctx.handoffs is not None:
            ctx.handoffs.clear()  # the runs not taken (cases this judge skips) hold their layers no longer
        jobs = [lambda a=arch, n=n: network_rows(ctx.impl, a, n) for arch, n in networks.items()]
        net = [r for rows in in_parallel(ctx.impl, jobs) for r in rows]
        return failures_first(pd.concat([df, pd.DataFrame(net)], ignore_index=True)) if net else df

    def run(self, ctx: Context) -> Result:
        df = self.rows(ctx)
        if not self.crosscheck:
            return Result(self.name, df)
        cross = gradcheck_crosscheck(ctx.impl, gradcheck_cases(ctx.cases), df)
        return Result(
            self.name, df, extra={"gradcheck": ("gradcheck cross-check (torch.autograd.gradcheck beside ours)", cross)}
        )
