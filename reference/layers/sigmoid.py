"""Sigmoid: 1 / (1 + exp(-x)) on any input, computed without overflow for large |x|; its gradient
sigma (1 - sigma) from the forward's output."""

from __future__ import annotations

from typing import Any

import numpy as np

import scratch_cnn
from reference.layers import elementwise
from reference.layers.case import input_values
from reference.layers.faulty import Fault
from reference.layers.kind import Config, LayerKind

NAME = "Sigmoid"


def twin(config: Config) -> Any:
    from torch import nn

    return nn.Sigmoid()


class SigmoidOverflowing(scratch_cnn.Sigmoid):
    """The textbook exp(x) / (1 + exp(x)): inf / inf = NaN for large positive x."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(x)
            out = e / (1 + e)
        return self._remember(out, out)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        out = self._recall(dout)
        return dout * out * (1 - out)


class SigmoidGradOverflowing(scratch_cnn.Sigmoid):
    """The derivative written from exp(-x): exp(-x) / (1 + exp(-x))^2, inf / inf = NaN for large negative x."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return super().forward(x)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        super().backward(dout)
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(-self._x)
            return dout * e / (1 + e) ** 2


def faults(build: Any) -> list[Any]:
    def overflows(sign: float) -> Any:  # some exp(sign * x) of the case's input overflows in the row's dtype
        return lambda c, t, s: c.layer == NAME and float((sign * input_values(c)).max()) > EXP_OVERFLOW[s["dtype"]]

    return [Fault("sigmoid_overflowing", "sigmoid as exp(x) / (1 + exp(x)), NaN for large positive x",
                  lambda: build(Sigmoid=SigmoidOverflowing), overflows(1.0)),
            Fault("sigmoid_grad_overflowing", "sigmoid' as exp(-x) / (1 + exp(-x))^2, NaN for large negative x",
                  lambda: build(Sigmoid=SigmoidGradOverflowing), lambda c, t, s: overflows(-1.0)(c, t, s) and t == "dx")]  # fmt: skip


EXP_OVERFLOW = {"float64": float(np.log(np.finfo(np.float64).max)), "float32": float(np.log(np.finfo(np.float32).max))}


KIND = LayerKind(
    per_sample=True,
    **elementwise.shared_fields(NAME, 520),
    twin=twin,
    faults=faults,
)
