"""Signatures: how a wrapped layer's code is called, and where in it the adapter finds its arrays.

| keyword | piece | what it says | documented by |
|---|---|---|---|
| (any path) | ``get_path``, ``set_path`` | ``"a.b"`` is ``obj.a.b``; a dict on the way is indexed (``"params.W"``) | ``tests/test_adapter_pieces.py`` |
| ``forward=``, ``backward=`` | ``call``, ``Methods`` | a method name or ``lambda layer, x: ...`` over their instance | ``tests/test_adapter_pieces.py`` |
| ``input_shape=`` | ``Methods`` | ``lambda layer, shape: ...`` called before every forward, with their input's shape without the batch axis | ``tests/test_adapter_pieces.py`` |
| ``params=`` | ``ParamPaths`` | protocol key -> their attribute path, or ``lambda config: {...}``; default their own ``params`` dict | ``tests/test_adapter_pieces.py`` |
| ``forward, backward`` (functions), ``hyper=`` | ``FunctionPair`` | a CS231n-style pair ``forward(x, [w, b,] [hyper]) -> (out, cache)``, ``backward(dout, cache) -> dx`` or ``(dx, dw, db)`` | ``tests/test_adapter_pieces.py`` |

Every call into their code goes through a ``user`` callable (``Limits.call``: their "not supported"
exceptions become NotImplementedError). Nothing here knows a layout or a layer kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Method = str | Callable[..., Any] | None
User = Callable[..., Any]  # ``user(fn, *args)``: a call into their code (``Limits.call``)

# --- reading and writing their attributes by path ------------------------------------------------


def get_path(obj: Any, path: str) -> Any:
    """``obj.a.b`` for ``"a.b"``; a dict on the way is indexed (``"params.W"`` reads ``obj.params["W"]``)."""
    for part in path.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


def set_path(obj: Any, path: str, value: Any) -> None:
    head, _, last = path.rpartition(".")
    owner = get_path(obj, head) if head else obj
    if isinstance(owner, dict):
        owner[last] = value
    else:
        setattr(owner, last, value)


def call(how: str | Callable[..., Any], layer: Any, *args: Any) -> Any:
    """``how(layer, *args)``, or ``layer.<how>(*args)`` when ``how`` is a method name."""
    return getattr(layer, how)(*args) if isinstance(how, str) else how(layer, *args)


# --- the pieces ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Methods:
    """``forward=``, ``backward=``, ``input_shape=``: how their instance is called."""

    forward: str | Callable[..., Any] = "forward"
    backward: str | Callable[..., Any] = "backward"
    input_shape: Callable[[Any, tuple[int, ...]], Any] | None = None

    def run_forward(self, user: User, inner: Any, xt: np.ndarray, one_sample: bool) -> Any:
        """Their forward on ``xt`` (their layout; one sample when ``one_sample``), told its shape first."""
        if self.input_shape is not None:
            user(self.input_shape, inner, tuple(xt.shape if one_sample else xt.shape[1:]))
        return user(call, self.forward, inner, xt)

    def run_backward(self, user: User, inner: Any, d: np.ndarray, *rate: Any) -> Any:
        """Their backward on ``d``, with a learning rate after it where their backward takes one."""
        return user(call, self.backward, inner, d, *rate)


@dataclass(frozen=True)
class ParamPaths:
    """``params=``: where their parameters live (protocol key -> attribute path)."""

    declared: dict[str, str] | Callable[[Any], dict[str, str]] | None = None

    def for_config(self, config: Any) -> dict[str, str] | None:
        """The declared paths for this configuration (called once per instance); None: not declared."""
        return self.declared(config) if callable(self.declared) else self.declared

    @staticmethod
    def resolve(declared: dict[str, str] | None, inner: Any) -> dict[str, str]:
        """Protocol key -> their attribute path: as declared, else their own ``params`` dict's keys (live)."""
        if declared is not None:
            return declared
        return {k: f"params.{k}" for k in getattr(inner, "params", {})}

    @staticmethod
    def cast(inner: Any, names: dict[str, str], dtype: np.dtype) -> None:
        """Their parameters in ``dtype``, in place of a constructor that may not take one."""
        for path in names.values():
            value = get_path(inner, path)
            if np.asarray(value).dtype != dtype:
                set_path(inner, path, np.asarray(value).astype(dtype))


@dataclass(frozen=True)
class FunctionPair:
    """A CS231n-style pair: ``forward(x, [w, b,] [hyper]) -> (out, cache)`` and ``backward(dout, cache)``
    -> ``(dx, dw, db)`` when ``parametric``, else ``dx``. ``hyper(config)`` is their hyper-parameters
    (without it the functions take none)."""

    forward: Callable[..., Any]
    backward: Callable[..., Any]
    hyper: Callable[[Any], Any] | None = None
    parametric: bool = False

    def args(self, hyper_value: Any, weights: tuple[np.ndarray, ...]) -> tuple[Any, ...]:
        """What their forward takes after x: the weights (their layout, when parametric), then the hyper-parameters."""
        extra = () if self.hyper is None else (hyper_value,)
        return (*weights, *extra) if self.parametric else extra

    def split(self, got: Any) -> tuple[Any, tuple[Any, ...]]:
        """Their backward's return as (dx, (dw, db)); ``()`` for a layer without parameters."""
        return (got[0], got[1:]) if self.parametric else (got, ())
