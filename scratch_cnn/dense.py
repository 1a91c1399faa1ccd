"""Flatten and the fully-connected layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validate import check_array, check_dtype_matches, positive_int
from .layer import Layer


class Flatten(Layer):
    """(m, H, W, C) -> (m, H*W*C) in NHWC order: index ``(i*W + j)*C + c``, channels fastest.

    # NOTE: torch flattens NCHW tensors with width fastest; a twin must permute to NHWC first.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.ndim < 2:
            check_array("Flatten", x, rank=4)
        check_array("Flatten", x, rank=x.ndim)
        return self._remember(x.reshape(x.shape[0], -1), x.shape)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self._recall(dout))


def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """x (m, n_in), W (n_in, n_out), b (n_out,) -> x @ W + b (m, n_out)."""
    out = x @ W
    if b is not None:
        out += b
    return out


def dense_backward(
    dout: np.ndarray, x: np.ndarray, W: np.ndarray, has_bias: bool, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """dout (m, n_out) -> (dx (m, n_in) or None when not ``need_dx``, dW (n_in, n_out), db (n_out,) or None)."""
    return (dout @ W.T if need_dx else None), x.T @ dout, (dout.sum(axis=0) if has_bias else None)


class Dense(Layer):
    """Fully-connected layer; params ``W`` (n_in, n_out) and ``b`` (n_out,)."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        bias: bool = True,
        *,
        init: str = "he",
        rng: np.random.Generator | None = None,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        self.n_in = positive_int("Dense", "n_in", n_in)
        self.n_out = positive_int("Dense", "n_out", n_out)
        self.bias = bool(bias)
        self._init_weights((self.n_in, self.n_out), self.n_in, self.n_out, self.bias, init, rng, dtype)

    def config(self) -> dict[str, Any]:
        return {"n_in": self.n_in, "n_out": self.n_out, "bias": self.bias}

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (m, n_in) -> (m, n_out), same dtype."""
        check_array("Dense", x, rank=2)
        if x.shape[1] != self.n_in:
            raise ValueError(f"Dense: expected {self.n_in} input features, got shape {x.shape}")
        check_dtype_matches("Dense", x, self.params["W"])
        out = dense_forward(x, self.params["W"], self.params.get("b"))
        return self._remember(out, x)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout (m, n_out) -> dx (m, n_in); fills grads W and b."""
        dx = self._backprop(dout, need_dx=True)
        assert dx is not None
        return dx

    def _backprop(self, dout: np.ndarray, need_dx: bool) -> np.ndarray | None:
        x = self._recall(dout)
        dx, dW, db = dense_backward(dout, x, self.params["W"], self.bias, need_dx)
        self.grads = {"W": dW} if db is None else {"W": dW, "b": db}
        return dx
