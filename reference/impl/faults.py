"""A catalogue of injected faults: wrong layers that the judges must catch.

Each fault is an implementation (a namespace following the layer protocol) equal to scratch_cnn
except for one deliberately wrong piece, plus ``should_fail(case, tensor, stats)``, which says which
autograd rows it must fail (all others must still pass). ``nox -s verify`` runs every fault through
the judges and the gate requires each one to be caught.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import scratch_cnn
from reference.cases.grid import Case
from scratch_cnn import conv, pooling


def _impl(**overrides: Any) -> types.SimpleNamespace:
    names = ("Conv2D", "ReLU", "MaxPool2D", "AvgPool2D", "Flatten", "Dense", "SoftmaxCrossEntropy", "SGD")
    base = {n: getattr(scratch_cnn, n) for n in names}
    base.update(overrides)
    return types.SimpleNamespace(**base)


# --- the wrong layers -----------------------------------------------------------------------------


class ReLUGradOneAtZero(scratch_cnn.ReLU):
    def forward(self, x: np.ndarray) -> np.ndarray:
        out = super().forward(x)
        self._cache = x >= 0  # wrong: ReLU'(0) taken as 1
        return out


class MaxPoolTiesToEveryMax(scratch_cnn.MaxPool2D):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        cache = self._recall(dout)
        (kh, kw), stride = cache.kernel, cache.stride
        x = self._x
        Ho, Wo = dout.shape[1:3]
        out = self._out
        dx = np.zeros(cache.x_shape, dtype=dout.dtype)
        for a in range(kh):
            for b in range(kw):
                view = pooling._offset_view(x, a, b, stride, (Ho, Wo))
                pooling._offset_view(dx, a, b, stride, (Ho, Wo))[...] += np.where(view == out, dout, 0)  # every max
        return dx

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        self._out = super().forward(x)
        return self._out


class AvgPoolWrongAxis(scratch_cnn.AvgPool2D):
    """Averages kw rows by kh columns: the window's axes swapped."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, cache = pooling.avgpool_forward(x, self.kernel_size[::-1], self.stride[::-1])
        return self._remember(out, cache)


class ConvDWMissingOneOverM(scratch_cnn.Conv2D):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = super().backward(dout)
        self.grads["W"] = self.grads["W"] * dout.shape[0]  # the 1/m of the mean loss forgotten
        return dx


class ConvDWOneSignFlipped(scratch_cnn.Conv2D):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = super().backward(dout)
        self.grads["W"].reshape(-1)[0] *= -1
        return dx


class ConvBiasGradDropped(scratch_cnn.Conv2D):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = super().backward(dout)
        if "b" in self.grads:
            self.grads["b"] = np.zeros_like(self.grads["b"])
        return dx


class DenseDxScaled(scratch_cnn.Dense):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        return super().backward(dout) * dout.dtype.type(1.01)


class ConvBackwardOffByOnePad(scratch_cnn.Conv2D):
    """dx cropped one row/column off: the padding taken as one more than it is."""

    def backward(self, dout: np.ndarray) -> np.ndarray:
        cache = self._recall(dout)
        (t, bt), (lt, rt) = cache.pads
        shifted = cache._replace(pads=((t + 1, max(bt - 1, 0)), (lt + 1, max(rt - 1, 0))))
        dx, dW, db = conv.conv_backward(dout, shifted)
        self.grads = {"W": dW} if db is None else {"W": dW, "b": db}
        return dx


class ConvFlippedKernel(scratch_cnn.Conv2D):
    """A true convolution (kernel flipped) where the protocol says cross-correlation."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        saved = self.params["W"]
        self.params["W"] = np.ascontiguousarray(saved[::-1, ::-1])
        try:
            return super().forward(x)
        finally:
            self.params["W"] = saved


class SoftmaxWithoutMaxShift(scratch_cnn.SoftmaxCrossEntropy):
    def forward(self, logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            e = np.exp(logits)
            p = e / e.sum(axis=1, keepdims=True)
            m = logits.shape[0]
            loss = float(-np.log(p[np.arange(m), labels]).mean())
        d = p.copy()
        d[np.arange(m), labels] -= 1
        self._dlogits = d / logits.dtype.type(m)
        return loss, p


class VacuousDense(scratch_cnn.Dense):
    """Constant forward, zero backward: a layer that computes nothing."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._remember(np.zeros((x.shape[0], self.n_out), dtype=x.dtype), x)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x = self._recall(dout)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        return np.zeros_like(x)


# --- the catalogue --------------------------------------------------------------------------------


def _kernel(case: Case) -> tuple[int, int]:
    k = case.config.get("kernel_size", 2)
    return tuple(k) if isinstance(k, (tuple, list)) else (k, k)  # type: ignore[return-value]


def _stride(case: Case) -> tuple[int, int]:
    s = case.config.get("stride")
    if s is None:
        return _kernel(case)
    return tuple(s) if isinstance(s, (tuple, list)) else (s, s)  # type: ignore[return-value]


def _pads_nonzero(case: Case) -> bool:
    p = case.config.get("padding", "same")
    if p == "valid":
        return False
    if p == "same":
        return _kernel(case) != (1, 1)
    return (tuple(p) if isinstance(p, (tuple, list)) else (p, p)) != (0, 0)


@dataclass(frozen=True)
class Fault:
    name: str
    description: str
    impl: Callable[[], Any]
    should_fail: Callable[[Case, str, dict[str, int]], bool]

    @property
    def layer(self) -> str:
        """The layer type this fault replaces."""
        impl = self.impl()
        return next(n for n in vars(impl) if getattr(impl, n) is not getattr(scratch_cnn, n))


FAULTS = [
    Fault("relu_grad_one_at_zero", "ReLU'(0) = 1 instead of 0", lambda: _impl(ReLU=ReLUGradOneAtZero),
          lambda c, t, s: c.layer == "ReLU" and t == "dx" and s["zeros"] > 0),
    Fault("maxpool_ties_to_every_max", "max pool routes the gradient to every tied maximum",
          lambda: _impl(MaxPool2D=MaxPoolTiesToEveryMax), lambda c, t, s: c.layer == "MaxPool2D" and t == "dx" and s["ties"] > 0),
    Fault("avgpool_wrong_axis", "average pool with the window's axes swapped", lambda: _impl(AvgPool2D=AvgPoolWrongAxis),
          lambda c, t, s: c.layer == "AvgPool2D" and (_kernel(c)[0] != _kernel(c)[1] or _stride(c)[0] != _stride(c)[1])),
    Fault("conv_dW_missing_1_over_m", "conv dW misses the 1/m of the mean loss", lambda: _impl(Conv2D=ConvDWMissingOneOverM),
          lambda c, t, s: c.layer == "Conv2D" and t == "dW" and c.input_shape[0] > 1),
    Fault("conv_dW_sign_flip", "one element of conv dW has its sign flipped", lambda: _impl(Conv2D=ConvDWOneSignFlipped),
          lambda c, t, s: c.layer == "Conv2D" and t == "dW"),
    Fault("conv_bias_grad_dropped", "conv bias gradient is zero", lambda: _impl(Conv2D=ConvBiasGradDropped),
          lambda c, t, s: c.layer == "Conv2D" and t == "db"),
    Fault("dense_dx_scaled", "dense dx scaled by 1.01", lambda: _impl(Dense=DenseDxScaled),
          lambda c, t, s: c.layer == "Dense" and t == "dx"),
    Fault("conv_backward_off_by_one_pad", "conv backward crops dx with the padding off by one",
          lambda: _impl(Conv2D=ConvBackwardOffByOnePad), lambda c, t, s: c.layer == "Conv2D" and t == "dx"),
    Fault("conv_flipped_kernel", "conv forward flips the kernel (convolution, not correlation)",
          lambda: _impl(Conv2D=ConvFlippedKernel), lambda c, t, s: c.layer == "Conv2D" and t in ("out", "dx") and _kernel(c) != (1, 1)),
    Fault("softmax_without_max_shift", "softmax without the max shift (overflows on large logits)",
          lambda: _impl(SoftmaxCrossEntropy=SoftmaxWithoutMaxShift), lambda c, t, s: c.layer == "SoftmaxCrossEntropy" and c.values == "large"),
    Fault("vacuous_dense", "dense with constant forward and zero backward", lambda: _impl(Dense=VacuousDense),
          lambda c, t, s: c.layer == "Dense"),
]  # fmt: skip
FAULTS_BY_NAME = {f.name: f for f in FAULTS}


# --- training-loop faults, for the curve judge ----------------------------------------------------


class SGDMomentumTwice(scratch_cnn.SGD):
    """The velocity decayed by the momentum twice per step."""

    def step(self, grads: dict[str, np.ndarray]) -> None:
        for v in self.velocity.values():
            v *= self.momentum
        super().step(grads)


class SGDDecayingBiases(scratch_cnn.SGD):
    """Weight decay applied to biases too (the twin, like scratch_cnn, decays weights only)."""

    def step(self, grads: dict[str, np.ndarray]) -> None:
        grads = {k: (g + self.weight_decay * self.params[k] if k.endswith(".b") else g) for k, g in grads.items()}
        super().step(grads)


class FlattenNCHW(scratch_cnn.Flatten):
    """Flattens in NCHW order (width fastest) where the protocol says NHWC (channels fastest)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._remember(x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1), x.shape)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        m, H, W, C = self._recall(dout)
        return dout.reshape(m, C, H, W).transpose(0, 2, 3, 1)


@dataclass(frozen=True)
class CurveFault:
    name: str
    description: str
    impl: Callable[[], Any]
    labels_for_impl: Callable[[np.ndarray], np.ndarray] | None = None


CURVE_FAULTS = [
    CurveFault("sgd_momentum_twice", "momentum applied twice per step", lambda: _impl(SGD=SGDMomentumTwice)),
    CurveFault(
        "weight_decay_on_biases",
        "weight decay on biases, which the twin does not decay",
        lambda: _impl(SGD=SGDDecayingBiases),
    ),
    CurveFault("flatten_nchw_order", "flatten in NCHW order, not the twin's NHWC", lambda: _impl(Flatten=FlattenNCHW)),
    CurveFault(
        "shuffled_labels",
        "each batch's labels rolled by one against its images",
        lambda: _impl(),
        lambda y: np.roll(y, 1),
    ),
]
