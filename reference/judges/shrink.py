"""The smallest input that shows each bug.

For each layer the autograd judge failed, its worst failing case is shrunk, as hypothesis shrinks a
failing example, to the smallest case that still fails **the same way**: the same tensor fails in
the same dtype with the same status, and the same diagnosis class where the first had one
(``failure_of``). The search is greedy, each step kept only if the failure survives:

1. fewer images (down to 1), 2. fewer channels (input and output channels, dense features,
classes), 3. a smaller spatial size (pooling windows kept whole and aligned), 4. a smaller kernel,
stride and padding, no bias, where the configuration allows; 1-4 again while anything shrank;
5. the numbers: the upstream gradient all ones, then the input, weights and bias as small integers
that keep the order, the signs, the ties and the zeros of the values they replace (a tie bug keeps
its tie), then single elements set to 0. A smaller case must also compare something everywhere the
worst case did: a candidate with a row "both tensors are all zeros" (the autograd judge's, or the
finite-difference judge's adjoint identity of a linear layer) is refused.

Every attempt is one ``run_case`` of the autograd judge, the same calls the judge makes, so it runs
in this process and in a sandboxed worker alike (there in a worker of its own, ``<layer>, shrinking``,
so a candidate that hangs costs the other judges nothing). At most ``CALLS`` attempts and
``SECONDS`` of wall clock per layer; never under ``--fail-fast``.

A shrunk case carries its numbers (``Given``); its id spells them out (``case_id``) and
``parse_id`` reads them back, so ``judge --case '<id>'`` reruns exactly that failure.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from reference.cases.grid import Case, case_inputs, expected_output_shape, upstream_gradient
from reference.layers import KINDS, LayerKind, kind
from reference.layers.case import _short, as_pair

PREFIX = "shrunk:"
FAMILY = "smallest failing input"
CALLS = 60  # implementation calls (one case, one dtype, each) per failing layer
SECONDS = 30.0  # wall clock per failing layer; checked between calls (one call is bounded by --case-timeout)
MAX_NUMBERS = 400  # numbers a shrunk case may carry: its id spells every one of them out
SHOWN = 36  # numbers of one array printed in a description; more are in the id only
PREFERENCE = ("dx", "out", "probs", "dlogits", "loss")
FORWARD = ("out", "probs", "loss")  # the tensor shrunk first among equally bad rows
TABLE = ["layer", "dtype", "tensor", "status", "diagnosis", "description", "case", "from_case", "numbers", "calls",
         "seconds", "steps", "worst_index", "ours", "ref"]  # fmt: skip


# --- a case that carries its numbers -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Given:
    """The numbers of a shrunk case, float64 (cast to the run's dtype; a float32 value is exact in
    float64, so a float32 failure reruns bit for bit): ``x`` the input (NHWC, or (m, n)),
    ``params`` W and b in the protocol's layouts, ``g`` the upstream gradient (the shape a right
    forward returns; None for the loss), ``labels`` int64 (m,) (the loss only)."""

    x: np.ndarray
    params: dict[str, np.ndarray] = field(default_factory=dict)
    g: np.ndarray | None = None
    labels: np.ndarray | None = None

    def inputs(self, dtype: str) -> dict[str, Any]:
        """What ``case_inputs`` returns for a grid case, with ``g`` for ``upstream_gradient``."""
        return {"x": self.x.astype(dtype), "params": {k: v.astype(dtype) for k, v in self.params.items()},
                "labels": None if self.labels is None else self.labels.astype(np.int64), "g_seed": [0, 11],
                "buffers": {}, "g": None if self.g is None else self.g.astype(dtype)}  # fmt: skip

    def arrays(self) -> list[tuple[str, np.ndarray]]:
        """(name in the id, array) in the id's order."""
        named = [("x", self.x), *((k, self.params[k]) for k in ("W", "b") if k in self.params)]
        named += [("g", self.g)] if self.g is not None else []
        return named + ([("labels", self.labels)] if self.labels is not None else [])

    def count(self) -> int:
        return sum(int(a.size) for _, a in self.arrays())


@dataclass(frozen=True)
class ShrunkCase(Case):
    """A case with explicit numbers (``case_inputs`` and ``upstream_gradient`` give them)."""

    given: Given | None = field(default=None, hash=False, compare=False)

    @property
    def id(self) -> str:
        assert self.given is not None
        return case_id(self.layer, self.config, self.given)

    @property
    def family(self) -> str:
        return FAMILY

    def given_inputs(self, dtype: str) -> dict[str, Any]:
        assert self.given is not None
        return self.given.inputs(dtype)


def make_case(layer: str, config: dict[str, Any], given: Given) -> ShrunkCase:
    return ShrunkCase(layer, dict(config), tuple(int(n) for n in given.x.shape), "shrunk", 0, given=given)


def _num(v: float) -> str:
    """One number of an id: an integer as such, any other float by its shortest exact repr."""
    v = float(v)
    # NOTE: -0.0 is written 0: no layer of the protocol tells the two apart (1/x is nowhere)
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def numbers_text(a: np.ndarray) -> str:
    """A flat C-order array as ``1,0,3*4,-2`` (``v*n``: n copies of v, for runs of 3 or more)."""
    flat = [_num(v) for v in np.asarray(a, dtype=np.float64).ravel()]
    out, i = [], 0
    while i < len(flat):
        j = i
        while j + 1 < len(flat) and flat[j + 1] == flat[i]:
            j += 1
        n = j - i + 1
        out += [f"{flat[i]}*{n}"] if n >= 3 else flat[i : j + 1]
        i = j + 1
    return ",".join(out)


def parse_numbers(text: str) -> np.ndarray:
    """The inverse of ``numbers_text`` (flat, float64). ValueError on anything else."""
    values: list[float] = []
    for item in text.split(","):
        value, _, times = item.partition("*")
        n = int(times) if times else 1
        v = float(value)
        if not math.isfinite(v) or n < 1 or (times and not times.isdigit()):
            raise ValueError(f"not a finite number (or v*n run): {item!r}")
        values += [v] * n
    return np.array(values, dtype=np.float64)


def case_id(layer: str, config: dict[str, Any], given: Given) -> str:
    """``shrunk: MaxPool2D[kernel_size=2,stride=None] x1x2x2x1 x=1,1,0,3 g=1``: the configuration as
    the grid writes it, the input's shape, then every number of the case."""
    parts = ",".join(f"{k}={_short(v)}" for k, v in config.items())
    text = f"{PREFIX} {layer}[{parts}] x{'x'.join(map(str, given.x.shape))}"
    return text + "".join(f" {name}={numbers_text(a)}" for name, a in given.arrays())


_ID = re.compile(r"shrunk: (\w+)\[([^\]\s]*)\] x(\d+(?:x\d+)*)((?: [A-Za-z]+=\S+)*)")


def _config_value(text: str) -> Any:
    if text in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[text]
    if re.fullmatch(r"\d+", text):
        return int(text)
    if re.fullmatch(r"\d+x\d+", text):
        return tuple(int(t) for t in text.split("x"))
    return text


def param_shapes(layer: str, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shapes of W and b a configuration has (the protocol's layouts)."""
    return dict(kind(layer).param_shapes(config))


def parse_id(text: str) -> ShrunkCase:
    """The shrunk case an id names (``case_id`` of it is ``text`` again). ValueError, starting
    ``--case:``, when ``text`` is no such id."""

    def bad(why: str) -> ValueError:
        return ValueError(f"--case: {text!r} is not a shrunk case as the judge writes it ({why})")

    m = _ID.fullmatch(text)
    if m is None:
        raise bad("expected 'shrunk: Layer[key=value,...] x<shape> x=... [W=... b=...] [g=...] [labels=...]'")
    layer, config_text, shape_text, rest = m.groups()
    if layer not in KINDS:
        raise bad(f"unknown layer {layer}")
    declared = kind(layer)
    config: dict[str, Any] = {}
    for item in filter(None, config_text.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in declared.signature:
            raise bad(f"{layer} takes no {key!r}")
        config[key] = _config_value(value)
    shape = tuple(int(n) for n in shape_text.split("x"))
    found: dict[str, np.ndarray] = {}
    for token in rest.split():
        name, _, values = token.partition("=")
        try:
            found[name] = parse_numbers(values)
        except ValueError as err:
            raise bad(f"{name}: {err}") from None
    try:
        out = expected_output_shape(Case(layer, config, shape)) if not declared.loss else None
        want = {"x": shape, **param_shapes(layer, config)}
    except (KeyError, TypeError, ValueError) as err:
        raise bad(f"configuration: {type(err).__name__}: {err}") from None
    if out is not None:
        want["g"] = out
    if declared.loss:  # its target: a class index per row
        want["labels"] = shape[:1]
    if set(found) != set(want):
        raise bad(f"numbers for {', '.join(want)} expected, got {', '.join(found) or 'none'}")
    arrays = {}
    for name, dims in want.items():
        if found[name].size != math.prod(dims) or min(dims, default=1) < 1:
            raise bad(f"{name} has {found[name].size} numbers, its shape {dims} holds {math.prod(dims)}")
        arrays[name] = found[name].reshape(dims)
    labels = None
    if declared.loss:
        labels = arrays["labels"]
        if len(shape) != 2 or np.any(labels != np.round(labels)) or np.any(labels < 0) or np.any(labels >= shape[1]):
            raise bad(f"labels must be class indices 0..{shape[-1] - 1}")
        labels = labels.astype(np.int64)
    params = {k: arrays[k] for k in ("W", "b") if k in arrays}
    case = make_case(layer, config, Given(arrays["x"], params, arrays.get("g"), labels))
    if case.id != text:
        raise bad("it does not read back as written")
    return case


# --- "fails the same way" ------------------------------------------------------------------------


def diagnosis_class(text: Any) -> str:
    """What stays the same when the same bug shows on a smaller case: a diagnosis reads "what was
    seen: what it means", and the class is the meaning (the whole text where it has no ': '), its
    numbers (counts, indices, ranges, factors) made '#'. '' for none or ``unexplained``.

    # NOTE: what was seen changes with the case (a padding off by one shifts a 2x2 kernel's output
    # by a row and a column, a 1x2 kernel's by a column); what it means does not."""
    if not isinstance(text, str) or not text or text == "unexplained":
        return ""
    meaning = text.split(": ", 1)[1] if ": " in text else text
    t = re.sub(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", meaning)
    return re.sub(r"#(?:\s*[-,x]\s*#)+", "#", t)


def error_class(note: Any) -> str:
    """An exception row's kind: the exception's name and where the implementation raised it."""
    note = str(note or "")
    name = re.match(r"(?:forward: |backward: )?([\w.]+)", note)
    where = re.search(r"\(at ([^)]*)\)", note)
    return f"{name.group(1) if name else ''} at {where.group(1) if where else '?'}"


def failure_of(row: dict[str, Any]) -> tuple[str, str, str]:
    """(tensor, status, class) of a failing row: what a smaller case must repeat to fail the same way."""
    status = str(row.get("status"))
    if status == "error":
        return str(row.get("tensor")), status, error_class(row.get("note"))
    return str(row.get("tensor")), status, diagnosis_class(row.get("diagnosis")) if status == "fail" else ""


def same_class(got: str, target: str) -> bool:
    """Two diagnosis classes name the same bug: equal, or one is the other with a remark added (a
    diagnosis may add one on a small case: "(here 2 and C are the same number)")."""
    return got == target or (bool(got) and bool(target) and (got.startswith(target) or target.startswith(got)))


def same_failure(rows: list[dict[str, Any]], target: tuple[str, str, str], dtype: str) -> dict[str, Any] | None:
    """The row of ``rows`` that fails as ``target`` does, or None. An unexplained target is matched by
    any failure of its tensor with its status."""
    for row in rows:
        if str(row.get("dtype")) != dtype or str(row.get("tensor")) != target[0]:
            continue
        got = failure_of(row)
        if got[:2] == target[:2] and (same_class(got[2], target[2]) or (target[1] == "fail" and not target[2])):
            return row
    return None


# --- the state being shrunk ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class State:
    """A configuration and its numbers, float64 (``x`` NHWC or (m, n); ``g`` of the output's shape)."""

    config: dict[str, Any]
    x: np.ndarray
    params: dict[str, np.ndarray]
    g: np.ndarray | None
    labels: np.ndarray | None

    def given(self) -> Given:
        return Given(self.x, dict(self.params), self.g, self.labels)


def setting(declared: LayerKind, config: dict[str, Any], key: str) -> Any:
    """A configuration key's value, its default where the configuration leaves it out (KeyError
    where it has none)."""
    return config[key] if key in config else declared.defaults[key]


def valid(layer: str, config: dict[str, Any], shape: tuple[int, ...]) -> bool:
    """Whether the twin can run the configuration on an input of ``shape`` (an output of >= 1 element)."""
    if any(n < 1 for n in shape):
        return False
    if not kind(layer).accepts(config, tuple(shape)):
        return False
    try:
        return all(n >= 1 for n in expected_output_shape(Case(layer, config, tuple(shape))))
    except (KeyError, TypeError, ValueError):
        return False


def measure(layer: str, s: State) -> tuple[float, ...]:
    """What the shrinker makes smaller, most important first: every accepted step lowers it, so the
    search ends. Sizes, then the configuration (kernel, stride, padding, tuple forms, bias), then
    the numbers (non-integers, then their magnitude)."""
    cfg, sliding = s.config, kind(layer).sliding
    kernel = stride = pad = tuples = 0.0
    if sliding is not None:
        k, st, pd = sliding(cfg)
        kernel, stride = float(k[0] * k[1]), float(sum(st))
        pad = float(sum(sum(p) for p in pd))
        tuples = float(sum(isinstance(v, (tuple, list)) for v in cfg.values()))
    arrays = [s.x, *s.params.values(), *([s.g] if s.g is not None else [])]
    nonint = float(sum(int(np.count_nonzero(a != np.round(a))) for a in arrays))
    size = float(sum(int(a.size) for a in arrays))
    magnitude = float(sum(float(np.abs(a).sum()) for a in arrays))
    return (float(s.x.size), float(sum(p.size for p in s.params.values())), kernel, stride, pad, tuples,
            float(bool(cfg.get("bias", False))), nonint, size, magnitude)  # fmt: skip


def fit(a: np.ndarray, shape: tuple[int, ...], offsets: tuple[int, ...] | None = None) -> np.ndarray:
    """``a`` read at ``offsets + index`` (wrapping) into ``shape``: an upstream gradient carried to an
    output of another shape, its values near the focus kept."""
    offsets = offsets or (0,) * len(shape)
    index = [(o + np.arange(n)) % d for n, d, o in zip(shape, a.shape, offsets, strict=True)]
    return a[np.ix_(*index)]


def out_shape(layer: str, config: dict[str, Any], shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(expected_output_shape(Case(layer, config, tuple(shape))))


# --- where the failure is ------------------------------------------------------------------------


def roles(layer: str, name: str, ndim: int) -> tuple[str, ...]:
    """What each axis of array ``name`` (x, g, W, b) of a layer is, as its kind declares
    (``LayerKind.axes``): m (images/rows), h, w, kh, kw, c (channels carried through), k (classes),
    aN (an axis of its own), or the configuration key that holds its length (in_ch, n_out, ...)."""
    return tuple(kind(layer).axes(name, ndim))


TENSOR_ARRAY = {"dx": "x", "out": "g", "dW": "W", "db": "b", "probs": "x", "dlogits": "x"}


def focus_of(layer: str, config: dict[str, Any], tensor: str, worst_index: Any) -> dict[str, int]:
    """The failing element as {axis role: index}, in the input's coordinates where it has them (an
    output row i of a window layer is input row i * stride - pad)."""
    index = tuple(int(i) for i in re.findall(r"-?\d+", str(worst_index)))
    name = TENSOR_ARRAY.get(tensor)
    if name is None or not index:
        return {}
    found = dict(zip(roles(layer, name, len(index)), index, strict=False))
    sliding = kind(layer).sliding
    if tensor == "out" and sliding is not None:
        _, st, pd = sliding(config)
        before = (pd[0][0], pd[1][0])
        for axis, role in enumerate(("h", "w")):
            if role in found:
                found[role] = max(0, found[role] * st[axis] - before[axis])
    return found


# --- the steps ------------------------------------------------------------------------------------


Step = tuple[str, State]


def subsets(n: int, f: int, alive: np.ndarray | None = None) -> list[list[int]]:
    """Index lists of fewer than n of n, smallest first: the focus alone, two others alone, the focus
    with one of them, the half holding the focus and the other half (a long axis shrinks by halves),
    all but one (a short one). The others are the nearest indices where the input is not all zero
    (``alive``, a bool per index) first: a slice of zeros compares nothing."""
    if n <= 1:
        return []
    f = min(max(f, 0), n - 1)
    live = alive if alive is not None and len(alive) == n else np.ones(n, dtype=bool)
    others = sorted((i for i in range(n) if i != f), key=lambda i: (not live[i], abs(i - f), i))
    out = [[f], *([i] for i in others[:2])]
    if n > 2:
        out += [sorted([f, i]) for i in others[:2]]
    if n > 3:
        half = n // 2
        out += [list(range(half)), list(range(half, n))] if f < half else [list(range(half, n)), list(range(half))]
    if 3 < n <= 8:
        out += [[i for i in range(n) if i != j] for j in reversed(others[-2:])]
    return [list(s) for s in dict.fromkeys(tuple(s) for s in out)]


def alive_along(layer: str, s: State, role: str) -> np.ndarray | None:
    """Per index of axis ``role`` of x, whether x has a nonzero there (None: x has no such axis)."""
    names = roles(layer, "x", s.x.ndim)
    if role not in names:
        return None
    axis = names.index(role)
    return np.moveaxis(s.x != 0, axis, 0).reshape(s.x.shape[axis], -1).any(axis=1)


def lengths(low: int, n: int) -> list[int]:
    """Lengths below n to try, smallest first: low, low + 1, low + 2, low + 3, about n/2, n - 1."""
    return sorted({v for v in (low, low + 1, low + 2, low + 3, math.ceil(n / 2), n - 1) if low <= v < n})


def take(layer: str, s: State, role: str, idx: list[int]) -> State:
    """``s`` with only the indices ``idx`` of axis ``role`` in every array that has that axis (the
    configuration key that holds its length, the loss's labels, follow)."""
    declared = kind(layer)
    idx_arr = np.asarray(idx, dtype=np.intp)
    pick = lambda a, name: np.take(a, idx_arr, axis=roles(layer, name, a.ndim).index(role))  # noqa: E731
    has = lambda a, name: role in roles(layer, name, a.ndim)  # noqa: E731
    x = pick(s.x, "x") if has(s.x, "x") else s.x
    params = {k: pick(v, k) if has(v, k) else v for k, v in s.params.items()}
    g = s.g
    if g is not None and declared.pointwise:  # NOTE: g is x's numbers in x's order (Flatten's reshaped): cut as x is
        g = pick(g.reshape(s.x.shape), "x").reshape(declared.output_shape(s.config, x.shape)) if has(s.x, "x") else g
    elif g is not None and has(g, "g"):
        g = pick(g, "g")
    labels = s.labels
    config = dict(s.config)
    if role == "m" and labels is not None:
        labels = labels[idx_arr]
    if role == "k" and labels is not None:
        labels = np.searchsorted(idx_arr, labels).astype(np.int64)
    if role in config:  # an axis named by the configuration key that holds its length
        config[role] = len(idx)
    return State(config, x, params, g, labels)


def batch_steps(layer: str, s: State, focus: dict[str, int]) -> Iterator[Step]:
    if "m" not in roles(layer, "x", s.x.ndim):
        return
    m = s.x.shape[0]
    for keep in subsets(m, focus.get("m", 0), alive_along(layer, s, "m")):
        yield f"batch {m} -> {len(keep)}", take(layer, s, "m", keep)


def channel_roles(layer: str, s: State) -> list[str]:
    """The axes of x and g that channel steps narrow: channels carried through (c), and those whose
    length a configuration key holds (in_ch, out_ch; n_in, n_out), x's first."""
    declared = kind(layer)
    named = [*roles(layer, "x", s.x.ndim), *(roles(layer, "g", s.g.ndim) if s.g is not None else ())]
    return list(dict.fromkeys(r for r in named if r == "c" or r in declared.signature))


def channel_steps(layer: str, s: State, focus: dict[str, int]) -> Iterator[Step]:
    declared = kind(layer)
    if declared.loss:
        yield from class_steps(layer, s, focus)
        return
    inputs = roles(layer, "x", s.x.ndim)
    for role in channel_roles(layer, s):
        n = _length(layer, s, role)
        for keep in subsets(n, focus.get(role, 0), alive_along(layer, s, role)):
            side = "input" if role in inputs else "output"
            what = "channels" if role == "c" else f"{side} channels" if declared.images else f"{side}s"
            yield f"{what} {n} -> {len(keep)}", take(layer, s, role, keep)


def _length(layer: str, s: State, role: str) -> int:
    for name, a in (("x", s.x), *s.params.items(), ("g", s.g)):
        if a is not None and role in roles(layer, name, a.ndim):
            return int(a.shape[roles(layer, name, a.ndim).index(role)])
    return 0


def class_steps(layer: str, s: State, focus: dict[str, int]) -> Iterator[Step]:
    """The loss: fewer classes, every label's class kept (labels renumbered)."""
    assert s.labels is not None
    K = s.x.shape[1]
    needed = sorted({int(v) for v in s.labels} | ({focus["k"]} if "k" in focus else set()))
    spare = [k for k in range(K) if k not in needed]
    options = [
        needed,
        *(sorted([*needed, k]) for k in spare[:2]),
        *([k for k in range(K) if k != j] for j in spare[-2:]),
    ]
    for keep in dict.fromkeys(tuple(o) for o in options):
        if 2 <= len(keep) < K:
            yield f"classes {K} -> {len(keep)}", take(layer, s, "k", list(keep))


def crop(a: np.ndarray, axis: int, start: int, length: int) -> np.ndarray:
    return np.take(a, np.arange(start, start + length), axis=axis)


def spatial_steps(layer: str, s: State, focus: dict[str, int]) -> Iterator[Step]:
    """A smaller extent of each spatial axis (each axis of an elementwise layer's input but the batch),
    around the failing element first: whole windows of a pooling layer, any extent a convolution's
    kernel covers, and g cut where x is for a pointwise layer."""
    declared = kind(layer)
    names = roles(layer, "x", s.x.ndim)
    axes = [(i, r) for i, r in enumerate(names) if r in ("h", "w") or r.startswith("a")]
    for axis, role in axes:
        n, f = s.x.shape[axis], focus.get(role, 0)
        word = {"h": "rows", "w": "columns"}.get(role, f"axis {axis}")
        if declared.windows is not None:  # pooling
            yield from _pool_crops(layer, s, axis, role, f, word)
        elif declared.sliding is not None:  # a convolution
            yield from _conv_crops(layer, s, axis, f, word)
        elif declared.pointwise:  # elementwise (ReLU) or a reshape (Flatten): g is cut where x is
            for L in lengths(1, n):
                for r0 in dict.fromkeys((min(max(f - L // 2, 0), n - L), 0)):
                    x = crop(s.x, axis, r0, L)
                    g = None
                    if s.g is not None:
                        g = crop(s.g.reshape(s.x.shape), axis, r0, L).reshape(out_shape(layer, s.config, x.shape))
                    yield f"{word} {n} -> {L}", replace(s, x=x, g=g)


def _pool_crops(layer: str, s: State, axis: int, role: str, f: int, word: str) -> Iterator[Step]:
    """Whole windows, aligned as they were (a window's values stay together, its tie with them)."""
    windows = kind(layer).windows
    assert windows is not None
    (k, st) = (windows(s.config)[0][axis - 1], windows(s.config)[1][axis - 1])
    n = s.x.shape[axis]
    outs = (n - k) // st + 1
    remainder = n - ((outs - 1) * st + k)
    for no in lengths(1, outs + 1):
        for extra in dict.fromkeys((0, remainder)):
            L = (no - 1) * st + k + extra
            if L >= n:
                continue
            low, high = max(0, math.ceil((f - L + 1) / st)), min(f // st, (n - L) // st)
            centre = min(max(f // st - (no - 1) // 2, low), high) if low <= high else 0
            for i0 in dict.fromkeys((centre, 0)):
                if i0 * st + L > n:
                    continue
                x = crop(s.x, axis, i0 * st, L)
                g = crop(s.g, axis, i0, no) if s.g is not None else None
                yield f"{word} {n} -> {L}", replace(s, x=x, g=g)


def _conv_crops(layer: str, s: State, axis: int, f: int, word: str) -> Iterator[Step]:
    sliding = kind(layer).sliding
    assert sliding is not None
    kernel, stride, pd = sliding(s.config)
    k, st, (before, after) = kernel[axis - 1], stride[axis - 1], pd[axis - 1]
    n = s.x.shape[axis]
    for L in lengths(max(1, k - before - after), n):
        for r0 in dict.fromkeys((min(max(f - L // 2, 0), n - L), 0)):
            x = crop(s.x, axis, r0, L)
            shape = out_shape(layer, s.config, x.shape)
            offsets = tuple(r0 // st if i == axis else 0 for i in range(4))
            yield f"{word} {n} -> {L}", replace(s, x=x, g=fit(s.g, shape, offsets) if s.g is not None else None)


def _kernels(k: tuple[int, int]) -> list[tuple[int, int]]:
    smaller = [(a, b) for a in range(1, k[0] + 1) for b in range(1, k[1] + 1) if (a, b) != k]
    return sorted(smaller, key=lambda p: (p[0] * p[1], abs(p[0] - p[1]), p))[:4]


def _form(p: tuple[int, int]) -> int | tuple[int, int]:
    return p[0] if p[0] == p[1] else p


def config_steps(layer: str, s: State, focus: dict[str, int]) -> Iterator[Step]:
    """A smaller kernel, stride, padding; the int form of a square tuple; no bias: of the keys the
    kind's constructor takes (a stride of None, the kernel's, stays)."""
    cfg, declared = s.config, kind(layer)
    takes = declared.signature
    options: list[tuple[str, dict[str, Any]]] = []
    if "kernel_size" in takes:
        k = setting(declared, cfg, "kernel_size")
        options += [(f"kernel {_short(k)} -> {_short(_form(p))}", {**cfg, "kernel_size": _form(p)})
                    for p in _kernels(as_pair(k))]  # fmt: skip
    if "stride" in takes and (st := setting(declared, cfg, "stride")) is not None:
        options += [(f"stride {_short(st)} -> {_short(_form(p))}", {**cfg, "stride": _form(p)})
                    for p in _kernels(as_pair(st))]  # fmt: skip
    if "padding" in takes:
        p = setting(declared, cfg, "padding")
        if p == "same":
            options.append(("padding same -> valid", {**cfg, "padding": "valid"}))
        elif not isinstance(p, str):
            pp = as_pair(p)
            options += [(f"padding {_short(p)} -> {_short(_form(q))}", {**cfg, "padding": _form(q)})
                        for q in [(a, b) for a in range(pp[0] + 1) for b in range(pp[1] + 1) if (a, b) != pp][:4]]  # fmt: skip
    if "bias" in takes and cfg.get("bias", True):
        options.append(("no bias", {**cfg, "bias": False}))
    for key in ("kernel_size", "stride", "padding"):
        v = cfg.get(key)
        if isinstance(v, (tuple, list)) and v[0] == v[1]:
            options.append((f"{key} {_short(v)} -> {v[0]}", {**cfg, key: int(v[0])}))
    for what, new in options:
        if not valid(layer, new, s.x.shape):
            continue
        params = {k: _kernel_cut(layer, k, v, new) for k, v in s.params.items()}
        if not new.get("bias", True):
            params.pop("b", None)
        g = fit(s.g, out_shape(layer, new, s.x.shape)) if s.g is not None else None
        yield what, State(new, s.x, params, g, s.labels)


def _kernel_cut(layer: str, name: str, a: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """A parameter's kernel axes (kh, kw) cut to the configuration's kernel (a smaller kernel keeps
    the weights of its top-left corner)."""
    names = roles(layer, name, a.ndim)
    sliding = kind(layer).sliding
    if sliding is None or not {"kh", "kw"} & set(names):
        return a
    (kh, kw), _, _ = sliding(config)
    return a[tuple(slice(0, kh) if r == "kh" else slice(0, kw) if r == "kw" else slice(None) for r in names)]


def ranked(a: np.ndarray) -> np.ndarray:
    """Small integers in the order of ``a``'s values: equal values stay equal (a tie stays a tie),
    zeros stay 0, negatives -1, -2, ... and positives 1, 2, ... by rank."""
    vals = np.unique(a)
    r = np.searchsorted(vals, a)
    n_neg, zero = int((vals < 0).sum()), int((vals == 0).any())
    return np.where(a < 0, r - n_neg, np.where(a > 0, r - n_neg - zero + 1, 0)).astype(np.float64)


def value_steps(layer: str, s: State, focus: dict[str, int], tensor: str = "dx") -> Iterator[Step]:
    """The upstream gradient all ones; each array as ranked integers, then rounded; then single
    elements of a small array set to 0 (of g only where ``tensor`` is a gradient: a forward tensor
    does not depend on g, and "g = 1 everywhere" reads best)."""
    if s.g is not None and not np.all(s.g == 1):
        yield "g = 1 everywhere", replace(s, g=np.ones_like(s.g))
    names = ["x", *s.params, *(["g"] if s.g is not None else [])]
    for name in names:
        a = _array(s, name)
        for what, new in ((f"{name} as ranked integers", ranked(a)), (f"{name} rounded", np.round(a))):
            if not np.array_equal(new, a) and new.any():
                yield what, _with_array(s, name, new)
    for name in names if tensor not in FORWARD else [n for n in names if n != "g"]:
        a = _array(s, name)
        if a.size <= 16:
            for i in np.flatnonzero(a):
                new = a.copy()
                new.flat[i] = 0.0
                if new.any():
                    yield f"{name}{tuple(int(j) for j in np.unravel_index(i, a.shape))} = 0", _with_array(s, name, new)


def _array(s: State, name: str) -> np.ndarray:
    return s.x if name == "x" else s.g if name == "g" else s.params[name]  # type: ignore[return-value]


def _with_array(s: State, name: str, a: np.ndarray) -> State:
    if name == "x":
        return replace(s, x=a)
    if name == "g":
        return replace(s, g=a)
    return replace(s, params={**s.params, name: a})


SHAPE_PHASES: tuple[Callable[[str, State, dict[str, int]], Iterator[Step]], ...] = (
    batch_steps,
    channel_steps,
    spatial_steps,
    config_steps,
)


# --- the search -----------------------------------------------------------------------------------


@dataclass
class Found:
    """What the shrinker found for one layer (``case`` None: nothing smaller failed the same way)."""

    layer: str
    dtype: str
    tensor: str
    from_case: str
    target: tuple[str, str, str]
    case: ShrunkCase | None = None
    row: dict[str, Any] | None = None
    steps: list[str] = field(default_factory=list)
    calls: int = 0
    seconds: float = 0.0
    picture: Any = None
    stopped: str = ""  # why the search ended early ('' when it ran to the end)


class _Stop(Exception):
    pass


Runner = Callable[[ShrunkCase, str], list[dict[str, Any]]]


def shrink(case: Case, row: dict[str, Any], run: Runner, *, calls: int = CALLS, seconds: float = SECONDS,
           can_go_on: Callable[[], str] = lambda: "") -> Found:  # fmt: skip
    """Shrink ``case`` while it fails as ``row`` (a failing row of it) does, in ``row``'s dtype.
    ``run(case, dtype)`` is the autograd judge's run of one case in one dtype (rows); ``can_go_on``
    returns why the run must stop ('' to go on: the run's time budget)."""
    dtype, layer = str(row["dtype"]), case.layer
    found = Found(layer, dtype, str(row["tensor"]), case.id, failure_of(row))
    state = _start_state(case, dtype)
    focus = focus_of(layer, state.config, found.tensor, row.get("worst_index"))
    search = _Search(found, run, state, focus, calls, seconds, can_go_on)
    try:
        for _ in range(3):  # the shape phases again while one of them shrank something
            if not any([search.greedy(phase) for phase in SHAPE_PHASES]):
                break
        search.greedy(lambda layer, s, f: value_steps(layer, s, f, found.tensor), once=True)
    except _Stop as stop:
        found.stopped = str(stop)
    found.seconds = time.monotonic() - search.started
    _drop_if_too_big(found)
    return found


def _start_state(case: Case, dtype: str) -> State:
    """The case's inputs in ``dtype``, held in float64 (its upstream gradient too, None for a loss)."""
    inputs = case_inputs(case, dtype)
    g = None if kind(case.layer).loss else upstream_gradient(inputs, expected_output_shape(case))
    return State(dict(case.config), inputs["x"].astype(np.float64),
                 {k: v.astype(np.float64) for k, v in inputs["params"].items()},
                 None if g is None else g.astype(np.float64), inputs["labels"])  # fmt: skip


def _drop_if_too_big(found: Found) -> None:
    """Forget the case found where it carries more than MAX_NUMBERS numbers (its id could not spell them
    out), saying so in ``found.stopped``."""
    if found.case is not None and found.case.given is not None and found.case.given.count() > MAX_NUMBERS:
        too_many = f"the smallest case found has {found.case.given.count()} numbers (more than {MAX_NUMBERS})"
        found.stopped = f"{found.stopped}; {too_many}" if found.stopped else too_many
        found.case = found.row = found.picture = None


@dataclass
class _Search:
    """One shrink under way: the state that still fails, where to look, and the budget left (calls,
    seconds, the run's own ``can_go_on``); ``found`` records the smallest failing case so far."""

    found: Found
    run: Runner
    state: State
    focus: dict[str, int]
    calls: int
    seconds: float
    can_go_on: Callable[[], str]
    started: float = field(default_factory=time.monotonic)

    def attempt(self, candidate: State) -> dict[str, Any] | None:
        """Run ``candidate`` (raising _Stop when the budget is spent); its row failing as the target
        does (recorded in ``found``), else None."""
        from reference.report import heatmap

        found, dtype = self.found, self.found.dtype
        if found.calls >= self.calls:
            raise _Stop(f"{self.calls} calls")
        if time.monotonic() - self.started > self.seconds:
            raise _Stop(f"{self.seconds:g} s")
        if why := self.can_go_on():
            raise _Stop(why)
        shrunk = make_case(found.layer, candidate.config, candidate.given())
        found.calls += 1
        shots = heatmap.Snapshots()
        try:
            rows = shots.around(self.run)(shrunk, dtype)
        except Exception:  # noqa: BLE001 - the twin refused the candidate, or the worker was lost: not this failure
            return None
        same = same_failure(rows, found.target, dtype)
        if same is not None and any(r.get("status") == "vacuous" and r is not same for r in rows):
            # NOTE: the grid's inputs make every compared tensor nonzero somewhere; a shrunk case must
            # too, or its rerun shows "nothing was compared" failures the worst case did not have
            same = None
        if same is not None:
            found.case, found.row = shrunk, same
            found.picture = shots.picture(found.tensor, dtype)
        return same

    def greedy(self, phase: Callable[[str, State, dict[str, int]], Iterator[Step]], once: bool = False) -> bool:
        """Apply the phase's first step that keeps the failure, again and again; True if any did.
        ``once``: a step refused is not tried again in this phase (the value steps: each is named by
        what it changes, and the budget goes further)."""
        layer, moved, refused = self.found.layer, False, set()
        while True:
            for what, candidate in phase(layer, self.state, self.focus):
                if what in refused or not valid(layer, candidate.config, candidate.x.shape):
                    continue
                if measure(layer, candidate) >= measure(layer, self.state):
                    continue
                same = self.attempt(candidate)
                if same is None and once:
                    refused.add(what)
                if same is not None:
                    self.state, moved = candidate, True
                    self.found.steps.append(what)
                    self.focus = (
                        focus_of(layer, self.state.config, self.found.tensor, same.get("worst_index")) or self.focus
                    )
                    break
            else:
                return moved


# --- which case of each layer is shrunk ----------------------------------------------------------


LOST = ("not run", "time limit", "was killed", "ended its process", "closed the judge", "malformed", "out of turn",
        "was lost", "time budget")  # fmt: skip


def worst_rows(rows: pd.DataFrame, known: set[str]) -> list[dict[str, Any]]:
    """Per failing layer, the row whose case is shrunk. The case is the one summary.md calls the
    layer's worst (``worst_failures``: an exception first, else the failing row that used the most of
    its tolerance); of its rows, the one that tells the most: an explained failure before an
    unexplained one, then the tensor that shows a layer's bug best (dx, out, ...), float64 before
    float32, the larger budget. Rows of lost workers and time-outs repeat nothing and are left out;
    only rows of ``known`` case ids count."""
    from reference.report.summary import worst_failures

    if rows.empty:
        return []
    lost = (rows["status"] == "error") & rows["note"].astype(str).str.contains("|".join(LOST), regex=True)
    usable = rows[rows["case"].isin(known) & ~lost]
    chosen = []
    for worst in worst_failures(usable).itertuples():
        in_case = usable[(usable["layer"] == worst.layer) & (usable["case"] == worst.case)]
        status = "error" if (in_case["status"] == "error").any() else "fail"
        mine = in_case[in_case["status"] == status]
        if mine.empty:  # only vacuous rows: nothing fails the way a smaller case could repeat
            continue
        diagnosis = mine["diagnosis"] if "diagnosis" in mine.columns else pd.Series("", index=mine.index)
        budget = pd.to_numeric(mine.get("budget", pd.Series(np.nan, index=mine.index)), errors="coerce")
        order = mine.assign(
            _u=diagnosis.map(lambda d: not diagnosis_class(d)).astype(int),
            _r=mine["tensor"].map(lambda t: PREFERENCE.index(t) if t in PREFERENCE else len(PREFERENCE)),
            _d=(mine["dtype"] != "float64").astype(int),  # float64 first among equals: it fails for the maths
            _b=-budget.fillna(np.inf),
        ).sort_values(["_u", "_r", "_d", "_b"], kind="stable")
        chosen.append(order.drop(columns=["_u", "_r", "_d", "_b"]).iloc[0].to_dict())
    return chosen


def shrinkable(layer: str) -> bool:
    """Whether a case of ``layer`` can be shrunk: its whole input is x, W, b, g and labels. A kind with
    buffers (batch norm's running statistics, sized by the channels a shrink removes) or with its own
    randomness (dropout's mask, drawn by the implementation) is reported at its grid case only."""
    declared = kind(layer)
    return not declared.buffers and declared.self_reference is None and not declared.optimizer


def shrink_failures(ctx: Any, rows: pd.DataFrame, cases: list[Case],
                    run_case: Callable[[Any, Case, str], list[dict[str, Any]]]) -> list[Found]:  # fmt: skip
    """Shrink the worst failing case of each failing layer of ``rows`` (the autograd judge's, on
    ``cases``), each layer in a worker of its own (``<layer>, shrinking``), layers at once where the
    session allows. Nothing where only the exit code is wanted (``--fail-fast`` from the command line)."""
    from reference.judges.base import in_parallel, judged_in, skip_reason
    from reference.judges.finite_diff import adjoint_rows

    if not ctx.explain:
        return []
    by_id = {c.id: c for c in cases}
    targets = [r for r in worst_rows(rows, set(by_id)) if shrinkable(str(r["layer"]))]

    def job(row: dict[str, Any]) -> Found:
        scope = f"{row['layer']}, shrinking"

        def run(case: ShrunkCase, dtype: str) -> list[dict[str, Any]]:
            with judged_in(ctx.impl, scope):
                rows = run_case(ctx.impl, case, dtype)
            if kind(case.layer).adjoint:  # the finite-difference judge's adjoint rows must compare something too
                with judged_in(ctx.impl, scope):
                    rows += adjoint_rows(ctx.impl, case)
            return rows

        try:
            return shrink(by_id[row["case"]], row, run, can_go_on=lambda: skip_reason(ctx.impl, scope))
        except Exception as err:  # noqa: BLE001 - the shrinker's own failure is a line of the report, not a crash
            return Found(str(row["layer"]), str(row["dtype"]), str(row["tensor"]), str(row["case"]), failure_of(row),
                         stopped=f"the shrinker failed: {type(err).__name__}: {err}")  # fmt: skip

    return in_parallel(ctx.impl, [lambda r=r: job(r) for r in targets])


# --- in words --------------------------------------------------------------------------------------


def _fmt(v: float) -> str:
    return _num(v) if float(v).is_integer() else f"{float(v):.6g}"


def array_text(a: np.ndarray, limit: int = SHOWN) -> str:
    """``[[1, 1], [0, 3]]``: an array as nested lists of its numbers (axes of length 1 dropped), or
    its size where it has more than ``limit``."""
    a = np.asarray(a, dtype=np.float64)
    if a.size > limit:
        return f"({a.size} numbers: in the case id)"
    squeezed = a.squeeze() if a.ndim > 1 else a
    squeezed = squeezed.reshape(1) if squeezed.ndim == 0 else squeezed

    def text(b: np.ndarray) -> str:
        return "[" + ", ".join(text(c) if c.ndim else _fmt(float(c)) for c in b) + "]"

    return text(squeezed)


def input_words(layer: str, shape: tuple[int, ...]) -> str:
    """``1 image 2x2x1``, ``2 rows of 3 inputs``, ``1 row of 2 logits``, ``an input of shape (3,)``."""
    m, declared = shape[0], kind(layer)
    if len(shape) == 4:
        return f"{m} image{'s' if m != 1 else ''} {'x'.join(map(str, shape[1:]))}"
    if declared.loss:
        return f"{m} row{'s' if m != 1 else ''} of {shape[1]} logits"
    if len(shape) == 2 and roles(layer, "x", 2)[1] in declared.signature:  # rows of features the configuration counts
        return f"{m} row{'s' if m != 1 else ''} of {shape[1]} input{'s' if shape[1] != 1 else ''}"
    return f"an input of shape {tuple(shape)}"


def config_words(layer: str, config: dict[str, Any]) -> str:
    """`` (kernel 3, stride 1, padding 1, no bias)``: what of the configuration shapes the numbers."""
    declared = kind(layer)
    takes, words = declared.signature, []
    if "kernel_size" in takes:
        noun = "window" if declared.windows is not None else "kernel"
        words.append(f"{noun} {_short(setting(declared, config, 'kernel_size'))}")
    if "stride" in takes:
        words.append(f"stride {_short(setting(declared, config, 'stride'))}")  # None: the window's
    if "padding" in takes:
        words.append(f"padding {_short(setting(declared, config, 'padding'))}")
    if "bias" in takes and not config.get("bias", True):
        words.append("no bias")
    return f" ({', '.join(words)})" if words else ""


def kink_words(layer: str, config: dict[str, Any], x: np.ndarray, tensor: str, index: tuple[int, ...]) -> str:
    """What is special about the failing element: a tie or near-tie of its pooling window, a ReLU
    input exactly 0."""
    from reference.report.heatmap import kink_cells

    declared = kind(layer)
    if "zeros" in declared.kink_needs and tensor == "dx" and x.shape and len(index) == x.ndim and x[index] == 0:
        return " (x = 0 there: the kink)"
    if not declared.window_max or tensor not in ("dx", "out"):
        return ""
    shape = x.shape if tensor == "dx" else out_shape(layer, config, x.shape)
    marks = kink_cells(layer, config, x, shape)
    if len(index) != len(shape):
        return ""
    if marks["tie"][index]:
        return " (a tie)"
    return " (a near-tie)" if marks["near_tie"][index] else ""


def describe(found: Found) -> str:
    """One line a student can check by hand: the shrunk input, its weights and upstream gradient, and
    the failing element against torch's."""
    if found.case is None or found.row is None or found.case.given is None:
        why = f" (stopped: {found.stopped})" if found.stopped else ""
        return f"nothing smaller than {found.from_case} fails the same way ({found.calls} calls){why}"
    given, case, row = found.case.given, found.case, found.row
    dtype = ", float32" if found.dtype == "float32" else ""
    parts = [
        input_words(case.layer, case.input_shape) + config_words(case.layer, case.config) + dtype,
        f"x = {array_text(given.x)}",
    ]
    parts += [f"{k} = {array_text(v)}" for k, v in given.params.items()]
    if given.g is not None:
        parts.append("g = 1 everywhere" if np.all(given.g == 1) else f"g = {array_text(given.g)}")
    if given.labels is not None:
        parts.append(f"labels = {array_text(given.labels)}")
    text = ", ".join(parts)
    index_text = str(row.get("worst_index") or "")
    index = tuple(int(i) for i in re.findall(r"-?\d+", index_text))
    ours, ref = row.get("ours"), row.get("ref")
    if row.get("status") == "fail" and index_text and _number(ours) and _finite(ref):
        from reference.report.tables import telling

        a, b = telling(float(ours), float(ref))  # type: ignore[arg-type]
        where = f"{row['tensor']}[{', '.join(map(str, index))}]"
        text += f": {where} = {a} where torch gives {b}"
        text += kink_words(case.layer, case.config, given.x, str(row["tensor"]), index)
    else:
        text += f": {row['tensor']}: {row.get('note')}"
    return text


def _number(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return _number(v) and math.isfinite(float(v))


def table(found: list[Found]) -> pd.DataFrame:
    """One row per shrunk layer (``case`` empty where nothing smaller failed the same way)."""
    rows = []
    for f in found:
        r = f.row or {}
        rows.append({"layer": f.layer, "dtype": f.dtype, "tensor": f.tensor, "status": r.get("status", f.target[1]),
                     "diagnosis": r.get("diagnosis") if isinstance(r.get("diagnosis"), str) else "", "description": describe(f),
                     "case": f.case.id if f.case is not None else "", "from_case": f.from_case,
                     "numbers": f.case.given.count() if f.case is not None and f.case.given is not None else 0,
                     "calls": f.calls, "seconds": round(f.seconds, 2), "steps": "; ".join(f.steps),
                     "worst_index": r.get("worst_index", ""), "ours": r.get("ours", np.nan),
                     "ref": r.get("ref", np.nan)})  # fmt: skip
    return pd.DataFrame(rows, columns=TABLE)
