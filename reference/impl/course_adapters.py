"""Adapters for the styles course assignments write batch norm, dropout and update rules in (CS231n's
second assignment): function pairs over dicts the code mutates, made to follow the layer protocol.

| adapter | their code | the protocol's class |
|---|---|---|
| ``batchnorm_functions`` | ``forward(x, gamma, beta, bn_param) -> (out, cache)``, ``backward(dout, cache) -> (dx, dgamma, dbeta)``; ``bn_param`` holds ``mode`` (``"train"``/``"test"``), ``eps``, ``momentum`` and the running statistics, which their code rebinds in it | ``BatchNorm1D`` (rows) or ``BatchNorm2D`` (NHWC; ``layout="NCHW"`` for ``spatial_batchnorm_forward``) |
| ``dropout_functions`` | ``forward(x, dropout_param) -> (out, cache)``, ``backward(dout, cache) -> dx``; ``dropout_param`` holds ``p``, ``mode`` and a ``seed`` | ``Dropout`` |
| ``update_rule`` | ``rule(w, dw, config) -> (next_w, config)``, its state (``m``, ``v``, ``t``, ...) in ``config`` | ``Adam`` / ``RMSprop`` |

What differs in meaning is converted here and said in the docstrings: CS231n's batch-norm ``momentum``
is the share the running statistics keep (torch's is the share the batch gets: ``1 - m``), its dropout
``p`` the probability of keeping an element (``keep="p"``). Their running variance is the biased batch
variance (CS231n's reference code): the adapter declares that convention (``running_var="biased"``) and
the judges hold the running variance to it, naming it in the verdict; they never change what the code
computed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from reference.layers import kind as declared


def batchnorm_functions(kind: str, forward: Callable[..., Any], backward: Callable[..., Any], *,
                        layout: str = "NHWC", momentum_means: str = "kept", running_var: str = "biased") -> type:  # fmt: skip
    """A protocol ``BatchNorm1D`` / ``BatchNorm2D`` around a CS231n-style function pair. ``layout``: their
    images' (``"NCHW"`` for a spatial pair that takes them so); ``momentum_means``: ``"kept"`` (CS231n: running =
    m * running + (1 - m) * batch) or ``"torch"``; ``running_var``: the variance their code moves the
    running one towards (``"biased"``, CS231n's, declared to the judges, or ``"unbiased"``, torch's)."""
    if (
        layout not in ("NHWC", "NCHW")
        or momentum_means not in ("kept", "torch")
        or running_var not in ("biased", "unbiased")
    ):
        raise ValueError("batchnorm_functions: layout is 'NHWC' or 'NCHW', momentum_means 'kept' or 'torch', "
                         "running_var 'biased' or 'unbiased'")  # fmt: skip
    nchw = layout == "NCHW" and declared(kind).images  # images (BatchNorm2D): their layout theirs

    class FunctionBatchNorm:
        kink_conventions = {"running_var": running_var} if running_var != "unbiased" else {}

        def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, *, dtype: Any = np.float64):
            dt = np.dtype(dtype)
            self.training = True
            self.params = {"gamma": np.ones(num_features, dt), "beta": np.zeros(num_features, dt)}
            self.grads: dict[str, np.ndarray] = {}
            self.bn_param = {"eps": eps, "momentum": 1 - momentum if momentum_means == "kept" else momentum,
                             "running_mean": np.zeros(num_features, dt), "running_var": np.ones(num_features, dt)}  # fmt: skip

        @property
        def buffers(self) -> dict[str, np.ndarray]:
            """The running statistics their code keeps in ``bn_param`` (it may rebind them there)."""
            return {k: self.bn_param[k] for k in ("running_mean", "running_var")}

        def forward(self, x: np.ndarray) -> np.ndarray:
            self.bn_param["mode"] = "train" if self.training else "test"
            theirs = x.transpose(0, 3, 1, 2) if nchw else x
            out, self._cache = forward(theirs, self.params["gamma"], self.params["beta"], self.bn_param)
            return np.ascontiguousarray(out.transpose(0, 2, 3, 1)) if nchw else out

        def backward(self, dout: np.ndarray) -> np.ndarray:
            dx, dgamma, dbeta = backward(dout.transpose(0, 3, 1, 2) if nchw else dout, self._cache)
            self.grads = {"gamma": np.asarray(dgamma), "beta": np.asarray(dbeta)}
            return np.ascontiguousarray(dx.transpose(0, 2, 3, 1)) if nchw else dx

    FunctionBatchNorm.__name__ = FunctionBatchNorm.__qualname__ = kind
    return FunctionBatchNorm


def dropout_functions(forward: Callable[..., Any], backward: Callable[..., Any], *, keep: str = "p") -> type:
    """A protocol ``Dropout`` around a CS231n-style pair. ``keep="p"``: their ``p`` is the probability of
    keeping an element (CS231n's), ``keep="1 - p"``: of dropping it (torch's). Each forward passes a
    fresh ``seed`` drawn from the protocol's ``rng`` (their code seeds NumPy's global generator with it),
    so masks differ between calls and a run repeats."""
    if keep not in ("p", "1 - p"):
        raise ValueError("dropout_functions: keep is 'p' (their p keeps an element) or '1 - p' (it drops one)")

    class FunctionDropout:
        def __init__(self, p: float = 0.5, *, rng: np.random.Generator | None = None) -> None:
            self.training, self.p = True, float(p)
            self.rng = rng if rng is not None else np.random.default_rng()
            self.params: dict[str, np.ndarray] = {}
            self.grads: dict[str, np.ndarray] = {}

        def forward(self, x: np.ndarray) -> np.ndarray:
            param = {"p": 1 - self.p if keep == "p" else self.p, "mode": "train" if self.training else "test",
                     "seed": int(self.rng.integers(2**31))}  # fmt: skip
            out, self._cache = forward(x, param)
            return out

        def backward(self, dout: np.ndarray) -> np.ndarray:
            return backward(dout, self._cache)

    FunctionDropout.__name__ = FunctionDropout.__qualname__ = "Dropout"
    return FunctionDropout


def update_rule(kind: str, rule: Callable[..., Any], config: Callable[[dict[str, Any]], dict[str, Any]]) -> type:
    """A protocol optimiser ``kind`` (``Adam``, ``RMSprop``) around a CS231n-style update rule
    ``rule(w, dw, config) -> (next_w, config)``, one config per parameter (its state lives there).
    ``config(hyper)`` turns the protocol's keywords (``lr``, ``betas``, ...) into their config's keys;
    it raises NotImplementedError for what their rule does not do (weight decay, say): those cases are
    then declared unsupported, never judged against an update the rule never made."""

    class RuleOptimizer:
        def __init__(self, params: dict[str, np.ndarray], **hyper: Any) -> None:
            self.params, self.configs = params, {k: config(dict(hyper)) for k in params}

        def step(self, grads: dict[str, np.ndarray]) -> None:
            for k, p in self.params.items():
                next_w, self.configs[k] = rule(p, grads[k], self.configs[k])
                p[...] = next_w  # the protocol's parameters are updated in place

    RuleOptimizer.__name__ = RuleOptimizer.__qualname__ = kind
    return RuleOptimizer
