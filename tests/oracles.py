"""Naive loop oracles, written element by element from the derivation's equations (float64, small shapes)."""

from __future__ import annotations

import numpy as np


def pad(x, pads):
    return np.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))


def conv_forward(x, W, b, stride, pads):
    """Z[m,i,j,k] = sum_{a,b,c} Xp[m, s*i+a, s*j+b, c] W[a,b,c,k] + b[k]."""
    xp = pad(x, pads)
    kh, kw, C, K = W.shape
    sh, sw = stride
    M, Hp, Wp, _ = xp.shape
    Ho, Wo = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
    Z = np.zeros((M, Ho, Wo, K))
    for m in range(M):
        for i in range(Ho):
            for j in range(Wo):
                for k in range(K):
                    total = 0.0 if b is None else b[k]
                    for a in range(kh):
                        for bb in range(kw):
                            for c in range(C):
                                total += xp[m, sh * i + a, sw * j + bb, c] * W[a, bb, c, k]
                    Z[m, i, j, k] = total
    return Z


def conv_backward(x, W, dZ, stride, pads):
    """dW[a,b,c,k] = sum Xp[m,s*i+a,s*j+b,c] dZ[m,i,j,k]; dXp[m,s*i+a,s*j+b,c] += W[a,b,c,k] dZ[m,i,j,k]."""
    xp = pad(x, pads)
    kh, kw, C, K = W.shape
    sh, sw = stride
    M, Ho, Wo, _ = dZ.shape
    dxp, dW, db = np.zeros_like(xp), np.zeros_like(W), np.zeros(K)
    for m in range(M):
        for i in range(Ho):
            for j in range(Wo):
                for k in range(K):
                    g = dZ[m, i, j, k]
                    db[k] += g
                    for a in range(kh):
                        for bb in range(kw):
                            for c in range(C):
                                dW[a, bb, c, k] += xp[m, sh * i + a, sw * j + bb, c] * g
                                dxp[m, sh * i + a, sw * j + bb, c] += W[a, bb, c, k] * g
    H, Wd = x.shape[1:3]
    return dxp[:, pads[0][0] : pads[0][0] + H, pads[1][0] : pads[1][0] + Wd], dW, db


def pool_windows(shape, kernel, stride):
    """Yield (m, i, j, c, [(row, col), ...]) with window cells in row-major order."""
    M, H, W, C = shape
    (kh, kw), (sh, sw) = kernel, stride
    for m in range(M):
        for i in range((H - kh) // sh + 1):
            for j in range((W - kw) // sw + 1):
                for c in range(C):
                    yield m, i, j, c, [(sh * i + a, sw * j + b) for a in range(kh) for b in range(kw)]


def maxpool(x, kernel, stride, dout=None):
    """Forward and backward: the first maximum in row-major window order takes the gradient."""
    M, H, W, C = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    out = np.zeros((M, (H - kh) // sh + 1, (W - kw) // sw + 1, C))
    dx = np.zeros_like(x, dtype=np.float64)
    for m, i, j, c, cells in pool_windows(x.shape, kernel, stride):
        best = cells[0]
        for cell in cells[1:]:
            if x[m, cell[0], cell[1], c] > x[m, best[0], best[1], c]:
                best = cell
        out[m, i, j, c] = x[m, best[0], best[1], c]
        if dout is not None:
            dx[m, best[0], best[1], c] += dout[m, i, j, c]
    return out, dx


def avgpool(x, kernel, stride, dout=None):
    M, H, W, C = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    out = np.zeros((M, (H - kh) // sh + 1, (W - kw) // sw + 1, C))
    dx = np.zeros_like(x, dtype=np.float64)
    for m, i, j, c, cells in pool_windows(x.shape, kernel, stride):
        out[m, i, j, c] = sum(x[m, r, q, c] for r, q in cells) / len(cells)
        if dout is not None:
            for r, q in cells:
                dx[m, r, q, c] += dout[m, i, j, c] / len(cells)
    return out, dx


def softmax_cross_entropy(logits, labels):
    """Loss and gradient one row at a time, with the max shift."""
    M, K = logits.shape
    loss, grad = 0.0, np.zeros_like(logits, dtype=np.float64)
    for m in range(M):
        row = logits[m] - max(logits[m])
        total = sum(np.exp(v) for v in row)
        loss += -(row[labels[m]] - np.log(total)) / M
        for k in range(K):
            grad[m, k] = (np.exp(row[k]) / total - (1.0 if k == labels[m] else 0.0)) / M
    return loss, grad
