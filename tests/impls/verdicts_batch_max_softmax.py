"""A student's softmax cross-entropy that shifts the logits by the whole batch's maximum (one
``np.max(logits)``, not one per row) and takes the loss as ``-sum(onehot * log p) / m``: a row whose
logits all sit far below the batch's maximum has exp(...) = 0 everywhere, so its probabilities are
0/0 = NaN, and a probability that underflows to 0 gives 0 * log 0 = NaN in the sum. Every other
layer is scratch_cnn's."""

import numpy as np

from scratch_cnn import SGD, AvgPool2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU  # noqa: F401


class SoftmaxCrossEntropy:
    params: dict = {}
    grads: dict = {}

    def forward(self, logits, labels):
        labels = np.asarray(labels)
        if labels.min() < 0 or labels.max() >= logits.shape[1]:
            raise ValueError("SoftmaxCrossEntropy: labels must be in [0, K)")
        m = logits.shape[0]
        shifted = logits - np.max(logits)  # "for numerical stability"
        exps = np.exp(shifted)
        self.probs = exps / np.sum(exps, axis=1, keepdims=True)
        self.onehot = np.zeros_like(logits)
        self.onehot[np.arange(m), labels] = 1
        loss = -np.sum(self.onehot * np.log(self.probs)) / m
        return loss, self.probs

    def backward(self):
        return (self.probs - self.onehot) / self.probs.shape[0]
