"""What the optimiser kinds share (Adam, RMSprop): how a case of theirs is made and run against
torch.optim from the same gradients. An optimiser's case is a configuration (its hyperparameters) and
a set of parameters (``input_shape``: the sizes of ``0.W``, ``0.b``, ``1.W``); ``steps`` gradients are
drawn for it, the same for both sides. Weight decay applies to the weights (``*.W``) only, as in
scratch_cnn (torch: two parameter groups)."""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.layers.case import Case

STEPS = 25
PARAM_SHAPES = {"0.W": (3, 4), "0.b": (4,), "1.W": (4, 2)}


def draw(case: Case, dtype: str) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """(the parameters, ``STEPS`` gradients) of an optimiser case, float64 draws cast to ``dtype``."""
    rng = np.random.default_rng([case.seed, 13])
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in PARAM_SHAPES.items()}
    grads = [{k: (rng.standard_normal(s) * case.config.get("_scale", 1.0)).astype(dtype) for k, s in PARAM_SHAPES.items()}
             for _ in range(STEPS)]  # fmt: skip
    return params, grads


def torch_steps(make: Any, config: dict[str, Any], params: dict[str, np.ndarray],
                grads: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:  # fmt: skip
    """The parameters after each step of torch's optimiser (``make(groups, **hyper)``), from the same
    gradients."""
    import torch

    tensors = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    hyper = {k: v for k, v in config.items() if not k.startswith("_")}
    decay = hyper.pop("weight_decay", 0.0)
    groups = [{"params": [t for k, t in tensors.items() if k.endswith(".W")], "weight_decay": decay},
              {"params": [t for k, t in tensors.items() if not k.endswith(".W")], "weight_decay": 0.0}]  # fmt: skip
    opt = make(groups, **hyper)
    after = []
    for g in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        opt.step()
        after.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    return after


def cases(name: str, configs: list[dict[str, Any]], seed0: int) -> list[Case]:
    shape = tuple(int(np.prod(s)) for s in PARAM_SHAPES.values())
    return [Case(name, config, shape, "noise", seed=seed0 + i) for i, config in enumerate(configs)]
