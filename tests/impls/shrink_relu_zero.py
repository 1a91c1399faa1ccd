"""A student's ReLU with one bug: its mask is ``x >= 0``, so ReLU'(0) is taken as 1 (torch, and the
protocol: 0). Every other layer is scratch_cnn's."""

import numpy as np

from scratch_cnn import AvgPool2D, Conv2D, Dense, Flatten, MaxPool2D, SoftmaxCrossEntropy  # noqa: F401


class ReLU:
    def __init__(self):
        self.params, self.grads = {}, {}

    def forward(self, x):
        self.mask = x >= 0  # BUG: >= where > is meant
        return np.where(x > 0, x, 0).astype(x.dtype)

    def backward(self, dout):
        return dout * self.mask
