"""MSELoss: the mean of (pred - target)^2 over every element; ``forward(pred, target) -> (loss, pred)``,
``backward() -> dpred = 2 (pred - target) / N``."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

import scratch_cnn
from reference.layers.case import Case
from reference.layers.faulty import Fault
from reference.layers.kind import Config, LayerKind, Shape

NAME = "MSELoss"


def twin(config: Config) -> Any:
    import torch.nn.functional as F

    def run(pred: Any, target: Any) -> dict[str, Any]:
        return {"loss": F.mse_loss(pred, target.to(pred.dtype), reduction="mean"), "pred": pred.detach()}

    return run


def draw_target(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    return rng.standard_normal(shape)


def cases() -> list[Case]:
    space = itertools.product([(1, 1), (8, 10), (5, 3), (7,), (2, 3, 3, 2)], ["noise", "large", "ties"])
    return [Case(NAME, {}, shape, values, seed=1100 + i) for i, (shape, values) in enumerate(space)]


class MSESummed(scratch_cnn.MSELoss):
    """The sum over the elements where the mean is meant (loss and gradient N times too large)."""

    def forward(self, pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
        loss, out = super().forward(pred, target)
        self._dpred = self._dpred * pred.dtype.type(pred.size)
        return loss * pred.size, out


def faults(build: Any) -> list[Any]:
    return [Fault("mse_summed", "MSE summed where the mean is meant", lambda: build(MSELoss=MSESummed),
                  lambda c, t, s: c.layer == NAME and int(np.prod(c.input_shape)) > 1 and t in ("loss", "dpred"))]  # fmt: skip


KIND = LayerKind(
    name=NAME,
    role="loss",
    optional=True,
    outputs=("loss", "pred"),
    input_grad="dpred",
    twin=twin,
    family=lambda config, shape: f"rank {len(shape)}",
    draw_target=draw_target,
    cases={"main": cases},
    lifecycle=lambda: [Case(NAME, {}, (4, 3), "noise", seed=1150, then=((6, 3), "noise", 1151))],
    smoke=({}, (3, 5)),
    smoke_alternatives=(({}, (4,)),),
    candidates=lambda: [Case(NAME, {}, (2, 3), "noise", seed=700, tag="searched")],
    secret=lambda rng, seed: [
        Case(NAME, {}, tuple(int(n) for n in rng.integers(1, 9, int(rng.integers(1, 4)))), "noise", seed, tag="secret")
    ],  # fmt: skip
    flops=lambda config, shape: 3 * int(np.prod(shape)),
    faults=faults,
)
