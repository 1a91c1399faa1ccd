"""Cross-entropy written on probabilities, the way tutorials and course notebooks write it: a softmax,
a loss ``-log(p[label])`` and its gradient on p (``-1/p`` at the label), batched, one sample at a
time, or column-major with one-hot labels; and the ways such code goes wrong."""

import numpy as np


def softmax(z):
    """z: (m, K) -> (m, K)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(p, y):
    """Mean over the batch of -log p[label]."""
    m = y.shape[0]
    return -np.mean(np.log(p[np.arange(m), y]))


def cross_entropy_grad(p, y):
    """dL/dp of the mean: -1 / (m p) at each label, 0 elsewhere."""
    m = y.shape[0]
    dp = np.zeros_like(p)
    dp[np.arange(m), y] = -1.0 / (m * p[np.arange(m), y])
    return dp


def cross_entropy_clipped(p, y, eps=1e-15):
    """Keras-style: probabilities clipped away from 0 and 1 before the log."""
    m = y.shape[0]
    return -np.mean(np.log(np.clip(p[np.arange(m), y], eps, 1 - eps)))


def cross_entropy_clipped_grad(p, y, eps=1e-15):
    m = y.shape[0]
    dp = np.zeros_like(p)
    dp[np.arange(m), y] = -1.0 / (m * np.clip(p[np.arange(m), y], eps, 1 - eps))
    return dp


# one image at a time: z (K,), p (K,), label an int


def softmax_one(z):
    e = np.exp(z - np.max(z))
    return e / np.sum(e)


def loss_one(p, label):
    return -np.log(p[label])


def grad_one(p, label):
    g = np.zeros_like(p)
    g[label] = -1 / p[label]
    return g


# column-major (K, m) with one-hot labels Y (K, m), the cost a sum (the course's style)


def softmax_columns(Z):
    e = np.exp(Z - Z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def cost_columns(A, Y):
    return -np.sum(Y * np.log(A))


def cost_columns_grad(A, Y):
    return -Y / A


# --- bugs ------------------------------------------------------------------------------------------


def softmax_no_shift(z):
    """exp of the raw logits: overflows to inf (then inf / inf = nan) on large logits."""
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def binary_cross_entropy_clipped(p, y, eps=1e-15):
    """Binary cross-entropy summed over the classes of a softmax output (the complement term too),
    clipped to [eps, 1 - eps]: in float32 1 - 1e-15 is 1.0, so a p that rounds to 1 gives log(0)."""
    m, k = p.shape
    Y = np.zeros_like(p)
    Y[np.arange(m), y] = 1
    pc = np.clip(p, eps, 1 - eps)
    return -np.mean(np.sum(Y * np.log(pc) + (1 - Y) * np.log(1 - pc), axis=1))


def binary_cross_entropy_clipped_grad(p, y, eps=1e-15):
    m, k = p.shape
    Y = np.zeros_like(p)
    Y[np.arange(m), y] = 1
    pc = np.clip(p, eps, 1 - eps)
    return (-Y / pc + (1 - Y) / (1 - pc)) / m
