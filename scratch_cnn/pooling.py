"""Max and average pooling over NHWC images, no padding, floor output size (as torch)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._validate import check_array, pair
from .layer import Layer

Pair = tuple[int, int]


def pool_output_size(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def _offset_view(x: np.ndarray, a: int, b: int, stride: Pair, out_hw: Pair) -> np.ndarray:
    """The (m, Ho, Wo, C) strided view of ``x`` holding element (a, b) of every window."""
    (sh, sw), (Ho, Wo) = stride, out_hw
    return x[:, a : a + sh * (Ho - 1) + 1 : sh, b : b + sw * (Wo - 1) + 1 : sw, :]


def _blocks(x: np.ndarray, kernel: Pair, out_hw: Pair) -> np.ndarray:
    """Fast path (stride == kernel): a reshape view (m, Ho, kh, Wo, kw, C) of the covered region."""
    (kh, kw), (Ho, Wo) = kernel, out_hw
    m, C = x.shape[0], x.shape[3]
    return x[:, : Ho * kh, : Wo * kw, :].reshape(m, Ho, kh, Wo, kw, C)


class PoolCache(NamedTuple):
    x_shape: tuple[int, int, int, int]
    kernel: Pair
    stride: Pair
    winner: np.ndarray | None  # max pool: (m, Ho, Wo, C) index a*kw+b of the window's first maximum


def _window_views(x: np.ndarray, kernel: Pair, stride: Pair, out_hw: Pair) -> list[np.ndarray]:
    """The kh*kw (m, Ho, Wo, C) views of ``x``, one per window offset (a, b), in row-major order."""
    (kh, kw) = kernel
    blocks = _blocks(x, kernel, out_hw) if kernel == stride else None
    return [
        blocks[:, :, a, :, b, :] if blocks is not None else _offset_view(x, a, b, stride, out_hw)
        for a in range(kh)
        for b in range(kw)
    ]


def maxpool_forward(x: np.ndarray, kernel: Pair, stride: Pair) -> tuple[np.ndarray, PoolCache]:
    """x (m, H, W, C) -> out (m, Ho, Wo, C) with each window's maximum.

    # NOTE: ties go to the FIRST maximum in row-major window order (torch's rule): once the maximum is
    # known, the offsets are visited in row-major order and an offset takes a window only where it
    # equals the maximum and no earlier offset was found there.
    """
    m, H, W, C = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    Ho, Wo = pool_output_size(H, kh, sh), pool_output_size(W, kw, sw)
    views = _window_views(x, kernel, stride, (Ho, Wo))
    out = views[0].copy()
    for v in views[1:]:
        np.maximum(out, v, out=out)
    winner = np.zeros((m, Ho, Wo, C), dtype=np.uint8 if kh * kw <= 256 else np.int32)
    found = views[0] == out  # offset 0 is the winner (0) wherever it holds the maximum
    first = np.empty_like(found)
    for k in range(1, len(views)):
        np.equal(views[k], out, out=first)
        np.greater(first, found, out=first)  # on booleans: first & ~found, without a temporary
        found |= first
        winner += first.view(np.uint8) * winner.dtype.type(k)
    return out, PoolCache(x.shape, kernel, stride, winner)


def maxpool_backward(dout: np.ndarray, cache: PoolCache) -> np.ndarray:
    """dout (m, Ho, Wo, C) -> dx (m, H, W, C): each window's gradient goes to its winner only."""
    winner = cache.winner
    assert winner is not None
    Ho, Wo = dout.shape[1:3]
    dx = np.zeros(cache.x_shape, dtype=dout.dtype)
    views = _window_views(dx, cache.kernel, cache.stride, (Ho, Wo))
    for k, view in enumerate(views):
        if cache.kernel == cache.stride:  # disjoint windows: each element of dx is written once
            np.multiply(dout, winner == k, out=view)
        else:  # overlapping windows accumulate
            view += dout * (winner == k)
    return dx


def avgpool_forward(x: np.ndarray, kernel: Pair, stride: Pair) -> tuple[np.ndarray, PoolCache]:
    """x (m, H, W, C) -> out (m, Ho, Wo, C), the mean of each kh x kw window."""
    m, H, W, C = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    Ho, Wo = pool_output_size(H, kh, sh), pool_output_size(W, kw, sw)
    if kernel == stride:
        out = _blocks(x, kernel, (Ho, Wo)).mean(axis=(2, 4))
    else:
        out = np.zeros((m, Ho, Wo, C), dtype=x.dtype)
        for a in range(kh):
            for b in range(kw):
                out += _offset_view(x, a, b, stride, (Ho, Wo))
        out /= x.dtype.type(kh * kw)
    return out, PoolCache(x.shape, kernel, stride, None)


def avgpool_backward(dout: np.ndarray, cache: PoolCache) -> np.ndarray:
    """dout (m, Ho, Wo, C) -> dx (m, H, W, C): each window element receives dout / (kh*kw)."""
    (kh, kw), stride = cache.kernel, cache.stride
    Ho, Wo = dout.shape[1:3]
    share = dout / dout.dtype.type(kh * kw)
    dx = np.zeros(cache.x_shape, dtype=dout.dtype)
    if cache.kernel == stride:
        _blocks(dx, cache.kernel, (Ho, Wo))[...] = share[:, :, None, :, None, :]
        return dx
    for a in range(kh):
        for b in range(kw):
            _offset_view(dx, a, b, stride, (Ho, Wo))[...] += share
    return dx


class _Pool2D(Layer):
    _forward = staticmethod(maxpool_forward)
    _backward = staticmethod(maxpool_backward)

    def __init__(self, kernel_size: int | Pair = 2, stride: int | Pair | None = None) -> None:
        super().__init__()
        self.kernel_size = pair(self.name, "kernel_size", kernel_size, minimum=1)
        self.stride = self.kernel_size if stride is None else pair(self.name, "stride", stride, minimum=1)

    def config(self) -> dict[str, Any]:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride)}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        m, H, W, C = input_shape
        return (
            m,
            pool_output_size(H, self.kernel_size[0], self.stride[0]),
            pool_output_size(W, self.kernel_size[1], self.stride[1]),
            C,
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (m, H, W, C) float32/float64 -> (m, Ho, Wo, C) in the same dtype."""
        check_array(self.name, x, rank=4)
        if x.shape[1] < self.kernel_size[0] or x.shape[2] < self.kernel_size[1]:
            raise ValueError(
                f"{self.name}: input spatial size {x.shape[1:3]} is smaller than the window {self.kernel_size}"
            )
        out, cache = type(self)._forward(x, self.kernel_size, self.stride)
        return self._remember(out, cache)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dout (m, Ho, Wo, C) -> dx (m, H, W, C); rows/columns no window covers get 0."""
        return type(self)._backward(dout, self._recall(dout))


class MaxPool2D(_Pool2D):
    """Max pooling; the gradient of a window goes to its first maximum (row-major window order)."""


class AvgPool2D(_Pool2D):
    """Average pooling over kh x kw windows (no padding)."""

    _forward = staticmethod(avgpool_forward)
    _backward = staticmethod(avgpool_backward)
