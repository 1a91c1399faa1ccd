"""A student's max pool, the way tutorials write it: loops over the windows, and a backward that
builds its mask as ``window == window.max()``, so a window with tied maxima sends its whole gradient
to every one of them (torch and the protocol: to the first only). Every other layer, the loss and
SGD are scratch_cnn's, and correct: a network or training failure must be laid at this pool."""

import numpy as np

from scratch_cnn import SGD, AvgPool2D, Conv2D, Dense, Flatten, ReLU, SoftmaxCrossEntropy  # noqa: F401


def _pair(v):
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


class MaxPool2D:
    def __init__(self, kernel_size=2, stride=None):
        self.k = _pair(kernel_size)
        self.s = self.k if stride is None else _pair(stride)
        self.params, self.grads = {}, {}

    def forward(self, x):
        self.x = x
        (kh, kw), (sh, sw) = self.k, self.s
        m, H, W, C = x.shape
        Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
        out = np.zeros((m, Ho, Wo, C), dtype=x.dtype)
        for i in range(Ho):
            for j in range(Wo):
                out[:, i, j, :] = x[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :].max(axis=(1, 2))
        return out

    def backward(self, dout):
        (kh, kw), (sh, sw) = self.k, self.s
        dx = np.zeros_like(self.x)
        for i in range(dout.shape[1]):
            for j in range(dout.shape[2]):
                window = self.x[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :]
                mask = window == window.max(axis=(1, 2), keepdims=True)
                dx[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :] += mask * dout[:, i : i + 1, j : j + 1, :]
        return dx
