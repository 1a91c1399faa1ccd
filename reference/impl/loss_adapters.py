"""Loss adapters: softmax cross-entropy written in other styles, made to follow the protocol's
``SoftmaxCrossEntropy`` (``forward(logits, labels) -> (mean loss, probs)``, ``backward() -> dlogits``).

Three styles, each a one-call declaration:

- ``loss_function(softmax_loss)``: CS231n's ``softmax_loss(x, y) -> (loss, dx)``. It returns no
  probabilities; the adapter then returns ``None`` for them (the judges report "no probabilities"),
  or the user's own ``probs=softmax`` is called on the logits. Probabilities are never rebuilt from
  the gradient: a wrong gradient would otherwise show a second time as wrong probabilities. Also one
  sample at a time (``per_sample="column"``, one-hot labels), and a value and a gradient reduced
  differently (the mean's value, the sum's gradient ``p - y``: ``grad="sum"``).
- ``probability_loss(softmax, loss, grad)``: a loss written on probabilities, ``loss(p, y)`` (mean,
  sum, or one value per sample) with its gradient ``grad(p, y) = dL/dp`` (``-1/p`` at the label); the
  adapter takes dL/dlogits through the softmax's Jacobian at *their* p.
- ``fused_dense_softmax(make, loss=, grad=)``: a dense layer fused with its softmax (Victor Zhou's
  ``Softmax(input_len, nodes)`` with ``forward(input) -> probs`` and ``backprop(d_L_d_out,
  learn_rate)`` for one sample), split into the protocol's ``Dense`` (their affine part; its
  backward is declared unsupported, see there) and ``SoftmaxCrossEntropy`` (their softmax, their
  loss and their backprop, on an identity affine part).

Shared options: ``conventions`` (``reference.impl.layouts.Conventions``: ``loss="mean"|"sum"``,
``dense_x="rows"|"columns"``, ``dense_weight`` for the fused Dense), ``unsupported=`` an exception
type (or tuple) that the user's code raises to mean "not supported" (an ``AssertionError``, say):
it becomes a NotImplementedError (``limits.declared``), which the judges report ``unsupported``,
not failed. The fused layer's learning rate is ``capture.RecordingRate``.

These run on the worker side of the trust boundary (the judged module imports them): NumPy and
``reference.impl.layouts``, ``limits`` and ``capture`` only, never ``adapters`` (which re-exports
``loss_function``), the judges, the reports or torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.impl.capture import RecordingRate
from reference.impl.layouts import Config, Conventions, weight_to_protocol, weight_to_theirs
from reference.impl.limits import Unsupported, declared

__all__ = [  # RecordingRate and declared are re-exported: they were defined here
    "FUSED_BACKWARD", "ROWS_MEAN", "RecordingRate", "declared", "fused_dense_softmax", "loss_function", "one_hot",
    "probability_loss", "through_softmax",
]  # fmt: skip

ROWS_MEAN = Conventions()  # the protocol's own: logits (m, K) in rows, the batch's mean


def _theirs(a: np.ndarray, c: Conventions) -> np.ndarray:
    """(m, K) rows -> their layout ((K, m) when ``dense_x="columns"``)."""
    return np.ascontiguousarray(a.T) if c.dense_x == "columns" else a


def _ours(a: Any, c: Conventions) -> np.ndarray:
    a = np.asarray(a)
    return np.ascontiguousarray(a.T) if c.dense_x == "columns" else a


def _scale(d: np.ndarray, m: int) -> np.ndarray:
    return d / d.dtype.type(m) if d.dtype.kind == "f" else d / m


def one_hot(labels: np.ndarray, k: int, dtype: Any) -> np.ndarray:
    """(m,) integer labels as (m, k) one-hot rows. A label outside [0, k) has no one-hot form: a
    NotImplementedError (``-1`` would otherwise index the last class, a silent wrong label)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise NotImplementedError(f"labels outside [0, {k}) have no one-hot form (this implementation takes one-hot labels)")  # fmt: skip
    out = np.zeros((labels.shape[0], k), dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


# --- 1. CS231n: softmax_loss(x, y) -> (loss, dx) ------------------------------------------------------


def loss_function(fn: Callable[[np.ndarray, np.ndarray], tuple[Any, Any]], *, conventions: Conventions = ROWS_MEAN,
                  probs: Callable[[np.ndarray], Any] | None = None, grad: str | None = None,
                  per_sample: str | None = None, labels: str = "index", unsupported: Unsupported = ()) -> type:  # fmt: skip
    """A protocol SoftmaxCrossEntropy around ``fn(logits, labels) -> (loss, dlogits)``.

    logits ``(m, K)`` float32/float64 (``(K, m)`` for ``dense_x="columns"``), labels ``(m,)`` int
    (``labels="one_hot"``: one-hot rows, or columns, in the logits' dtype).
    ``conventions.loss="sum"``: their loss value is the batch's sum (divided by m here).
    ``grad``: the loss their gradient is of, "mean" or "sum" (default: as ``conventions.loss``); code
    whose value is the mean but whose gradient is ``p - onehot``, the sum's, says ``grad="sum"``.
    ``per_sample``: ``fn`` takes one sample, ``z`` as "n" ``(K,)`` or "column" ``(K, 1)`` and its label
    (an int, or a one-hot vector in the same layout), and returns that sample's loss and gradient:
    the values are averaged here, the gradients stacked (so ``grad="sum"`` when each is that sample's
    own, ``p - y``; "mean" when each already carries the 1/m).
    ``probs``: their own ``softmax(logits) -> p`` (same layout, per sample too), called on the logits;
    without it the forward returns ``None`` as probs (their function gives none).
    """
    reduction = grad or conventions.loss
    known = reduction in ("mean", "sum") and per_sample in (None, "n", "column") and labels in ("index", "one_hot")
    if not known:
        raise ValueError(f"grad={grad!r}, per_sample={per_sample!r}, labels={labels!r}: expected grad 'mean' or "
                         "'sum', per_sample None, 'n' or 'column', labels 'index' or 'one_hot'")  # fmt: skip

    def sample(row: np.ndarray) -> np.ndarray:
        return row.reshape(-1, 1).copy() if per_sample == "column" else row.copy()

    class SoftmaxCrossEntropy:
        def forward(self, logits: np.ndarray, labels_: np.ndarray) -> tuple[float, np.ndarray | None]:
            m, k = logits.shape
            y = one_hot(labels_, k, logits.dtype) if labels == "one_hot" else labels_
            with declared(unsupported):
                if per_sample:
                    ys = [sample(yi) if labels == "one_hot" else int(yi) for yi in y]
                    got = [fn(sample(z), yi) for z, yi in zip(logits, ys, strict=True)]
                    # NOTE: .item() takes one number: a "loss" of several values is an error, not averaged away
                    loss = float(np.mean([np.asarray(v).item() for v, _ in got]))
                    d = _rows([g for _, g in got], m)
                    p = None if probs is None else _rows([probs(sample(z)) for z in logits], m)
                else:
                    theirs = _theirs(logits, conventions)
                    p = None if probs is None else _ours(probs(np.array(theirs, copy=True)), conventions)
                    loss, d = fn(theirs, _theirs(y, conventions) if labels == "one_hot" else y)
                    d = _ours(d, conventions)
                    loss = loss / m if conventions.loss == "sum" else loss
            if reduction == "sum":
                d = _scale(np.asarray(d), m)
            # NOTE: no probabilities are read off the gradient ((p - onehot) / m, solved for p): that
            # would copy every gradient error into a probs row, also where their softmax is right.
            self._d = np.ascontiguousarray(d)
            return float(loss), p

        def backward(self) -> np.ndarray:
            return self._d

    return SoftmaxCrossEntropy


def _rows(samples: list[Any], m: int) -> np.ndarray:
    """Per-sample vectors (``(K,)`` or ``(K, 1)``) as ``(m, K)`` rows; any other shape is left for the
    judges to name (a ``(K, K)`` gradient from a broadcast stays ``(m, K, K)``)."""
    y = np.stack([np.asarray(s) for s in samples]) if samples else np.zeros((m, 0))
    return np.ascontiguousarray(y[:, :, 0]) if y.ndim == 3 and y.shape[2] == 1 else y


# --- 2. a loss on probabilities: softmax(z) -> p, loss(p, y), grad(p, y) = dL/dp ----------------------


def through_softmax(p: np.ndarray, dp: np.ndarray) -> np.ndarray:
    """dL/dlogits from dL/dp (both ``(m, K)``, one softmax per row) through the softmax at ``p``.

    # NOTE: the adapter's maths, exact for any dp: the softmax's Jacobian is diag(p) - p p^T, so
    # dL/dz = p * (dp - sum(dp * p)). It is taken at *their* p: where their softmax is wrong the probs
    # row shows it, and dlogits inherits it (it is what a softmax that gave their p would propagate).
    # An underflowed p = 0 under dp = -1/p = -inf gives 0 * inf = nan: their gradient is infinite
    # there, and the nan is reported as theirs (a fused (p - onehot) would have hidden it); the
    # warnings of that arithmetic are silenced here, not in their code.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        return p * (dp - np.sum(dp * p, axis=1, keepdims=True))


def probability_loss(softmax: Callable[[np.ndarray], Any], loss: Callable[[Any, Any], Any],
                     grad: Callable[[Any, Any], Any], *, conventions: Conventions = ROWS_MEAN,
                     per_sample: bool = False, labels: str = "index", unsupported: Unsupported = ()) -> type:  # fmt: skip
    """A protocol SoftmaxCrossEntropy around a loss written on probabilities.

    ``softmax(logits) -> p``; ``loss(p, y)``: a scalar (the batch's mean, or sum with
    ``conventions.loss="sum"``) or one value per sample (then averaged here); ``grad(p, y) -> dL/dp``
    of their loss as returned (``-1/(m p)`` at the label for a mean). ``per_sample=True``: the three
    take one sample (``z (K,)``, ``p (K,)``, ``y`` an int) and the batch is looped. ``labels="one_hot"``:
    ``y`` is given as one-hot rows (columns with ``dense_x="columns"``) in the logits' dtype.
    """

    def ys(lab: np.ndarray, k: int, dtype: Any) -> Any:
        return one_hot(lab, k, dtype) if labels == "one_hot" else lab

    class SoftmaxCrossEntropy:
        def forward(self, logits: np.ndarray, labels_: np.ndarray) -> tuple[float, np.ndarray]:
            m, k = logits.shape
            y = ys(labels_, k, logits.dtype)
            with declared(unsupported):
                if per_sample:
                    p = np.stack([np.asarray(softmax(z)) for z in logits])
                    value: Any = np.array([loss(pi, yi) for pi, yi in zip(p, y, strict=True)])
                    dp = np.stack([np.asarray(grad(pi, yi)) for pi, yi in zip(p, y, strict=True)])
                else:
                    theirs = softmax(_theirs(logits, conventions))
                    yt = _theirs(y, conventions) if labels == "one_hot" else y
                    value, dp = loss(theirs, yt), _ours(grad(theirs, yt), conventions)
                    p = _ours(theirs, conventions)
            d = through_softmax(p, dp)
            if np.ndim(value) >= 1:  # one value per sample: their gradient is of the sum
                value, d = np.mean(value), _scale(d, m)
            elif conventions.loss == "sum":
                value, d = value / m, _scale(d, m)
            self._d = np.ascontiguousarray(d)
            return float(value), p

        def backward(self) -> np.ndarray:
            return self._d

    return SoftmaxCrossEntropy


# --- 3. a dense layer fused with its softmax ------------------------------------------------------------


FUSED_BACKWARD = (
    "a Dense fused with its softmax is entered only through that softmax, with dL/dprobs of one sample "
    "(their backprop(d_L_d_out, learn_rate)); an upstream gradient on the logits is reachable only where "
    "each row sums to 0 (the softmax's Jacobian has the ones vector in its null space), which the case's "
    "does not: the affine part's backward alone cannot be judged; its forward is, and the pair is judged "
    "as SoftmaxCrossEntropy"
)


@dataclass(frozen=True)
class _Fused:
    """One fused dense+softmax declaration (``fused_dense_softmax``'s arguments): builds their layer."""

    make: Callable[[Config], Any]
    loss: Callable[[Any, int], Any]
    grad: Callable[[Any, int], Any]
    logits: str
    backprop: str
    names: dict[str, str]
    conventions: Conventions
    unsupported: Unsupported

    def build(self, n_in: int, n_out: int, dtype: Any) -> Any:
        with declared(self.unsupported):
            inner = self.make(Config(n_in=n_in, n_out=n_out))
        for name in self.names.values():  # their constructor may not take a dtype: convert in place of it
            setattr(inner, name, np.asarray(getattr(inner, name)).astype(dtype))
        return inner


class FusedDense:
    """The affine part of a fused dense+softmax layer (see ``fused_dense_softmax``)."""

    fused: _Fused

    def __init__(self, n_in: int, n_out: int, bias: bool = True, *, rng: Any = None, dtype: Any = np.float64):
        if not bias:
            raise NotImplementedError("the fused dense+softmax layer always has a bias")
        self.inner = self.fused.build(n_in, n_out, np.dtype(dtype))
        self.grads: dict[str, np.ndarray] = {}

    @property
    def params(self) -> dict[str, np.ndarray]:
        names = self.fused.names
        w = weight_to_protocol("Dense", getattr(self.inner, names["W"]), self.fused.conventions)
        return {"W": w, "b": getattr(self.inner, names["b"])}

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = []
        for row in x:
            # NOTE: their forward runs their softmax too; its overflow warnings are the loss's to
            # report, not this affine part's (only the stored logits are read here).
            with declared(self.fused.unsupported), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self.inner.forward(row)
            out.append(np.array(getattr(self.inner, self.fused.logits), copy=True).reshape(-1))
        return np.stack(out) if out else np.zeros((0, self.params["b"].shape[0]), dtype=x.dtype)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError(FUSED_BACKWARD)


class FusedSoftmaxCrossEntropy:
    """The softmax, loss and backprop of a fused dense+softmax layer (see ``fused_dense_softmax``)."""

    fused: _Fused

    def forward(self, logits_: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        f, (m, k) = self.fused, logits_.shape
        inner = f.build(k, k, logits_.dtype)
        w = weight_to_theirs("Dense", np.eye(k, dtype=logits_.dtype), f.conventions)
        setattr(inner, f.names["W"], np.ascontiguousarray(w))
        setattr(inner, f.names["b"], np.zeros(k, dtype=logits_.dtype))
        values, probs, dlogits = [], [], []
        for z, y in zip(logits_, labels, strict=True):
            rate = RecordingRate()
            with declared(f.unsupported):
                p = np.asarray(inner.forward(z.copy()))
                values.append(f.loss(p, int(y)))
                getattr(inner, f.backprop)(f.grad(p, int(y)), rate)
            probs.append(p)
            dlogits.append(rate.shaped((k,)))  # their d_L_d_b = d_L_d_t: dL/dlogits of this sample
        self._d = np.ascontiguousarray(_scale(np.stack(dlogits), m))
        return float(np.mean(values)), np.stack(probs)

    def backward(self) -> np.ndarray:
        return self._d


def fused_dense_softmax(make: Callable[[Config], Any], *, loss: Callable[[Any, int], Any],
                        grad: Callable[[Any, int], Any], logits: str = "last_totals", backprop: str = "backprop",
                        params: dict[str, str] | None = None, conventions: Conventions = ROWS_MEAN,
                        unsupported: Unsupported = ()) -> tuple[type, type]:  # fmt: skip
    """(Dense, SoftmaxCrossEntropy) protocol classes around a per-sample dense+softmax layer.

    ``make(config)`` builds theirs (``config.n_in``, ``config.n_out``); its ``forward(x (n_in,))``
    returns the probabilities ``(n_out,)`` and keeps the logits in the attribute ``logits``;
    ``getattr(layer, backprop)(d_L_d_out, learn_rate)`` takes dL/dprobs of that sample and updates the
    parameters inside (``param -= learn_rate * grad``). ``params`` maps ``W``, ``b`` to their attribute
    names (W in ``conventions.dense_weight`` layout, b ``(n_out,)``). ``loss(p, y)`` and ``grad(p, y)``
    are their per-sample loss on probabilities and its dL/dp (their training loop's lines).

    Dense: their affine part; forward returns their stored logits, stacked over the batch; backward
    raises NotImplementedError (FUSED_BACKWARD says why). SoftmaxCrossEntropy: a fresh layer of theirs
    with n_in = n_out = K, W = I and b = 0 (so their logits are the given ones, exactly), per sample
    their forward (probs), loss and backprop under a RecordingRate; dlogits is their bias gradient
    (d logits / d b = 1), the loss and dlogits the mean over the batch.
    """
    names = params or {"W": "weights", "b": "biases"}
    fused = _Fused(make, loss, grad, logits, backprop, names, conventions, unsupported)
    return (type("Dense", (FusedDense,), {"fused": fused}),
            type("SoftmaxCrossEntropy", (FusedSoftmaxCrossEntropy,), {"fused": fused}))  # fmt: skip
