"""Softmax losses as a CS231n student writes them: notebook functions on a batch of scores,
``softmax_loss(x, y) -> (loss, dx)``, and the ways such code goes wrong (for tests/test_loss_styles.py)."""

import numpy as np


def softmax(x):
    """x: (N, C) scores -> (N, C) probabilities."""
    e = np.exp(x - np.max(x, axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)


def softmax_loss(x, y):
    """x: (N, C) scores, y: (N,) labels in [0, C) -> (mean loss, dx (N, C))."""
    N = x.shape[0]
    shifted = x - np.max(x, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    loss = -np.sum(log_probs[np.arange(N), y]) / N
    dx = np.exp(log_probs)
    dx[np.arange(N), y] -= 1
    return loss, dx / N


def softmax_loss_sum(x, y):
    """The same, summed over the batch (no 1/N anywhere)."""
    shifted = x - np.max(x, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    dx = np.exp(log_probs)
    dx[np.arange(x.shape[0]), y] -= 1
    return -np.sum(log_probs[np.arange(x.shape[0]), y]), dx


# --- bugs ------------------------------------------------------------------------------------------


def softmax_loss_no_shift(x, y):
    """exp of the raw scores: inf / inf on large scores."""
    N = x.shape[0]
    probs = np.exp(x) / np.sum(np.exp(x), axis=1, keepdims=True)
    loss = -np.mean(np.log(probs[np.arange(N), y]))
    dx = probs.copy()
    dx[np.arange(N), y] -= 1
    return loss, dx / N


def softmax_loss_twice_over_n(x, y):
    """dx divided by N in place, then again on return."""
    N = x.shape[0]
    probs = softmax(x)
    loss = -np.mean(np.log(probs[np.arange(N), y]))
    dx = probs.copy()
    dx[np.arange(N), y] -= 1
    dx /= N
    return loss, dx / N


def softmax_loss_minus_one_everywhere(x, y):
    """The label's 1 subtracted from every class: dx = (probs - 1) / N."""
    N = x.shape[0]
    probs = softmax(x)
    loss = -np.mean(np.log(probs[np.arange(N), y]))
    return loss, (probs - 1) / N
