"""A student's convolution (a loop over output positions, NHWC, the protocol's class) with one bug:
'same' padding puts k // 2 rows (columns) before the image and (k - 1) // 2 after, one off for an
even kernel (torch pads (k - 1) // 2 before and the rest after), so every output of an even
'same' kernel is shifted by one. Every other layer is scratch_cnn's."""

import numpy as np

from scratch_cnn import AvgPool2D, Dense, Flatten, MaxPool2D, ReLU, SoftmaxCrossEntropy  # noqa: F401


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class Conv2D:
    def __init__(self, in_ch, out_ch, kernel_size, stride=1, padding="same", bias=True, *, rng, dtype=np.float64):
        self.k, self.s = _pair(kernel_size), _pair(stride)
        kh, kw = self.k
        if padding == "same":
            self.pads = ((kh // 2, (kh - 1) // 2), (kw // 2, (kw - 1) // 2))  # BUG: (k - 1) // 2 goes before
        elif padding == "valid":
            self.pads = ((0, 0), (0, 0))
        else:
            ph, pw = _pair(padding)
            self.pads = ((ph, ph), (pw, pw))
        self.params = {"W": (rng.standard_normal((kh, kw, in_ch, out_ch)) * 0.1).astype(dtype)}
        if bias:
            self.params["b"] = np.zeros(out_ch, dtype=dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def forward(self, x):
        (kh, kw), (sh, sw) = self.k, self.s
        xp = np.pad(x, ((0, 0), *self.pads, (0, 0)))
        Ho, Wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
        W = self.params["W"]
        out = np.zeros((x.shape[0], Ho, Wo, W.shape[3]), dtype=x.dtype)
        for i in range(Ho):
            for j in range(Wo):
                patch = xp[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :]
                out[:, i, j, :] = np.tensordot(patch, W, axes=([1, 2, 3], [0, 1, 2]))
        self.x, self.xp = x, xp
        return out + self.params["b"] if "b" in self.params else out

    def backward(self, dout):
        (kh, kw), (sh, sw) = self.k, self.s
        W = self.params["W"]
        dxp, dW = np.zeros_like(self.xp), np.zeros_like(W)
        for i in range(dout.shape[1]):
            for j in range(dout.shape[2]):
                patch = self.xp[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :]
                dW += np.tensordot(patch, dout[:, i, j, :], axes=([0], [0]))
                dxp[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :] += np.tensordot(
                    dout[:, i, j, :], W, axes=([1], [3])
                )
        self.grads["W"] = dW
        if "b" in self.params:
            self.grads["b"] = dout.sum(axis=(0, 1, 2))
        (top, _), (left, _) = self.pads
        H, Wd = self.x.shape[1:3]
        return dxp[:, top : top + H, left : left + Wd, :]
