"""Adam(params, lr, betas, eps, weight_decay): torch.optim.Adam's update (bias-corrected moments, eps
outside the square root, L2 weight decay on the weights), judged step by step against it."""

from __future__ import annotations

from typing import Any

import numpy as np

import scratch_cnn
from reference.layers import optimizer
from reference.layers.faulty import Fault
from reference.layers.kind import Config, LayerKind

NAME = "Adam"
CONFIGS = [{"lr": 1e-3}, {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-6}, {"lr": 0.01, "weight_decay": 0.1},
           {"lr": 0.01, "_scale": 1e-5}]  # tiny gradients: where eps's place shows  # fmt: skip


def twin(config: Config) -> Any:
    """``make(groups, **hyper)``: torch.optim.Adam's update (``optimizer.FunctionalTwin``)."""

    def make(groups: list[dict[str, Any]], *, lr: float, betas: tuple[float, float], eps: float) -> Any:
        from torch.optim.adam import adam

        def update(group: dict[str, Any], state: dict[str, list[Any]]) -> None:
            params = group["params"]
            adam(params, [p.grad for p in params], state["exp_avg"], state["exp_avg_sq"], [], state["step"],
                 foreach=None, capturable=False, differentiable=False, fused=None, has_complex=False,
                 decoupled_weight_decay=False, amsgrad=False, beta1=betas[0], beta2=betas[1], lr=lr,
                 weight_decay=group["weight_decay"], eps=eps, maximize=False)  # fmt: skip

        return optimizer.FunctionalTwin(groups, ("exp_avg", "exp_avg_sq"), update)

    return make


class _FlawedAdam(scratch_cnn.Adam):
    """Adam's step written out once, its flaws switched on by the subclasses below."""

    bias_correction, eps_inside, advance = True, False, True

    def step(self, grads: dict[str, np.ndarray]) -> None:
        self.t = self.t + 1 if self.advance or self.t == 0 else self.t
        beta1, beta2 = self.betas
        c1 = 1 - beta1**self.t if self.bias_correction else 1.0
        c2 = 1 - beta2**self.t if self.bias_correction else 1.0
        for name, p in self.params.items():
            g = grads[name] + (self.weight_decay * p if self.weight_decay and scratch_cnn.optim.decays(name) else 0)
            m = self.exp_avg.setdefault(name, np.zeros_like(p))
            v = self.exp_avg_sq.setdefault(name, np.zeros_like(p))
            m += (1 - beta1) * (g - m)
            v *= beta2
            v += (1 - beta2) * (g * g)
            denom = np.sqrt(v / c2 + self.eps) if self.eps_inside else np.sqrt(v / c2) + self.eps
            p -= (self.lr / c1) * (m / denom)


class AdamWithoutBiasCorrection(_FlawedAdam):
    bias_correction = False


class AdamEpsInsideSqrt(_FlawedAdam):
    eps_inside = True


class AdamStepNotAdvanced(_FlawedAdam):
    advance = False  # t stays 1: the bias correction of the first step, every step


def steps(hyper: Config, params: dict[str, np.ndarray], grads: list[dict[str, np.ndarray]], *,
          bias_correction: bool = True, eps_inside: bool = False, advance: bool = True) -> list[dict[str, np.ndarray]]:  # fmt: skip
    """The parameters after each Adam step, float64, with one of its classic bugs switched on (the
    diagnoses' hypotheses: written apart from the faults above, as formulas)."""
    beta1, beta2 = hyper["betas"]
    p = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(w) for k, w in p.items()}
    after = []
    for i, g in enumerate(grads, start=1):
        t = i if advance else 1
        c1, c2 = (1 - beta1**t, 1 - beta2**t) if bias_correction else (1.0, 1.0)
        for k in p:
            gk = g[k] + (hyper["weight_decay"] * p[k] if k.endswith(".W") else 0.0)
            m[k] = beta1 * m[k] + (1 - beta1) * gk
            v[k] = beta2 * v[k] + (1 - beta2) * gk * gk
            denom = np.sqrt(v[k] / c2 + hyper["eps"]) if eps_inside else np.sqrt(v[k] / c2) + hyper["eps"]
            p[k] = p[k] - hyper["lr"] / c1 * m[k] / denom
        after.append({k: w.copy() for k, w in p.items()})
    return after


VARIANTS = {
    "no_bias_correction": ("Adam without the bias correction (m and v not divided by 1 - beta^t)",
                           lambda h, p, g: steps(h, p, g, bias_correction=False)),
    "eps_inside_sqrt": ("Adam with eps inside the square root (sqrt(v + eps))", lambda h, p, g: steps(h, p, g, eps_inside=True)),
    "t_not_advanced": ("Adam with its step counter t left at 1 (the first step's bias correction every step)",
                       lambda h, p, g: steps(h, p, g, advance=False)),
}  # fmt: skip


def faults(build: Any) -> list[Any]:
    ours = lambda c, t, s: c.layer == NAME  # noqa: E731
    return [Fault("adam_without_bias_correction", "Adam without the bias correction", lambda: build(Adam=AdamWithoutBiasCorrection), ours),
            Fault("adam_eps_inside_sqrt", "Adam with eps inside the square root", lambda: build(Adam=AdamEpsInsideSqrt),
                  # NOTE: sqrt(v + eps) - (sqrt(v) + eps) ~ eps / (2 sqrt(v)): 1e-8 of O(1) gradients shows in float64
                  # only; the tiny gradients (1e-5) show it in float32 too
                  lambda c, t, s: ours(c, t, s) and (s["dtype"] == "float64" or c.config.get("_scale") is not None)),
            Fault("adam_step_not_advanced", "Adam's step counter not advanced", lambda: build(Adam=AdamStepNotAdvanced), ours)]  # fmt: skip


KIND = LayerKind(
    name=NAME,
    role="optimizer",
    optional=True,
    signature=("lr", "betas", "eps", "weight_decay"),
    defaults={"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    twin=twin,
    family=lambda config, shape: "weight decay" if config.get("weight_decay") else "plain",
    cases={"main": lambda: optimizer.cases(NAME, CONFIGS, 1200)},
    faults=faults,
    variants=VARIANTS,
)
