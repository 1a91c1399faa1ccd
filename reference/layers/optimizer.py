"""What the optimiser kinds share (Adam, RMSprop): how a case of theirs is made and run against
torch.optim from the same gradients. An optimiser's case is a configuration (its hyperparameters) and
a set of parameters (``input_shape``: the sizes of ``0.W``, ``0.b``, ``1.W``); ``steps`` gradients are
drawn for it, the same for both sides. Weight decay applies to the weights (``*.W``) only, as in
scratch_cnn (torch: two parameter groups)."""

from __future__ import annotations

from collections.abc import Callable
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


class FunctionalTwin:
    """torch.optim's update for ``groups`` (param-group dicts: ``params``, ``weight_decay``) through the
    functional form its class's ``step`` calls (``update(group, state)``: a call of
    ``torch.optim.adam.adam``, ``torch.optim.rmsprop.rmsprop``), with the state that step initialises
    (``names``: zero tensors like each parameter, and its scalar step count) held here.

    # NOTE: not the torch.optim class itself: its constructor and its step import torch._dynamo for
    # torch.compile's sake, 1 s of CPU in every judge process (and after its workers have started). The
    # arithmetic is the class's: on CPU, without foreach or fused, its step calls the same function with
    # the same state; tests/test_optimizer_twins.py holds the two to equal bits on every configuration
    # of the grid, in both dtypes, and to failing where one of them is changed."""

    def __init__(self, groups: list[dict[str, Any]], names: tuple[str, ...],
                 update: Callable[[dict[str, Any], dict[str, list[Any]]], None]) -> None:  # fmt: skip
        import torch

        # NOTE: the step count's dtype as torch.optim's _init_group makes it (float32 unless the
        # default dtype is float64); bias corrections read it back as a Python float
        step_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        self.groups, self.update = groups, update
        self.states = [{"step": [torch.tensor(0.0, dtype=step_dtype) for _ in g["params"]],
                        **{n: [torch.zeros_like(p, memory_format=torch.preserve_format) for p in g["params"]]
                           for n in names}} for g in groups]  # fmt: skip

    def step(self) -> None:
        """One step of every group from its parameters' ``.grad`` (in place, without autograd, as
        torch.optim's step)."""
        import torch

        with torch.no_grad():
            for group, state in zip(self.groups, self.states, strict=True):
                self.update(group, state)


def cases(name: str, configs: list[dict[str, Any]], seed0: int) -> list[Case]:
    shape = tuple(int(np.prod(s)) for s in PARAM_SHAPES.values())
    return [Case(name, config, shape, "noise", seed=seed0 + i) for i, config in enumerate(configs)]
