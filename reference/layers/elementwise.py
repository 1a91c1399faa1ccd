"""What the elementwise activations courses add share (Sigmoid, Tanh, LeakyReLU): any input shape,
their cases and search. Each declares itself in its own module with what is its own."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from reference.layers.case import Case, make_values

SHAPES = [(7,), (4, 7), (2, 3, 5), (2, 5, 5, 3), (2, 3, 2, 4, 3)]  # rank 1 to 5
VALUES = ("noise", "zeros", "spread", "tiny", "ties")  # spread: half of |x| ~ 1e3, where a naive exp overflows


def main_cases(name: str, seed0: int) -> list[Case]:
    return [
        Case(name, {}, shape, values, seed=seed0 + i)
        for i, (shape, values) in enumerate(itertools.product(SHAPES, VALUES))
    ]


def lifecycle(name: str, seed: int) -> list[Case]:
    """Two rounds: the same shape, then another rank."""
    return [Case(name, {}, (2, 4, 4, 3), "noise", seed=seed, then=((2, 4, 4, 3), "zeros", seed + 1)),
            Case(name, {}, (2, 4, 4, 3), "noise", seed=seed + 1, then=((3, 5), "spread", seed + 2))]  # fmt: skip


def candidates(name: str) -> list[Case]:
    shapes = [(2, 6, 6, 2), (2, 6), (1, 6, 6, 1), (6,)]
    return [Case(name, {}, shape, "zeros", seed=700 + i, tag="searched") for i, shape in enumerate(shapes)]


def secret(name: str, rng: np.random.Generator, seed: int) -> list[Case]:
    """A case of random rank and sizes with a positive element (so an output compares something)."""
    while True:
        shape = tuple(int(n) for n in rng.integers(2, 7, int(rng.integers(1, 5))))
        values = str(rng.choice(["noise", "zeros", "spread"]))
        if (make_values(np.random.default_rng([seed, 7]), shape, values) > 0).any():
            return [Case(name, {}, shape, values, seed, tag="secret")]
        seed += 1


def strategy(name: str) -> Any:
    from hypothesis import strategies as st

    @st.composite
    def case(draw: Any) -> Case:
        shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
        return Case(name, {}, shape, draw(st.sampled_from(VALUES)), draw(st.integers(0, 2**16)))

    return case()


def shared_fields(name: str, lifecycle_seed: int) -> dict[str, Any]:
    """The LayerKind fields an elementwise activation without a configuration shares (Sigmoid, Tanh):
    optional, any rank, its cases, search and secret cases."""
    return {
        "name": name, "optional": True, "family": lambda config, shape: f"rank {len(shape)}",
        "cases": {"main": lambda: main_cases(name, 0)}, "lifecycle": lambda: lifecycle(name, lifecycle_seed),
        "smoke": ({}, (2, 4, 4, 2)), "smoke_alternatives": (({}, (2, 6)),),
        "candidates": lambda: candidates(name), "secret": lambda rng, seed: secret(name, rng, seed),
        "strategy": lambda: strategy(name), "flops": lambda config, shape: 4 * int(np.prod(shape)),
        "pointwise": True,
    }  # fmt: skip
