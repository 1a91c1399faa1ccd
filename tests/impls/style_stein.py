"""A CNN in the style of the course-derived NHWC loop code that circulates on GitHub (an adaptation of
the "convolutional model step by step" assignment): batched NHWC arrays walked with Python loops,
``forward_propagate(input)`` and ``backpropagate(dZ, learning_rate)`` that updates the layer's own
weights and returns the gradient of its input, weights drawn at the first forward (the input's
channel count is not known before), pooling with ``stride=1`` by default, dense layers fused with
their activation and the bias folded into W as its last column, float64 throughout (``np.zeros``
without a dtype). Written for these tests, correct, and with the bugs such code typically has (the
classes at the end). Wrapped by ``style_stein_protocol.py``."""

import math

import numpy as np


class ConvLayer:
    def __init__(self, num_filters, filter_width, stride=1, padding=0):
        self.fw, self.n_f, self.s, self.p = filter_width, num_filters, stride, padding
        self.W, self.b = None, None

    def forward_propagate(self, input):
        if self.W is None:  # the first forward: now the input's channel count is known
            self.W = np.random.random((self.fw, self.fw, input.shape[3], self.n_f)) * 0.01
            self.b = np.random.random((1, 1, 1, self.n_f)) * 0.01
        p = self.p
        self.input = np.pad(input, ((0, 0), (p, p), (p, p), (0, 0)), mode="constant")
        self.n_m, self.ih, self.iw = self.input.shape[0], self.input.shape[1], self.input.shape[2]
        self.oh = math.floor((self.ih - self.fw) / self.s) + 1  # ih is already padded
        self.ow = math.floor((self.iw - self.fw) / self.s) + 1
        self.Z = np.zeros((self.n_m, self.oh, self.ow, self.n_f))
        for i in range(self.n_m):
            for h in range(self.oh):
                ih1 = h * self.s
                ih2 = ih1 + self.fw
                for w in range(self.ow):
                    iw1 = w * self.s
                    iw2 = iw1 + self.fw
                    for f in range(self.n_f):
                        self.Z[i, h, w, f] = np.sum(self.input[i, ih1:ih2, iw1:iw2, :] * self.W[:, :, :, f])
                        self.Z[i, h, w, f] += self.b[0, 0, 0, f]
        return self.Z

    def backpropagate(self, dZ, learning_rate):
        dA_prev = np.zeros(self.input.shape)  # the input's channels, padded
        dW, db = np.zeros(self.W.shape), np.zeros(self.b.shape)
        for i in range(self.n_m):
            for h in range(self.oh):
                ih1 = h * self.s
                ih2 = ih1 + self.fw
                for w in range(self.ow):
                    iw1 = w * self.s
                    iw2 = iw1 + self.fw
                    for f in range(self.n_f):
                        dA_prev[i, ih1:ih2, iw1:iw2, :] += self.W[:, :, :, f] * dZ[i, h, w, f]
                        dW[:, :, :, f] += self.input[i, ih1:ih2, iw1:iw2, :] * dZ[i, h, w, f]
                        db[:, :, :, f] += dZ[i, h, w, f]
        self.W -= dW * learning_rate
        self.b -= db * learning_rate
        return dA_prev[:, self.p : self.ih - self.p, self.p : self.iw - self.p, :]


class PoolLayer:
    def __init__(self, filter_width, stride=1):
        self.fw, self.s = filter_width, stride

    def forward_propagate(self, input):
        self.input = input
        self.n_m, self.ih, self.iw, self.n_f = input.shape
        self.oh = math.floor((self.ih - self.fw) / self.s) + 1
        self.ow = math.floor((self.iw - self.fw) / self.s) + 1
        self.Z = np.zeros((self.n_m, self.oh, self.ow, self.n_f))
        for i in range(self.n_m):
            for h in range(self.oh):
                ih1 = h * self.s
                for w in range(self.ow):
                    iw1 = w * self.s
                    for f in range(self.n_f):
                        self.Z[i, h, w, f] = self.pool(self.input[i, ih1 : ih1 + self.fw, iw1 : iw1 + self.fw, f])
        return self.Z

    def backpropagate(self, dZ, learning_rate):
        dA_prev = np.zeros(self.input.shape)
        for i in range(self.n_m):
            for h in range(self.oh):
                ih1 = h * self.s
                for w in range(self.ow):
                    iw1 = w * self.s
                    for f in range(self.n_f):
                        window = self.input[i, ih1 : ih1 + self.fw, iw1 : iw1 + self.fw, f]
                        dA_prev[i, ih1 : ih1 + self.fw, iw1 : iw1 + self.fw, f] += self.gradient(window, dZ[i, h, w, f])
        return dA_prev


def first_max_mask(window):
    mask = np.zeros(window.shape)
    mask[np.unravel_index(np.argmax(window), window.shape)] = 1.0  # the first maximum, row-major
    return mask


class PoolLayer_Max(PoolLayer):
    def __init__(self, filter_width, stride=1):
        self.pool = np.max
        self.gradient = lambda window, dZ: dZ * first_max_mask(window)
        super().__init__(filter_width, stride)


class PoolLayer_Avg(PoolLayer):
    def __init__(self, filter_width, stride=1):
        self.pool = np.mean
        self.gradient = lambda window, dZ: np.ones(window.shape) * dZ / (self.fw**2)
        super().__init__(filter_width, stride)


class FlatLayer:
    def forward_propagate(self, input):
        self.input_shape = input.shape
        return np.reshape(input, (input.shape[0], -1))

    def backpropagate(self, dZ, learning_rate):
        return np.reshape(dZ, self.input_shape)


class FCLayer:
    """A dense layer fused with its activation; W (num_neurons, n_in + 1): the bias is W's last column."""

    def __init__(self, num_neurons):
        self.num_neurons, self.W = num_neurons, None

    def forward_propagate(self, input):
        if self.W is None:
            self.W = np.random.random((self.num_neurons, input.shape[1] + 1)) * 0.0001
        self.input = np.hstack([input, np.ones((input.shape[0], 1))])  # the bias input
        self.Z = self.input @ self.W.T
        return self.activate(self.Z)

    def backpropagate(self, dA, learning_rate):
        dZ = self.gradient(dA, self.Z)
        dW = (self.input.T @ dZ).T / dA.shape[0]
        dA_prev = (dZ @ self.W)[:, :-1]  # the bias input has no gradient to pass on
        self.W = self.W - learning_rate * dW
        return dA_prev


class FCLayer_ReLU(FCLayer):
    def __init__(self, num_neurons):
        self.activate = lambda Z: np.maximum(0.0, Z)
        self.gradient = lambda dA, Z: dA * (Z > 0.0)
        super().__init__(num_neurons)


class FCLayer_Softmax(FCLayer):
    """Softmax output: its backpropagate is handed A - Y (the fused softmax + cross-entropy gradient)."""

    def __init__(self, num_neurons):
        self.activate = lambda Z: (
            np.exp(Z - Z.max(axis=1, keepdims=True))
            / np.exp(Z - Z.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True)
        )
        self.gradient = lambda dA, Z: dA
        super().__init__(num_neurons)


def categorical_cross_entropy(A, Y):
    """The network's loss on its probabilities A and one-hot labels Y: the batch's mean."""
    return -np.sum(Y * np.log(np.clip(A, 1e-15, None))) / A.shape[0]


# --- the bugs such code has ----------------------------------------------------------------------------


class ConvLayerBiasInLoop(ConvLayer):
    """The bias added inside the innermost loop, to the whole output: ``self.Z += self.b[:, :, :, f]``."""

    def forward_propagate(self, input):
        super().forward_propagate(input)
        self.Z[...] = 0.0
        for i in range(self.n_m):
            for h in range(self.oh):
                for w in range(self.ow):
                    for f in range(self.n_f):
                        window = self.input[i, h * self.s : h * self.s + self.fw, w * self.s : w * self.s + self.fw, :]
                        self.Z[i, h, w, f] = np.sum(window * self.W[:, :, :, f])
                        self.Z += self.b[:, :, :, f]
        return self.Z


class PoolLayer_MaxEveryTie(PoolLayer):
    """``dZ * (window == np.max(window))``: every tied maximum gets the whole gradient."""

    def __init__(self, filter_width, stride=1):
        self.pool = np.max
        self.gradient = lambda window, dZ: dZ * (window == np.max(window))
        super().__init__(filter_width, stride)
