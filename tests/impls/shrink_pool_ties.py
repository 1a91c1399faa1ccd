"""A student's max pool (loops over the windows, NHWC, the protocol's class) with one bug: the
gradient of a window goes to every element equal to its maximum, so a window with a tie passes
its gradient on twice (torch, and the protocol: to the first maximum only). Every other layer is
scratch_cnn's."""

import numpy as np

from scratch_cnn import AvgPool2D, Conv2D, Dense, Flatten, ReLU, SoftmaxCrossEntropy  # noqa: F401


class MaxPool2D:
    def __init__(self, kernel_size=2, stride=None):
        self.k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        stride = self.k if stride is None else stride
        self.s = (stride, stride) if isinstance(stride, int) else tuple(stride)
        self.params, self.grads = {}, {}

    def forward(self, x):
        (kh, kw), (sh, sw) = self.k, self.s
        m, H, W, C = x.shape
        Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
        out = np.zeros((m, Ho, Wo, C), dtype=x.dtype)
        for i in range(Ho):
            for j in range(Wo):
                out[:, i, j, :] = x[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :].max(axis=(1, 2))
        self.x, self.out = x, out
        return out

    def backward(self, dout):
        (kh, kw), (sh, sw) = self.k, self.s
        dx = np.zeros_like(self.x)
        for i in range(dout.shape[1]):
            for j in range(dout.shape[2]):
                window = self.x[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :]
                mask = window == self.out[:, i : i + 1, j : j + 1, :]  # BUG: every maximum of a tie
                dx[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :] += mask * dout[:, i : i + 1, j : j + 1, :]
        return dx
