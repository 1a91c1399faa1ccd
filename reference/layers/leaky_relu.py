"""LeakyReLU(negative_slope): x where x > 0, else negative_slope * x; LeakyReLU'(0) = negative_slope
(torch's: the positive branch is x > 0)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

import scratch_cnn
from reference.layers import elementwise
from reference.layers.case import Case
from reference.layers.faulty import Fault
from reference.layers.kind import Config, LayerKind

NAME = "LeakyReLU"
SLOPES = (0.01, 0.2, -0.5)


def twin(config: Config) -> Any:
    from torch import nn

    return nn.LeakyReLU(config.get("negative_slope", 0.01))


def main_cases() -> list[Case]:
    space = itertools.product(elementwise.SHAPES, ("noise", "zeros", "ties", "large"), SLOPES)
    return [
        Case(NAME, {"negative_slope": slope}, shape, values, seed=i) for i, (shape, values, slope) in enumerate(space)
    ]


class LeakyReLUGradOneAtZero(scratch_cnn.LeakyReLU):
    """The positive branch taken as x >= 0: LeakyReLU'(0) = 1 where torch gives negative_slope."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        slope = np.where(x >= 0, x.dtype.type(1), x.dtype.type(self.negative_slope))
        return self._remember(x * slope, slope)


def faults(build: Any) -> list[Any]:
    return [Fault("leaky_relu_grad_one_at_zero", "LeakyReLU'(0) = 1 instead of negative_slope",
                  lambda: build(LeakyReLU=LeakyReLUGradOneAtZero),
                  lambda c, t, s: c.layer == NAME and t == "dx" and s["zeros"] > 0)]  # fmt: skip


KIND = LayerKind(
    per_sample=True,
    name=NAME,
    optional=True,
    signature=("negative_slope",),
    defaults={"negative_slope": 0.01},
    twin=twin,
    family=lambda config, shape: f"slope {config.get('negative_slope', 0.01):g}",
    cases={"main": main_cases},
    lifecycle=lambda: [
        Case(NAME, {"negative_slope": 0.2}, c.input_shape, c.values, c.seed, then=c.then)
        for c in elementwise.lifecycle(NAME, 540)
    ],  # fmt: skip
    smoke=({"negative_slope": 0.01}, (2, 4, 4, 2)),
    smoke_alternatives=(({}, (2, 4, 4, 2)), ({"negative_slope": 0.01}, (2, 6))),
    candidates=lambda: [
        Case(NAME, {"negative_slope": 0.01}, c.input_shape, c.values, c.seed, c.tag)
        for c in elementwise.candidates(NAME)
    ],  # fmt: skip
    secret=lambda rng, seed: [
        Case(NAME, {"negative_slope": float(np.round(rng.uniform(-1, 0.5), 3))}, c.input_shape, c.values, c.seed, c.tag)
        for c in elementwise.secret(NAME, rng, seed)
    ],  # fmt: skip
    kink_needs=("zeros",),
    flops=lambda config, shape: int(np.prod(shape)),
    pointwise=True,
    network_values="zeros",
    faults=faults,
)
