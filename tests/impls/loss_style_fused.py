"""A tutorial CNN's last layer: a dense layer fused with its softmax, one image at a time, that
updates its own weights inside ``backprop(d_L_d_out, learn_rate)``; the training loop's loss and
gradient lines as functions; and the ways such code goes wrong."""

import numpy as np


class Softmax:
    """Fully connected to ``nodes`` outputs with a softmax on top."""

    def __init__(self, input_len, nodes):
        self.weights = np.random.randn(input_len, nodes) / input_len
        self.biases = np.zeros(nodes)

    def exp_totals(self):
        return np.exp(self.last_totals - self.last_totals.max())

    def forward(self, input):
        """input: any shape with input_len values -> (nodes,) probabilities."""
        self.last_input_shape = input.shape
        self.last_input = input.flatten()
        self.last_totals = self.last_input @ self.weights + self.biases
        t_exp = self.exp_totals()
        return t_exp / t_exp.sum()

    def backprop(self, d_L_d_out, learn_rate):
        """d_L_d_out: (nodes,) dL/dprobs, nonzero at the label only; returns dL/dinput."""
        for i in np.flatnonzero(d_L_d_out):
            t_exp = self.exp_totals()
            S = t_exp.sum()
            d_out_d_t = -t_exp[i] * t_exp / S**2  # d out_i / d t_k, k != i
            d_out_d_t[i] = t_exp[i] * (S - t_exp[i]) / S**2
            d_L_d_t = d_L_d_out[i] * d_out_d_t
            d_L_d_w = np.outer(self.last_input, d_L_d_t)
            d_L_d_input = self.weights @ d_L_d_t
            self.weights -= learn_rate * d_L_d_w
            self.biases -= learn_rate * d_L_d_t
            return d_L_d_input.reshape(self.last_input_shape)


def loss(out, label):
    return -np.log(out[label])


def gradient(out, label):
    g = np.zeros_like(out)
    g[label] = -1 / out[label]
    return g


# --- bugs ------------------------------------------------------------------------------------------


class SoftmaxNoShift(Softmax):
    """exp of the raw totals (the tutorial's first version): inf / inf on large totals."""

    def exp_totals(self):
        return np.exp(self.last_totals)


class SoftmaxDiagonalOnly(Softmax):
    """The softmax's derivative taken as out_i (1 - out_i) at i only: the other classes get nothing."""

    def backprop(self, d_L_d_out, learn_rate):
        for i in np.flatnonzero(d_L_d_out):
            t_exp = self.exp_totals()
            p = t_exp / t_exp.sum()
            d_L_d_t = np.zeros_like(p)
            d_L_d_t[i] = d_L_d_out[i] * p[i] * (1 - p[i])
            d_L_d_input = self.weights @ d_L_d_t
            self.weights -= learn_rate * np.outer(self.last_input, d_L_d_t)
            self.biases -= learn_rate * d_L_d_t
            return d_L_d_input.reshape(self.last_input_shape)
