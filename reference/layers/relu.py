"""ReLU: max(x, 0) on an input of any shape; ReLU'(0) = 0 (torch's), or as the layer declares (any
value in [0, 1], its subdifferential)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

import scratch_cnn
from reference.layers.case import VALUE_KINDS, Case, make_values
from reference.layers.faulty import Fault
from reference.layers.kind import Config, Convention, LayerKind, Shape

NAME = "ReLU"
SHAPES = [(7,), (4, 7), (2, 3, 5), (2, 5, 5, 3), (2, 3, 2, 4, 3)]  # rank 1 to 5


def twin(config: Config) -> Any:
    from torch import nn

    return nn.ReLU()


def family(config: Config, shape: Shape) -> str:
    return f"rank {len(shape)}"


def main_cases() -> list[Case]:
    return [
        Case(NAME, {}, shape, values, seed=i)
        for i, (shape, values) in enumerate(itertools.product(SHAPES, VALUE_KINDS))
    ]


def tutorial_cases() -> list[Case]:
    return [Case(NAME, {}, (2, 26, 26, 8), "zeros", seed=605, tag="tutorial")]


def lifecycle() -> list[Case]:
    return [Case(NAME, {}, (2, 4, 4, 3), "noise", seed=508, then=((2, 4, 4, 3), "zeros", 509)),
            Case(NAME, {}, (2, 4, 4, 3), "noise", seed=509, then=((3, 5), "zeros", 510))]  # fmt: skip


def candidates() -> list[Case]:
    shapes = [(2, 6, 6, 2), (2, 6), (1, 6, 6, 1), (6,), (2, 6, 6)]
    return [Case(NAME, {}, shape, "zeros", seed=700 + i, tag="searched") for i, shape in enumerate(shapes)]


def secret(rng: np.random.Generator, seed: int) -> list[Case]:
    """A case of random rank and sizes whose input has a positive element and an exact zero (drawn
    again until it has: a ReLU case whose every input is <= 0 compares two zero tensors)."""
    while True:
        shape = tuple(int(n) for n in rng.integers(2, 7, int(rng.integers(1, 5))))
        x = make_values(np.random.default_rng([seed, 7]), shape, "zeros")
        if (x > 0).any() and (x == 0).any():
            return [Case(NAME, {}, shape, "zeros", seed, tag="secret")]
        seed += 1


def strategy() -> Any:
    from hypothesis import strategies as st

    @st.composite
    def relu(draw: Any) -> Case:
        shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=5)))
        return Case(NAME, {}, shape, draw(st.sampled_from(VALUE_KINDS)), draw(st.integers(0, 2**16)))

    return relu()


def _check_zero(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"declared ReLU'(0) = {value!r} is not a subgradient of ReLU at 0 (one in [0, 1])")
    return float(value) != 0.0


def _at_zero(x: np.ndarray, g: np.ndarray, config: Config, value: float) -> np.ndarray:
    return np.where(x > 0, g, 0.0) + np.where(x == 0, float(value) * g, 0.0)


# --- the catalogue's faults, written against this kind ----------------------------------------


class ReLUGradOneAtZero(scratch_cnn.ReLU):
    def forward(self, x: np.ndarray) -> np.ndarray:
        out = super().forward(x)
        self._cache = x >= 0  # wrong: ReLU'(0) taken as 1
        return out


def faults(build: Any) -> list[Any]:
    return [Fault("relu_grad_one_at_zero", "ReLU'(0) = 1 instead of 0", lambda: build(ReLU=ReLUGradOneAtZero),
                  lambda c, t, s: c.layer == NAME and t == "dx" and s["zeros"] > 0)]  # fmt: skip


KIND = LayerKind(
    per_sample=True,
    name=NAME,
    network_values="zeros",
    twin=twin,
    family=family,
    cases={"main": main_cases, "tutorial": tutorial_cases},
    lifecycle=lifecycle,
    smoke=({}, (2, 4, 4, 2)),
    smoke_alternatives=(({}, (2, 6)), ({}, (1, 4, 4, 1))),
    candidates=candidates,
    secret=secret,
    strategy=strategy,
    kink_needs=("zeros",),
    conventions=(Convention("relu_grad_at_zero", _check_zero, _at_zero, lambda v: f"ReLU'(0) = {float(v):g}"),),
    flops=lambda config, shape: int(np.prod(shape)),
    faults=faults,
    pointwise=True,
)
