"""A course notebook's CNN, written the way its exercises write it: functions over NHWC batches with
explicit loops (``for i in range(m): for h in range(n_H): ...``), conv weights ``(f, f, n_C_prev,
n_C)`` and biases ``(1, 1, 1, n_C)``, ``hparameters`` dicts, caches, one ``stride`` and one ``pad``;
the dense part column-major with ``dW = dZ A^T / m``. Correct, and with the bugs such code typically
has (the functions at the end). Wrapped by ``style_notebook_protocol.py``."""

import numpy as np


def zero_pad(X, pad):
    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="constant", constant_values=(0, 0))


def conv_single_step(a_slice_prev, W, b):
    return np.sum(a_slice_prev * W) + b.item()


def conv_forward(A_prev, W, b, hparameters):
    (m, n_H_prev, n_W_prev, n_C_prev) = A_prev.shape
    (f, f, n_C_prev, n_C) = W.shape
    stride, pad = hparameters["stride"], hparameters["pad"]
    n_H = int((n_H_prev - f + 2 * pad) / stride) + 1
    n_W = int((n_W_prev - f + 2 * pad) / stride) + 1
    Z = np.zeros((m, n_H, n_W, n_C), dtype=A_prev.dtype)
    A_prev_pad = zero_pad(A_prev, pad)
    for i in range(m):
        a_prev_pad = A_prev_pad[i]
        for h in range(n_H):
            vert_start = h * stride
            for w in range(n_W):
                horiz_start = w * stride
                for c in range(n_C):
                    a_slice_prev = a_prev_pad[vert_start : vert_start + f, horiz_start : horiz_start + f, :]
                    Z[i, h, w, c] = conv_single_step(a_slice_prev, W[:, :, :, c], b[:, :, :, c])
    cache = (A_prev, W, b, hparameters)
    return Z, cache


def conv_backward(dZ, cache):
    (A_prev, W, b, hparameters) = cache
    (m, n_H_prev, n_W_prev, n_C_prev) = A_prev.shape
    (f, f, n_C_prev, n_C) = W.shape
    stride, pad = hparameters["stride"], hparameters["pad"]
    (m, n_H, n_W, n_C) = dZ.shape
    dA_prev = np.zeros(A_prev.shape, dtype=A_prev.dtype)
    dW = np.zeros(W.shape, dtype=W.dtype)
    db = np.zeros(b.shape, dtype=b.dtype)
    A_prev_pad, dA_prev_pad = zero_pad(A_prev, pad), zero_pad(dA_prev, pad)
    for i in range(m):
        a_prev_pad, da_prev_pad = A_prev_pad[i], dA_prev_pad[i]
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    vert_start, horiz_start = h * stride, w * stride
                    a_slice = a_prev_pad[vert_start : vert_start + f, horiz_start : horiz_start + f, :]
                    da_prev_pad[vert_start : vert_start + f, horiz_start : horiz_start + f, :] += (
                        W[:, :, :, c] * dZ[i, h, w, c]
                    )
                    dW[:, :, :, c] += a_slice * dZ[i, h, w, c]
                    db[:, :, :, c] += dZ[i, h, w, c]
        dA_prev[i, :, :, :] = da_prev_pad[pad : pad + n_H_prev, pad : pad + n_W_prev, :]
    return dA_prev, dW, db


def pool_forward(A_prev, hparameters, mode="max"):
    (m, n_H_prev, n_W_prev, n_C_prev) = A_prev.shape
    f, stride = hparameters["f"], hparameters["stride"]
    n_H, n_W = int(1 + (n_H_prev - f) / stride), int(1 + (n_W_prev - f) / stride)
    A = np.zeros((m, n_H, n_W, n_C_prev), dtype=A_prev.dtype)
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C_prev):
                    a_prev_slice = A_prev[i, h * stride : h * stride + f, w * stride : w * stride + f, c]
                    A[i, h, w, c] = np.max(a_prev_slice) if mode == "max" else np.mean(a_prev_slice)
    return A, (A_prev, hparameters)


def create_mask_from_window(x):
    mask = np.zeros(x.shape, dtype=bool)
    mask[np.unravel_index(np.argmax(x), x.shape)] = True  # the first maximum, in row-major order
    return mask


def distribute_value(dz, shape):
    (n_H, n_W) = shape
    return np.ones(shape) * dz / (n_H * n_W)


def pool_backward(dA, cache, mode="max"):
    (A_prev, hparameters) = cache
    f, stride = hparameters["f"], hparameters["stride"]
    m, n_H, n_W, n_C = dA.shape
    dA_prev = np.zeros(A_prev.shape, dtype=A_prev.dtype)
    for i in range(m):
        a_prev = A_prev[i]
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    vs, hs = h * stride, w * stride
                    if mode == "max":
                        mask = create_mask_from_window(a_prev[vs : vs + f, hs : hs + f, c])
                        dA_prev[i, vs : vs + f, hs : hs + f, c] += mask * dA[i, h, w, c]
                    else:
                        dA_prev[i, vs : vs + f, hs : hs + f, c] += distribute_value(dA[i, h, w, c], (f, f))
    return dA_prev


def relu(Z):
    return np.maximum(0, Z), Z


def relu_backward(dA, cache):
    Z = cache
    dZ = np.array(dA, copy=True)
    dZ[Z <= 0] = 0
    return dZ


def linear_forward(A, W, b):
    return W.dot(A) + b, (A, W, b)


def linear_backward(dZ, cache):
    A_prev, W, b = cache
    m = A_prev.shape[1]
    dW = 1 / m * np.dot(dZ, A_prev.T)
    db = 1 / m * np.sum(dZ, axis=1, keepdims=True)
    dA_prev = np.dot(W.T, dZ)
    return dA_prev, dW, db


# --- the bugs such code typically has -------------------------------------------------------------


def conv_backward_last_sample(dZ, cache):
    """dW and db set up again inside the loop over the samples: only the last sample's are returned."""
    (A_prev, W, b, hparameters) = cache
    stride, pad, f = hparameters["stride"], hparameters["pad"], W.shape[0]
    (m, n_H, n_W, n_C) = dZ.shape
    dA_prev = np.zeros(A_prev.shape, dtype=A_prev.dtype)
    A_prev_pad, dA_prev_pad = zero_pad(A_prev, pad), zero_pad(dA_prev, pad)
    for i in range(m):
        dW, db = np.zeros(W.shape, dtype=W.dtype), np.zeros(b.shape, dtype=b.dtype)
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    vs, hs = h * stride, w * stride
                    dA_prev_pad[i, vs : vs + f, hs : hs + f, :] += W[:, :, :, c] * dZ[i, h, w, c]
                    dW[:, :, :, c] += A_prev_pad[i, vs : vs + f, hs : hs + f, :] * dZ[i, h, w, c]
                    db[:, :, :, c] += dZ[i, h, w, c]
    return dA_prev_pad[:, pad : pad + A_prev.shape[1], pad : pad + A_prev.shape[2], :], dW, db


def pool_backward_every_tie(dA, cache, mode="max"):
    """The max mask as ``x == np.max(x)``: the gradient goes to every element tied for the maximum."""
    (A_prev, hparameters) = cache
    f, stride = hparameters["f"], hparameters["stride"]
    m, n_H, n_W, n_C = dA.shape
    dA_prev = np.zeros(A_prev.shape, dtype=A_prev.dtype)
    for i in range(m):
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    vs, hs = h * stride, w * stride
                    a_prev_slice = A_prev[i, vs : vs + f, hs : hs + f, c]
                    mask = a_prev_slice == np.max(a_prev_slice)
                    dA_prev[i, vs : vs + f, hs : hs + f, c] += mask * dA[i, h, w, c]
    return dA_prev
