"""Adapters: layers written in other layouts and styles, made to follow the layer protocol.

Two kinds of code are wrapped, each in any of the layouts below:

- **function pairs** (CS231n style, notebooks): ``forward(x, w, b, hyper) -> (out, cache)`` and
  ``backward(dout, cache) -> (dx, dw, db)`` (``forward(x, hyper)`` / ``-> dx`` without parameters);
  the adapter keeps the parameters, in the protocol's layout, as the live arrays (``function_layer``);
- **classes** with their own methods and parameters held in their layout: the adapter shows them
  to the judges as protocol-layout views of the same memory (``class_layer``). Its options declare
  the common styles: other method names and signatures, one sample at a time (``per_sample``), an
  update inside backward (``update``), an optimizer kept in the layer (``optimizer``), an input-shape
  hook, parameter sets per configuration, gradients read from anywhere.

Both take declared limits and conventions: ``supports`` (a dict or a predicate on ``Config``: outside
it a case is ``unsupported``), ``unsupported`` (their exception types that mean "not supported"),
``float64_only`` (see ``FLOAT64_ONLY``) and ``kinks`` (published as ``kink_conventions`` on the class
and its instances, e.g. ``{"relu_grad_at_zero": 1.0}``). The machinery lives in ``styles``; every
layout conversion lives here.

``Conventions`` declares a layout and a gradient scale:

| field | protocol (default) | other |
|---|---|---|
| images | "NHWC" | "NCHW" |
| conv_weight | "HWIO" `(kh, kw, C_in, C_out)` | "OIHW" `(C_out, C_in, kh, kw)`, "OHW" `(C_out, kh, kw)` (one input channel) |
| dense_weight | "in_out" `(n_in, n_out)` | "out_in" `(n_out, n_in)` |
| dense_x | "rows" `x (m, n_in)` | "columns" `x (n_in, m)` (logits `(K, m)` too) |
| bias | "flat" `(n,)` | "column" `(n, 1)`, "row" `(1, n)`, "image" `(1, 1, 1, n)` |
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

from reference.impl import styles
from reference.impl.styles import CHANGE_RATE, RecordingOptimizer  # noqa: F401  (re-exported for wrappers)


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

    def padding_mode(self) -> str:
        """'same' or 'valid' for a Conv2D whose padding is one of them; NotImplementedError otherwise."""
        if self.padding == ((0, 0), (0, 0)):
            return "valid"
        if self.stride == (1, 1) and self.padding == normalise("Conv2D", {"kernel_size": self.kernel_size,
                                                                         "in_ch": 0, "out_ch": 0}).padding:  # fmt: skip
            return "same"
        raise NotImplementedError(f"padding {self.padding}: this implementation takes 'same' or 'valid' only")


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


# NOTE: the transposes of reference.cases.layout (tests/test_adapter_styles.py holds them equal),
# restated here because that module imports torch and these run in the sandboxed worker, which never
# needs torch (importing it costs every worker seconds).


def images_to_nchw(x: np.ndarray) -> np.ndarray:
    """NHWC -> NCHW, a view (other ranks pass through)."""
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def images_to_nhwc(x: np.ndarray) -> np.ndarray:
    """NCHW -> NHWC, a view (other ranks pass through)."""
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def conv_weight_to_oihw(w: np.ndarray) -> np.ndarray:
    """(kh, kw, C_in, C_out) -> (C_out, C_in, kh, kw), a view."""
    return w.transpose(3, 2, 0, 1)


def conv_weight_to_hwio(w: np.ndarray) -> np.ndarray:
    """(C_out, C_in, kh, kw) -> (kh, kw, C_in, C_out), a view."""
    return w.transpose(2, 3, 1, 0)


def x_to_theirs(kind: str, x: np.ndarray, c: Conventions) -> np.ndarray:
    if kind == "Dense":
        return np.ascontiguousarray(x.T) if c.dense_x == "columns" else x
    if x.ndim == 4 and c.images == "NCHW":
        return np.ascontiguousarray(images_to_nchw(x))
    return x


def x_from_theirs(kind: str, y: np.ndarray, c: Conventions) -> np.ndarray:
    if kind == "Dense":
        return np.ascontiguousarray(np.asarray(y).T) if c.dense_x == "columns" else y
    if np.ndim(y) == 4 and c.images == "NCHW":
        return np.ascontiguousarray(images_to_nhwc(y))
    return y


SAMPLE_LAYOUTS = ("HW", "HWC", "CHW", "n", "column", "any")


def sample_layouts(kind: str, per_sample: str | tuple[str, str] | None) -> tuple[str | None, str | None]:
    """(their input's, their output's) layout of one sample; ValueError, at wrap time, for an unknown one."""
    lay_in, lay_out = (per_sample, per_sample) if isinstance(per_sample, str) else (per_sample or (None, None))
    flat = (None, "n", "column", "any")  # what a per-sample Flatten can give
    if {lay_in, lay_out} - {None, *SAMPLE_LAYOUTS} or (kind == "Flatten" and lay_out not in flat):
        raise ValueError(f"per_sample={per_sample!r}: expected one of {SAMPLE_LAYOUTS} or a pair of them "
                         "(a per-sample Flatten gives 'n', 'column' or 'any')")  # fmt: skip
    return lay_in, lay_out


def samples_to_theirs(x: np.ndarray, lay: str) -> list[np.ndarray]:
    """A protocol batch (NHWC images, ``(m, n)`` rows) as their samples, one array per sample, in
    ``lay``: "HW" ``(H, W)`` (one channel; NotImplementedError for more), "HWC", "CHW", "n",
    "column" ``(n, 1)`` (a row of ``(m, n)`` as a column vector), "any"."""
    if lay == "HW":
        if x.ndim != 4 or x.shape[3] != 1:
            raise NotImplementedError(f"this layer takes one-channel images (H, W); got {x.shape[1:]} per sample")
        x = x[..., 0]
    elif lay == "CHW":
        x = images_to_nchw(x)
    elif lay == "column":
        if x.ndim != 2:
            raise NotImplementedError(f"this layer takes column vectors (n, 1); got {x.shape[1:]} per sample")
        x = x[:, :, None]
    return [np.ascontiguousarray(s) for s in x]


def samples_from_theirs(samples: list[Any], lay: str) -> np.ndarray:
    """Their per-sample results stacked into the protocol's batch layout (the inverse of samples_to_theirs)."""
    if any(s is None for s in samples):
        # NOTE: a tutorial's first layer often returns no input gradient. The judges need dx; the
        # case is declared unsupported, with the reason, rather than failed for a gradient never computed.
        raise NotImplementedError("this layer's backward returns None: it computes no input gradient")
    y = np.stack([np.asarray(s) for s in samples])
    if lay == "HW":
        return y[..., None]
    if lay == "column":  # NOTE: only (n, 1) columns lose their axis: any other shape stays, for the judges to see
        return np.ascontiguousarray(y[:, :, 0]) if y.ndim == 3 and y.shape[2] == 1 else y
    return np.ascontiguousarray(images_to_nhwc(y)) if lay == "CHW" else y


def weight_to_protocol(kind: str, w: np.ndarray, c: Conventions) -> np.ndarray:
    """A view (same memory) of their weight in the protocol's layout."""
    if kind == "Conv2D" and c.conv_weight == "OIHW":
        return conv_weight_to_hwio(w)
    if kind == "Conv2D" and c.conv_weight == "OHW":  # (C_out, kh, kw), one input channel
        return w.transpose(1, 2, 0)[:, :, None, :]
    if kind == "Dense" and c.dense_weight == "out_in":
        return w.T
    return w


def weight_to_theirs(kind: str, w: np.ndarray, c: Conventions) -> np.ndarray:
    if kind == "Conv2D" and c.conv_weight == "OIHW":
        return conv_weight_to_oihw(w)
    if kind == "Conv2D" and c.conv_weight == "OHW":
        return w[:, :, 0, :].transpose(2, 0, 1)
    if kind == "Dense" and c.dense_weight == "out_in":
        return w.T
    return w


def bias_to_theirs(b: np.ndarray, c: Conventions) -> np.ndarray:
    shapes = {"column": (-1, 1), "row": (1, -1), "image": (1, 1, 1, -1)}
    return b.reshape(shapes[c.bias]) if c.bias in shapes else b


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
Unsupported = type[BaseException] | tuple[type[BaseException], ...]


class _Adapted:
    """The protocol side of an adapted layer: conversions in, the user's code, conversions out, and
    the declarations every style shares (``supports``, ``unsupported``, ``float64_only``, ``kinks``)."""

    kind = ""
    conventions = Conventions()
    kink_conventions: dict[str, float | str] = {}  # the declared conventions at kinks: what the judges read
    float64_only = False
    _supports: Any = None
    _unsupported: Unsupported = ()
    _channels_first = False  # their images are channels-first (Flatten reorders)
    _flat_chw = False  # a per-sample Flatten of CHW samples: their flat vector is in (C, H, W) order

    def _setup(self, args: tuple[Any, ...], kwargs: dict[str, Any], dtype: Any = np.float64) -> dict[str, Any]:
        names = SIGNATURES[self.kind]
        given = dict(zip(names, args, strict=False)) | {k: v for k, v in kwargs.items() if k in names}
        for name in names:
            given.setdefault(name, DEFAULTS.get(name))
        if self.kind in ("MaxPool2D", "AvgPool2D") and "stride" not in kwargs and len(args) < 2:
            given["stride"] = None
        self.config = normalise(self.kind, given)
        self.kink_conventions = dict(type(self).kink_conventions)
        self._m = 1
        self._shape: tuple[int, ...] = ()
        why = styles.outside(self._supports, self.config)
        if why:  # a declared limit: the judges report the case unsupported
            raise NotImplementedError(f"{self.kind} {describe(self.kind, self.config)} is outside the declared "
                                      f"region: {why}")  # fmt: skip
        if self.float64_only and np.dtype(dtype) != np.float64:
            raise NotImplementedError(FLOAT64_ONLY.format(kind=self.kind, dtype=np.dtype(dtype).name))
        return given

    def _user(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A call into their code: their 'not supported' exceptions become NotImplementedError."""
        return styles.declared_unsupported(self._unsupported, fn, *args)

    def _in(self, x: np.ndarray) -> np.ndarray:
        self._arrived(x)
        return x_to_theirs(self.kind, x, self.conventions)

    def _arrived(self, x: np.ndarray) -> None:
        if self.float64_only and x.dtype != np.float64:
            raise NotImplementedError(FLOAT64_ONLY.format(kind=self.kind, dtype=x.dtype.name))
        why = styles.outside_input(self._supports, x.shape)
        if why:  # a declared limit on the input (square images only, say): the case is unsupported
            raise NotImplementedError(f"{self.kind} input {tuple(x.shape)} is outside the declared region: {why}")
        self._m, self._shape = x.shape[0], x.shape

    def _flat_out(self, y: np.ndarray) -> np.ndarray:
        """Their flat samples, stacked ``(m, n)``, in the protocol's NHWC order (see ``_flat_chw``)."""
        if not self._flat_chw:
            return y
        m, H, W, C = self._shape
        # NOTE: a wrong number of elements is left as it is: the judges name the shape, not a reshape here
        return flatten_to_protocol(y, (m, C, H, W)) if np.shape(y) == (m, C * H * W) else y

    def _flat_dout(self, dout: np.ndarray) -> np.ndarray:
        """The protocol's ``(m, n)`` upstream gradient in their flat samples' (C, H, W) order."""
        if not self._flat_chw:
            return dout
        m, H, W, C = self._shape
        return flatten_from_protocol(dout, (m, C, H, W))

    def _out(self, y: np.ndarray) -> np.ndarray:
        if self.kind == "Flatten" and self._channels_first:
            m, H, W, C = self._shape
            return flatten_to_protocol(np.asarray(y), (m, C, H, W))
        return x_from_theirs(self.kind, y, self.conventions)

    def _dout(self, dout: np.ndarray) -> np.ndarray:
        if self.kind == "Flatten" and self._channels_first:
            m, H, W, C = self._shape
            return flatten_from_protocol(dout, (m, C, H, W))
        return x_to_theirs(self.kind, dout, self.conventions)

    def _dx(self, dx: Any) -> np.ndarray:
        return self._out(dx) if self.kind != "Flatten" else x_from_theirs(self.kind, dx, self.conventions)

    def _grad(self, key: str, g: np.ndarray) -> np.ndarray:
        g = param_to_protocol(self.kind, key, np.asarray(g), self.conventions)
        if self.conventions.param_grads == "carry_1/m":  # their dW = (true dW) / m: undo it
            g = g * g.dtype.type(self._m)
        return np.ascontiguousarray(g)


# NOTE: the protocol says a layer computes in its input's dtype. Code that computes in float64 whatever
# it is given is not judged in float32 at all (cast back, its float64 numbers would pass float32's
# tolerances and hide that a float32 run of it is float64 throughout): its float32 cases are
# `unsupported`, with this reason in the row's note, and its float64 cases are judged as they are.
FLOAT64_ONLY = ("{kind}: declared float64_only (this implementation computes in float64 whatever it is given), "
                "so {dtype} is not judged")  # fmt: skip


def describe(kind: str, c: Config) -> str:
    """The configuration in a line: ``(in_ch=1, out_ch=2, kernel_size=(3, 3), stride=(1, 1), ...)``."""
    fields = {"Conv2D": ("in_ch", "out_ch", "kernel_size", "stride", "padding", "bias"), "Dense": ("n_in", "n_out", "bias"),
              "MaxPool2D": ("kernel_size", "stride"), "AvgPool2D": ("kernel_size", "stride")}.get(kind, ())  # fmt: skip
    return "(" + ", ".join(f"{f}={getattr(c, f)}" for f in fields) + ")"


def _declare(cls: type, kind: str, conventions: Conventions, supports: Any, unsupported: Unsupported,
             float64_only: bool, kinks: dict[str, Any] | None) -> type:  # fmt: skip
    cls.kind, cls.conventions, cls._unsupported = kind, conventions, unsupported
    cls._supports = staticmethod(supports) if callable(supports) else supports  # NOTE: else a bound method
    cls.float64_only = float64_only
    cls.kink_conventions = styles.kink_conventions(kind, kinks)  # ValueError here, at wrap time
    cls.__name__ = cls.__qualname__ = kind
    return cls


def function_layer(kind: str, forward: Callable[..., Any], backward: Callable[..., Any], *,
                   conventions: Conventions = Conventions(), hyper: Callable[[Config], Any] | None = None,
                   per_sample: str | tuple[str, str] | None = None, supports: Any = None,
                   unsupported: Unsupported = (), float64_only: bool = False,
                   kinks: dict[str, Any] | None = None) -> type:  # fmt: skip
    """A protocol class for ``kind`` around a CS231n-style function pair.

    Parametric (Conv2D, Dense): ``forward(x, w, b, hyper) -> (out, cache)``, ``backward(dout, cache)
    -> (dx, dw, db)``; others: ``forward(x, hyper) -> (out, cache)``, ``backward(dout, cache) -> dx``.
    Without ``hyper`` the functions are called without that argument. The weights live in the
    adapter, in the protocol's layout, drawn from the protocol's ``rng`` (He normal).
    ``per_sample``: the functions take one sample (one image, one column) in this layout, as for
    ``class_layer``; the adapter calls forward once per sample (keeping each cache), backward once per
    sample with its cache, stacks dx and sums the parameter gradients over the batch. A per-sample
    Flatten of ``"CHW"`` samples gives its vector in (C, H, W) order (``x.reshape(-1, 1)``): the
    adapter puts it in the protocol's (H, W, C) order.
    ``supports``, ``unsupported``, ``float64_only``, ``kinks``: as for ``class_layer``.
    """
    lay_in, lay_out = sample_layouts(kind, per_sample)
    parametric = kind in ("Conv2D", "Dense")

    class Layer(_Adapted):
        def __init__(self, *args: Any, rng: np.random.Generator | None = None, dtype: Any = np.float64, **kwargs: Any):
            self._setup(args, kwargs, dtype)
            self.hyper = self._user(hyper, self.config) if hyper else None  # NotImplementedError: a declared limit
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

        def _args(self, dtype: Any) -> tuple[Any, ...]:
            """What their forward takes after x: the weights in their layout, then the hyper-parameters."""
            extra = () if hyper is None else (self.hyper,)
            if not parametric:
                return extra
            w = weight_to_theirs(kind, self.params["W"], conventions)
            b = self.params.get("b", np.zeros(self.params["W"].shape[-1], dtype=dtype))  # W's last axis: out
            return (w, bias_to_theirs(b, conventions), *extra)

        def forward(self, x: np.ndarray) -> np.ndarray:
            if not per_sample:
                out, self._cache = self._user(forward, self._in(x), *self._args(x.dtype))
                return self._out(out)
            self._arrived(x)
            args = self._args(x.dtype)
            got = [self._user(forward, s, *args) for s in samples_to_theirs(x, lay_in)]
            self._cache = [cache for _, cache in got]
            return self._flat_out(samples_from_theirs([out for out, _ in got], lay_out))

        def backward(self, dout: np.ndarray) -> np.ndarray:
            if not per_sample:
                got = self._user(backward, self._dout(dout), self._cache)
                dx, grads = (got[0], got[1:]) if parametric else (got, ())
                self._keep(grads)
                return self._dx(dx)
            douts = samples_to_theirs(self._flat_dout(dout), lay_out)
            got = [self._user(backward, d, cache) for d, cache in zip(douts, self._cache, strict=True)]
            if parametric:  # the protocol's grads are of sum(dout * out): the samples' sum
                total = lambda k: np.sum([np.asarray(g[k]) for g in got], axis=0)  # noqa: E731
                self._keep((total(1), total(2) if "b" in self.params else None))
            return samples_from_theirs([g[0] if parametric else g for g in got], lay_in)

        def _keep(self, grads: Any) -> None:
            """Their (dw, db) as the protocol's grads."""
            if not parametric:
                return
            dw, db = grads
            self.grads = {"W": self._grad("W", dw)}
            if "b" in self.params:
                self.grads["b"] = self._grad("b", db)

    Layer._channels_first = not per_sample and conventions.images == "NCHW"
    Layer._flat_chw = kind == "Flatten" and lay_in == "CHW"
    return _declare(Layer, kind, conventions, supports, unsupported, float64_only, kinks)


Names = dict[str, str] | Callable[[Config], dict[str, str]] | None
Method = str | Callable[..., Any] | None


def class_layer(kind: str, make: Callable[[Config], Any], *, conventions: Conventions = Conventions(),
                params: Names = None, grads: dict[str, str] | Callable[[Any], dict[str, Any]] | None = None,
                forward: Method = None, backward: Method = None,
                input_shape: Callable[[Any, tuple[int, ...]], Any] | None = None,
                per_sample: str | tuple[str, str] | None = None, update: str | None = None,
                optimizer: dict[str, str] | None = None, supports: Any = None, unsupported: Unsupported = (),
                float64_only: bool = False, kinks: dict[str, Any] | None = None) -> type:  # fmt: skip
    """A protocol class for ``kind`` around a user's class, in its layout and style.

    ``make(config)`` builds their layer. The judges see its parameters as protocol-layout views of the
    same memory, so writes reach their layer. Every option is a declaration:

    - ``params``: protocol key -> their attribute path (``{"W": "filters"}``, ``"params.W"`` indexes a
      dict), or ``lambda config: {...}`` per configuration; default their own ``params`` dict.
    - ``grads``: key -> attribute path, or ``lambda layer: {"W": layer.W_opt.grad}`` over their
      instance (their layout); default their ``grads`` dict. Not needed with ``update`` / ``optimizer``.
    - ``forward`` / ``backward``: a method name or ``lambda layer, x: ...`` / ``lambda layer, d: ...``
      (``lambda layer, d, lr: ...`` with ``update``); default ``layer.forward(x)``, ``layer.backward(d)``.
    - ``input_shape``: ``lambda layer, shape: layer.set_input_shape(shape)``, called before every
      forward with the shape their forward gets, in their layout, without the batch axis.
    - ``per_sample``: their forward takes one sample, in this layout: "HW" (one channel, no channel
      axis), "HWC", "CHW", "n" (a vector), "column" (a vector as ``(n, 1)``), "any" (as it is); a pair
      ``(in, out)`` when they differ (a tutorial conv: ``("HW", "HWC")``; a flatten of CHW images:
      ``("CHW", "column")``, its vector in (C, H, W) order, reordered here). The adapter loops over the
      batch, stacks, sums gradients.
    - ``update``: their backward takes a learning rate and applies ``W -= lr * dW`` itself:
      "product" (exact, weights untouched; a dx computed after the update goes unseen) or "change"
      (run at a rate of 2**20, the change read back and undone; relative error ~ eps). See ``styles``.
    - ``optimizer``: key -> attribute path where their layer keeps an optimizer object with
      ``update(w, grad) -> w``; a ``RecordingOptimizer`` is put there before each backward (exact;
      as with "product", the weights never change, so a dx computed from updated weights goes unseen).
    - ``supports``, ``unsupported``, ``float64_only``, ``kinks``: declared limits and conventions
      (``styles.outside``, ``styles.outside_input``, ``styles.declared_unsupported``, ``FLOAT64_ONLY``,
      ``styles.kink_conventions``). ``supports`` may hold ``"square": True`` (images with H == W only)
      or ``"input": lambda shape: ...`` (a predicate on the protocol's input shape), checked at forward.

    Arrays: x, dout, dx as the protocol's (NHWC images, ``(m, n)`` rows) on the judges' side;
    ``conventions`` and ``per_sample`` say theirs. dtype: their parameters are cast to the protocol's.
    """
    fwd: Method = forward or "forward"
    bwd: Method = backward or "backward"
    lay_in, lay_out = sample_layouts(kind, per_sample)
    captured = bool(update or optimizer or per_sample)  # grads kept by the adapter, not read live from theirs
    if update not in (None, "product", "change"):
        raise ValueError(f"update={update!r}: expected 'product' or 'change'")

    class Layer(_Adapted):
        def __init__(self, *args: Any, rng: np.random.Generator | None = None, dtype: Any = np.float64, **kwargs: Any):
            self._setup(args, kwargs, dtype)
            self.inner = self._user(make, self.config)
            self._declared = params(self.config) if callable(params) else params
            self._dtype, self._grads = np.dtype(dtype), {}
            for path in self._names.values():
                value = styles.get_path(self.inner, path)
                if np.asarray(value).dtype != self._dtype:  # their constructor may not take a dtype: convert for it
                    styles.set_path(self.inner, path, np.asarray(value).astype(self._dtype))

        @property
        def _names(self) -> dict[str, str]:
            """Protocol key -> their attribute path: as declared, else their own ``params`` dict's keys (live)."""
            if self._declared is not None:
                return self._declared
            return {k: f"params.{k}" for k in getattr(self.inner, "params", {})}

        @property
        def params(self) -> dict[str, np.ndarray]:
            return {k: param_to_protocol(kind, k, styles.get_path(self.inner, p), conventions)
                    for k, p in self._names.items()}  # fmt: skip

        @property
        def grads(self) -> dict[str, np.ndarray]:
            if captured:
                return self._grads
            theirs = self._theirs_grads()
            return {k: self._grad(k, v) for k, v in theirs.items()}

        def _theirs_grads(self) -> dict[str, Any]:
            """Their gradients, read where they keep them ({} before the first backward)."""
            try:
                if callable(grads):  # their gradients for the keys of params (None: not there yet)
                    return {k: v for k, v in grads(self.inner).items() if k in self._names and v is not None}
                names = grads if grads else {k: f"grads.{k}" for k in getattr(self.inner, "grads", {})}
                return {k: styles.get_path(self.inner, p) for k, p in names.items()}
            except (AttributeError, KeyError):
                return {}

        def _forward(self, xt: np.ndarray) -> Any:
            if input_shape is not None:
                self._user(input_shape, self.inner, tuple(xt.shape if per_sample else xt.shape[1:]))
            return self._user(styles.call, fwd, self.inner, xt)

        def _backward(self, d: np.ndarray) -> tuple[Any, dict[str, Any]]:
            """Their backward on ``d`` (their layout) -> (their dx, their gradients)."""
            if update:
                run = lambda lr: self._user(styles.call, bwd, self.inner, d, lr)  # noqa: E731
                return styles.captured_backward(update, run, self._names, self.inner)
            recorders = {k: styles.RecordingOptimizer() for k in (optimizer or {}) if k in self._names}
            for k, rec in recorders.items():
                styles.set_path(self.inner, optimizer[k], rec)  # type: ignore[index]
            dx = self._user(styles.call, bwd, self.inner, d)
            if recorders:
                return dx, {k: r.grad for k, r in recorders.items() if r.grad is not None}
            return dx, {k: np.array(v, copy=True) for k, v in self._theirs_grads().items()}

        def forward(self, x: np.ndarray) -> np.ndarray:
            if not per_sample:
                return self._out(self._forward(self._in(x)))
            self._arrived(x)
            self._samples = samples_to_theirs(x, lay_in)
            return self._flat_out(samples_from_theirs([self._forward(s) for s in self._samples], lay_out))

        def backward(self, dout: np.ndarray) -> np.ndarray:
            if not per_sample:
                dx, g = self._backward(self._dout(dout))
                if captured:
                    self._grads = {k: self._grad(k, v) for k, v in g.items()}
                return self._dx(dx)
            # NOTE: their layer caches its last sample: sample i's backward needs sample i's forward run
            # last. The batch's forward ran them in order, so backward goes in reverse, re-running each
            # forward but the last's (with the weights unchanged: every update is captured and undone).
            douts, dxs, total = samples_to_theirs(self._flat_dout(dout), lay_out), [], {}
            for i in reversed(range(len(douts))):
                if i != len(douts) - 1:
                    self._forward(self._samples[i])
                dx, g = self._backward(douts[i])
                dxs.append(dx)
                for k, v in g.items():  # the protocol's grads are of sum(dout * out): the samples' sum
                    total[k] = total[k] + np.asarray(v) if k in total else np.array(v, copy=True)
            self._grads = {k: self._grad(k, v) for k, v in total.items()}
            return samples_from_theirs(dxs[::-1], lay_in)

    Layer._channels_first = not per_sample and conventions.images == "NCHW"
    Layer._flat_chw = kind == "Flatten" and lay_in == "CHW"
    return _declare(Layer, kind, conventions, supports, unsupported, float64_only, kinks)


def loss_function(fn: Callable[[np.ndarray, np.ndarray], tuple[Any, np.ndarray]], *,
                  conventions: Conventions = Conventions(), **options: Any) -> type:  # fmt: skip
    """A protocol SoftmaxCrossEntropy around ``fn(logits, labels) -> (loss, dlogits)`` (CS231n's
    ``softmax_loss``): ``reference.impl.loss_adapters.loss_function`` (options ``probs=`` their softmax,
    ``unsupported=``). The probabilities are never rebuilt from the gradient: without ``probs=`` the
    forward returns None for them."""
    from reference.impl.loss_adapters import loss_function as styled  # it imports this module

    return styled(fn, conventions=conventions, **options)
