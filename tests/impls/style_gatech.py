"""A CNN in the style of the course-assignment modules that circulate on GitHub (NCHW, ``weight`` /
``bias`` in OIHW, vectorised with ``as_strided`` and ``einsum``): every module's ``forward(x)`` returns
its output and keeps a cache, and ``backward(dout)`` returns nothing: it leaves ``self.dx`` (and
``self.dw``, ``self.db``) for the caller to read. ``Linear`` flattens its own input. Written for
these tests, correct, and with the bugs such code typically has (the classes at the end). Wrapped by
``style_gatech_protocol.py``."""

import numpy as np
from numpy.lib.stride_tricks import as_strided


def windows(x, k, s):
    """(N, C, H, W) -> a read-only view (N, C, H_out, W_out, k, k) of its k x k windows at stride s."""
    N, C, H, W = x.shape
    h_out, w_out = (H - k) // s + 1, (W - k) // s + 1
    st = x.strides
    return as_strided(
        x, (N, C, h_out, w_out, k, k), (st[0], st[1], st[2] * s, st[3] * s, st[2], st[3]), writeable=False
    )


class Conv2D:
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=0):
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        rng = np.random.default_rng(1024)
        self.weight = 1e-3 * rng.standard_normal((out_channels, in_channels, kernel_size, kernel_size))
        self.bias = np.zeros(out_channels)
        self.cache = self.dx = self.dw = self.db = None

    def forward(self, x):
        p = self.padding
        x_pad = np.pad(x, [(0, 0), (0, 0), (p, p), (p, p)])
        views = windows(x_pad, self.kernel_size, self.stride)
        out = np.einsum("nchwij,ocij->nohw", views, self.weight) + self.bias[:, None, None]
        self.cache = x
        return out

    def backward(self, dout):
        x, k, s, p = self.cache, self.kernel_size, self.stride, self.padding
        x_pad = np.pad(x, [(0, 0), (0, 0), (p, p), (p, p)])
        self.dw = np.einsum("nchwij,nohw->ocij", windows(x_pad, k, s), dout)
        self.db = dout.sum(axis=(0, 2, 3))
        per_window = np.einsum("ocij,nohw->nchwij", self.weight, dout)
        dx_pad = self.scatter(per_window, x_pad.shape, k, s)
        self.dx = self.crop(dx_pad, x.shape, p)

    def scatter(self, per_window, shape, k, s):
        dx_pad = np.zeros(shape, dtype=per_window.dtype)
        for h in range(per_window.shape[2]):
            for w in range(per_window.shape[3]):
                dx_pad[:, :, h * s : h * s + k, w * s : w * s + k] += per_window[:, :, h, w]
        return dx_pad

    def crop(self, dx_pad, shape, p):
        return dx_pad[:, :, p : p + shape[2], p : p + shape[3]]


class MaxPooling:
    def __init__(self, kernel_size, stride):
        self.kernel_size, self.stride = kernel_size, stride
        self.cache = self.dx = None

    def forward(self, x):
        out = windows(x, self.kernel_size, self.stride).max(axis=(4, 5))
        self.cache = x
        return out

    def backward(self, dout):
        x, k, s = self.cache, self.kernel_size, self.stride
        views = windows(x, k, s)
        flat = views.reshape(*views.shape[:4], -1)
        first = np.argmax(flat, axis=-1)  # the first maximum in row-major window order
        mask = np.zeros(flat.shape, dtype=x.dtype)
        np.put_along_axis(mask, first[..., None], 1, axis=-1)
        per_window = mask.reshape(views.shape) * dout[..., None, None]
        dx = np.zeros(x.shape, dtype=x.dtype)
        for h in range(views.shape[2]):
            for w in range(views.shape[3]):
                dx[:, :, h * s : h * s + k, w * s : w * s + k] += per_window[:, :, h, w]
        self.dx = dx


class ReLU:
    def __init__(self):
        self.cache = self.dx = None

    def forward(self, x):
        self.cache = x
        return np.maximum(x, 0)

    def backward(self, dout):
        self.dx = dout * (self.cache > 0)


class Linear:
    def __init__(self, in_dim, out_dim):
        self.in_dim, self.out_dim = in_dim, out_dim
        self.weight = 1e-3 * np.random.default_rng(1024).standard_normal((in_dim, out_dim))
        self.bias = np.zeros(out_dim)
        self.cache = self.dx = self.dw = self.db = None

    def forward(self, x):
        self.cache = x
        return x.reshape(x.shape[0], -1) @ self.weight + self.bias

    def backward(self, dout):
        x = self.cache
        self.dx = (dout @ self.weight.T).reshape(x.shape)
        self.dw = x.reshape(x.shape[0], -1).T @ dout
        self.db = dout.sum(axis=0)


# --- the bugs such code has ----------------------------------------------------------------------------


class Conv2DCropped(Conv2D):
    """``dx = dx_pad[:, :, p:-p, p:-p]``: right for p >= 1, EMPTY (N, C, 0, 0) for padding 0."""

    def crop(self, dx_pad, shape, p):
        return dx_pad[:, :, p:-p, p:-p]


class Conv2DFloat64(Conv2D):
    """dx accumulated in ``np.zeros(x_pad.shape)``: float64 whatever the input's dtype."""

    def scatter(self, per_window, shape, k, s):
        dx_pad = np.zeros(shape)  # no dtype=
        for h in range(per_window.shape[2]):
            for w in range(per_window.shape[3]):
                dx_pad[:, :, h * s : h * s + k, w * s : w * s + k] += per_window[:, :, h, w]
        return dx_pad
