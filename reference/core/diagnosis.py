"""Why a tensor is wrong: hypotheses tested against the evidence a judge already holds.

Each hypothesis is a small pure function ``(Evidence) -> str | None``: it returns a sentence when it
explains **every** failing element of the tensor (and says what it saw), None otherwise. ``diagnose``
tries them in order, most specific first, and returns the first that fits, or ``unexplained``: never
a guess. "Explains" always goes through the one comparison primitive: ours must match the
hypothesis' prediction within the autograd tolerance of the dtype.

A diagnosis is evidence, not proof: two different bugs can produce the same numbers on one case
(a dW off by exactly m and a loss summed instead of averaged look alike).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reference.layers import KINDS, LayerKind
from reference.layers.pooling import route_max_pool

from .compare import compare
from .tolerances import Tolerance, autograd_tolerance

UNEXPLAINED = "unexplained"


@dataclass
class Evidence:
    """What a judge holds for one failing tensor. Arrays in the protocol's layout."""

    layer: str
    tensor: str
    ours: Any
    ref: np.ndarray
    dtype: str = "float64"
    config: dict[str, Any] = field(default_factory=dict)
    values: str = "noise"
    x: np.ndarray | None = None  # the layer's input
    g: np.ndarray | None = None  # the upstream gradient
    prior: np.ndarray | None = None  # lifecycle: the same tensor from round 1
    alternatives: Callable[[str], dict[str, np.ndarray] | None] | None = None  # the reference under a variant
    others: dict[str, str] = field(default_factory=dict)  # the case's other tensors -> status
    attribution: str = ""  # finite differences: who disagrees with the other two
    labels: np.ndarray | None = None  # the loss: the case's labels
    rerun: Callable[[np.ndarray], dict[str, Any]] | None = (
        None  # the loss: the implementation's tensors on other logits
    )
    tol: Tolerance | None = None  # what "matches" means; default: the autograd tolerance of the dtype
    own: dict[str, Any] | None = None  # the implementation's own tensors of this run (probs, dlogits, ...), if given
    reference: str = "the reference"  # what ``ref`` is, in words (lifecycle: "a fresh instance")

    @property
    def arr(self) -> np.ndarray:
        return np.asarray(self.ours)

    def own_tensors(self) -> dict[str, np.ndarray]:
        """The implementation's own tensors of this case: those given, else (the loss) a fresh instance's
        on the same logits through ``rerun``, with ours under its own name; computed once.

        # NOTE: a premise about what the implementation computed (a probability of 0, a NaN, a 1.0) is
        # checked on these, never on the reference's softmax of the logits: two implementations with
        # the same logits can fail in different places.
        """
        if self.own is None:
            got: dict[str, Any] = {}
            if self.rerun is not None and self.x is not None:
                try:
                    got = dict(self.rerun(np.asarray(self.x)))
                except Exception:  # the rerun raised: nothing more is known of its own numbers
                    got = {}
            self.own = got
        arrays = {k: np.asarray(v) for k, v in self.own.items() if v is not None and _numeric(v)}
        return {**arrays, self.tensor: self.arr} if _numeric(self.ours) else arrays

    def matches(self, prediction: Any) -> bool:
        """Ours equals ``prediction`` within the dtype's autograd tolerance (the one comparison)."""
        pred = np.asarray(prediction)
        if pred.shape != self.arr.shape:
            return False
        row = compare(self.arr.astype(np.float64), pred.astype(np.float64), self.tolerance(),
                      layer="", case="", tensor="", judge="")  # fmt: skip
        return row["status"] in ("pass", "vacuous")

    def tolerance(self) -> Tolerance:
        return self.tol or autograd_tolerance(self.dtype)

    def bad(self) -> np.ndarray:
        """The failing elements: outside the tolerance against the reference."""
        a, b = self.arr.astype(np.float64), self.ref.astype(np.float64)
        tol = self.tolerance()
        scale = max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)), 1e-300)
        return ~(np.abs(a - b) <= tol.atol * scale + tol.rtol * np.abs(b))

    def batch(self) -> int:
        return int(self.x.shape[0]) if self.x is not None and self.x.ndim else 1


def _numeric(v: Any) -> bool:
    try:
        return np.asarray(v).dtype.kind in "fiub"
    except Exception:  # an object that is no array at all
        return False


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _window(ev: Evidence) -> tuple[tuple[int, int], tuple[int, int]]:
    k = _pair(ev.config.get("kernel_size", 2))
    s = k if ev.config.get("stride") is None else _pair(ev.config["stride"])
    return k, s


# what a hypothesis may ask of the layer's kind (its declaration, reference.layers), never its name


def _declared(ev: Evidence) -> LayerKind:
    return KINDS.get(ev.layer, PLAIN)


def _softmax_loss(ev: Evidence) -> bool:
    """A loss that gives probabilities: the softmax hypotheses (max shift, clips, underflow) apply."""
    return _declared(ev).loss and "probs" in _declared(ev).outputs


def _windowed(ev: Evidence) -> bool:
    """A pooling layer: windows of its input reduced to one number each."""
    return _declared(ev).windows is not None


def _convolution(ev: Evidence) -> bool:
    """A layer with a spatial kernel of weights on images."""
    return _declared(ev).images and _declared(ev).parametric


PLAIN = LayerKind(name="")  # an unknown layer: no kind's hypotheses apply

# --- the hypotheses ---------------------------------------------------------------------------------


def wrong_shape(ev: Evidence) -> str | None:
    """Ours has another shape than the reference: named, and an empty axis where the reference's is
    not, with the case's padding 0, named as the slice that made it (``a[p:-p]`` is ``a[0:0]``)."""
    got = np.shape(ev.ours)
    if got == ev.ref.shape:
        return None
    said = f"{ev.tensor} has shape {got} where the reference has {ev.ref.shape}"
    empty = [i for i, (a, b) in enumerate(zip(got, ev.ref.shape, strict=False)) if a == 0 and b > 0]
    pads = ev.config.get("padding", "same")
    if empty and len(got) == len(ev.ref.shape) and (pads == "valid" or pads == 0 or pads == (0, 0)):
        return (f"{said}: axes {empty} are empty, on a case with padding 0: a crop such as dx[p:-p] is "
                "dx[0:0] when p = 0 (crop with dx[p:H - p] or only when p > 0)")  # fmt: skip
    return said


def dtype_promotion(ev: Evidence) -> str | None:
    got = getattr(ev.ours, "dtype", None)
    if got is not None and got != ev.ref.dtype and np.shape(ev.ours) == ev.ref.shape:
        return (f"dtype promotion: {ev.ref.dtype} in, {got} out (a float64 constant, np.zeros without dtype=, "
                "or an astype in the layer)")  # fmt: skip
    return None


def _softmax(x: np.ndarray, shift: str = "row") -> np.ndarray:
    """softmax over the last axis in x's dtype: shifted by each row's maximum (``row``, the stable way),
    by the whole batch's maximum (``batch``) or not at all (``none``); as such code computes it, NaN
    and inf included."""
    peak = {"row": lambda: x.max(axis=-1, keepdims=True), "batch": lambda: x.max(), "none": lambda: 0}[shift]()
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        e = np.exp(x - np.asarray(peak, dtype=x.dtype))
        return e / e.sum(axis=-1, keepdims=True)


def _loss_case(ev: Evidence) -> bool:
    return _softmax_loss(ev) and ev.x is not None and np.ndim(ev.x) == 2


def _non_finite_loss(ev: Evidence) -> bool:
    return _loss_case(ev) and not np.all(np.isfinite(ev.arr))


def own_probs(ev: Evidence) -> tuple[np.ndarray, str] | None:
    """The implementation's own probabilities of this case and where they come from: the ones it gave,
    else recomputed from its dlogits (``m * dlogits + onehot``, the mean loss's gradient); None when it
    gave neither in the logits' shape."""
    if not _loss_case(ev):
        return None
    x, own = np.asarray(ev.x), ev.own_tensors()
    probs = own.get("probs")
    if probs is not None and probs.shape == x.shape:
        return probs.astype(x.dtype, copy=False), "its own probabilities"
    d = own.get("dlogits")
    if d is None or d.shape != x.shape or ev.labels is None:
        return None
    onehot = np.zeros(x.shape, dtype=x.dtype)
    onehot[np.arange(x.shape[0]), ev.labels] = 1
    with np.errstate(over="ignore", invalid="ignore"):
        return (d.astype(x.dtype) * x.dtype.type(x.shape[0]) + onehot), "its probabilities, recomputed from its dlogits"


def _label_p_zero(p: np.ndarray, labels: np.ndarray, source: str) -> np.ndarray:
    """Which rows' label probability is 0: exactly, in probabilities given; within a few ulps of 0 in
    ones recomputed from dlogits (m * (0 - 1) / m + 1 need not be exactly 0)."""
    at = p[np.arange(p.shape[0]), labels]
    slack = 0.0 if source == "its own probabilities" else 4 * float(np.finfo(p.dtype).eps)
    return np.isfinite(at) & (np.abs(at) <= slack)


def _nonfinite_pattern(ev: Evidence) -> tuple[np.ndarray, str] | None:
    """The implementation's own non-finite entries per logit (its probabilities, else its dlogits, else
    ours when it has the logits' shape) and which tensor showed them; None when none of them does."""
    x, own = np.asarray(ev.x), ev.own_tensors()
    for name in ("probs", "dlogits", ev.tensor):
        t = own.get(name)
        if t is not None and t.shape == x.shape:
            return ~np.isfinite(t.astype(np.float64)), name
    return None


def overflow_without_max_shift(ev: Evidence) -> str | None:
    """Shown, not assumed: exp of the logits overflows in the dtype, the implementation's own
    probabilities (or dlogits) are non-finite at exactly the entries a softmax without a shift makes
    non-finite, and the implementation itself, given the same logits shifted by each row's maximum
    (the same softmax, the same loss), returns a finite result."""
    if not _non_finite_loss(ev) or ev.rerun is None:
        return None
    x = np.asarray(ev.x)
    with np.errstate(over="ignore"):
        overflows = np.isinf(np.exp(x))
    if not overflows.any():
        return None
    seen = _nonfinite_pattern(ev)
    predicted = ~np.isfinite(_softmax(x, "none"))
    if seen is None or not seen[0].any() or not np.array_equal(seen[0], predicted):
        return None  # NOTE: the logits overflow, but the implementation's own NaNs sit elsewhere: another cause
    shifted = (x - x.max(axis=-1, keepdims=True)).astype(x.dtype)
    again = np.asarray(ev.rerun(shifted).get(ev.tensor))
    if again.shape != ev.arr.shape or not np.all(np.isfinite(again)):
        return None
    return (f"non-finite {ev.tensor}: exp overflows in {x.dtype} for {int(overflows.sum())} logits (up to "
            f"{float(np.abs(x).max()):.3g}), its {seen[1]} are non-finite at exactly those entries, and the same "
            f"logits shifted by each row's maximum give a finite {ev.tensor}: the softmax exponentiates without "
            "subtracting each row's maximum first")  # fmt: skip


def underflowed_probability(ev: Evidence) -> str | None:
    """The implementation's own probability of a label is 0 (its logit far below the row's maximum)
    while its probabilities are otherwise finite, and the loss is inf (or the gradient non-finite), so
    -log(p) or -1/p of it is infinite: a loss taken through the probabilities, not log-softmax."""
    if not _non_finite_loss(ev) or ev.labels is None or (ev.tensor == "loss" and not np.all(np.isinf(ev.arr))):
        return None
    found = own_probs(ev)
    if found is None or not np.all(np.isfinite(found[0])):
        return None  # NOTE: a NaN among its own probabilities is another story (non_finite tells it)
    p, source = found
    x = np.asarray(ev.x)
    rows = np.arange(x.shape[0])
    zero = _label_p_zero(p, ev.labels, source)
    if not zero.any():
        return None
    i = int(np.argmax(zero))
    gap = float(x[i].max() - x[i, ev.labels[i]])
    return (f"non-finite {ev.tensor}: the label's probability is 0 in {x.dtype} in {int(zero.sum())} of "
            f"{len(rows)} rows of {source} (row {i}: its logit {gap:.3g} below the row's maximum, exp(-{gap:.3g}) "
            "underflows), and -log(0) or -1/0 is inf: take the loss from log-softmax, logsumexp(x) - x[label], "
            "not -log(softmax)")  # fmt: skip


def zero_times_log_zero(ev: Evidence) -> str | None:
    """A NaN loss from finite probabilities: some of the implementation's own probabilities are 0 (not
    a label's), and a loss summed over every class, -sum(onehot * log p), multiplies their log (-inf)
    by 0. Shown: that sum over its own probabilities is NaN, and -log of the labels' alone is finite."""
    if not _non_finite_loss(ev) or ev.tensor != "loss" or ev.labels is None or not np.all(np.isnan(ev.arr)):
        return None
    found = own_probs(ev)
    if found is None or found[1] != "its own probabilities" or not np.all(np.isfinite(found[0])):
        return None
    p = found[0]
    m = p.shape[0]
    onehot = np.zeros(p.shape, dtype=p.dtype)
    onehot[np.arange(m), ev.labels] = 1
    with np.errstate(divide="ignore", invalid="ignore"):
        summed = -np.sum(onehot * np.log(p)) / m
        indexed = -np.mean(np.log(p[np.arange(m), ev.labels]))
    zeros = (p == 0) & (onehot == 0)
    if not zeros.any() or not np.isnan(summed) or np.isnan(indexed):
        return None
    i, k = (int(v) for v in np.argwhere(zeros)[0])
    labels_zero = int(_label_p_zero(p, ev.labels, found[1]).sum())
    indexed_said = ("its -log of the labels' probabilities alone is finite: index the label, -log p[label], or take "
                    "log-softmax" if np.isfinite(indexed) else f"its -log of the labels' probabilities alone is inf "
                    f"too, {labels_zero} of them being 0 as well: take the loss from log-softmax, logsumexp(x) - x[label]")  # fmt: skip
    return (f"the loss is NaN while its own probabilities are finite: {int(zeros.sum())} of them are exactly 0 (first "
            f"probs[{i}, {k}], not row {i}'s label {int(ev.labels[i])}), and a loss summed over every class, "
            f"-sum(onehot * log p), makes 0 * log(0) = 0 * -inf = NaN there ({indexed_said})")  # fmt: skip


CLIP_FLOORS = (1e-15, 1e-12, 1e-10, 1e-9, 1e-8, 1e-7)


def clipped_probability(ev: Evidence) -> str | None:
    """A finite loss that equals -mean(log(clip(p[label], eps, 1))) for a common eps where the true
    loss is larger; or, in float32, a non-finite loss beside the implementation's own probabilities
    that are finite, hold an exact 1.0 and no label's 0, where ``clip(p, eps, 1 - 1e-15)`` leaves 1.0
    (float32 cannot hold 1 - 1e-15) and log(1 - p) is -inf."""
    if not _softmax_loss(ev) or ev.tensor != "loss" or ev.x is None or ev.labels is None:
        return None
    x = np.asarray(ev.x)
    p = _softmax(x.astype(np.float64))[np.arange(x.shape[0]), ev.labels]
    if np.all(np.isfinite(ev.arr)):
        for eps in CLIP_FLOORS:
            clipped = np.clip(p, eps, 1.0)
            if np.any(clipped != p) and ev.matches(np.asarray(-np.log(clipped).mean(), dtype=ev.ref.dtype)):
                return (f"the loss equals -mean(log(clip(p[label], {eps:g}, ...))): {int((p < eps).sum())} label "
                        f"probabilities below {eps:g} are clipped to it, so the loss is capped where the true loss "
                        "is larger (take the loss from log-softmax instead)")  # fmt: skip
        return None
    if x.dtype != np.float32 or np.float32(1 - 1e-15) != np.float32(1.0):
        return None
    found = own_probs(ev)
    if found is None or found[1] != "its own probabilities" or not np.all(np.isfinite(found[0])):
        return None  # NOTE: the premise is the implementation's own 1.0, never the reference's softmax
    ones = found[0] == np.float32(1.0)
    if not ones.any() or _label_p_zero(found[0], ev.labels, found[1]).any():
        return None
    return (f"non-finite loss while {int(ones.sum())} of its own probabilities are exactly 1.0 in float32, and no "
            "label's probability is 0: a clip's upper bound 1 - 1e-15 is 1.0 in float32, so log(1 - p) of such a p "
            "is -inf (clip at 1 - 1e-7 in float32, or use log-softmax)")  # fmt: skip


def _first_bad(a: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmin(np.isfinite(a))), a.shape)) if a.ndim else ()


def _kinds(a: np.ndarray) -> str:
    """'NaN at 3 and inf at 1 of 20 elements', of ``a``'s non-finite elements."""
    nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    parts = [f"NaN at {nan}" if nan else "", f"inf at {inf}" if inf else ""]
    return f"{' and '.join(p for p in parts if p)} of {a.size} element{'s' if a.size != 1 else ''}"


def _row_inputs(ev: Evidence, row: int) -> str:
    """The inputs of row ``row`` of the case, in a few numbers: a loss's logits and label, where the row's
    maximum sits against the batch's; an image layer's input x[row]."""
    if ev.x is None or not np.ndim(ev.x) or not 0 <= row < np.shape(ev.x)[0]:
        return ""
    x = np.asarray(ev.x, dtype=np.float64)
    if _loss_case(ev):
        label = f", label {int(ev.labels[row])}" if ev.labels is not None else ""
        gap = float(x.max() - x[row].max())
        below = f", its maximum {gap:.3g} below the batch's maximum {x.max():.3g}" if gap > 0 else ""
        return f"row {row}'s logits span [{x[row].min():.3g}, {x[row].max():.3g}]{label}{below}"
    return f"x[{row}] spans [{x[row].min():.3g}, {x[row].max():.3g}]"


def _batch_max_shift(ev: Evidence) -> str:
    """A clause, when the implementation's own non-finite entries are exactly those of a softmax shifted
    by the whole batch's maximum (and a softmax shifted per row is finite): '' otherwise."""
    if not _loss_case(ev):
        return ""
    seen = _nonfinite_pattern(ev)
    x = np.asarray(ev.x)
    predicted = ~np.isfinite(_softmax(x, "batch"))
    if seen is None or not seen[0].any() or not np.array_equal(seen[0], predicted) or predicted.all():
        return ""
    rows = sorted({int(i) for i in np.argwhere(predicted)[:, 0]})
    gap = float(x.max() - x[rows[0]].max())
    which = f"row {rows[0]} lies" if len(rows) == 1 else f"rows {_span(rows)} lie"
    return (f"; they are exactly the entries a softmax shifted by the whole batch's maximum makes 0/0: {which} "
            f"wholly far below it (row {rows[0]}'s maximum is {gap:.3g} below the batch's), so every exp(x - max) of "
            "such a row is 0 and so is its sum (shift each row by its own maximum: np.max(x, axis=1, keepdims=True))")  # fmt: skip


def non_finite(ev: Evidence) -> str | None:
    """Ours holds NaN or inf where the reference is finite: named as such, with where it first appears
    (the earliest of the implementation's own tensors that holds it, and its first element) and the
    inputs of that row; no cause claimed beyond what those numbers show."""
    a = ev.arr.astype(np.float64)
    ref = np.asarray(ev.ref, dtype=np.float64)
    if np.all(np.isfinite(a)) or not np.all(np.isfinite(ref)):
        return None
    at = _first_bad(a)
    ref_at = float(ref[at]) if ref.shape == a.shape else float("nan")
    # NOTE: without the layer's input the arrays may be a subset of the tensor (the elements finite
    # differences probed): an index into them is no index into the tensor, so none is given
    first = f"first {ev.tensor}{list(at) if at else ''}" if ev.x is not None or a.ndim != 1 else "the first"
    said = (f"{ev.tensor} is non-finite where {ev.reference} is finite: {_kinds(a)}, {first} = {a[at]} "
            f"({ev.reference}: {ref_at:.4g})")  # fmt: skip
    row = at[0] if len(at) else None
    own = ev.own_tensors()
    for name in (*_declared(ev).outputs[1:], "loss", _declared(ev).input_grad) if _softmax_loss(ev) else ():
        t = own.get(name)
        if t is None or np.all(np.isfinite(t.astype(np.float64))):
            continue
        if name != ev.tensor:
            first = _first_bad(t)
            said += f"; it first appears in its own {name}: {name}{list(first) if first else ''} = {t[first]}"
            row = first[0] if len(first) else row
        break
    if row is not None and (inputs := _row_inputs(ev, row)):
        said += f" ({inputs})"
    return said + _batch_max_shift(ev)


def reference_non_finite(ev: Evidence) -> str | None:
    """The reference itself holds NaN or inf (the lifecycle's fresh instance, say): nothing about ours can
    be claimed against it, least of all state kept from an earlier round."""
    ref = np.asarray(ev.ref, dtype=np.float64)
    if np.all(np.isfinite(ref)):
        return None
    a = ev.arr.astype(np.float64) if np.shape(ev.ours) == ref.shape else None
    same = a is not None and np.array_equal(np.isnan(a), np.isnan(ref)) and np.array_equal(np.isinf(a), np.isinf(ref))
    at = _first_bad(ref)
    ours_too = ("ours is non-finite at the same elements" if same else
                "ours is non-finite elsewhere" if a is not None and not np.all(np.isfinite(a)) else "ours is finite")  # fmt: skip
    return (f"{ev.reference}'s {ev.tensor} is itself non-finite ({_kinds(ref)}, first {ev.tensor}{list(at) if at else ''})"
            f" and {ours_too}: nothing about ours can be claimed against it (nor that an earlier round left anything "
            "behind); the non-finite values are the finding, in the rows that judge them against torch")  # fmt: skip


def all_zeros(ev: Evidence) -> str | None:
    if ev.arr.size and not ev.arr.any() and ev.ref.any():
        return (f"ours is all zeros: {ev.tensor} is never computed, is reset after being computed (dropped), "
                "or vanishes on this input (a factor that underflows to 0)")  # fmt: skip
    return None


def case_sizes(ev: Evidence) -> dict[str, int]:
    """The case's sizes a wrong scale is made of, by name: ``m`` (the batch), ``K`` (the loss's number
    of classes), ``kh*kw`` (a pool's or a convolution's window), ``C`` (an image layer's input channels)."""
    sizes: dict[str, int] = {}
    x = None if ev.x is None else np.asarray(ev.x)
    if x is not None and x.ndim:
        sizes["m"] = int(x.shape[0])
    if _softmax_loss(ev) and x is not None and x.ndim == 2:
        sizes["K"] = int(x.shape[1])
    if _windowed(ev) or _convolution(ev):
        sizes["kh*kw"] = int(np.prod(_window(ev)[0]))
    if not _declared(ev).loss and x is not None and x.ndim == 4:
        sizes["C"] = int(x.shape[3])
    return sizes


# name -> (value from the case's sizes, or None where the case lacks one; what such a factor means)
KNOWN_FACTORS: list[tuple[str, Callable[[dict[str, int]], float | None], str]] = [
    ("m", lambda s: s.get("m"), "the 1/m of the mean loss is missing: a sum where the batch mean is meant"),
    ("1/m", lambda s: 1 / s["m"] if "m" in s else None, "divided by the batch size twice (an extra 1/m: the upstream gradient already carries it)"),
    ("-1", lambda s: -1.0, "the sign is flipped throughout"),
    ("2", lambda s: 2.0, "twice the gradient (counted twice, or d(x^2) taken as 2x where x is meant)"),
    ("1/2", lambda s: 0.5, "half the gradient"),
    ("kh*kw", lambda s: s.get("kh*kw"), "the window's 1/(kh*kw) is missing (a sum pool, not an average)"),
    ("1/(kh*kw)", lambda s: 1 / s["kh*kw"] if "kh*kw" in s else None, "divided by the window size twice"),
    ("m / K", lambda s: s["m"] / s["K"] if "m" in s and "K" in s else None,
     "divided by K (the number of classes) where the batch mean divides by m (the batch size)"),
    ("K", lambda s: s.get("K"), "K (the number of classes) times too large"),
    ("1/K", lambda s: 1 / s["K"] if "K" in s else None, "divided by K (the number of classes)"),
    ("C", lambda s: s.get("C"), "C (the input channels) times too large: a sum over channels where one channel's value is meant"),
    ("1/C", lambda s: 1 / s["C"] if "C" in s else None, "divided by C (the input channels): a mean over channels where a sum is meant"),
]  # fmt: skip


def _named(name: str, c: float, sizes: dict[str, int]) -> str:
    """'ours = m x ref' (a ratio of two sizes: 'ours = ref x m / K'), with c and the sizes it names."""
    tokens = set(re.findall(r"kh\*kw|\w+", name))
    used = [k for k in sizes if k in tokens]
    values = ", ".join(f"{k} = {sizes[k]}" for k in used)
    head = f"ours = ref x {name}" if " / " in name else f"ours = {name} x ref"
    return f"{head} (c = {c:.4g}{'; ' + values if values else ''})"


def named_factors(ev: Evidence, c: float) -> list[tuple[str, str]]:
    """(name, meaning) of every known factor of the case's sizes equal to ``c`` (1 is no factor)."""
    sizes = case_sizes(ev)
    found = []
    for name, value, meaning in KNOWN_FACTORS:
        v = value(sizes)
        if v is not None and v != 1.0 and abs(c - v) <= 1e-6 * max(abs(v), 1.0):
            found.append((name, meaning))
    return found


def _factor_said(ev: Evidence, c: float, found: list[tuple[str, str]], where: str) -> str:
    (name, meaning), others = found[0], [n for n, _ in found[1:]]
    also = f" (here {' and '.join(others)} {'is' if len(others) == 1 else 'are'} the same number)" if others else ""
    return f"{_named(name, c, case_sizes(ev))}{where}: {meaning}{also}"


def constant_factor(ev: Evidence) -> str | None:
    """ours = c * ref on every element, for one constant c (a ratio of the case's sizes named, else its value)."""
    a, b = ev.arr.astype(np.float64).ravel(), ev.ref.astype(np.float64).ravel()
    if a.shape != b.shape or a.size < 2 or not b.any() or not a.any():
        return None  # NOTE: one element is always some multiple of another: a factor shows nothing there
    c = float(a @ b / (b @ b))
    if not np.isfinite(c) or not ev.matches(c * ev.ref.astype(np.float64)):
        return None
    if found := named_factors(ev, c):
        return _factor_said(ev, c, found, " on every element")
    if abs(c - 1) < 1e-3:  # written as 1 + d, with d's own digits: 1.0000x says nothing
        return (f"ours = (1 {'+' if c > 1 else '-'} {abs(c - 1):.3g}) x ref on every element: the same small relative "
                "error everywhere (a scale such as 1/m or a learning rate rounded, or computed in another precision)")  # fmt: skip
    return f"ours = {c:.4g} x ref on every element: a constant factor that is no known scale"


def loss_scale(ev: Evidence) -> str | None:
    """The loss value is the reference times a ratio of the case's sizes (m / K: divided by the number of
    classes where the batch mean divides by the batch size). One number, so only a named ratio is said:
    any value is some multiple of another, a few ratios of the case's own sizes are not."""
    if not _softmax_loss(ev) or ev.tensor != "loss" or ev.arr.size != 1 or ev.ref.size != 1:
        return None
    a, b = float(ev.arr.ravel()[0]), float(ev.ref.ravel()[0])
    if not (np.isfinite(a) and np.isfinite(b)) or b == 0:
        return None
    sizes = case_sizes(ev)
    for name, value, meaning in KNOWN_FACTORS:
        v = value(sizes)
        if v is not None and v != 1.0 and ev.matches(np.asarray(v * b)):
            found = [(name, meaning), *((n, mm) for n, f, mm in KNOWN_FACTORS if n != name
                                        and (fv := f(sizes)) is not None and abs(fv - v) <= 1e-12 * max(abs(v), 1))]  # fmt: skip
            return _factor_said(ev, a / b, found, "")
    return None


def dropped_contributions(ev: Evidence) -> str | None:
    """Every failing element is 0 in ours (the reference is not) and every other element is right:
    contributions dropped, with the rows (and columns) that got nothing named for an image tensor."""
    if ev.arr.shape != ev.ref.shape or ev.arr.size < 2:
        return None
    bad = ev.bad()
    if not bad.any() or bad.all() or np.any(ev.arr[bad] != 0) or not ev.matches(np.where(bad, 0.0, ev.ref)):
        return None
    said = f"ours is 0 at every failing element ({int(bad.sum())} of {bad.size}) and equals the reference elsewhere"
    if ev.arr.ndim == 4:
        rows = sorted({int(i) for i in np.argwhere(bad)[:, 1]})
        cols = sorted({int(j) for j in np.argwhere(bad)[:, 2]})
        said += f": rows {_span(rows)}, columns {_span(cols)} of {ev.tensor} get nothing"
    return said + " (contributions dropped: a loop that stops early, or windows left out)"


def _span(ix: list[int]) -> str:
    return f"{ix[0]}-{ix[-1]}" if len(ix) > 1 and ix == list(range(ix[0], ix[-1] + 1)) else ", ".join(map(str, ix[:8]))


def sign_flip_some(ev: Evidence) -> str | None:
    """Exactly the failing elements have their sign flipped: one element, or one channel."""
    if ev.arr.shape != ev.ref.shape:
        return None
    bad = ev.bad()
    if not bad.any() or bad.all():
        return None
    pred = np.where(bad, -ev.ref, ev.ref)
    if not ev.matches(pred):
        return None
    idx = [tuple(int(i) for i in ix) for ix in np.argwhere(bad)]
    if len(idx) == 1:
        return f"the sign of one element is flipped: {ev.tensor}{idx[0]} (ours = -ref there, every other element right)"
    channels = {ix[-1] for ix in idx}
    if len(channels) == 1:
        return f"the sign is flipped on channel {channels.pop()} of {ev.tensor} ({len(idx)} elements), every other channel right"
    return f"the sign is flipped on {len(idx)} elements of {ev.tensor}, every other element right"


def at_input_zeros(ev: Evidence) -> str | None:
    """ReLU: the failing elements sit exactly where the input is 0 (the kink)."""
    if (
        "zeros" not in _declared(ev).kink_needs
        or ev.tensor != "dx"
        or ev.x is None
        or ev.g is None
        or ev.arr.shape != ev.x.shape
    ):
        return None
    bad = ev.bad()
    if not bad.any() or np.any(bad & (ev.x != 0)):
        return None
    slope = ev.arr[bad] / np.where(ev.g[bad] == 0, np.nan, ev.g[bad])
    slope = slope[np.isfinite(slope)]
    value = f"{float(np.median(slope)):.3g}" if slope.size else "nonzero"
    if _declared(ev).conventions:  # ReLU: another subgradient may be declared
        return (f"every failing element ({int(bad.sum())}) sits at an exact zero of the input: {ev.layer}'(0) taken as "
                f"{value} (torch's convention, and the protocol's, is 0: use x > 0, not x >= 0; or, if meant, declare "
                "it: kinks={'relu_grad_at_zero': ...} in reference.impl.adapters)")  # fmt: skip
    want = ev.ref[ev.x == 0] / np.where(ev.g[ev.x == 0] == 0, np.nan, ev.g[ev.x == 0])
    want = want[np.isfinite(want)]
    meant = f"{float(np.median(want)):.3g}" if want.size else "the reference's"
    return (f"every failing element ({int(bad.sum())}) sits at an exact zero of the input: {ev.layer}'(0) taken as "
            f"{value} where torch's (the protocol's) is {meant}: the branch for x > 0 includes x == 0")  # fmt: skip


ROUTINGS = {
    "every": "the gradient goes to every tied maximum of a window (torch and the protocol: the first one only)",
    "split": "the gradient is split evenly across a window's tied maxima (torch and the protocol: all to the first)",
    "last": "ties go to the last maximum in row-major window order (torch and the protocol: the first)",
    "isclose": ("the gradient goes to every element within np.isclose of the window's maximum: near-ties (< 1e-5 "
                "apart) are routed as ties (compare with ==, route to the first maximum)"),
}  # fmt: skip


def pool_tie_routing(ev: Evidence) -> str | None:
    if not _declared(ev).window_max or ev.tensor != "dx" or ev.x is None or ev.g is None or ev.arr.shape != ev.x.shape:
        return None
    kernel, stride = _window(ev)
    for rule, meaning in ROUTINGS.items():
        if ev.matches(route_max_pool(ev.x.astype(np.float64), ev.g.astype(np.float64), kernel, stride, rule)):
            n = int(ev.bad().sum())
            return f"{meaning}; that rule explains every failing element ({n})"
    return None


def flipped_kernel(ev: Evidence) -> str | None:
    """Conv: ours is the reference computed with the kernel flipped in space (convolution, not
    correlation), or dW is the reference's flipped or with its channel axes transposed."""
    if not _convolution(ev):
        return None
    alt = ev.alternatives("flipped_kernel") if ev.alternatives else None
    if alt is not None and ev.tensor in alt and ev.tensor != "dW" and ev.matches(alt[ev.tensor]):
        return (f"{ev.tensor} equals the reference computed with the kernel flipped in space: a convolution "
                "(W[kh-1-a, kw-1-b]) where the protocol, like torch, cross-correlates (W[a, b])")  # fmt: skip
    if ev.tensor == "dW" and ev.arr.shape == ev.ref.shape:
        if ev.matches(ev.ref[::-1, ::-1]):
            return "dW is the reference flipped in space (dW[kh-1-a, kw-1-b]): the backward flips the kernel"
        if ev.ref.shape[2] == ev.ref.shape[3] and ev.matches(ev.ref.transpose(0, 1, 3, 2)):
            return "dW has its channel axes transposed (C_in and C_out swapped)"
    return None


SHIFTS = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1)]


def spatial_shift(ev: Evidence) -> str | None:
    """ours[i, j] = ref[i + dy, j + dx] wherever both exist: a padding off by one."""
    a, b = ev.arr, ev.ref
    if a.ndim != 4 or a.shape != b.shape or not (_windowed(ev) or _convolution(ev)):
        return None
    H, W = a.shape[1:3]
    for dy, dx in SHIFTS:
        if H - abs(dy) < 2 or W - abs(dx) < 2:
            continue
        ours = a[:, max(0, -dy) : H - max(0, dy), max(0, -dx) : W - max(0, dx)]
        ref = b[:, max(0, dy) : H - max(0, -dy), max(0, dx) : W - max(0, -dx)]
        sub = Evidence(ev.layer, ev.tensor, ours, np.ascontiguousarray(ref), ev.dtype)
        if ref.any() and sub.matches(ref):
            where = " and ".join(w for w, d in (("row", dy), ("column", dx)) if d)
            return (f"{ev.tensor} is the reference shifted by one {where} (ours[i, j] = ref[i{dy:+d}, j{dx:+d}]): "
                    "the padding is off by one (the input padded, or dx cropped, at the wrong offset)")  # fmt: skip
    return None


def swapped_window(ev: Evidence) -> str | None:
    if not _windowed(ev) or ev.alternatives is None:
        return None
    alt = ev.alternatives("swapped_window")
    if alt is not None and ev.tensor in alt and ev.matches(alt[ev.tensor]):
        k, _ = _window(ev)
        return (f"{ev.tensor} equals the reference pooled over a {k[1]}x{k[0]} window: the {k[0]}x{k[1]} window's "
                "axes are swapped (the reduction runs over the other axes)")  # fmt: skip
    return None


def known_variant(ev: Evidence) -> str | None:
    """Ours equals what one of the kind's classic bugs computes (its ``variants``), by name."""
    if ev.alternatives is None:
        return None
    for name, (words, _) in _declared(ev).variants.items():
        alt = ev.alternatives(name)
        if alt is not None and alt.get(ev.tensor) is not None and ev.matches(alt[ev.tensor]):
            n = int(ev.bad().sum())
            return f"{ev.tensor} equals what {words} gives ({name}); that explains every failing element ({n})"
    return None


def accumulated(ev: Evidence) -> str | None:
    if ev.prior is not None and ev.prior.shape == ev.ref.shape and ev.matches(ev.prior + ev.ref):
        return "round 2 = round 1 + a fresh round 2: gradients accumulate across calls (reset them in backward)"
    return None


def stale_cache(ev: Evidence) -> str | None:
    if ev.prior is not None and ev.prior.shape == ev.arr.shape and ev.matches(ev.prior):
        return "round 2 repeats round 1: a cache (input or result) kept from the first call"
    return None


def loss_clamp(ev: Evidence) -> str | None:
    """The loss differs while its gradient is right (autograd), or the gradient matches torch's but
    not the finite differences of the implementation's own forward (finite differences)."""
    if not _softmax_loss(ev):
        return None
    clamp = "(a clamp such as -log(p + eps), an epsilon, a different function)"
    if ev.tensor == "loss" and ev.others.get("dlogits") == "pass" and np.all(np.isfinite(ev.arr)):
        return f"the loss value differs but its gradient is the reference's: the forward computes something the backward ignores {clamp}"
    if ev.attribution == "forward":
        return f"the gradient matches torch's but not the finite differences of this forward: the forward is not the function the backward differentiates {clamp}"
    return None


def forward_mismatch(ev: Evidence) -> str | None:
    if ev.attribution == "forward":
        return ("the gradient matches torch's but not the finite differences of this implementation's forward: "
                "the forward computes a different function than the one its backward differentiates")  # fmt: skip
    return None


HYPOTHESES: list[Callable[[Evidence], str | None]] = [
    wrong_shape, dtype_promotion, reference_non_finite, overflow_without_max_shift, underflowed_probability,
    zero_times_log_zero, clipped_probability, non_finite, accumulated, stale_cache, known_variant, all_zeros, loss_scale,
    loss_clamp,
    at_input_zeros,
    pool_tie_routing, flipped_kernel, swapped_window, constant_factor, sign_flip_some, dropped_contributions,
    spatial_shift, forward_mismatch,
]  # fmt: skip
# where ours already equals the reference it is held to (the finite-difference judge, when torch agrees
# with ours but not with the differences of this forward), no hypothesis about ours can be shown: only
# these, which reason from the attribution
AGREEING = [loss_clamp, forward_mismatch]


def diagnose(ev: Evidence) -> str:
    """The first hypothesis that explains every failing element, or ``unexplained``."""
    try:
        agrees = np.shape(ev.ours) == ev.ref.shape and ev.arr.dtype == ev.ref.dtype and ev.matches(ev.ref)
    except Exception:  # ours that cannot be compared at all (objects, say) agrees with nothing
        agrees = False
    for hypothesis in AGREEING if agrees else HYPOTHESES:
        try:
            found = hypothesis(ev)
        except Exception:  # a hypothesis that cannot apply to this evidence (odd shapes, say) explains nothing
            found = None
        if found:
            return found
    return UNEXPLAINED
