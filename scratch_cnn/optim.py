"""Stochastic gradient descent with momentum and weight decay (torch.optim.SGD semantics)."""

from __future__ import annotations

import numpy as np


def decays(name: str) -> bool:
    """Weight decay applies to weights (``*.W``) only, never to biases."""
    return name.rsplit(".", 1)[-1] == "W"


class SGD:
    """Updates ``params`` (a dict of live arrays) in place from a dict of grads with the same keys.

    Per parameter, exactly as torch.optim.SGD (dampening 0, no Nesterov):
    ``g = grad + weight_decay * p`` (weights only), ``v = momentum * v + g`` (``v = g`` on the first
    step), ``p -= lr * v``.
    """

    def __init__(
        self, params: dict[str, np.ndarray], lr: float, momentum: float = 0.0, weight_decay: float = 0.0
    ) -> None:
        if not lr > 0:
            raise ValueError(f"SGD: expected lr > 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"SGD: expected 0 <= momentum < 1, got {momentum}")
        if not weight_decay >= 0:
            raise ValueError(f"SGD: expected weight_decay >= 0, got {weight_decay}")
        self.params = params
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.velocity: dict[str, np.ndarray] = {}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        missing = set(self.params) - set(grads)
        if missing:
            raise ValueError(f"SGD: no gradient for parameters {sorted(missing)}; run backward first")
        for name, p in self.params.items():
            g = grads[name]
            if self.weight_decay and decays(name):
                g = g + self.weight_decay * p
            if self.momentum:
                v = self.velocity.get(name)
                if v is None:
                    v = self.velocity[name] = g.copy()
                else:
                    v *= self.momentum
                    v += g
                g = v
            p -= self.lr * g

    def state_dict(self) -> dict[str, np.ndarray]:
        return {f"velocity:{k}": v for k, v in self.velocity.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        velocity = {k.removeprefix("velocity:"): np.array(v) for k, v in state.items() if k.startswith("velocity:")}
        unknown = set(velocity) - set(self.params)
        if unknown:
            raise ValueError(f"SGD: optimiser state names unknown parameters {sorted(unknown)}")
        for k, v in velocity.items():
            if v.shape != self.params[k].shape:
                raise ValueError(f"SGD: velocity of {k} has shape {v.shape}, expected {self.params[k].shape}")
        self.velocity = {k: v.astype(self.params[k].dtype) for k, v in velocity.items()}
