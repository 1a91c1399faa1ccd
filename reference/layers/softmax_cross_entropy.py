"""SoftmaxCrossEntropy: the mean softmax cross-entropy of logits ``(m, K)`` against integer labels
``(m,)``, through log-sum-exp; ``forward(logits, labels) -> (loss, probs)``, ``backward() -> dlogits``
``= (softmax - onehot) / m``."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

import scratch_cnn
from reference.layers.case import Case
from reference.layers.faulty import Fault
from reference.layers.kind import Config, LayerKind, Shape

NAME = "SoftmaxCrossEntropy"


def twin(config: Config) -> Any:
    """(logits, labels) -> {"loss": the mean cross-entropy, "probs": the softmax} in torch."""
    import torch
    import torch.nn.functional as F

    def run(logits: Any, labels: Any) -> dict[str, Any]:
        return {
            "loss": F.cross_entropy(logits, labels, reduction="mean"),
            "probs": torch.softmax(logits.detach(), dim=1),
        }

    return run


def draw_labels(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    return rng.integers(0, shape[-1], shape[0])


def main_cases() -> list[Case]:
    space = itertools.product([(1, 10), (8, 10), (5, 3)], ["noise", "ties", "large"])
    return [Case(NAME, {}, shape, values, seed=i) for i, (shape, values) in enumerate(space)]


def lifecycle() -> list[Case]:
    return [Case(NAME, {}, (4, 10), "noise", seed=512, then=((4, 10), "noise", 513)),
            Case(NAME, {}, (4, 10), "noise", seed=513, then=((6, 10), "large", 514))]  # fmt: skip


def candidates() -> list[Case]:
    return [Case(NAME, {}, shape, ["noise", "ties"][i % 2], seed=700 + i, tag="searched")
            for i, shape in enumerate([(2, 10), (1, 10), (4, 3)])]  # fmt: skip


def secret(rng: np.random.Generator, seed: int) -> list[Case]:
    shape = (int(rng.integers(1, 151)), int(rng.integers(2, 12)))
    return [Case(NAME, {}, shape, str(rng.choice(["noise", "ties", "large"])), seed, tag="secret")]


def strategy() -> Any:
    from hypothesis import strategies as st

    @st.composite
    def loss(draw: Any) -> Case:
        return Case(NAME, {}, (draw(st.integers(1, 6)), draw(st.integers(2, 10))),
                    draw(st.sampled_from(["noise", "ties", "large", "tiny"])), draw(st.integers(0, 2**16)))  # fmt: skip

    return loss()


# --- the catalogue's faults, written against this kind ----------------------------------------


class SoftmaxWithoutMaxShift(scratch_cnn.SoftmaxCrossEntropy):
    def forward(self, logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            e = np.exp(logits)
            p = e / e.sum(axis=1, keepdims=True)
            m = logits.shape[0]
            loss = float(-np.log(p[np.arange(m), labels]).mean())
        d = p.copy()
        d[np.arange(m), labels] -= 1
        self._dlogits = d / logits.dtype.type(m)
        return loss, p


def faults(build: Any) -> list[Any]:
    return [Fault("softmax_without_max_shift", "softmax without the max shift (overflows on large logits)",
                  lambda: build(SoftmaxCrossEntropy=SoftmaxWithoutMaxShift),
                  lambda c, t, s: c.layer == NAME and c.values == "large")]  # fmt: skip


KIND = LayerKind(
    name=NAME,
    role="loss",
    class_targets=True,
    outputs=("loss", "probs"),
    input_grad="dlogits",
    twin=twin,
    family=lambda config, shape: "batch of 1" if shape[0] == 1 else "batch > 1",
    draw_target=draw_labels,
    cases={
        "main": main_cases,
        "tutorial": lambda: [Case(NAME, {}, (2, 10), "noise", seed=608, tag="tutorial")],
        "batch": lambda: [Case(NAME, {}, (m, 10), "noise", seed=710 + i, tag="batch") for i, m in enumerate((64, 128))],
    },  # fmt: skip
    lifecycle=lifecycle,
    smoke=({}, (3, 5)),
    smoke_alternatives=(({}, (3, 10)), ({}, (1, 10))),
    candidates=candidates,
    secret=secret,
    strategy=strategy,
    flops=lambda config, shape: 5 * int(np.prod(shape)),
    faults=faults,
    axes=lambda name, ndim: ("m", "k"),
    accepts=lambda config, shape: shape[1] >= 2,  # a softmax over one class has no gradient to compare
)
