"""Adapters: layers written in other layouts and styles, made to follow the layer protocol.

Two styles are wrapped, each in any of the layouts below:

- **function pairs** (CS231n style): ``forward(x, w, b, hyper) -> (out, cache)`` and
  ``backward(dout, cache) -> (dx, dw, db)`` (``forward(x, hyper)`` / ``-> dx`` without parameters);
  the adapter keeps the parameters, in the protocol's layout, as the live arrays;
- **classes** with their own ``forward(x)``, ``backward(dout)`` and parameters held in their layout:
  the adapter shows them to the judges as protocol-layout views of the same memory.

``Conventions`` declares a layout and a gradient scale:

| field | protocol (default) | other |
|---|---|---|
| images | "NHWC" | "NCHW" |
| conv_weight | "HWIO" `(kh, kw, C_in, C_out)` | "OIHW" `(C_out, C_in, kh, kw)` |
| dense_weight | "in_out" `(n_in, n_out)` | "out_in" `(n_out, n_in)` |
| dense_x | "rows" `x (m, n_in)` | "columns" `x (n_in, m)` (logits `(K, m)` too) |
| bias | "flat" `(n,)` | "column" `(n, 1)` |
| loss | "mean" | "sum": the loss and its gradient are the batch's sum |
| param_grads | "true" | "carry_1/m": dW, db already divided by the batch size (the blog's style) |

A hyper function turns the protocol's configuration into the implementation's own (``Config``
has ``one("stride")``, ``symmetric_pad()``, which raise NotImplementedError for what a square-only
implementation cannot take: those cases are then reported ``unsupported``, not failed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.cases import layout


@dataclass(frozen=True)
class Conventions:
    images: str = "NHWC"
    conv_weight: str = "HWIO"
    dense_weight: str = "in_out"
    dense_x: str = "rows"
    bias: str = "flat"
    loss: str = "mean"
    param_grads: str = "true"


@dataclass(frozen=True)
class Config:
    """The protocol configuration of a layer, normalised: pairs are (h, w), padding is per side."""

    kernel_size: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
    in_ch: int = 0
    out_ch: int = 0
    n_in: int = 0
    n_out: int = 0
    bias: bool = True

    def one(self, name: str) -> int:
        """A square pair as one int; NotImplementedError (a declared limit) otherwise."""
        a, b = getattr(self, name)
        if a != b:
            raise NotImplementedError(f"{name} {(a, b)} is not square: this implementation takes one number")
        return a

    def symmetric_pad(self) -> int:
        """One padding for all four sides; NotImplementedError when the sides differ."""
        (top, bottom), (left, right) = self.padding
        if len({top, bottom, left, right}) != 1:
            raise NotImplementedError(
                f"padding {self.padding} differs between sides: this implementation pads all sides alike"
            )
        return top


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def normalise(kind: str, kwargs: dict[str, Any]) -> Config:
    """The protocol constructor's arguments (any int/tuple/'same'/'valid' form) as a Config."""
    if kind == "Conv2D":
        k, s = _pair(kwargs["kernel_size"]), _pair(kwargs.get("stride", 1))
        p = kwargs.get("padding", "same")
        if p == "same":  # torch's rule: the extra row/column of an even kernel goes at the bottom/right
            pads = tuple(((k_ - 1) // 2, k_ - 1 - (k_ - 1) // 2) for k_ in k)
        elif p == "valid":
            pads = ((0, 0), (0, 0))
        else:
            ph, pw = _pair(p)
            pads = ((ph, ph), (pw, pw))
        return Config(k, s, pads, in_ch=kwargs["in_ch"], out_ch=kwargs["out_ch"], bias=kwargs.get("bias", True))  # type: ignore[arg-type]
    if kind in ("MaxPool2D", "AvgPool2D"):
        k = _pair(kwargs.get("kernel_size", 2))
        s = k if kwargs.get("stride") is None else _pair(kwargs["stride"])
        return Config(k, s)
    if kind == "Dense":
        return Config(n_in=kwargs["n_in"], n_out=kwargs["n_out"], bias=kwargs.get("bias", True))
    return Config()


# --- one place for the conversions between a user's layout and the protocol's -----------------------


def x_to_theirs(kind: str, x: np.ndarray, c: Conventions) -> np.ndarray:
    if kind == "Dense":
        return np.ascontiguousarray(x.T) if c.dense_x == "columns" else x
    if x.ndim == 4 and c.images == "NCHW":
        return np.ascontiguousarray(layout.images_to_torch(x))
    return x


def x_from_theirs(kind: str, y: np.ndarray, c: Conventions) -> np.ndarray:
    if kind == "Dense":
        return np.ascontiguousarray(np.asarray(y).T) if c.dense_x == "columns" else y
    if np.ndim(y) == 4 and c.images == "NCHW":
        return np.ascontiguousarray(layout.images_from_torch(y))
    return y


def weight_to_protocol(kind: str, w: np.ndarray, c: Conventions) -> np.ndarray:
    """A view (same memory) of their weight in the protocol's layout."""
    if kind == "Conv2D" and c.conv_weight == "OIHW":
        return layout.conv_weight_from_torch(w)
    if kind == "Dense" and c.dense_weight == "out_in":
        return layout.dense_weight_from_torch(w)
    return w


def weight_to_theirs(kind: str, w: np.ndarray, c: Conventions) -> np.ndarray:
    if kind == "Conv2D" and c.conv_weight == "OIHW":
        return layout.conv_weight_to_torch(w)
    if kind == "Dense" and c.dense_weight == "out_in":
        return layout.dense_weight_to_torch(w)
    return w


def bias_to_theirs(b: np.ndarray, c: Conventions) -> np.ndarray:
    return b.reshape(-1, 1) if c.bias == "column" else b


def bias_to_protocol(b: np.ndarray, c: Conventions) -> np.ndarray:
    return np.asarray(b).reshape(-1)


def param_to_protocol(kind: str, key: str, value: np.ndarray, c: Conventions) -> np.ndarray:
    return weight_to_protocol(kind, value, c) if key == "W" else bias_to_protocol(value, c)


def flatten_to_protocol(flat: np.ndarray, nchw_shape: tuple[int, ...]) -> np.ndarray:
    """(m, C*H*W) in NCHW order -> (m, H*W*C) in the protocol's NHWC order."""
    m, C, H, W = nchw_shape
    return flat.reshape(m, C, H, W).transpose(0, 2, 3, 1).reshape(m, -1)


def flatten_from_protocol(flat: np.ndarray, nchw_shape: tuple[int, ...]) -> np.ndarray:
    m, C, H, W = nchw_shape
    return flat.reshape(m, H, W, C).transpose(0, 3, 1, 2).reshape(m, -1)


# --- the protocol class around a user's layer -----------------------------------------------------


SIGNATURES = {
    "Conv2D": ("in_ch", "out_ch", "kernel_size", "stride", "padding", "bias"),
    "Dense": ("n_in", "n_out", "bias"),
    "MaxPool2D": ("kernel_size", "stride"),
    "AvgPool2D": ("kernel_size", "stride"),
    "ReLU": (),
    "Flatten": (),
}
DEFAULTS = {"stride": 1, "padding": "same", "bias": True, "kernel_size": 2}


class _Adapted:
    """The protocol side of an adapted layer: conversions in, the user's code, conversions out."""

    kind = ""
    conventions = Conventions()

    def _setup(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        names = SIGNATURES[self.kind]
        given = dict(zip(names, args, strict=False)) | {k: v for k, v in kwargs.items() if k in names}
        for name in names:
            given.setdefault(name, DEFAULTS.get(name))
        if self.kind in ("MaxPool2D", "AvgPool2D") and "stride" not in kwargs and len(args) < 2:
            given["stride"] = None
        self.config = normalise(self.kind, given)
        self._m = 1
        self._shape: tuple[int, ...] = ()
        return given

    def _in(self, x: np.ndarray) -> np.ndarray:
        self._m, self._shape = x.shape[0], x.shape
        return x_to_theirs(self.kind, x, self.conventions)

    def _out(self, y: np.ndarray) -> np.ndarray:
        if self.kind == "Flatten" and self.conventions.images == "NCHW":
            m, H, W, C = self._shape
            return flatten_to_protocol(np.asarray(y), (m, C, H, W))
        return x_from_theirs(self.kind, y, self.conventions)

    def _dout(self, dout: np.ndarray) -> np.ndarray:
        if self.kind == "Flatten" and self.conventions.images == "NCHW":
            m, H, W, C = self._shape
            return flatten_from_protocol(dout, (m, C, H, W))
        return x_to_theirs(self.kind, dout, self.conventions)

    def _grad(self, key: str, g: np.ndarray) -> np.ndarray:
        g = param_to_protocol(self.kind, key, np.asarray(g), self.conventions)
        if self.conventions.param_grads == "carry_1/m":  # their dW = (true dW) / m: undo it
            g = g * g.dtype.type(self._m)
        return np.ascontiguousarray(g)


def function_layer(kind: str, forward: Callable[..., Any], backward: Callable[..., Any], *,
                   conventions: Conventions = Conventions(), hyper: Callable[[Config], Any] | None = None) -> type:  # fmt: skip
    """A protocol class for ``kind`` around a CS231n-style function pair.

    Parametric (Conv2D, Dense): ``forward(x, w, b, hyper) -> (out, cache)``, ``backward(dout, cache)
    -> (dx, dw, db)``; others: ``forward(x, hyper) -> (out, cache)``, ``backward(dout, cache) -> dx``.
    Without ``hyper`` the functions are called without that argument. The weights live in the
    adapter, in the protocol's layout, drawn from the protocol's ``rng`` (He normal).
    """

    class Layer(_Adapted):
        def __init__(self, *args: Any, rng: np.random.Generator | None = None, dtype: Any = np.float64, **kwargs: Any):
            self._setup(args, kwargs)
            self.hyper = hyper(self.config) if hyper else None  # NotImplementedError here: a declared limit
            self.params: dict[str, np.ndarray] = {}
            self.grads: dict[str, np.ndarray] = {}
            c, dt = self.config, np.dtype(dtype)
            rng = rng if rng is not None else np.random.default_rng()
            if kind == "Conv2D":
                shape, fan_in = (*c.kernel_size, c.in_ch, c.out_ch), c.kernel_size[0] * c.kernel_size[1] * c.in_ch
            elif kind == "Dense":
                shape, fan_in = (c.n_in, c.n_out), c.n_in
            else:
                return
            self.params["W"] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dt)
            self.params["b"] = np.zeros(shape[-1], dtype=dt)  # a layer without bias: b stays zero, never judged
            if not c.bias:
                del self.params["b"]

        def forward(self, x: np.ndarray) -> np.ndarray:
            xt = self._in(x)
            extra = () if hyper is None else (self.hyper,)
            if kind in ("Conv2D", "Dense"):
                w = weight_to_theirs(kind, self.params["W"], conventions)
                b = self.params.get("b", np.zeros(self.params["W"].shape[-1], dtype=x.dtype))  # W's last axis: out
                out, self._cache = forward(xt, w, bias_to_theirs(b, conventions), *extra)
            else:
                out, self._cache = forward(xt, *extra)
            return self._out(out)

        def backward(self, dout: np.ndarray) -> np.ndarray:
            got = backward(self._dout(dout), self._cache)
            if kind in ("Conv2D", "Dense"):
                dx, dw, db = got
                self.grads = {"W": self._grad("W", dw)}
                if "b" in self.params:
                    self.grads["b"] = self._grad("b", db)
            else:
                dx = got
            return self._out(dx) if kind != "Flatten" else x_from_theirs(kind, dx, conventions)

    Layer.kind, Layer.conventions = kind, conventions
    Layer.__name__ = Layer.__qualname__ = kind
    return Layer


def class_layer(kind: str, make: Callable[[Config], Any], *, conventions: Conventions = Conventions(),
                params: dict[str, str] | None = None, grads: dict[str, str] | None = None) -> type:  # fmt: skip
    """A protocol class for ``kind`` around a user's class in another layout.

    ``make(config)`` builds their layer (its ``forward(x)`` / ``backward(dout)`` in their layout).
    ``params`` / ``grads`` map the protocol's keys to their attribute names (default: their own
    ``params`` / ``grads`` dicts with keys ``W``, ``b``). The judges see their parameters as
    protocol-layout views of the same memory, so writes reach their layer.
    """

    class Layer(_Adapted):
        def __init__(self, *args: Any, rng: np.random.Generator | None = None, dtype: Any = np.float64, **kwargs: Any):
            self._setup(args, kwargs)
            self.inner = make(self.config)
            self._dtype = np.dtype(dtype)
            for key in (params or {}) if params else getattr(self.inner, "params", {}):
                value = self._theirs("params", params, key)
                if value.dtype != self._dtype:  # their constructor may not take a dtype: convert in place of it
                    self._set_theirs(params, key, value.astype(self._dtype))

        def _theirs(self, what: str, names: dict[str, str] | None, key: str) -> np.ndarray:
            return getattr(self.inner, names[key]) if names else getattr(self.inner, what)[key]

        def _set_theirs(self, names: dict[str, str] | None, key: str, value: np.ndarray) -> None:
            if names:
                setattr(self.inner, names[key], value)
            else:
                self.inner.params[key] = value

        @property
        def params(self) -> dict[str, np.ndarray]:
            keys = list(params) if params else list(getattr(self.inner, "params", {}))
            return {k: param_to_protocol(kind, k, self._theirs("params", params, k), conventions) for k in keys}

        @property
        def grads(self) -> dict[str, np.ndarray]:
            if grads and not all(hasattr(self.inner, name) for name in grads.values()):
                return {}  # before the first backward their gradient attributes do not exist yet
            keys = list(grads) if grads else list(getattr(self.inner, "grads", {}))
            return {k: self._grad(k, self._theirs("grads", grads, k)) for k in keys}

        def forward(self, x: np.ndarray) -> np.ndarray:
            return self._out(self.inner.forward(self._in(x)))

        def backward(self, dout: np.ndarray) -> np.ndarray:
            dx = self.inner.backward(self._dout(dout))
            return self._out(dx) if kind != "Flatten" else x_from_theirs(kind, dx, conventions)

    Layer.kind, Layer.conventions = kind, conventions
    Layer.__name__ = Layer.__qualname__ = kind
    return Layer


def loss_function(fn: Callable[[np.ndarray, np.ndarray], tuple[Any, np.ndarray]], *,
                  conventions: Conventions = Conventions()) -> type:  # fmt: skip
    """A protocol SoftmaxCrossEntropy around ``fn(logits, labels) -> (loss, dlogits)`` (CS231n's
    ``softmax_loss``), logits in ``conventions.dense_x`` layout, reduced by ``conventions.loss``."""

    class SoftmaxCrossEntropy:
        def forward(self, logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
            theirs = np.ascontiguousarray(logits.T) if conventions.dense_x == "columns" else logits
            loss, d = fn(theirs, labels)
            d = np.asarray(d).T if conventions.dense_x == "columns" else np.asarray(d)
            m = logits.shape[0]
            if conventions.loss == "sum":
                loss, d = loss / m, d / d.dtype.type(m)
            self._d = np.ascontiguousarray(d)
            # NOTE: CS231n's softmax_loss returns no probabilities. They are read off the user's own
            # gradient, (p - onehot) / m, so the judges' probs row still compares their numbers.
            probs = d * d.dtype.type(m)
            probs[np.arange(m), labels] += 1
            return float(loss), probs

        def backward(self) -> np.ndarray:
            return self._d

    return SoftmaxCrossEntropy
