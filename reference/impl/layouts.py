"""Layouts: the protocol's configuration and arrays beside a user's, and every conversion between them.

What the adapters need of a layer kind (its constructor, its parameters' shapes, which of its arrays
are images or rows, its weight's other layouts) they read from its declaration (reference.layers), in
the first section here: the other adapter modules call these and never branch on a layer's name.

| piece | its job | documented by |
|---|---|---|
| ``configure``, ``normalise``, ``Config`` | the protocol constructor's arguments as one ``Config`` (by the kind's declaration: reference.layers) | ``tests/test_adapter_pieces.py`` |
| ``describe``, ``param_shape``, ``parametric``, ``chw_flatten`` | a configuration in a line; the parameters a kind has; a flatten that reorders | ``tests/test_adapter_pieces.py`` |
| ``Conventions`` | a user's layout and gradient scale (the table below) | ``tests/test_adapter_styles.py`` |
| ``x_to_theirs`` ... ``flatten_from_protocol`` | one array at a time, theirs <-> the protocol's | ``tests/test_adapter_styles.py`` (the transposes) |
| ``sample_layouts``, ``samples_to_theirs``, ``samples_from_theirs`` | a batch as one sample per array, and back | ``tests/test_adapter_styles.py``, ``tests/test_wrappers_perimage.py`` |
| ``Layout`` (``conventions=``) | a wrapped layer's whole batch, parameters and gradients, theirs <-> the protocol's | ``tests/test_adapter_pieces.py`` |

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

NumPy only: this module runs in the sandboxed worker beside the code it wraps, which never needs
torch (importing it costs every worker seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.layers import KINDS, LayerKind


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
        if self.stride == (1, 1) and self.padding == conv_padding(self.kernel_size, "same"):
            return "same"
        raise NotImplementedError(f"padding {self.padding}: this implementation takes 'same' or 'valid' only")


# --- what each layer kind is, to the adapters (one table or function each) ---------------------------


def _kind(name: str) -> LayerKind:
    return KINDS[name]


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def conv_padding(kernel: tuple[int, int], padding: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """A Conv2D's padding (an int, a pair, 'same' or 'valid') per side: ``((top, bottom), (left, right))``."""
    if padding == "same":  # torch's rule: the extra row/column of an even kernel goes at the bottom/right
        return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel)  # type: ignore[return-value]
    if padding == "valid":
        return ((0, 0), (0, 0))
    ph, pw = _pair(padding)
    return ((ph, ph), (pw, pw))


def normalise(kind: str, kwargs: dict[str, Any]) -> Config:
    """The protocol constructor's arguments (any int/tuple/'same'/'valid' form) as a Config: by the
    configuration's keys (a window's kernel and stride as pairs, the stride the window's where it has
    none, a padding per side), whatever the kind."""
    given = {k: v for k, v in kwargs.items() if k in _kind(kind).signature}
    fields: dict[str, Any] = {k: v for k, v in given.items() if k in ("in_ch", "out_ch", "n_in", "n_out", "bias")}
    if "kernel_size" in given:
        k = fields["kernel_size"] = _pair(given["kernel_size"])
        fields["stride"] = k if given.get("stride") is None else _pair(given["stride"])
    if "padding" in given:
        fields["padding"] = conv_padding(fields["kernel_size"], given["padding"])
    return Config(**fields)


def configure(kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Config:
    """The protocol constructor's call ``kind(*args, **kwargs)`` (``rng``, ``dtype`` aside) as a Config:
    positional arguments in the kind's signature order, the rest from its defaults (a pool without a
    stride strides by its window)."""
    names, defaults = _kind(kind).signature, _kind(kind).defaults
    given = dict(zip(names, args, strict=False)) | {k: v for k, v in kwargs.items() if k in names}
    for name in names:
        given.setdefault(name, defaults.get(name))
    return normalise(kind, given)


def describe(kind: str, c: Config) -> str:
    """The configuration in a line: ``(in_ch=1, out_ch=2, kernel_size=(3, 3), stride=(1, 1), ...)``."""
    return "(" + ", ".join(f"{f}={getattr(c, f)}" for f in _kind(kind).signature) + ")"


def parametric(kind: str) -> bool:
    """The kind has parameters W (and b): its backward gives (dx, dW, db)."""
    return _kind(kind).parametric


def param_shape(kind: str, c: Config) -> tuple[tuple[int, ...], int] | None:
    """(W's shape in the protocol's layout, its fan-in) for a kind with parameters; None for the others.
    b is ``(W.shape[-1],)``."""
    if not parametric(kind):
        return None
    config = {f: getattr(c, f) for f in _kind(kind).signature}
    w = tuple(_kind(kind).param_shapes(config)["W"])
    return w, int(np.prod(w[:-1]))


def chw_flatten(kind: str, channels_first: bool) -> bool:
    """A Flatten of channels-first images gives its vector in (C, H, W) order: the adapter reorders it
    to the protocol's (H, W, C)."""
    return _kind(kind).flattens and channels_first


# --- one place for the conversions between a user's layout and the protocol's -----------------------


# NOTE: the transposes of reference.layers.layout (tests/test_adapter_styles.py holds them equal),
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
    if _kind(kind).rows_in:
        return np.ascontiguousarray(x.T) if c.dense_x == "columns" else x
    if x.ndim == 4 and c.images == "NCHW":
        return np.ascontiguousarray(images_to_nchw(x))
    return x


def x_from_theirs(kind: str, y: np.ndarray, c: Conventions) -> np.ndarray:
    if _kind(kind).rows_in:
        return np.ascontiguousarray(np.asarray(y).T) if c.dense_x == "columns" else y
    if np.ndim(y) == 4 and c.images == "NCHW":
        return np.ascontiguousarray(images_to_nhwc(y))
    return y


SAMPLE_LAYOUTS = ("HW", "HWC", "CHW", "n", "column", "any")


def sample_layouts(kind: str, per_sample: str | tuple[str, str] | None) -> tuple[str | None, str | None]:
    """(their input's, their output's) layout of one sample; ValueError, at wrap time, for an unknown one."""
    lay_in, lay_out = (per_sample, per_sample) if isinstance(per_sample, str) else (per_sample or (None, None))
    flat = (None, "n", "column", "any")  # what a per-sample Flatten can give
    if {lay_in, lay_out} - {None, *SAMPLE_LAYOUTS} or (_kind(kind).flattens and lay_out not in flat):
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


def _weight_layout(kind: str, c: Conventions) -> tuple[Any, Any] | None:
    """(theirs -> the protocol's, the protocol's -> theirs) for the kind's weight under ``c``; None where
    the layouts agree."""
    declared = _kind(kind)
    if not declared.weight_convention:
        return None
    return declared.weight_layouts.get(getattr(c, declared.weight_convention))


def weight_to_protocol(kind: str, w: np.ndarray, c: Conventions) -> np.ndarray:
    """A view (same memory) of their weight in the protocol's layout."""
    views = _weight_layout(kind, c)
    return views[0](w) if views else w


def weight_to_theirs(kind: str, w: np.ndarray, c: Conventions) -> np.ndarray:
    views = _weight_layout(kind, c)
    return views[1](w) if views else w


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


def nchw(shape: tuple[int, ...]) -> tuple[int, ...]:
    """An NHWC shape ``(m, H, W, C)`` as ``(m, C, H, W)``."""
    m, H, W, C = shape
    return (m, C, H, W)


# --- the piece: a wrapped layer's arrays, whole batches ------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """``conventions=``: one wrapped layer's arrays between the protocol's layout and theirs, a whole
    batch at a time (``shape`` is the protocol's input shape of the current batch; one sample at a
    time is ``per_sample.Samples``). Parameters and gradients are views or copies in the protocol's
    layout; ``param_grads="carry_1/m"`` is undone here."""

    kind: str = ""
    conventions: Conventions = Conventions()

    @property
    def reorders_flat(self) -> bool:
        return chw_flatten(self.kind, self.conventions.images == "NCHW")

    def x(self, x: np.ndarray) -> np.ndarray:
        """The protocol's input (or upstream gradient) in their layout."""
        return x_to_theirs(self.kind, x, self.conventions)

    def out(self, y: Any, shape: tuple[int, ...]) -> np.ndarray:
        if self.reorders_flat:
            return flatten_to_protocol(np.asarray(y), nchw(shape))
        return x_from_theirs(self.kind, y, self.conventions)

    def dout(self, dout: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if self.reorders_flat:
            return flatten_from_protocol(dout, nchw(shape))
        return x_to_theirs(self.kind, dout, self.conventions)

    def dx(self, dx: Any) -> np.ndarray:
        return x_from_theirs(self.kind, dx, self.conventions)

    def param(self, key: str, value: Any) -> np.ndarray:
        return param_to_protocol(self.kind, key, value, self.conventions)

    def grad(self, key: str, g: Any, m: int) -> np.ndarray:
        """Their gradient of ``key`` as the protocol's, for a batch of ``m``."""
        g = param_to_protocol(self.kind, key, np.asarray(g), self.conventions)
        if self.conventions.param_grads == "carry_1/m":  # their dW = (true dW) / m: undo it
            g = g * g.dtype.type(m)
        return np.ascontiguousarray(g)

    def theirs(self, params: dict[str, np.ndarray], dtype: Any) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) in their layout; a layer without bias gets zeros for b."""
        w = weight_to_theirs(self.kind, params["W"], self.conventions)
        b = params.get("b", np.zeros(params["W"].shape[-1], dtype=dtype))  # W's last axis: out
        return w, bias_to_theirs(b, self.conventions)
