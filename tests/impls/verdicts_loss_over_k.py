"""A student's softmax cross-entropy that averages over the wrong axis: ``n = logits.shape[1]`` (the
number of classes K) where the batch size ``logits.shape[0]`` (m) is meant, in the loss and in its
gradient alike. Otherwise right: log-softmax, labels checked. Every other layer is scratch_cnn's."""

import numpy as np

from scratch_cnn import SGD, AvgPool2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU  # noqa: F401


class SoftmaxCrossEntropy:
    params: dict = {}
    grads: dict = {}

    def forward(self, logits, labels):
        if np.any(labels < 0) or np.any(labels >= logits.shape[1]):
            raise ValueError("SoftmaxCrossEntropy: a label outside [0, K)")
        n = logits.shape[1]  # the batch size (it is logits.shape[0])
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.probs, self.labels, self.n = np.exp(logp), labels, n
        return -logp[np.arange(len(labels)), labels].sum() / n, self.probs

    def backward(self):
        d = self.probs.copy()
        d[np.arange(len(self.labels)), self.labels] -= 1
        return d / self.n
