"""How gradients are captured: read where their code keeps them, or recorded from an update their
backward applies itself, or from an optimizer kept in their layer. The parameters always end as they
began (the same arrays, holding the same values).

| keyword | piece | what it captures | documented by |
|---|---|---|---|
| ``grads=`` (or none) | ``ReadGrads`` | their gradients read where they keep them: key -> attribute path, ``lambda layer: {...}``, default their ``grads`` dict | ``tests/test_adapter_pieces.py`` |
| ``update="product"`` | ``UpdateCapture``, ``LearningRate`` | ``backward(d, lr)`` that does ``W -= lr * dW``: ``lr`` is a recorder; ``lr * dW`` an inert step whose subtraction records ``dW`` and leaves ``W`` bit-for-bit unchanged | ``tests/test_adapter_styles.py`` |
| ``update="change"`` | ``UpdateCapture``, ``CHANGE_RATE`` | the same code run at ``lr = CHANGE_RATE``; ``dW = (before - after) / CHANGE_RATE``, then ``W`` is restored in place | ``tests/test_adapter_styles.py`` |
| ``optimizer={"W": "W_opt"}`` | ``OptimizerCapture``, ``RecordingOptimizer`` | an optimizer object kept in the layer: a ``RecordingOptimizer`` is installed there before each backward | ``tests/test_adapter_styles.py``, ``tests/test_adapter_pieces.py`` |
| (losses) | ``RecordingRate`` | a fused layer's ``backprop(d, lr)``: every ``lr * grad`` recorded, zeros given back | ``tests/test_loss_styles.py`` |

``gradient_capture(update=, optimizer=, grads=)`` picks the piece (``update`` first). NumPy and
``calls`` only: this module runs in the sandboxed worker beside the code it wraps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from reference.impl.calls import get_path, set_path

CHANGE_RATE = 2.0**20  # a power of two: multiplying and dividing by it is exact in every float format


# --- update=: gradients captured from an update inside backward --------------------------------------------


class RecordingOptimizer:
    """An optimizer that records the gradient it is handed and changes nothing: ``update(w, grad)``
    returns ``w`` itself (ML-From-Scratch style: ``self.W = self.W_opt.update(self.W, grad_w)``)."""

    def __init__(self) -> None:
        self.grad: np.ndarray | None = None

    def update(self, w: Any, grad: Any) -> Any:
        self.grad = np.array(grad, copy=True)
        return w

    def __copy__(self) -> RecordingOptimizer:  # a layer that copies the optimizer it is given gets a fresh one
        return RecordingOptimizer()

    def __deepcopy__(self, memo: dict[int, Any]) -> RecordingOptimizer:
        return RecordingOptimizer()


class _Targets:
    """The parameters an update may write into, and the gradient each accumulates."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays
        self.sums = {k: np.zeros_like(a) for k, a in arrays.items()}

    def add(self, target: Any, value: np.ndarray) -> None:
        """``value`` was subtracted from ``target``: one of the parameters, or a slice of one."""
        for key, base in self.arrays.items():
            if target is base:
                self.sums[key] += value
                return
            if isinstance(target, np.ndarray) and np.shares_memory(target, base):
                # NOTE: a slice (``self.filters[f] -= lr * g``): the same slice of the sum, found from the
                # slice's byte offset and strides in the parameter (sums[key] has the parameter's strides)
                if not (base.flags.c_contiguous or base.flags.f_contiguous):
                    break
                start = (target.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // base.itemsize
                flat = self.sums[key].ravel(order="K")  # a view: the sum is contiguous like its parameter
                as_strided(flat[start:], target.shape, target.strides, writeable=True)[...] += value
                return
        raise TypeError("update='product': `lr * grad` was subtracted from an array that is none of the declared "
                        "params (a momentum buffer? a copy?); declare update='change' instead")  # fmt: skip


class _Step(np.ndarray):
    """``lr * grad`` under update='product': an inert array of zeros carrying ``grad``. Subtracted from
    a parameter (``W -= step``, ``W = W - step``, ``W[f] -= step``) it records ``grad`` (times the
    scalars that followed it, e.g. ``/ batch_size``) and the parameter stays bit-for-bit as it was.

    # NOTE: an ndarray subclass, not a plain object: numpy's in-place operators (``W -= x``) raise
    # TypeError for an operand with ``__array_ufunc__ = None`` instead of deferring to it. Any other
    # use (a sum, a dot, a slice) raises TypeError, never computes silently with the zeros.
    """

    targets: _Targets | None = None
    value: Any = None

    def __new__(cls, targets: _Targets, value: Any) -> _Step:
        value = np.asarray(value)
        step = np.zeros(value.shape, dtype=value.dtype).view(cls)
        step.targets, step.value = targets, value
        return step

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        steps = [i for i in inputs if isinstance(i, _Step)]
        other = next((i for i in inputs if not isinstance(i, _Step)), None)
        if method == "__call__" and all(s.targets is not None for s in steps):
            new = lambda value: _Step(steps[0].targets, value)  # type: ignore[arg-type]  # noqa: E731
            if ufunc is np.multiply and len(steps) == 1:
                return new(steps[0].value * other)
            if ufunc is np.true_divide and inputs[0] is steps[0] and len(steps) == 1:
                return new(steps[0].value / other)
            if ufunc is np.negative:
                return new(-steps[0].value)
            if ufunc is np.add and len(steps) == 2:
                return new(steps[0].value + steps[1].value)
            if ufunc in (np.subtract, np.add) and len(steps) == 1 and other is not None and inputs[1] is steps[0]:
                sign = 1 if ufunc is np.subtract else -1  # W - step, W + (-step)
                steps[0].targets.add(other, sign * steps[0].value)  # type: ignore[union-attr]
                return other
        raise TypeError(f"update='product' cannot follow `lr * grad` through {ufunc.__name__}.{method}; "
                        "declare update='change'")  # fmt: skip

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        raise TypeError(f"update='product' cannot follow `lr * grad` through {func.__name__}; declare update='change'")

    def __repr__(self) -> str:
        return f"<lr * grad of shape {np.shape(self.value)}>"


class LearningRate:
    """The ``lr`` handed to ``backward(d, lr)`` under update='product': a recorder. ``lr * g``,
    ``g * lr``, ``-lr * g``, ``lr / m * g`` are inert steps (``_Step``); a Python number times ``lr``
    scales the rate, any array (or numpy scalar) times it is a gradient.

    # NOTE: their weights stay exactly as they were, so a dx computed *after* the update (from the new
    # weights) is computed from the old ones here: that bug is invisible in this mode. update='change'
    # runs the update for real at a huge rate, where such a dx is far off.
    """

    __array_ufunc__ = None  # `dW * lr` defers to __rmul__

    def __init__(self, targets: _Targets, factor: float = 1.0) -> None:
        self.targets, self.factor = targets, factor

    def __mul__(self, other: Any) -> Any:
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return LearningRate(self.targets, self.factor * other)
        if isinstance(other, (LearningRate, _Step)):
            return NotImplemented
        grad = np.asarray(other)
        return _Step(self.targets, grad * self.factor if self.factor != 1.0 else grad)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> LearningRate:
        return LearningRate(self.targets, self.factor / other)

    def __neg__(self) -> LearningRate:
        return LearningRate(self.targets, -self.factor)

    def __float__(self) -> float:
        raise TypeError("update='product' sees the learning rate only in products (lr * grad); this code "
                        "converts it to a number: declare update='change'")  # fmt: skip


def captured_backward(mode: str, run: Callable[[Any], Any], names: dict[str, str], inner: Any,
                      ) -> tuple[Any, dict[str, np.ndarray]]:  # fmt: skip
    """``run(lr)`` (their backward with an update inside) -> (its return, {key: gradient in their layout}).

    The parameters at ``names`` (key -> attribute path) end as they began: the same arrays (reseated
    where their code rebinds the attribute, ``self.W = self.W - lr * dW``) holding the same values.
    "product": exact. "change": ``(before - after) / CHANGE_RATE`` in float64, then cast to the
    parameter's dtype (relative error ~ the dtype's eps; a gradient below eps * |W| / CHANGE_RATE
    reads as 0). A parameter their backward does not update gets a zero gradient in both modes.
    """
    arrays = {k: get_path(inner, path) for k, path in names.items()}
    saved = {k: np.array(a, copy=True) for k, a in arrays.items()}
    targets = _Targets(arrays)
    try:
        result = run(LearningRate(targets) if mode == "product" else CHANGE_RATE)
        if mode == "product":
            grads = targets.sums
        else:
            after = {k: np.asarray(get_path(inner, p)) for k, p in names.items()}
            grads = {k: ((saved[k].astype(np.float64) - after[k].astype(np.float64)) / CHANGE_RATE)
                     .astype(saved[k].dtype).reshape(saved[k].shape) for k in names}  # fmt: skip
    finally:
        for k, path in names.items():  # the live arrays back, with their values
            arrays[k][...] = saved[k]
            set_path(inner, path, arrays[k])
    return result, grads


# --- fused losses: a learning rate that records ----------------------------------------------------------


class RecordingRate:
    """A learning rate that records what it multiplies and gives zeros back, so that an update
    ``param -= lr * grad`` (or ``grad * lr``) inside their backward leaves the parameter unchanged and
    the gradient is kept, exactly, in ``seen`` (copies, in call order).

    # NOTE: ``__array_ufunc__ = None`` makes ``ndarray * rate`` return NotImplemented, so Python calls
    # ``rate.__rmul__``; without it NumPy would broadcast the rate as an object scalar. A product the
    # code scales further (``lr * dW / m``) is recorded before the scaling: declare it, do not guess.
    """

    __array_ufunc__ = None

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def __mul__(self, grad: Any) -> np.ndarray:
        grad = np.asarray(grad)
        self.seen.append(np.array(grad, copy=True))
        return np.zeros_like(grad)

    __rmul__ = __mul__

    def shaped(self, shape: tuple[int, ...]) -> np.ndarray:
        """The sum of the recorded gradients of ``shape`` (an update applied in several steps is their
        sum); RuntimeError when none was recorded."""
        found = [g for g in self.seen if g.shape == shape]
        if not found:
            raise RuntimeError(f"their backward applied no gradient of shape {shape} under the learning rate "
                               f"(it multiplied the rate by arrays of shapes {[g.shape for g in self.seen]})")  # fmt: skip
        return found[0] if len(found) == 1 else np.sum(found, axis=0)


# --- the pieces: how one wrapped layer's backward gives its gradients -------------------------------------

Run = Callable[..., Any]  # ``run(*rate)``: their backward on the current upstream gradient
Grads = dict[str, Any]  # key -> their gradient, in their layout


@dataclass(frozen=True)
class ReadGrads:
    """``grads=`` (the default): their gradients read where their code keeps them, after their backward.
    ``live``: the protocol's ``grads`` may be read from them at any time (not when per sample)."""

    grads: dict[str, str] | Callable[[Any], Grads] | None = None
    live = True

    def read(self, inner: Any, names: dict[str, str]) -> Grads:
        """Their gradients, read where they keep them ({} before the first backward)."""
        try:
            if callable(self.grads):  # their gradients for the keys of params (None: not there yet)
                return {k: v for k, v in self.grads(inner).items() if k in names and v is not None}
            paths = self.grads if self.grads else {k: f"grads.{k}" for k in getattr(inner, "grads", {})}
            return {k: get_path(inner, p) for k, p in paths.items()}
        except (AttributeError, KeyError):
            return {}

    def backward(self, run: Run, inner: Any, names: dict[str, str]) -> tuple[Any, Grads]:
        dx = run()
        return dx, {k: np.array(v, copy=True) for k, v in self.read(inner, names).items()}


@dataclass(frozen=True)
class UpdateCapture:
    """``update="product"`` or ``"change"``: their backward takes a learning rate and updates the
    parameters itself; the gradient is what the update applied (``captured_backward``)."""

    mode: str
    live = False

    def backward(self, run: Run, inner: Any, names: dict[str, str]) -> tuple[Any, Grads]:
        return captured_backward(self.mode, run, names, inner)


@dataclass(frozen=True)
class OptimizerCapture:
    """``optimizer=``: key -> the attribute path of an optimizer object their layer keeps
    (``update(w, grad) -> w``); a ``RecordingOptimizer`` is put there before each backward. With no
    such key among the parameters, their gradients are read (``reader``)."""

    paths: dict[str, str]
    reader: ReadGrads = ReadGrads()
    live = False

    def backward(self, run: Run, inner: Any, names: dict[str, str]) -> tuple[Any, Grads]:
        recorders = {k: RecordingOptimizer() for k in self.paths if k in names}
        for k, rec in recorders.items():
            set_path(inner, self.paths[k], rec)
        if not recorders:
            return self.reader.backward(run, inner, names)
        dx = run()
        return dx, {k: r.grad for k, r in recorders.items() if r.grad is not None}


Capture = ReadGrads | UpdateCapture | OptimizerCapture


def gradient_capture(update: str | None = None, optimizer: dict[str, str] | None = None,
                     grads: dict[str, str] | Callable[[Any], Grads] | None = None) -> Capture:  # fmt: skip
    """The piece for ``update=``, ``optimizer=``, ``grads=`` (in that order of precedence); ValueError,
    at wrap time, for an unknown ``update``."""
    if update not in (None, "product", "change"):
        raise ValueError(f"update={update!r}: expected 'product' or 'change'")
    if update:
        return UpdateCapture(update)
    if optimizer:
        return OptimizerCapture(optimizer, ReadGrads(grads))
    return ReadGrads(grads)
