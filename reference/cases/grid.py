"""The cases every judge runs: a fixed grid over every layer option, hypothesis strategies over the
same space, and input values that exercise the kinks (exact zeros, exact ties, near-ties)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

VALUE_KINDS = ("noise", "zeros", "ties", "near_ties", "large", "tiny", "mnist")


@dataclass(frozen=True)
class Case:
    """One layer configuration and one input. ``input_shape`` is NHWC (or (m, n) for Dense/loss)."""

    layer: str
    config: dict[str, Any] = field(hash=False)
    input_shape: tuple[int, ...]
    values: str = "noise"
    seed: int = 0

    @property
    def id(self) -> str:
        parts = [f"{k}={_short(v)}" for k, v in self.config.items()]
        return f"{self.layer}[{','.join(parts)}] x{'x'.join(map(str, self.input_shape))} {self.values} s{self.seed}"


def _short(v: Any) -> str:
    return "x".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)


def make_values(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """float64 values of one of VALUE_KINDS (cast to the case's dtype by the caller; all kinds are
    exactly representable in float32 where it matters: ties are small integers). An input is never
    all zeros (a case on all zeros would prove nothing)."""
    values = _draw_values(rng, shape, kind)
    if values.size and not values.any():
        values.reshape(-1)[0] = 1.0  # reshape of a fresh array is a view
    return values


def _draw_values(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    if kind == "noise":
        return rng.uniform(-1, 1, shape)
    if kind == "zeros":
        return np.where(rng.random(shape) < 0.5, 0.0, rng.uniform(-1, 1, shape))
    if kind == "ties":
        return rng.integers(-2, 3, shape).astype(np.float64)
    if kind == "near_ties":  # ties broken by offsets of a few 1e-6: closer than 1e-5, still distinct in float32
        return rng.integers(-2, 3, shape) + 1e-6 * rng.integers(-3, 4, shape)
    if kind == "large":
        return rng.uniform(-1, 1, shape) * 1e3
    if kind == "tiny":
        return rng.uniform(-1, 1, shape) * 1e-4
    if kind == "mnist":  # quantised like MNIST pixels: mostly exact zeros, levels k/255
        return np.where(rng.random(shape) < 0.7, 0.0, rng.integers(1, 256, shape) / 255.0)
    raise ValueError(f"unknown value kind {kind!r}; expected one of {VALUE_KINDS}")


def case_inputs(case: Case, dtype: str) -> dict[str, Any]:
    """Deterministic input, parameters and labels of a case (float64 draws cast to ``dtype``)."""
    rng = np.random.default_rng([case.seed, 7])
    x = make_values(rng, case.input_shape, case.values).astype(dtype)
    params = {}
    if case.layer == "Conv2D":
        c = case.config
        k = c["kernel_size"] if isinstance(c["kernel_size"], (tuple, list)) else (c["kernel_size"],) * 2
        params["W"] = (rng.standard_normal((*k, c["in_ch"], c["out_ch"])) * 0.5).astype(dtype)
        if c.get("bias", True):
            params["b"] = rng.uniform(-1, 1, c["out_ch"]).astype(dtype)
    elif case.layer == "Dense":
        c = case.config
        params["W"] = (rng.standard_normal((c["n_in"], c["n_out"])) * 0.5).astype(dtype)
        if c.get("bias", True):
            params["b"] = rng.uniform(-1, 1, c["n_out"]).astype(dtype)
    labels = rng.integers(0, case.input_shape[-1], case.input_shape[0]) if case.layer == "SoftmaxCrossEntropy" else None
    return {"x": x, "params": params, "labels": labels, "g_seed": [case.seed, 11]}


def upstream_gradient(inputs: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
    """The case's fixed random upstream gradient (the projection vector g), of the input's dtype."""
    return np.random.default_rng(inputs["g_seed"]).standard_normal(shape).astype(inputs["x"].dtype)


def pool_window_ties(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int]:
    """(windows whose maximum occurs more than once, windows whose top two differ by < 1e-5 but not 0)."""
    if x.ndim != 4 or x.shape[1] < kernel[0] or x.shape[2] < kernel[1]:
        return 0, 0
    w = sliding_window_view(x, kernel, axis=(1, 2))[:, :: stride[0], :: stride[1]]
    w = w.reshape(*w.shape[:4], -1)
    if w.shape[-1] < 2:
        return 0, 0
    top2 = np.sort(w, axis=-1)[..., -2:]
    gap = top2[..., 1] - top2[..., 0]
    return int((gap == 0).sum()), int(((gap > 0) & (gap < 1e-5)).sum())


def input_stats(case: Case, x: np.ndarray) -> dict[str, int]:
    """How many exact zeros, ties and near-ties the input has (so a row that never hit a branch shows)."""
    stats = {"zeros": int((x == 0).sum()), "ties": 0, "near_ties": 0}
    if case.layer in ("MaxPool2D", "AvgPool2D"):
        kernel = _as_pair(case.config.get("kernel_size", 2))
        stride = _as_pair(case.config.get("stride")) if case.config.get("stride") is not None else kernel
        stats["ties"], stats["near_ties"] = pool_window_ties(x, kernel, stride)
    return stats


def _as_pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _cycle(seq: list[Any], i: int) -> Any:
    return seq[i % len(seq)]


def conv_grid() -> list[Case]:
    kernels: list[Any] = [1, 2, 3, 4, 5, (2, 3), (3, 2)]
    paddings: list[Any] = ["same", "valid", 1, (2, 1)]
    cases = []
    for i, (k, s, p) in enumerate(
        (k, s, p) for k, s, p in itertools.product(kernels, [1, 2, 3], paddings) if not (p == "same" and s > 1)
    ):
        m, c_in, c_out = _cycle([1, 3], i), _cycle([1, 3, 2], i), _cycle([1, 4], i // 2)
        H = 7 + i % 3
        config = {"in_ch": c_in, "out_ch": c_out, "kernel_size": k, "stride": s, "padding": p, "bias": i % 3 != 2}
        cases.append(Case("Conv2D", config, (m, H, H + i % 2, c_in), _cycle(list(VALUE_KINDS), i), seed=i))
    return cases


def pool_grid(layer: str) -> list[Case]:
    kinds = ["ties", "noise", "near_ties", "mnist", "zeros"]
    cases = []
    for i, (k, s, H) in enumerate(itertools.product([1, 2, 3, (2, 3)], [None, 1, 2, 3], [6, 7])):
        config = {"kernel_size": k, "stride": s}
        cases.append(
            Case(layer, config, (_cycle([1, 2], i), H, H + 1, _cycle([1, 3], i // 2)), _cycle(kinds, i), seed=i)
        )
    return cases


def elementwise_grid() -> list[Case]:
    relu = [Case("ReLU", {}, shape, kind, seed=i)
            for i, (shape, kind) in enumerate(itertools.product([(2, 5, 5, 3), (4, 7)], VALUE_KINDS))]  # fmt: skip
    flatten = [Case("Flatten", {}, (1, 3, 4, 2), "noise", 0), Case("Flatten", {}, (3, 5, 2, 4), "mnist", 1)]
    return relu + flatten


def dense_grid() -> list[Case]:
    cases = []
    for i, (n_in, n_out, m, bias) in enumerate(itertools.product([1, 7], [1, 5], [1, 4], [True, False])):
        cases.append(
            Case("Dense", {"n_in": n_in, "n_out": n_out, "bias": bias}, (m, n_in), _cycle(list(VALUE_KINDS), i), i)
        )
    return cases


def loss_grid() -> list[Case]:
    return [Case("SoftmaxCrossEntropy", {}, shape, kind, seed=i)
            for i, (shape, kind) in enumerate(itertools.product([(1, 10), (8, 10), (5, 3)], ["noise", "ties", "large"]))]  # fmt: skip


def grid() -> list[Case]:
    """The fixed grid: every option of every layer."""
    return [*conv_grid(), *pool_grid("MaxPool2D"), *pool_grid("AvgPool2D"), *elementwise_grid(), *dense_grid(),
            *loss_grid()]  # fmt: skip


def sample(cases: list[Case], fraction: float, seed: int = 0) -> list[Case]:
    """A fixed random subset, for quick runs, that still holds every (layer, value kind) pair."""
    rng = np.random.default_rng(seed)
    keep = [c for c in cases if rng.random() < fraction]
    for key in dict.fromkeys((c.layer, c.values) for c in cases):
        if not any((c.layer, c.values) == key for c in keep):
            keep.append(next(c for c in cases if (c.layer, c.values) == key))
    return keep


def strategies() -> Any:
    """Hypothesis strategies over the same space as the grid: ``st.one_of`` of every layer's cases."""
    from hypothesis import strategies as st

    pair = st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4)))
    kind = st.sampled_from(VALUE_KINDS)
    seed = st.integers(0, 2**16)

    @st.composite
    def conv(draw: Any) -> Case:
        k = _as_pair(draw(pair))
        s = draw(st.integers(1, 3))
        p = draw(st.sampled_from(["valid", 0, 1, 2, (1, 2)] + (["same"] if s == 1 else [])))
        pads = _as_pair(p) if not isinstance(p, str) else (0, 0)
        H = draw(st.integers(max(1, k[0] - 2 * pads[0]), 8))
        W = draw(st.integers(max(1, k[1] - 2 * pads[1]), 8))
        c_in, c_out, m = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
        config = {
            "in_ch": c_in,
            "out_ch": c_out,
            "kernel_size": k,
            "stride": s,
            "padding": p,
            "bias": draw(st.booleans()),
        }
        return Case("Conv2D", config, (m, H, W, c_in), draw(kind), draw(seed))

    @st.composite
    def pool(draw: Any) -> Case:
        k = _as_pair(draw(pair))
        stride = draw(st.one_of(st.none(), st.integers(1, 3)))
        H, W = draw(st.integers(k[0], 8)), draw(st.integers(k[1], 8))
        layer = draw(st.sampled_from(["MaxPool2D", "AvgPool2D"]))
        return Case(layer, {"kernel_size": k, "stride": stride}, (draw(st.integers(1, 2)), H, W, draw(st.integers(1, 3))),
                    draw(st.sampled_from(["ties", "near_ties", "mnist", "noise"])), draw(seed))  # fmt: skip

    @st.composite
    def dense(draw: Any) -> Case:
        n_in, n_out = draw(st.integers(1, 9)), draw(st.integers(1, 9))
        return Case("Dense", {"n_in": n_in, "n_out": n_out, "bias": draw(st.booleans())}, (draw(st.integers(1, 5)), n_in),
                    draw(kind), draw(seed))  # fmt: skip

    @st.composite
    def relu(draw: Any) -> Case:
        shape = tuple(draw(st.lists(st.integers(1, 5), min_size=2, max_size=4)))
        return Case("ReLU", {}, shape, draw(kind), draw(seed))

    @st.composite
    def loss(draw: Any) -> Case:
        return Case("SoftmaxCrossEntropy", {}, (draw(st.integers(1, 6)), draw(st.integers(2, 10))),
                    draw(st.sampled_from(["noise", "ties", "large", "tiny"])), draw(seed))  # fmt: skip

    return st.one_of(conv(), pool(), dense(), relu(), loss())
