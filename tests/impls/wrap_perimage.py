"""Per-image free functions, in the style of a public from-scratch CNN (written here in our own code):
one CHW image at a time; ``convolution(image, filt, bias, s)`` with filters ``(n_f, n_c, f, f)`` and
column biases ``(n_f, 1)``, 'valid' only and one size for both axes (square images); ``maxpool(image,
f, s)``; ``softmax`` and ``categoricalCrossEntropy`` on a one-hot column label. ReLU, flatten, the
dense layers and the loss's gradient are no functions: they are lines of the training script's
``conv`` (below), as in such code. Then the bugs such code has, each a drop-in for one function."""

import numpy as np

_buffers: dict[tuple, np.ndarray] = {}


def convolution(image, filt, bias, s=1):
    """'valid' cross-correlation of one CHW image; the output is square (in_dim for both axes)."""
    n_f, n_c_f, f, _ = filt.shape
    n_c, in_dim, _ = image.shape
    assert n_c == n_c_f, "Dimensions of filter must match dimensions of input image"
    out_dim = (in_dim - f) // s + 1
    out = np.zeros((n_f, out_dim, out_dim), dtype=image.dtype)
    rows = filt.reshape(n_f, -1)
    for y in range(out_dim):
        for x in range(out_dim):
            out[:, y, x] = rows @ image[:, y * s : y * s + f, x * s : x * s + f].ravel() + bias[:, 0]
    return out


def convolutionBackward(dconv_prev, conv_in, filt, s):
    """(dout, dfilt, dbias) of one image."""
    dout = np.zeros(conv_in.shape, dtype=conv_in.dtype)
    dfilt = np.zeros(filt.shape, dtype=filt.dtype)
    return _convolution_backward(dconv_prev, conv_in, filt, s, dout, dfilt)


def _convolution_backward(dconv_prev, conv_in, filt, s, dout, dfilt):
    n_f, n_c, f, _ = filt.shape
    out_dim, rows, drows = dconv_prev.shape[1], filt.reshape(n_f, -1), dfilt.reshape(n_f, -1)  # drows: a view
    for y in range(out_dim):
        for x in range(out_dim):
            g = dconv_prev[:, y, x]
            drows += np.outer(g, conv_in[:, y * s : y * s + f, x * s : x * s + f].ravel())
            dout[:, y * s : y * s + f, x * s : x * s + f] += (g @ rows).reshape(n_c, f, f)
    dbias = dconv_prev.sum(axis=(1, 2)).reshape(-1, 1)
    return dout, dfilt, dbias


def nanargmax(arr):
    """The first maximum's (row, column) in row-major order."""
    return np.unravel_index(np.nanargmax(arr), arr.shape)


def maxpool(image, f=2, s=2):
    n_c, h_prev, w_prev = image.shape
    h, w = (h_prev - f) // s + 1, (w_prev - f) // s + 1
    out = np.zeros((n_c, h, w), dtype=image.dtype)
    for y in range(h):
        for x in range(w):
            out[:, y, x] = np.max(image[:, y * s : y * s + f, x * s : x * s + f], axis=(1, 2))
    return out


def maxpoolBackward(dpool, orig, f, s):
    """Each window's gradient to its first maximum (summed where overlapping windows share one)."""
    n_c, orig_dim, _ = orig.shape
    dout = np.zeros(orig.shape, dtype=orig.dtype)
    out_dim = (orig_dim - f) // s + 1
    for c in range(n_c):
        for y in range(out_dim):
            for x in range(out_dim):
                a, b = nanargmax(orig[c, y * s : y * s + f, x * s : x * s + f])
                dout[c, y * s + a, x * s + b] += dpool[c, y, x]
    return dout


def softmax(X):
    out = np.exp(X - np.max(X))
    return out / np.sum(out)


def categoricalCrossEntropy(probs, label):
    return -np.sum(label * np.log(probs))


def conv(image, label, params, conv_s=1, pool_f=2, pool_s=2):
    """The training script's step for one image: conv, ReLU, conv, ReLU, pool, flatten, dense, ReLU,
    dense, softmax, the loss and every gradient. The lines a wrapper copies are these."""
    f1, f2, w3, w4, b1, b2, b3, b4 = params
    conv1 = convolution(image, f1, b1, conv_s)
    conv1[conv1 <= 0] = 0
    conv2 = convolution(conv1, f2, b2, conv_s)
    conv2[conv2 <= 0] = 0
    pooled = maxpool(conv2, pool_f, pool_s)
    nf2, dim2, _ = pooled.shape
    fc = pooled.reshape((nf2 * dim2 * dim2, 1))
    z = w3.dot(fc) + b3
    z[z <= 0] = 0
    out = w4.dot(z) + b4
    probs = softmax(out)
    loss = categoricalCrossEntropy(probs, label)
    dout = probs - label
    dw4, db4 = dout.dot(z.T), np.sum(dout, axis=1).reshape(b4.shape)
    dz = w4.T.dot(dout)
    dz[z <= 0] = 0
    dw3, db3 = dz.dot(fc.T), np.sum(dz, axis=1).reshape(b3.shape)
    dpool = w3.T.dot(dz).reshape(pooled.shape)
    dconv2 = maxpoolBackward(dpool, conv2, pool_f, pool_s)
    dconv2[conv2 <= 0] = 0
    dconv1, df2, db2 = convolutionBackward(dconv2, conv1, f2, conv_s)
    dconv1[conv1 <= 0] = 0
    dimage, df1, db1 = convolutionBackward(dconv1, image, f1, conv_s)
    return loss, [df1, df2, dw3, dw4, db1, db2, db3, db4], dimage


# --- the bugs such code has ---------------------------------------------------------------------------


def convolutionBackwardReused(dconv_prev, conv_in, filt, s):
    """A 'speed-up': the gradient buffers allocated once per shape and reused, never zeroed, so each
    call's dfilt holds every earlier call's too (across images, batches and layers of one shape)."""
    dout = np.zeros(conv_in.shape, dtype=conv_in.dtype)
    dfilt = _buffers.setdefault((filt.shape, filt.dtype.str), np.zeros(filt.shape, dtype=filt.dtype))
    return _convolution_backward(dconv_prev, conv_in, filt, s, dout, dfilt)


def maxpoolBackwardEveryTie(dpool, orig, f, s):
    """A mask of the window's maximum: a tie sends the window's gradient to every tied element."""
    n_c, orig_dim, _ = orig.shape
    dout = np.zeros(orig.shape, dtype=orig.dtype)
    out_dim = (orig_dim - f) // s + 1
    for c in range(n_c):
        for y in range(out_dim):
            for x in range(out_dim):
                window = orig[c, y * s : y * s + f, x * s : x * s + f]
                dout[c, y * s : y * s + f, x * s : x * s + f] += (window == np.max(window)) * dpool[c, y, x]
    return dout


def maxpoolBackwardOverwrites(dpool, orig, f, s):
    """``dout[...] = dpool[...]``: where overlapping windows share a maximum, the last window's gradient
    replaces the others' instead of adding to them (right whenever the windows do not overlap)."""
    n_c, orig_dim, _ = orig.shape
    dout = np.zeros(orig.shape, dtype=orig.dtype)
    out_dim = (orig_dim - f) // s + 1
    for c in range(n_c):
        for y in range(out_dim):
            for x in range(out_dim):
                a, b = nanargmax(orig[c, y * s : y * s + f, x * s : x * s + f])
                dout[c, y * s + a, x * s + b] = dpool[c, y, x]
    return dout


def softmaxUnshifted(X):
    """``np.exp(X)`` without subtracting the maximum: inf / inf = nan for large logits."""
    out = np.exp(X)
    return out / np.sum(out)
