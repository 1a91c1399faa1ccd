"""Declared limits and conventions: what a wrapped layer says it cannot take, and how it is right at a kink.

A declared limit is never a failure: outside it a case is ``unsupported`` (a NotImplementedError
that names the configuration or input and the declared region), and declaring never raises.

| keyword | piece | what it declares | documented by |
|---|---|---|---|
| ``supports=`` | ``outside``, ``outside_input`` | a region: a dict (each key equals, or is in the set given; ``"square": True`` or an ``"input"`` predicate on the input's shape) or a predicate on ``Config`` | ``tests/test_adapter_styles.py``, ``tests/test_wrappers_perimage.py`` |
| ``unsupported=`` | ``declared_unsupported``, ``declared`` | exception types that, raised by their code, mean "not supported": turned into NotImplementedError | ``tests/test_adapter_styles.py``, ``tests/test_loss_styles.py`` |
| ``float64_only=`` | ``FLOAT64_ONLY`` | code that computes in float64 whatever it is given: its float32 cases are not judged | ``tests/test_adapter_styles.py`` |
| ``kinks=`` | ``kink_conventions`` | conventions at non-differentiable points, published as ``kink_conventions`` | ``tests/test_adapter_styles.py`` |
| all four | ``Limits`` | one wrapped layer's declarations, checked at construction and at each forward | ``tests/test_adapter_pieces.py`` |

NumPy and ``layouts`` only: this module runs in the sandboxed worker beside the code it wraps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.impl.layouts import Config, conv_padding, describe

Unsupported = type[BaseException] | tuple[type[BaseException], ...]

# NOTE: the protocol says a layer computes in its input's dtype. Code that computes in float64 whatever
# it is given is not judged in float32 at all (cast back, its float64 numbers would pass float32's
# tolerances and hide that a float32 run of it is float64 throughout): its float32 cases are
# `unsupported`, with this reason in the row's note, and its float64 cases are judged as they are.
FLOAT64_ONLY = ("{kind}: declared float64_only (this implementation computes in float64 whatever it is given), "
                "so {dtype} is not judged")  # fmt: skip


# --- supports=: a declared region ---------------------------------------------------------------------


def _is(c: Config, key: str, want: Any) -> bool:
    if isinstance(want, (set, frozenset, list)):
        return any(_is(c, key, w) for w in want)
    if key in ("stride", "kernel_size"):
        return getattr(c, key) == ((want, want) if isinstance(want, int) else tuple(want))
    if key == "padding":
        return c.padding == conv_padding(c.kernel_size, want)
    return getattr(c, key) == want


# keys of a ``supports`` dict that are about the input, not the configuration: checked at each forward
INPUT_KEYS = ("square", "input")


def _verdict(verdict: Any, refused: str) -> str:
    """A predicate's answer as a reason ('' inside): True or None inside, False or a string outside."""
    if verdict is True or verdict is None:
        return ""
    return verdict if isinstance(verdict, str) and verdict else refused


def outside(supports: dict[str, Any] | Callable[[Config], Any] | None, c: Config) -> str:
    """Why ``c`` lies outside the declared region ('' when inside it).

    A dict: every key must equal its value, or be in it when it is a set or list (``stride`` and
    ``kernel_size`` as an int or pair, ``padding`` as "same", "valid", an int or a pair); ``"square":
    True``: one size for both axes, of the kernel and the stride here, of the images in
    ``outside_input``, as is ``"input"``. A predicate: True or None is inside; False or a string (the
    reason) outside.
    """
    if supports is None:
        return ""
    if callable(supports):
        return _verdict(supports(c), "the declared predicate refuses it")
    wrong = [f"{k} must be {_text(v)}" for k, v in supports.items() if k not in INPUT_KEYS and not _is(c, k, v)]
    if supports.get("square"):
        wrong += [f"{k} must be square (one size for both axes), got {getattr(c, k)}"
                  for k in ("kernel_size", "stride") if getattr(c, k)[0] != getattr(c, k)[1]]  # fmt: skip
    return "; ".join(wrong)


def outside_input(supports: dict[str, Any] | Callable[[Config], Any] | None, shape: tuple[int, ...]) -> str:
    """Why an input of ``shape`` (the protocol's: NHWC images, ``(m, n)`` rows) lies outside the declared
    region ('' when inside it): ``"square": True`` takes only images with H == W (and, in ``outside``,
    square kernels and strides); ``"input"`` is a predicate on the shape (True or None inside; False
    or a string, the reason, outside).

    # NOTE: code that takes one size for both axes (``n_c, in_dim, _ = image.shape``) computes with the
    # height where the width is meant: on a non-square image it is wrong or raises. Declared, such a
    # case is ``unsupported``; checked at every forward, since a constructor never sees the input.
    """
    if not isinstance(supports, dict):
        return ""
    wrong = []
    if supports.get("square") and len(shape) == 4 and shape[1] != shape[2]:
        wrong.append(f"square images only (H == W), got H={shape[1]}, W={shape[2]}")
    if callable(supports.get("input")):
        wrong.append(_verdict(supports["input"](tuple(shape)), f"the declared input predicate refuses {tuple(shape)}"))
    return "; ".join(w for w in wrong if w)


def _text(v: Any) -> str:
    return " or ".join(map(repr, sorted(v, key=repr))) if isinstance(v, (set, frozenset, list)) else repr(v)


# --- unsupported=: their own "not supported" ------------------------------------------------------------


def declared_unsupported(kinds: Unsupported, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, with an exception of ``kinds`` (their "not supported") re-raised as NotImplementedError."""
    if not kinds:
        return fn(*args)
    try:
        return fn(*args)
    except kinds as err:
        raise NotImplementedError(f"{type(err).__name__}: {err} (declared unsupported)") from err


@contextmanager
def declared(unsupported: Unsupported = ()) -> Iterator[None]:
    """Their "not supported" exception, raised inside the block, as a NotImplementedError (a
    declared limit); the losses' form of ``declared_unsupported``."""
    try:
        yield
    except unsupported as err:  # an empty tuple catches nothing
        raise NotImplementedError(f"{type(err).__name__}: {err}" if str(err) else type(err).__name__) from err


# --- kinks=: conventions at kinks ------------------------------------------------------------------------

# key -> (the layer it is about, what is a valid value)
KINKS: dict[str, tuple[str, str]] = {
    "relu_grad_at_zero": ("ReLU", "a number in [0, 1]: ReLU'(0), a valid subgradient"),
    "maxpool_ties": ("MaxPool2D", "'first', 'last' or 'split': where a window's gradient goes among tied maxima"),
}


def kink_conventions(kind: str, kinks: dict[str, Any] | None) -> dict[str, float | str]:
    """The declared conventions, checked (ValueError at wrap time for an unknown key or a value that is
    no valid subgradient), as a plain dict.

    # NOTE: ReLU'(0) must lie in [0, 1] (the subdifferential of max(x, 0) at 0); a max-pool tie must go
    # to one maximum or be split among them: "every tied maximum" sums to more than the window's
    # gradient and is no subgradient, so it cannot be declared, only diagnosed.
    """
    out: dict[str, float | str] = {}
    for key, value in (kinks or {}).items():
        if key not in KINKS:
            raise ValueError(f"unknown kink convention {key!r}; known: {', '.join(KINKS)}")
        layer, valid = KINKS[key]
        if kind != layer:
            raise ValueError(f"kink convention {key!r} is about {layer}, not {kind}")
        if key == "relu_grad_at_zero":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"relu_grad_at_zero={value!r} is not {valid}")
            out[key] = float(value)
        elif value not in ("first", "last", "split"):
            raise ValueError(f"maxpool_ties={value!r} is not {valid}")
        else:
            out[key] = str(value)
    return out


# --- the piece: one wrapped layer's declarations -----------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """``supports=``, ``unsupported=``, ``float64_only=`` of one wrapped layer of ``kind``: each check
    raises NotImplementedError (the case is then ``unsupported``) with the reason."""

    kind: str = ""
    supports: Any = None
    unsupported: Unsupported = ()
    float64_only: bool = False

    def check_config(self, config: Config, dtype: Any) -> None:
        """At construction: the configuration inside ``supports``, the dtype float64 if ``float64_only``."""
        why = outside(self.supports, config)
        if why:  # a declared limit: the judges report the case unsupported
            raise NotImplementedError(f"{self.kind} {describe(self.kind, config)} is outside the declared "
                                      f"region: {why}")  # fmt: skip
        if self.float64_only and np.dtype(dtype) != np.float64:
            raise NotImplementedError(FLOAT64_ONLY.format(kind=self.kind, dtype=np.dtype(dtype).name))

    def check_input(self, x: np.ndarray) -> None:
        """At each forward: the input's dtype and shape (``"square"``, ``"input"`` of ``supports``)."""
        if self.float64_only and x.dtype != np.float64:
            raise NotImplementedError(FLOAT64_ONLY.format(kind=self.kind, dtype=x.dtype.name))
        why = outside_input(self.supports, x.shape)
        if why:  # a declared limit on the input (square images only, say): the case is unsupported
            raise NotImplementedError(f"{self.kind} input {tuple(x.shape)} is outside the declared region: {why}")

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A call into their code: their 'not supported' exceptions become NotImplementedError."""
        return declared_unsupported(self.unsupported, fn, *args)
