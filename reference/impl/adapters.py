"""Adapters: layers written in other layouts and styles, made to follow the layer protocol.

Two kinds of code are wrapped, each in any of the layouts of ``layouts.Conventions``:

- **function pairs** (CS231n style, notebooks): ``forward(x, w, b, hyper) -> (out, cache)`` and
  ``backward(dout, cache) -> (dx, dw, db)`` (``forward(x, hyper)`` / ``-> dx`` without parameters);
  the adapter keeps the parameters, in the protocol's layout, as the live arrays (``function_layer``);
- **classes** with their own methods and parameters held in their layout: the adapter shows them
  to the judges as protocol-layout views of the same memory (``class_layer``).

Each keyword is one small piece, in the module that does that one job; a wrapped class is the
pieces composed (``FunctionLayer``, ``ClassLayer``). Arrows point one way: this module imports the
pieces, the pieces import ``layouts`` (and ``capture`` imports ``calls``), never the other way.

| keyword | piece | module: its one job |
|---|---|---|
| ``conventions`` | ``Layout`` | ``layouts``: the protocol's configuration and arrays beside theirs, every conversion, what each layer kind is |
| ``per_sample`` | ``Samples``, ``replayed``, ``with_caches``, ``summed`` | ``per_sample``: one sample at a time, and the loops over the batch |
| ``update``, ``optimizer``, ``grads`` | ``UpdateCapture``, ``OptimizerCapture``, ``ReadGrads`` | ``capture``: how gradients are captured |
| ``forward``, ``backward``, ``input_shape``, ``params``; ``hyper`` | ``Methods``, ``ParamPaths``; ``FunctionPair`` | ``calls``: how their code is called and where its arrays are |
| ``supports``, ``unsupported``, ``float64_only``; ``kinks`` | ``Limits``; ``kink_conventions`` | ``limits``: declared limits and conventions |

A hyper function turns the protocol's configuration into the implementation's own (``Config``
has ``one("stride")``, ``symmetric_pad()``, which raise NotImplementedError for what a square-only
implementation cannot take: those cases are then reported ``unsupported``, not failed). Losses are
``loss_adapters`` (``loss_function`` is re-exported here). Every name a wrapper imported from here
before the pieces were split out still imports from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from reference.impl.calls import FunctionPair, Method, Methods, ParamPaths, get_path
from reference.impl.capture import CHANGE_RATE, Capture, RecordingOptimizer, gradient_capture
from reference.impl.layouts import (
    SAMPLE_LAYOUTS,
    Config,
    Conventions,
    Layout,
    bias_to_protocol,
    bias_to_theirs,
    configure,
    conv_weight_to_hwio,
    conv_weight_to_oihw,
    describe,
    flatten_from_protocol,
    flatten_to_protocol,
    images_to_nchw,
    images_to_nhwc,
    normalise,
    param_shape,
    param_to_protocol,
    parametric,
    sample_layouts,
    samples_from_theirs,
    samples_to_theirs,
    weight_to_protocol,
    weight_to_theirs,
    x_from_theirs,
    x_to_theirs,
)
from reference.impl.limits import FLOAT64_ONLY, Limits, Unsupported, kink_conventions
from reference.impl.loss_adapters import loss_function
from reference.impl.per_sample import Samples, replayed, sampling, summed, with_caches

__all__ = [  # the names wrappers import from here
    "CHANGE_RATE", "FLOAT64_ONLY", "SAMPLE_LAYOUTS", "Config", "Conventions",
    "RecordingOptimizer", "Unsupported", "bias_to_protocol", "bias_to_theirs", "class_layer",
    "conv_weight_to_hwio", "conv_weight_to_oihw", "describe", "flatten_from_protocol", "flatten_to_protocol",
    "function_layer", "images_to_nchw", "images_to_nhwc", "loss_function", "normalise", "param_to_protocol",
    "sample_layouts", "samples_from_theirs", "samples_to_theirs", "weight_to_protocol", "weight_to_theirs",
    "x_from_theirs", "x_to_theirs",
]  # fmt: skip

Names = dict[str, str] | Callable[[Config], dict[str, str]] | None
PROTOCOL = Conventions()  # the protocol's own layout and gradient scale: the default of every style


class Adapted:
    """The protocol side of a wrapped layer: the pieces every style shares, as class attributes
    (``layout``, ``samples``, ``limits``; ``kind``, ``conventions``, ``float64_only`` and
    ``kink_conventions`` as declared), and the bookkeeping of the current batch (``_m``, ``_shape``)."""

    kind = ""
    conventions = Conventions()
    kink_conventions: dict[str, float | str] = {}  # the declared conventions at kinks: what the judges read
    float64_only = False
    layout = Layout()
    limits = Limits()
    samples: Samples | None = None  # None: their code takes the whole batch

    def _setup(self, args: tuple[Any, ...], kwargs: dict[str, Any], dtype: Any = np.float64) -> None:
        self.config = configure(self.kind, args, kwargs)
        self.kink_conventions = dict(type(self).kink_conventions)
        self._m = 1
        self._shape: tuple[int, ...] = ()
        self.limits.check_config(self.config, dtype)  # NotImplementedError: a declared limit

    def _user(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A call into their code: their 'not supported' exceptions become NotImplementedError."""
        return self.limits.call(fn, *args)

    def _arrived(self, x: np.ndarray) -> None:
        """A batch arrives: checked against the declared limits, its size and shape kept."""
        self.limits.check_input(x)
        self._m, self._shape = x.shape[0], x.shape

    def _grad(self, key: str, g: Any) -> np.ndarray:
        return self.layout.grad(key, g, self._m)


class FunctionLayer(Adapted):
    """``function_layer``'s protocol class: the parameters live here, in the protocol's layout; their
    functions (``pair``) are called with them in theirs."""

    pair: FunctionPair

    def __init__(self, *args: Any, rng: np.random.Generator | None = None, dtype: Any = np.float64, **kwargs: Any):
        self._setup(args, kwargs, dtype)
        # their hyper-parameters; NotImplementedError (a declared limit) for what their code cannot take
        self.hyper = self._user(self.pair.hyper, self.config) if self.pair.hyper else None
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        c, dt = self.config, np.dtype(dtype)
        rng = rng if rng is not None else np.random.default_rng()
        shapes = param_shape(self.kind, c)
        if shapes is None:
            return
        shape, fan_in = shapes
        self.params["W"] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dt)
        self.params["b"] = np.zeros(shape[-1], dtype=dt)  # a layer without bias: b stays zero, never judged
        if not c.bias:
            del self.params["b"]

    def _args(self, dtype: Any) -> tuple[Any, ...]:
        """What their forward takes after x: the weights in their layout, then the hyper-parameters."""
        return self.pair.args(self.hyper, self.layout.theirs(self.params, dtype) if self.pair.parametric else ())

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._arrived(x)
        args = self._args(x.dtype)
        if self.samples is None:
            out, self._cache = self._user(self.pair.forward, self.layout.x(x), *args)
            return self.layout.out(out, self._shape)
        got = [self._user(self.pair.forward, s, *args) for s in self.samples.split(x)]
        self._cache = [cache for _, cache in got]
        return self.samples.stack([out for out, _ in got], self._shape)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.samples is None:
            got = self._user(self.pair.backward, self.layout.dout(dout, self._shape), self._cache)
            dx, grads = self.pair.split(got)
            self._keep(grads)
            return self.layout.dx(dx)
        each = lambda d, cache: self._user(self.pair.backward, d, cache)  # noqa: E731
        got = with_caches(self.samples.split_dout(dout, self._shape), self._cache, each)
        if self.pair.parametric:  # the protocol's grads are of sum(dout * out): the samples' sum
            self._keep(summed(got, "b" in self.params))
        return self.samples.stack_dx([g[0] if self.pair.parametric else g for g in got])

    def _keep(self, grads: Any) -> None:
        """Their (dw, db) as the protocol's grads."""
        if not self.pair.parametric:
            return
        dw, db = grads
        self.grads = {"W": self._grad("W", dw)}
        if "b" in self.params:
            self.grads["b"] = self._grad("b", db)


class ClassLayer(Adapted):
    """``class_layer``'s protocol class: their instance in ``inner`` (built by ``make``), called through
    ``methods``, its parameters found through ``paths``, its gradients taken by ``capture``."""

    make: Callable[[Config], Any]  # their builder (a staticmethod)
    paths = ParamPaths()
    methods = Methods()
    capture: Capture

    def __init__(self, *args: Any, rng: np.random.Generator | None = None, dtype: Any = np.float64, **kwargs: Any):
        self._setup(args, kwargs, dtype)
        self.inner = self._user(self.make, self.config)
        self._declared = self.paths.for_config(self.config)
        self._dtype, self._grads = np.dtype(dtype), {}
        self.paths.cast(self.inner, self._names, self._dtype)  # their constructor may not take a dtype

    @property
    def _names(self) -> dict[str, str]:
        """Protocol key -> their attribute path: as declared, else their own ``params`` dict's keys (live)."""
        return self.paths.resolve(self._declared, self.inner)

    @property
    def _live(self) -> bool:
        """The protocol's grads read from theirs at each access (else the ones captured at backward)."""
        return self.capture.live and self.samples is None

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {k: self.layout.param(k, get_path(self.inner, p)) for k, p in self._names.items()}

    @property
    def grads(self) -> dict[str, np.ndarray]:
        if not self._live:
            return self._grads
        return {k: self._grad(k, v) for k, v in self.capture.read(self.inner, self._names).items()}  # type: ignore[union-attr]

    def _forward(self, xt: np.ndarray) -> Any:
        return self.methods.run_forward(self._user, self.inner, xt, one_sample=self.samples is not None)

    def _backward(self, d: np.ndarray) -> tuple[Any, dict[str, Any]]:
        """Their backward on ``d`` (their layout) -> (their dx, their gradients)."""
        run = lambda *rate: self.methods.run_backward(self._user, self.inner, d, *rate)  # noqa: E731
        return self.capture.backward(run, self.inner, self._names)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._arrived(x)
        if self.samples is None:
            return self.layout.out(self._forward(self.layout.x(x)), self._shape)
        self._inputs = self.samples.split(x)  # kept: backward re-runs their forward on them
        return self.samples.stack([self._forward(s) for s in self._inputs], self._shape)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.samples is None:
            dx, g = self._backward(self.layout.dout(dout, self._shape))
            if not self._live:
                self._grads = {k: self._grad(k, v) for k, v in g.items()}
            return self.layout.dx(dx)
        douts = self.samples.split_dout(dout, self._shape)
        dxs, total = replayed(douts, self._inputs, self._forward, self._backward)
        self._grads = {k: self._grad(k, v) for k, v in total.items()}
        return self.samples.stack_dx(dxs)


def _declare(base: type, kind: str, layout: Layout, samples: Samples | None, limits: Limits,
             kinks: dict[str, Any] | None, **pieces: Any) -> type:  # fmt: skip
    """The protocol class ``kind``: ``base`` with its pieces; the kink conventions checked here, at wrap time."""
    return type(kind, (base,), {
        "kind": kind, "conventions": layout.conventions, "float64_only": limits.float64_only,
        "kink_conventions": kink_conventions(kind, kinks), "layout": layout, "samples": samples, "limits": limits,
        **pieces,
    })  # fmt: skip


def function_layer(kind: str, forward: Callable[..., Any], backward: Callable[..., Any], *,
                   conventions: Conventions = PROTOCOL, hyper: Callable[[Config], Any] | None = None,
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
    samples = sampling(kind, per_sample)  # per_sample=
    pair = FunctionPair(forward, backward, hyper, parametric=parametric(kind))  # forward, backward, hyper=
    layout, limits = Layout(kind, conventions), Limits(kind, supports, unsupported, float64_only)
    return _declare(FunctionLayer, kind, layout, samples, limits, kinks, pair=pair)


def class_layer(kind: str, make: Callable[[Config], Any], *, conventions: Conventions = PROTOCOL,
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
      (run at a rate of 2**20, the change read back and undone; relative error ~ eps). See ``capture``.
    - ``optimizer``: key -> attribute path where their layer keeps an optimizer object with
      ``update(w, grad) -> w``; a ``RecordingOptimizer`` is put there before each backward (exact;
      as with "product", the weights never change, so a dx computed from updated weights goes unseen).
    - ``supports``, ``unsupported``, ``float64_only``, ``kinks``: declared limits and conventions
      (``limits.outside``, ``limits.outside_input``, ``limits.declared_unsupported``, ``FLOAT64_ONLY``,
      ``limits.kink_conventions``). ``supports`` may hold ``"square": True`` (images with H == W only)
      or ``"input": lambda shape: ...`` (a predicate on the protocol's input shape), checked at forward.

    Arrays: x, dout, dx as the protocol's (NHWC images, ``(m, n)`` rows) on the judges' side;
    ``conventions`` and ``per_sample`` say theirs. dtype: their parameters are cast to the protocol's.
    """
    samples = sampling(kind, per_sample)  # per_sample=
    capture = gradient_capture(update, optimizer, grads)  # update=, optimizer=, grads=
    methods = Methods(forward or "forward", backward or "backward", input_shape)  # forward=, backward=, input_shape=
    layout, limits = Layout(kind, conventions), Limits(kind, supports, unsupported, float64_only)
    return _declare(ClassLayer, kind, layout, samples, limits, kinks, make=staticmethod(make),
                    paths=ParamPaths(params), methods=methods, capture=capture)  # fmt: skip
