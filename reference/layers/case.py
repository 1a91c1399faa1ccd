"""A case: one layer configuration and one input, and the values it is drawn from. Knows nothing of
any layer kind (reference.layers declares those, reference.cases.grid puts them together)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

VALUE_KINDS = ("noise", "zeros", "ties", "near_ties", "large", "tiny", "mnist")  # the blog's layers cycle through these
# kinds of values some layers add: saturating activations (spread), batch norm (offset, constant), pool edges (rising)
MORE_VALUE_KINDS = ("spread", "offset", "constant", "rising")
# tags of the cases every run keeps (quick runs too): each is a class of bug no other case shows
KEPT_FAMILIES = {
    "per-axis": "kernel and stride differ per axis",
    "edge": "edges of the domain",
    "tutorial": "the shapes of tutorials",
    "searched": "found inside what the layer supports",
    "batch": "training batch sizes",
    "secret": "drawn from the secret seed",
}


@dataclass(frozen=True)
class Case:
    """One layer configuration and one input. ``input_shape`` is NHWC (or (m, n) for Dense/loss)."""

    layer: str
    config: dict[str, Any] = field(hash=False)
    input_shape: tuple[int, ...]
    values: str = "noise"
    seed: int = 0
    tag: str = ""  # where the case comes from when not the plain grid: "lenet", "seed", "tiny" (a layer's shape there)
    then: tuple[tuple[int, ...], str, int] | None = None  # lifecycle: the second round's (input_shape, values, seed)

    @property
    def id(self) -> str:
        parts = [f"{k}={_short(v)}" for k, v in self.config.items()]
        text = f"{self.layer}[{','.join(parts)}] x{'x'.join(map(str, self.input_shape))} {self.values} s{self.seed}"
        if self.then is not None:
            shape, values, seed = self.then
            text += f" then x{'x'.join(map(str, shape))} {values} s{seed}"
        return text

    @property
    def network_layer(self) -> bool:
        """A layer shape of a built-in network (large: probed on a subset)."""
        return bool(self.tag) and self.tag not in KEPT_FAMILIES

    @property
    def lifecycle(self) -> bool:
        return self.then is not None

    def second(self) -> Case:
        """The second round of a lifecycle case, as a case of its own (what a fresh instance sees)."""
        assert self.then is not None
        shape, values, seed = self.then
        return Case(self.layer, self.config, shape, values, seed, self.tag)


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


def input_values(case: Case) -> np.ndarray:
    """The case's input, float64: the first draw of its generator (reference.cases.grid.case_inputs draws
    the parameters and labels after it from the same one)."""
    return make_values(np.random.default_rng([case.seed, 7]), case.input_shape, case.values)


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
    if kind == "spread":  # every other element |x| ~ 1e3 (a naive exp overflows), the others in [-4, 4]
        # NOTE: saturating activations (sigmoid, tanh) have a gradient of exactly 0 at |x| ~ 1e3, so the
        # moderate elements (the first among them) keep a case's gradient comparison from being vacuous.
        values = rng.uniform(-4, 4, shape)
        values.reshape(-1)[1::2] = rng.uniform(-1, 1, values.size)[1::2] * 1e3
        return values
    if kind == "tiny":
        return rng.uniform(-1, 1, shape) * 1e-4
    if kind == "rising":  # along the width axis: each window's maximum is its last element (edge cases only)
        return np.linspace(0, 1, shape[2]).reshape(1, 1, -1, 1) + 1e-3 * rng.uniform(-1, 1, shape)
    if kind == "offset":  # large offsets, small spread: where E[x^2] - E[x]^2 cancels (batch norm)
        return 1e4 + rng.uniform(-1, 1, shape)
    if kind == "constant":  # every other channel (the last axis, from the first) constant: a variance of 0 (batch norm)
        # NOTE: the constants are k/4: any sum of them is exact and so is its mean, in float32 too, so
        # x - mean is exactly 0 on those channels for any summation order (a constant like 0.1 leaves
        # rounding noise there that one implementation divides by sqrt(eps) and another does not).
        values = rng.uniform(-1, 1, shape)
        values[..., ::2] = rng.integers(-4, 5, shape[-1:])[::2] / 4
        return values
    if kind == "mnist":  # quantised like MNIST pixels: mostly exact zeros, levels k/255
        return np.where(rng.random(shape) < 0.7, 0.0, rng.integers(1, 256, shape) / 255.0)
    raise ValueError(f"unknown value kind {kind!r}; expected one of {VALUE_KINDS + MORE_VALUE_KINDS}")


def as_pair(v: Any) -> tuple[int, int]:
    """``3`` -> (3, 3); ``(2, 3)`` or ``[2, 3]`` -> (2, 3)."""
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def cycle(seq: list[Any], i: int) -> Any:
    return seq[i % len(seq)]


def upstream_gradient(inputs: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
    """The case's fixed random upstream gradient (the projection vector g), of the input's dtype; the
    case's own ``g`` where it carries one of this shape (a shrunk case)."""
    if inputs.get("g") is not None and np.shape(inputs["g"]) == tuple(shape):
        return np.array(inputs["g"], dtype=inputs["x"].dtype)
    return np.random.default_rng(inputs["g_seed"]).standard_normal(shape).astype(inputs["x"].dtype)
