"""A from-scratch CNN in the CS231n assignment style, written here as a user would: NCHW images,
conv weights (F, C, HH, WW), function pairs with caches, symmetric padding and square strides only.
Correct. Judged through reference.impl.adapters by ``cs231n_protocol.py``."""

import numpy as np


def conv_forward(x, w, b, conv_param):
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = 1 + (H + 2 * pad - HH) // stride, 1 + (W + 2 * pad - WW) // stride
    out = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            patch = xp[:, :, i * stride : i * stride + HH, j * stride : j * stride + WW]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, conv_param)


def conv_backward(dout, cache):
    x, w, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = (slice(None), slice(None), slice(i * stride, i * stride + HH), slice(j * stride, j * stride + WW))
            dw += np.tensordot(dout[:, :, i, j], xp[window], axes=([0], [0]))
            dxp[window] += np.tensordot(dout[:, :, i, j], w, axes=([1], [0]))
    return dxp[:, :, pad : pad + H, pad : pad + W], dw, dout.sum(axis=(0, 2, 3))


def _windows(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H, W = x.shape
    Ho, Wo = 1 + (H - ph) // s, 1 + (W - pw) // s
    for i in range(Ho):
        for j in range(Wo):
            yield i, j, (slice(None), slice(None), slice(i * s, i * s + ph), slice(j * s, j * s + pw))


def max_pool_forward(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H, W = x.shape
    out = np.zeros((N, C, 1 + (H - ph) // s, 1 + (W - pw) // s), dtype=x.dtype)
    for i, j, win in _windows(x, pool_param):
        out[:, :, i, j] = x[win].max(axis=(2, 3))
    return out, (x, pool_param)


def max_pool_backward(dout, cache):
    x, pool_param = cache
    dx = np.zeros_like(x)
    for i, j, win in _windows(x, pool_param):
        flat = x[win].reshape(x.shape[0], x.shape[1], -1)
        first = flat.argmax(axis=2)  # the first maximum in row-major order, as torch
        mask = np.zeros_like(flat)
        np.put_along_axis(mask, first[..., None], 1.0, axis=2)
        dx[win] += mask.reshape(x[win].shape) * dout[:, :, i, j][:, :, None, None]
    return dx


def avg_pool_forward(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H, W = x.shape
    out = np.zeros((N, C, 1 + (H - ph) // s, 1 + (W - pw) // s), dtype=x.dtype)
    for i, j, win in _windows(x, pool_param):
        out[:, :, i, j] = x[win].mean(axis=(2, 3))
    return out, (x, pool_param)


def avg_pool_backward(dout, cache):
    x, pool_param = cache
    dx = np.zeros_like(x)
    area = pool_param["pool_height"] * pool_param["pool_width"]
    for i, j, win in _windows(x, pool_param):
        dx[win] += dout[:, :, i, j][:, :, None, None] / x.dtype.type(area)
    return dx


def relu_forward(x):
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    return dout * (cache > 0)


def flatten_forward(x):
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(dout, shape):
    return dout.reshape(shape)


def affine_forward(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return (dout @ w.T).reshape(x.shape), x.reshape(x.shape[0], -1).T @ dout, dout.sum(axis=0)


def softmax_loss(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    N = x.shape[0]
    dx = np.exp(log_probs)
    dx[np.arange(N), y] -= 1
    return -log_probs[np.arange(N), y].mean(), dx / N
