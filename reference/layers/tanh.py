"""Tanh on any input; its gradient 1 - tanh^2 from the forward's output."""

from __future__ import annotations

from typing import Any

import numpy as np

import scratch_cnn
from reference.layers import elementwise
from reference.layers.case import upstream_gradient
from reference.layers.faulty import Fault
from reference.layers.kind import Config, LayerKind

NAME = "Tanh"


def twin(config: Config) -> Any:
    from torch import nn

    return nn.Tanh()


class TanhGradFromInput(scratch_cnn.Tanh):
    """tanh'(x) computed as 1 - x^2 (from x, not from tanh(x))."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return super().forward(x)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        super().backward(dout)
        return dout * (1 - self._x**2)


def grad_from_input(config: Config, inputs: dict[str, Any], ours: dict[str, Any]) -> dict[str, np.ndarray]:
    """The diagnosis' hypothesis: dx = g (1 - x^2), float64."""
    x = np.asarray(inputs["x"], dtype=np.float64)
    return {"dx": upstream_gradient(inputs, x.shape).astype(np.float64) * (1 - x**2)}


def faults(build: Any) -> list[Any]:
    return [Fault("tanh_grad_from_input", "tanh' computed as 1 - x^2 instead of 1 - tanh(x)^2",
                  lambda: build(Tanh=TanhGradFromInput), lambda c, t, s: c.layer == NAME and t == "dx" and c.values != "tiny")]  # fmt: skip
    # NOTE: at |x| ~ 1e-4, 1 - x^2 and 1 - tanh(x)^2 differ by (2/3) x^4 ~ 1e-16: within any tolerance


KIND = LayerKind(
    per_sample=True,
    **elementwise.shared_fields(NAME, 530),
    twin=twin,
    faults=faults,
    variants={
        "grad_from_input": ("tanh' computed from the input, 1 - x^2, where 1 - tanh(x)^2 is meant", grad_from_input)
    },
)
