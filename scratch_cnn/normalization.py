"""Batch normalisation over the channel (last) axis: BatchNorm1D on (m, n), BatchNorm2D on NHWC (m, H, W, C)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ._validate import check_array, check_dtype_matches, float_dtype, positive_int
from .layer import Layer


class BatchNormCache(NamedTuple):
    xhat: np.ndarray  # the normalised input, x's shape
    inv_std: np.ndarray  # (C,): 1 / sqrt(var + eps), var the batch's (training) or the running one (eval)
    batch_stats: bool  # True: normalised by the batch's own statistics (training mode)


def batchnorm_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float,
    momentum: float,
    training: bool,
) -> tuple[np.ndarray, BatchNormCache]:
    """x (..., C) -> gamma * xhat + beta, statistics per channel over every other axis.

    Training: xhat = (x - mean) / sqrt(var + eps) with the batch's mean and BIASED variance, and
    the running statistics move in place (torch's rule): ``running = (1 - momentum) * running +
    momentum * batch``, with the UNBIASED variance (times n / (n - 1)) going into running_var.
    Eval: xhat = (x - running_mean) / sqrt(running_var + eps), nothing updated.

    # NOTE: the variance is the mean of squared deviations from the mean (two passes), never
    # E[x^2] - E[x]^2, which cancels catastrophically for values around 1e4 with a small spread. The
    # deviations are corrected by their own mean (the first mean's rounding error, which in float32
    # near 1e4 is comparable to a small spread; x - mean is exact there, so the correction is
    # accurate). A constant channel has variance 0 and xhat = 0 / sqrt(eps) = 0: finite.
    """
    dt = x.dtype.type
    if training:
        n = x.size // x.shape[-1]
        mean = _rows(x).mean(axis=0)
        xc = x - mean
        shift = _rows(xc).mean(axis=0)  # the rounding error of the first mean (corrected two-pass)
        xc -= shift
        mean += shift
        var = _dot_rows(xc, xc) / dt(n)
        running_mean *= dt(1 - momentum)
        running_mean += dt(momentum) * mean
        running_var *= dt(1 - momentum)
        running_var += dt(momentum) * (var * dt(n / (n - 1)))
    else:
        xc = x - running_mean
        var = running_var
    inv_std = dt(1) / np.sqrt(var + dt(eps))
    xhat = xc
    xhat *= inv_std  # in place: xc is this function's own array
    out = xhat * gamma
    out += beta
    return out, BatchNormCache(xhat, inv_std, training)


def batchnorm_backward(
    dout: np.ndarray, gamma: np.ndarray, cache: BatchNormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout (..., C) -> (dx, dgamma (C,), dbeta (C,)).

    Through the batch statistics (training), the full formula with n values per channel:
    ``dx = gamma * inv_std / n * (n * dout - sum(dout) - xhat * sum(dout * xhat))``;
    through the fixed running statistics (eval): ``dx = gamma * inv_std * dout``.
    """
    xhat, inv_std, batch_stats = cache
    dbeta = _rows(dout).sum(axis=0)
    dgamma = _dot_rows(dout, xhat)
    scale = gamma * inv_std
    if not batch_stats:
        return dout * scale, dgamma, dbeta
    n = dout.dtype.type(dout.size // dout.shape[-1])
    dx = xhat * (dgamma / n)
    dx += dbeta / n
    np.subtract(dout, dx, out=dx)
    dx *= scale
    return dx, dgamma, dbeta


def _rows(a: np.ndarray) -> np.ndarray:
    """(..., C) -> (n, C): a view where a is contiguous (every array here is), so reductions run over axis 0."""
    return a.reshape(-1, a.shape[-1])


def _dot_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per channel sum of a * b over every other axis, (C,), without the product's temporary array."""
    return np.einsum("ij,ij->j", _rows(a), _rows(b))


class _BatchNorm(Layer):
    """Shared body: params ``gamma`` (1s) and ``beta`` (0s), buffers ``running_mean`` (0s) and
    ``running_var`` (1s), all (C,) in ``dtype``; statistics over every axis but the last."""

    rank = 0
    layout = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, *, dtype: Any = np.float32) -> None:
        super().__init__()
        self.num_features = positive_int(self.name, "num_features", num_features)
        if not _real(eps) or not eps > 0:
            raise ValueError(f"{self.name}: expected eps > 0, got {eps!r}")
        if not _real(momentum) or not 0 <= momentum <= 1:
            raise ValueError(f"{self.name}: expected momentum in [0, 1], got {momentum!r}")
        self.eps, self.momentum = float(eps), float(momentum)
        dt = float_dtype(self.name, dtype)
        C = self.num_features
        self.params = {"gamma": np.ones(C, dtype=dt), "beta": np.zeros(C, dtype=dt)}
        self.buffers = {"running_mean": np.zeros(C, dtype=dt), "running_var": np.ones(C, dtype=dt)}

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (m, n) or (m, H, W, C) -> the same shape and dtype."""
        check_array(self.name, x, rank=self.rank)
        if x.shape[-1] != self.num_features:
            raise ValueError(
                f"{self.name}: expected {self.layout} input with {self.num_features} channels in the last axis, "
                f"got shape {x.shape}"
            )
        check_dtype_matches(self.name, x, self.params["gamma"])
        for key, value in self.buffers.items():
            if value.dtype != x.dtype or value.shape != (self.num_features,):
                raise ValueError(
                    f"{self.name}: buffer {key} is {value.dtype} {value.shape}, expected {x.dtype} "
                    f"({self.num_features},); convert the layer with .astype(np.{x.dtype})"
                )
        training = bool(self.training)
        if training and x.size // self.num_features <= 1:
            raise ValueError(
                f"{self.name}: expected more than 1 value per channel when training, got input shape {x.shape} "
                "(use a larger batch, or eval mode)"
            )
        out, cache = batchnorm_forward(
            x,
            self.params["gamma"],
            self.params["beta"],
            self.buffers["running_mean"],
            self.buffers["running_var"],
            self.eps,
            self.momentum,
            training,
        )
        return self._remember(out, cache)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout -> dx; fills grads gamma and beta (C,). Follows the mode the forward ran in."""
        cache = self._recall(dout)
        dx, dgamma, dbeta = batchnorm_backward(dout, self.params["gamma"], cache)
        self.grads = {"gamma": dgamma, "beta": dbeta}
        return dx


class BatchNorm1D(_BatchNorm):
    """Batch normalisation of (m, n) features (torch.nn.BatchNorm1d on 2-D input)."""

    rank = 2
    layout = "(m, n)"


class BatchNorm2D(_BatchNorm):
    """Batch normalisation of NHWC images (m, H, W, C), per channel over (m, H, W) (torch.nn.BatchNorm2d)."""

    rank = 4
    layout = "NHWC (m, H, W, C)"


def _real(value: object) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )
