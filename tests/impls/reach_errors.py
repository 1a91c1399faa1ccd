"""Layers that raise (not NotImplementedError: a bug or an assertion, so an ``error``) outside what they
take, each with a second bug that shows only where it runs; the judges must search for that region
(reference.judges.reach) instead of stopping at the error:

- ``Conv2D`` takes padding as a number (``int('same')`` raises ValueError) and adds each backward's
  gradients into buffers made at construction: the second backward's grads hold the first's too (the
  lifecycle cases of the grid are all 'same': there only the ValueError shows);
- ``MaxPool2D`` is AlexNet's, 3x3 windows with stride 2 (an assertion refuses the rest, every
  configuration of the protocol rules among them), and writes its output into a buffer it keeps
  between calls: the array one call returned changes at the next.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _pair(v):
    return (v, v) if isinstance(v, (int, str)) else tuple(v)


class Conv2D:
    """NHWC images, W ``(kh, kw, C_in, C_out)``, the protocol's constructor; padding a number or 'valid'."""

    def __init__(self, in_ch, out_ch, kernel_size, stride=1, padding="same", bias=True, *, rng=None, dtype=np.float64):
        rng = rng if rng is not None else np.random.default_rng()
        self.k, self.s = _pair(kernel_size), _pair(stride)
        self.p = tuple(int(p) for p in _pair(0 if padding == "valid" else padding))  # 'same': ValueError
        kh, kw = self.k
        w = rng.standard_normal((kh, kw, in_ch, out_ch)) * np.sqrt(2.0 / (kh * kw * in_ch))
        self.params = {"W": w.astype(dtype)}
        if bias:
            self.params["b"] = np.zeros(out_ch, dtype=dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}  # once: the bug

    def _windows(self):
        (kh, kw), (sh, sw) = self.k, self.s
        return sliding_window_view(self.xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]  # (m, Ho, Wo, C, kh, kw)

    def forward(self, x):
        (ph, pw) = self.p
        self.xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        out = np.einsum("mijcab,abck->mijk", self._windows(), self.params["W"])
        return out + self.params["b"] if "b" in self.params else out

    def backward(self, dout):
        (kh, kw), (sh, sw), (ph, pw) = self.k, self.s, self.p
        self.grads["W"] += np.einsum("mijcab,mijk->abck", self._windows(), dout)
        if "b" in self.params:
            self.grads["b"] += dout.sum(axis=(0, 1, 2))
        dxp = np.zeros_like(self.xp)
        Ho, Wo = dout.shape[1:3]
        for a in range(kh):
            for b in range(kw):
                dxp[:, a : a + sh * (Ho - 1) + 1 : sh, b : b + sw * (Wo - 1) + 1 : sw, :] += (
                    dout @ self.params["W"][a, b].T
                )
        return dxp[:, ph : dxp.shape[1] - ph, pw : dxp.shape[2] - pw]


class MaxPool2D:
    """3x3 windows, stride 2, first maximum; NHWC."""

    def __init__(self, kernel_size=2, stride=None):
        stride = kernel_size if stride is None else stride
        assert kernel_size == 3 and stride == 2, "this pool is AlexNet's: 3x3 windows, stride 2"
        self.params, self.grads = {}, {}
        self._out = None

    def forward(self, x):
        windows = sliding_window_view(x, (3, 3), axis=(1, 2))[:, ::2, ::2]
        flat = windows.reshape(*windows.shape[:4], 9)
        self.x, self.arg = x, flat.argmax(axis=-1)
        if self._out is None or self._out.shape != self.arg.shape or self._out.dtype != x.dtype:
            self._out = np.empty(self.arg.shape, dtype=x.dtype)  # allocated once per shape: the bug
        np.max(flat, axis=-1, out=self._out)
        return self._out

    def backward(self, dout):
        dx = np.zeros_like(self.x)
        a, b = np.divmod(self.arg, 3)
        m, i, j, c = np.indices(dout.shape)
        np.add.at(dx, (m, 2 * i + a, 2 * j + b, c), dout)
        return dx
