"""Faults in several judges' reach, for the test that runs every rerun command the judge prints:
a Dense whose dW is doubled (autograd, finite differences, the networks), a ReLU that keeps its mask
from the first round (lifecycle), and a convolution that takes only the tutorials' configuration
and flips its kernel there (the cases the search for supported cases adds)."""

import numpy as np

import scratch_cnn as S
from scratch_cnn import AvgPool2D, Flatten, MaxPool2D, SoftmaxCrossEntropy  # noqa: F401


class Dense(S.Dense):
    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["W"] = self.grads["W"] * 2
        return dx


class ReLU:
    params: dict = {}
    grads: dict = {}

    def forward(self, x):
        if not hasattr(self, "mask"):  # the mask of the first call, kept for ever
            self.mask = x > 0
        return np.where(self.mask, x, 0) if self.mask.shape == x.shape else np.maximum(x, 0)

    def backward(self, dout):
        return dout * self.mask if self.mask.shape == dout.shape else dout


class Conv2D(S.Conv2D):
    def __init__(self, in_ch, out_ch, kernel_size, stride=1, padding="same", bias=True, *, rng=None, dtype=np.float64):
        if (in_ch, kernel_size, stride, padding, bias) != (1, 3, 1, "valid", False):
            raise NotImplementedError("one input channel, 3x3 'valid', stride 1, no bias only")
        super().__init__(in_ch, out_ch, kernel_size, stride, padding, bias, rng=rng, dtype=dtype)

    def forward(self, x):
        w = self.params["W"]
        saved = w.copy()
        w[...] = w[::-1, ::-1]  # a true convolution: the kernel flipped
        try:
            return super().forward(x)
        finally:
            w[...] = saved
