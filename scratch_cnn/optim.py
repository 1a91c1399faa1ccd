"""Optimisers with torch.optim's update rules: SGD (momentum, weight decay), Adam, RMSprop.

Each takes ``params`` (a dict of name -> live array, e.g. ``model.params``) and updates those arrays
in place at ``step(grads)``, grads a dict with the same names. Weight decay (L2, added to the
gradient as torch does) applies to weights (``*.W``) only, never to biases or BatchNorm's
gamma/beta: torch's equivalent is two parameter groups, the weights with ``weight_decay`` and the
rest with 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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


def _hyper(opt: str, name: str, value: object, ok: Callable[[float], bool], expected: str) -> float:
    """A finite real number for which ``ok`` holds, as a float; else ValueError saying what was expected."""
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not real or not math.isfinite(value) or not ok(float(value)):  # type: ignore[arg-type]
        raise ValueError(f"{opt}: expected {name} {expected}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _check_grads(opt: str, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
    missing = set(params) - set(grads)
    if missing:
        raise ValueError(f"{opt}: no gradient for parameters {sorted(missing)}; run backward first")


def _load_slots(
    opt: str, params: dict[str, np.ndarray], state: dict[str, np.ndarray], slots: tuple[str, ...]
) -> dict[str, dict[str, np.ndarray]]:
    """``{"slot:name": array}`` entries -> ``{slot: {name: array in the parameter's dtype}}``, checked."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for slot in slots:
        found = {k.removeprefix(f"{slot}:"): np.array(v) for k, v in state.items() if k.startswith(f"{slot}:")}
        unknown = set(found) - set(params)
        if unknown:
            raise ValueError(f"{opt}: optimiser state names unknown parameters {sorted(unknown)}")
        for k, v in found.items():
            if v.shape != params[k].shape:
                raise ValueError(f"{opt}: {slot} of {k} has shape {v.shape}, expected {params[k].shape}")
        out[slot] = {k: v.astype(params[k].dtype) for k, v in found.items()}
    return out


class Adam:
    """Adam exactly as torch.optim.Adam (amsgrad off, L2 weight decay on the weights, not AdamW).

    Per parameter, at step t (one counter for the optimiser, from 1):
    ``g = grad + weight_decay * p`` (weights only); ``m += (1 - beta1) (g - m)`` (torch's lerp);
    ``v = beta2 v + (1 - beta2) g^2``; ``p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``
    (eps outside the square root, added after the bias correction, as torch). m and v start at 0.
    """

    name = "Adam"

    def __init__(
        self,
        params: dict[str, np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Adam: expected betas to be a pair (beta1, beta2), got {betas!r}")
        self.params = params
        self.lr = _hyper("Adam", "lr", lr, lambda v: v > 0, "> 0")
        self.betas = (
            _hyper("Adam", "betas[0]", betas[0], lambda v: 0 <= v < 1, "in [0, 1)"),
            _hyper("Adam", "betas[1]", betas[1], lambda v: 0 <= v < 1, "in [0, 1)"),
        )
        self.eps = _hyper("Adam", "eps", eps, lambda v: v > 0, "> 0")
        self.weight_decay = _hyper("Adam", "weight_decay", weight_decay, lambda v: v >= 0, ">= 0")
        self.t = 0
        self.exp_avg: dict[str, np.ndarray] = {}
        self.exp_avg_sq: dict[str, np.ndarray] = {}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        _check_grads("Adam", self.params, grads)
        self.t += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1**self.t)
        bias_correction2_sqrt = math.sqrt(1 - beta2**self.t)
        for name, p in self.params.items():
            g = grads[name]
            if self.weight_decay and decays(name):
                g = g + self.weight_decay * p
            if name not in self.exp_avg:
                self.exp_avg[name], self.exp_avg_sq[name] = np.zeros_like(p), np.zeros_like(p)
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            m += (1 - beta1) * (g - m)
            v *= beta2
            v += (1 - beta2) * (g * g)
            denom = np.sqrt(v)
            denom /= bias_correction2_sqrt
            denom += self.eps
            p -= step_size * (m / denom)

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {"adam_step": np.array(self.t, dtype=np.int64)}
        state.update({f"exp_avg:{k}": v for k, v in self.exp_avg.items()})
        state.update({f"exp_avg_sq:{k}": v for k, v in self.exp_avg_sq.items()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        slots = _load_slots("Adam", self.params, state, ("exp_avg", "exp_avg_sq"))
        if set(slots["exp_avg"]) != set(slots["exp_avg_sq"]):
            raise ValueError("Adam: optimiser state has exp_avg and exp_avg_sq for different parameters")
        step = np.asarray(state.get("adam_step", 0))
        if step.shape != () or not np.issubdtype(step.dtype, np.integer) or step < 0:
            raise ValueError(f"Adam: expected adam_step to be an integer >= 0, got {step!r}")
        step = int(step)
        self.t, self.exp_avg, self.exp_avg_sq = step, slots["exp_avg"], slots["exp_avg_sq"]


class RMSprop:
    """RMSprop exactly as torch.optim.RMSprop.

    Per parameter: ``g = grad + weight_decay * p`` (weights only); ``s = alpha s + (1 - alpha) g^2``;
    centered: ``a = alpha a + (1 - alpha) g`` (torch's lerp) and ``denom = sqrt(s - a^2) + eps``, else
    ``denom = sqrt(s) + eps`` (eps outside the square root); momentum > 0: ``buf = momentum buf + g / denom``,
    ``p -= lr buf``; else ``p -= lr g / denom``. s, a and buf start at 0.

    # NOTE: weight_decay and centered are keyword-only: torch's positional order puts weight_decay
    # before momentum, so a positional call copied from torch would swap them silently.
    """

    name = "RMSprop"

    def __init__(
        self,
        params: dict[str, np.ndarray],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        *,
        weight_decay: float = 0.0,
        centered: bool = False,
    ) -> None:
        self.params = params
        self.lr = _hyper("RMSprop", "lr", lr, lambda v: v > 0, "> 0")
        self.alpha = _hyper("RMSprop", "alpha", alpha, lambda v: 0 <= v <= 1, "in [0, 1]")
        self.eps = _hyper("RMSprop", "eps", eps, lambda v: v > 0, "> 0")
        self.momentum = _hyper("RMSprop", "momentum", momentum, lambda v: 0 <= v < 1, "in [0, 1)")
        self.weight_decay = _hyper("RMSprop", "weight_decay", weight_decay, lambda v: v >= 0, ">= 0")
        self.centered = bool(centered)
        self.square_avg: dict[str, np.ndarray] = {}
        self.grad_avg: dict[str, np.ndarray] = {}
        self.momentum_buffer: dict[str, np.ndarray] = {}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        _check_grads("RMSprop", self.params, grads)
        alpha = self.alpha
        for name, p in self.params.items():
            g = grads[name]
            if self.weight_decay and decays(name):
                g = g + self.weight_decay * p
            s = self.square_avg.setdefault(name, np.zeros_like(p))
            s *= alpha
            s += (1 - alpha) * (g * g)
            if self.centered:
                a = self.grad_avg.setdefault(name, np.zeros_like(p))
                a += (1 - alpha) * (g - a)
                denom = np.sqrt(s - a * a)
            else:
                denom = np.sqrt(s)
            denom += self.eps
            if self.momentum:
                buf = self.momentum_buffer.setdefault(name, np.zeros_like(p))
                buf *= self.momentum
                buf += g / denom
                p -= self.lr * buf
            else:
                p -= self.lr * (g / denom)

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {f"square_avg:{k}": v for k, v in self.square_avg.items()}
        state.update({f"grad_avg:{k}": v for k, v in self.grad_avg.items()})
        state.update({f"momentum_buffer:{k}": v for k, v in self.momentum_buffer.items()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        slots = _load_slots("RMSprop", self.params, state, ("square_avg", "grad_avg", "momentum_buffer"))
        self.square_avg, self.grad_avg, self.momentum_buffer = (
            slots["square_avg"], slots["grad_avg"], slots["momentum_buffer"]
        )  # fmt: skip
