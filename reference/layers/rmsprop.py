"""RMSprop(params, lr, alpha, eps, momentum): torch.optim.RMSprop's update (a running mean of squared
gradients, eps outside the square root, a momentum buffer), judged step by step against it."""

from __future__ import annotations

from typing import Any

import numpy as np

import scratch_cnn
from reference.layers import optimizer
from reference.layers.faulty import Fault
from reference.layers.kind import Config, LayerKind

NAME = "RMSprop"
CONFIGS = [{"lr": 1e-2}, {"lr": 0.01, "alpha": 0.9, "momentum": 0.5}, {"lr": 0.005, "weight_decay": 0.1},
           {"lr": 0.01, "_scale": 1e-5}]  # fmt: skip


def twin(config: Config) -> Any:
    """``make(groups, **hyper)``: torch.optim.RMSprop's update (``optimizer.FunctionalTwin``; not
    centered, as scratch_cnn's)."""

    def make(groups: list[dict[str, Any]], *, lr: float, alpha: float, eps: float, momentum: float) -> Any:
        from torch.optim.rmsprop import rmsprop

        def update(group: dict[str, Any], state: dict[str, list[Any]]) -> None:
            params = group["params"]
            buffers = state["momentum_buffer"] if momentum > 0 else []  # NOTE: as RMSprop keeps one: momentum > 0
            rmsprop(params, [p.grad for p in params], state["square_avg"], [], buffers, state["step"],
                    foreach=None, maximize=False, differentiable=False, capturable=False, has_complex=False,
                    lr=lr, alpha=alpha, eps=eps, weight_decay=group["weight_decay"], momentum=momentum,
                    centered=False)  # fmt: skip

        return optimizer.FunctionalTwin(groups, ("square_avg", "momentum_buffer"), update)

    return make


class RMSpropNoMomentumBuffer(scratch_cnn.RMSprop):
    """The momentum applied to this step's update only (no buffer carried between steps)."""

    def step(self, grads: dict[str, np.ndarray]) -> None:
        self.momentum_buffer = {}
        super().step(grads)


def steps_without_buffer(hyper: Config, params: dict[str, np.ndarray], grads: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:  # fmt: skip
    """The parameters after each RMSprop step, float64, with momentum applied to each step's update alone
    (no buffer carried): p -= lr * momentum-free g / (sqrt(s) + eps) (the diagnosis' hypothesis)."""
    p = {k: v.copy() for k, v in params.items()}
    s = {k: np.zeros_like(v) for k, v in p.items()}
    after = []
    for g in grads:
        for k in p:
            gk = g[k] + (hyper["weight_decay"] * p[k] if k.endswith(".W") else 0.0)
            s[k] = hyper["alpha"] * s[k] + (1 - hyper["alpha"]) * gk * gk
            p[k] = p[k] - hyper["lr"] * gk / (np.sqrt(s[k]) + hyper["eps"])
        after.append({k: w.copy() for k, w in p.items()})
    return after


def faults(build: Any) -> list[Any]:
    return [Fault("rmsprop_no_momentum_buffer", "RMSprop's momentum buffer not carried between steps",
                  lambda: build(RMSprop=RMSpropNoMomentumBuffer), lambda c, t, s: c.layer == NAME and bool(c.config.get("momentum")))]  # fmt: skip


KIND = LayerKind(
    name=NAME,
    role="optimizer",
    optional=True,
    signature=("lr", "alpha", "eps", "momentum", "weight_decay"),
    defaults={"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0},
    twin=twin,
    family=lambda config, shape: "momentum" if config.get("momentum") else "plain",
    cases={"main": lambda: optimizer.cases(NAME, CONFIGS, 1300)},
    faults=faults,
    variants={
        "no_momentum_buffer": ("RMSprop without its momentum buffer (each step's update alone)", steps_without_buffer)
    },
)
