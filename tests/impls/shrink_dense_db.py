"""A student's Dense with one bug: db sums the upstream gradient over the wrong axis (over the
outputs, one number per image, where the protocol sums over the batch, one per output). Every
other layer is scratch_cnn's."""

import numpy as np

from scratch_cnn import AvgPool2D, Conv2D, Flatten, MaxPool2D, ReLU, SoftmaxCrossEntropy  # noqa: F401


class Dense:
    def __init__(self, n_in, n_out, bias=True, *, rng, dtype=np.float64):
        self.params = {"W": (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)}
        if bias:
            self.params["b"] = np.zeros(n_out, dtype=dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def forward(self, x):
        self.x = x
        out = x @ self.params["W"]
        return out + self.params["b"] if "b" in self.params else out

    def backward(self, dout):
        self.grads["W"] = self.x.T @ dout
        if "b" in self.params:
            self.grads["b"] = dout.sum(axis=1)  # BUG: axis=0 is the batch
        return dout @ self.params["W"].T
