"""Losses: mean softmax cross-entropy over the batch (via log-sum-exp), and the mean squared error."""

from __future__ import annotations

import numpy as np

from ._validate import check_array


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """logits (m, K) -> log-probabilities (m, K), same dtype.

    # NOTE: subtract the row maximum before exp (log-sum-exp); without it exp overflows for
    # logits above ~88 in float32 and the loss becomes inf/nan.
    """
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """logits (m, K) float, labels (m,) int -> (mean loss, probabilities (m, K), dlogits (m, K)).

    dlogits = (softmax - onehot) / m, the gradient of the *mean* loss.
    """
    m = logits.shape[0]
    logp = log_softmax(logits)
    rows = np.arange(m)
    loss = -logp[rows, labels].mean()
    probs = np.exp(logp)
    dlogits = probs.copy()
    dlogits[rows, labels] -= 1
    dlogits /= logits.dtype.type(m)
    return float(loss), probs, dlogits


class SoftmaxCrossEntropy:
    """``forward(logits, labels) -> (loss, probs)``; ``backward() -> dlogits`` (m, K)."""

    name = "SoftmaxCrossEntropy"

    def __init__(self) -> None:
        self._dlogits: np.ndarray | None = None

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        check_array("SoftmaxCrossEntropy", logits, rank=2, what="logits")
        if not isinstance(labels, np.ndarray) or labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            got = f"{labels.dtype} shape {labels.shape}" if isinstance(labels, np.ndarray) else type(labels).__name__
            raise ValueError(f"SoftmaxCrossEntropy: expected labels as a 1-D integer array, got {got}")
        if labels.shape[0] != logits.shape[0]:
            raise ValueError(
                f"SoftmaxCrossEntropy: expected {logits.shape[0]} labels (one per logits row), got {labels.shape[0]}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
            raise ValueError(
                f"SoftmaxCrossEntropy: expected labels in [0, {logits.shape[1] - 1}], "
                f"got values in [{labels.min()}, {labels.max()}]"
            )
        loss, probs, self._dlogits = softmax_cross_entropy(logits, labels.astype(np.intp, copy=False))
        return loss, probs

    def backward(self) -> np.ndarray:
        if self._dlogits is None:
            raise ValueError("SoftmaxCrossEntropy: backward called before forward")
        return self._dlogits


def mse(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """pred, target (same shape, pred's dtype) -> (mean of (pred - target)^2 over EVERY element, dpred).

    dpred = 2 (pred - target) / N with N = pred.size (torch's MSELoss, reduction="mean").
    """
    diff = pred - target
    loss = np.square(diff).mean()
    return float(loss), diff * pred.dtype.type(2 / pred.size)


class MSELoss:
    """``forward(pred, target) -> (loss, pred)``; ``backward() -> dpred`` (pred's shape and dtype).

    The second value of ``forward`` is what the loss predicts, as SoftmaxCrossEntropy returns its
    probabilities: for a regression loss, the prediction itself. The target is cast to pred's dtype
    (the loss computes in its input's dtype).
    """

    name = "MSELoss"

    def __init__(self) -> None:
        self._dpred: np.ndarray | None = None

    def forward(self, pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
        rank = pred.ndim if isinstance(pred, np.ndarray) and pred.ndim >= 1 else 1
        check_array("MSELoss", pred, rank=rank, what="pred")
        if pred.size == 0:
            raise ValueError(f"MSELoss: expected a non-empty pred, got shape {pred.shape}")
        if not isinstance(target, np.ndarray) or target.shape != pred.shape:
            got = f"shape {target.shape}" if isinstance(target, np.ndarray) else type(target).__name__
            raise ValueError(f"MSELoss: expected target of pred's shape {pred.shape} (no broadcasting), got {got}")
        check_array("MSELoss", target, rank=rank, what="target")
        loss, self._dpred = mse(pred, target.astype(pred.dtype, copy=False))
        return loss, pred

    def backward(self) -> np.ndarray:
        if self._dpred is None:
            raise ValueError("MSELoss: backward called before forward")
        return self._dpred
