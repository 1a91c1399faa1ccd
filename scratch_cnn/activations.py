"""Element-wise activations: ReLU, LeakyReLU, Sigmoid, Tanh (any input rank >= 1, in the input's dtype)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._validate import check_array
from .layer import Layer


def _check_any_rank(layer: str, x: object) -> np.ndarray:
    """A finite float32/float64 ndarray of rank >= 1 (the element-wise layers take any shape)."""
    if isinstance(x, np.ndarray) and x.ndim >= 1:
        return check_array(layer, x, rank=x.ndim)
    return check_array(layer, x, rank=1)


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (any shape, float) -> (max(x, 0), mask of x > 0)."""
    # NOTE: the mask is x > 0, not x >= 0: ReLU'(0) = 0, torch's convention at the kink.
    mask = x > 0
    return np.maximum(x, x.dtype.type(0)), mask


def relu_backward(dout: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """dout * 1[x > 0] (a multiply by the boolean mask: np.where is several times slower here)."""
    return dout * mask


class ReLU(Layer):
    """Rectified linear unit, any input rank >= 1."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_any_rank("ReLU", x)
        out, mask = relu_forward(x)
        return self._remember(out, mask)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return relu_backward(dout, self._recall(dout))


def leaky_relu_forward(x: np.ndarray, negative_slope: float) -> tuple[np.ndarray, np.ndarray]:
    """x -> (x where x > 0 else negative_slope * x, the local slope (1 or negative_slope) per element).

    # NOTE: the positive branch is x > 0, so LeakyReLU'(0) = negative_slope: torch's convention
    # (autograd of F.leaky_relu at exactly 0 gives negative_slope; tests/test_new_layers.py checks it).
    """
    slope = np.where(x > 0, x.dtype.type(1), x.dtype.type(negative_slope))
    return x * slope, slope


def leaky_relu_backward(dout: np.ndarray, slope: np.ndarray) -> np.ndarray:
    return dout * slope


class LeakyReLU(Layer):
    """``x if x > 0 else negative_slope * x``, any input rank >= 1."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        if (
            not isinstance(negative_slope, (int, float, np.floating, np.integer))
            or isinstance(negative_slope, bool)
            or not math.isfinite(negative_slope)
        ):
            raise ValueError(f"LeakyReLU: expected negative_slope to be a finite number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_any_rank("LeakyReLU", x)
        out, slope = leaky_relu_forward(x, self.negative_slope)
        return self._remember(out, slope)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return leaky_relu_backward(dout, self._recall(dout))


def sigmoid_forward(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), stable for large |x|.

    # NOTE: exp is only ever taken of -|x| <= 0, so it cannot overflow (it underflows to 0 for
    # |x| beyond ~745 in float64, ~104 in float32, and the result is then exactly 0 or 1):
    # for x >= 0, 1 / (1 + e); for x < 0, e / (1 + e), with e = exp(-|x|).
    """
    e = np.exp(-np.abs(x))
    one = x.dtype.type(1)
    return np.where(x >= 0, one, e) / (one + e)


def sigmoid_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """dout * s (1 - s), from the forward's output s."""
    return dout * (out * (out.dtype.type(1) - out))


class Sigmoid(Layer):
    """Logistic sigmoid, any input rank >= 1; backward from the forward's output."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_any_rank("Sigmoid", x)
        out = sigmoid_forward(x)
        return self._remember(out, out)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return sigmoid_backward(dout, self._recall(dout))


def tanh_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """dout * (1 - t^2), from the forward's output t."""
    return dout * (out.dtype.type(1) - out * out)


class Tanh(Layer):
    """Hyperbolic tangent (np.tanh, which saturates to +-1 without overflow), any input rank >= 1."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_any_rank("Tanh", x)
        out = np.tanh(x)
        return self._remember(out, out)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return tanh_backward(dout, self._recall(dout))
