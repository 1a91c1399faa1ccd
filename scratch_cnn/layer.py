"""The layer protocol's base class: params/grads dicts, forward/backward, a cache between them."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validate import check_grad, float_dtype
from .init import INITIALISERS, init_weight


class Layer:
    """Base of every layer.

    ``params`` and ``grads`` are dicts with the same keys; ``params`` holds the live arrays, so
    writing into them in place (``layer.params["W"][...] = w``) changes the layer. ``grads`` is
    filled by ``backward``. Layers without parameters have two empty dicts.

    ``buffers`` holds state that is not trained but is part of the model (BatchNorm's running
    statistics): live arrays, saved and loaded with the parameters, never given to an optimiser.
    ``training`` is the mode (True by default): layers that behave differently at inference
    (BatchNorm, Dropout) read it at each forward; the others ignore it.
    """

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.training: bool = True
        self._cache: Any = None
        self._out_shape: tuple[int, ...] | None = None
        self._out_dtype: np.dtype | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments that rebuild this layer (JSON-serialisable)."""
        return {}

    def astype(self, dtype: Any) -> Layer:
        """Convert parameters and buffers (and clear grads) to ``dtype`` in place; returns self."""
        for key, value in self.params.items():
            self.params[key] = value.astype(dtype)
        for key, value in self.buffers.items():
            self.buffers[key] = value.astype(dtype)
        self.grads = {}
        return self

    def _init_weights(
        self, shape: tuple[int, ...], fan_in: int, fan_out: int, bias: bool, init: str, rng: Any, dtype: Any
    ) -> None:
        """Fill ``params``: ``W`` of ``shape`` drawn by ``init`` ("he" or "glorot") from ``rng`` (a
        fresh Generator when None), and a zero bias ``b`` of ``shape[-1]`` when ``bias``."""
        if init not in INITIALISERS:
            raise ValueError(f"{self.name}: unknown init {init!r}; expected one of {INITIALISERS}")
        dt = float_dtype(self.name, dtype)
        rng = rng if rng is not None else np.random.default_rng()
        self.params["W"] = init_weight(init, rng, shape, fan_in, fan_out, dt)
        if bias:
            self.params["b"] = np.zeros(shape[-1], dtype=dt)

    def backward_params(self, dout: np.ndarray) -> None:
        """Fill ``grads`` as ``backward`` does when no one needs dx (a network's first layer).

        Optional in the protocol. Layers whose dx costs real work (Conv2D, Dense) define
        ``_backprop(dout, need_dx)`` and skip dx here; others run ``backward`` and drop dx.

        # NOTE: a subclass that overrides ``backward`` (a user's variant, an injected fault) gets its
        # own backward run: the dx-free path stands in only for the backward written beside it.
        """
        fast = _defined_in(self, "_backprop")
        if fast is not None and fast is _defined_in(self, "backward"):
            self._backprop(dout, need_dx=False)  # type: ignore[attr-defined]
        else:
            self.backward(dout)  # type: ignore[attr-defined]

    def _remember(self, out: np.ndarray, cache: Any) -> np.ndarray:
        self._cache = cache
        self._out_shape = out.shape
        self._out_dtype = out.dtype
        return out

    def _recall(self, dout: np.ndarray) -> Any:
        if self._cache is None:
            raise ValueError(f"{self.name}: backward called before forward")
        assert self._out_shape is not None and self._out_dtype is not None
        check_grad(self.name, dout, self._out_shape, self._out_dtype)
        return self._cache

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{self.name}({args})"


def _defined_in(obj: object, name: str) -> type | None:
    """The class in ``obj``'s MRO whose body defines ``name`` (None when none does)."""
    return next((cls for cls in type(obj).__mro__ if name in vars(cls)), None)
