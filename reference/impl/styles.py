"""The machinery behind ``reference.impl.adapters``' style options: where a gradient is captured
from, what a declared limit or convention means, and how a user's exception becomes a declared one.

Nothing here knows a layout (those conversions live in ``adapters``), and nothing imports the judges
or torch: this module runs in the sandboxed worker beside the code it wraps.

| option | what it captures or declares |
|---|---|
| ``update="product"`` | ``backward(d, lr)`` that does ``W -= lr * dW``: ``lr`` is a recorder; ``lr * dW`` an inert step whose subtraction records ``dW`` and leaves ``W`` bit-for-bit unchanged |
| ``update="change"`` | the same code run at ``lr = CHANGE_RATE``; ``dW = (before - after) / CHANGE_RATE``, then ``W`` is restored in place |
| ``optimizer={"W": "W_opt"}`` | an optimizer object kept in the layer: a ``RecordingOptimizer`` is installed there before each backward |
| ``supports=`` | a dict (each key equals, or is in the set given; ``"square": True`` or an ``"input"`` predicate on the input's shape) or a predicate on ``Config``: outside it, ``unsupported`` |
| ``unsupported=`` | exception types that, raised by their code, mean "not supported": turned into NotImplementedError |
| ``kinks=`` | conventions at non-differentiable points, published as ``kink_conventions`` |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

if TYPE_CHECKING:
    from reference.impl.adapters import Config

CHANGE_RATE = 2.0**20  # a power of two: multiplying and dividing by it is exact in every float format

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


# --- declared limits -------------------------------------------------------------------------------


def _pads(kernel: tuple[int, int], padding: Any) -> tuple[tuple[int, int], ...]:
    if padding == "same":
        return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel)
    if padding == "valid":
        return ((0, 0), (0, 0))
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return ((ph, ph), (pw, pw))


def _is(c: Config, key: str, want: Any) -> bool:
    if isinstance(want, (set, frozenset, list)):
        return any(_is(c, key, w) for w in want)
    if key in ("stride", "kernel_size"):
        return getattr(c, key) == ((want, want) if isinstance(want, int) else tuple(want))
    if key == "padding":
        return c.padding == _pads(c.kernel_size, want)
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


def declared_unsupported(kinds: type[BaseException] | tuple[type[BaseException], ...], fn: Callable[..., Any],
                         *args: Any) -> Any:  # fmt: skip
    """``fn(*args)``, with an exception of ``kinds`` (their "not supported") re-raised as NotImplementedError."""
    if not kinds:
        return fn(*args)
    try:
        return fn(*args)
    except kinds as err:
        raise NotImplementedError(f"{type(err).__name__}: {err} (declared unsupported)") from err


# --- conventions at kinks ----------------------------------------------------------------------------

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


# --- gradients captured from an update inside backward --------------------------------------------


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
