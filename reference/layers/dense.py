"""Dense: rows ``(m, n_in)`` times ``W (n_in, n_out)`` plus a bias ``(n_out,)``."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

import scratch_cnn
from reference.layers import layout
from reference.layers.case import VALUE_KINDS, Case, cycle
from reference.layers.faulty import Fault
from reference.layers.kind import Config, LayerKind, ParamLayout, Shape

NAME = "Dense"
TRAINING_BATCHES = (64, 128)  # the batch sizes training uses (scratch_cnn's default is 64)


def twin(config: Config) -> Any:
    from torch import nn

    return nn.Linear(config["n_in"], config["n_out"], bias=config.get("bias", True))


def draw_params(rng: np.random.Generator, config: Config) -> dict[str, np.ndarray]:
    params = {"W": rng.standard_normal((config["n_in"], config["n_out"])) * 0.5}
    if config.get("bias", True):
        params["b"] = rng.uniform(-1, 1, config["n_out"])
    return params


def main_cases() -> list[Case]:
    space = itertools.product([1, 7], [1, 5], [1, 4], [True, False])
    return [Case(NAME, {"n_in": n_in, "n_out": n_out, "bias": bias}, (m, n_in), cycle(list(VALUE_KINDS), i), i)
            for i, (n_in, n_out, m, bias) in enumerate(space)]  # fmt: skip


def tutorial_cases() -> list[Case]:
    """13*13*8 inputs (the tutorials' pooled feature maps, flattened) to 10 classes."""
    config = {"n_in": 13 * 13 * 8, "n_out": 10, "bias": True}
    return [Case(NAME, config, (2, 13 * 13 * 8), "zeros", seed=607, tag="tutorial")]


def batch_cases() -> list[Case]:
    """The batch sizes of training: code right on small batches and wrong on a real one (a loop bound,
    a buffer sized once, a branch on the batch size) passes every other case."""
    return [Case(NAME, {"n_in": 20, "n_out": 10, "bias": True}, (m, 20), "zeros", seed=700 + i, tag="batch")
            for i, m in enumerate(TRAINING_BATCHES)]  # fmt: skip


def lifecycle() -> list[Case]:
    dense = {"n_in": 6, "n_out": 4, "bias": True}
    return [Case(NAME, dense, (3, 6), "noise", seed=502, then=((3, 6), "noise", 503)),
            Case(NAME, dense, (3, 6), "noise", seed=503, then=((5, 6), "zeros", 504))]  # fmt: skip


def candidates() -> list[Case]:
    values = ["ties", "zeros", "near_ties", "noise"]
    return [Case(NAME, {"n_in": n_in, "n_out": 3, "bias": bias}, (m, n_in), values[i % 4], 700 + i, "searched")
            for i, (bias, n_in, m) in enumerate(itertools.product([True, False], [6, 1], [2, 1]))]  # fmt: skip


def secret(rng: np.random.Generator, seed: int) -> list[Case]:
    n_in, n_out, batch = int(rng.integers(1, 40)), int(rng.integers(1, 20)), int(rng.integers(1, 151))
    config = {"n_in": n_in, "n_out": n_out, "bias": bool(rng.random() < 0.7)}
    values = str(rng.choice([v for v in VALUE_KINDS if v != "mnist"]))
    return [Case(NAME, config, (batch, n_in), values, seed, tag="secret")]


def strategy() -> Any:
    from hypothesis import strategies as st

    @st.composite
    def dense(draw: Any) -> Case:
        n_in, n_out = draw(st.integers(1, 9)), draw(st.integers(1, 9))
        return Case(NAME, {"n_in": n_in, "n_out": n_out, "bias": draw(st.booleans())}, (draw(st.integers(1, 5)), n_in),
                    draw(st.sampled_from(VALUE_KINDS)), draw(st.integers(0, 2**16)))  # fmt: skip

    return dense()


# --- the catalogue's faults, written against this kind ----------------------------------------


class DenseDxScaled(scratch_cnn.Dense):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        return super().backward(dout) * dout.dtype.type(1.01)


class VacuousDense(scratch_cnn.Dense):
    """Constant forward, zero backward: a layer that computes nothing."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._remember(np.zeros((x.shape[0], self.n_out), dtype=x.dtype), x)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x = self._recall(dout)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        return np.zeros_like(x)


def faults(build: Any) -> list[Any]:
    return [Fault("dense_dx_scaled", "dense dx scaled by 1.01", lambda: build(Dense=DenseDxScaled),
                  lambda c, t, s: c.layer == NAME and t == "dx"),
            Fault("vacuous_dense", "dense with constant forward and zero backward", lambda: build(Dense=VacuousDense),
                  lambda c, t, s: c.layer == NAME)]  # fmt: skip


def output_shape(config: Config, shape: Shape) -> Shape:
    return (shape[0], config["n_out"])


def param_shapes(config: Config) -> dict[str, Shape]:
    shapes: dict[str, Shape] = {"W": (int(config["n_in"]), int(config["n_out"]))}
    return {**shapes, "b": (int(config["n_out"]),)} if config.get("bias", True) else shapes


AXES = {"x": ("m", "n_in"), "g": ("m", "n_out"), "W": ("n_in", "n_out"), "b": ("n_out",)}


KIND = LayerKind(
    per_sample=True,
    name=NAME,
    network_values="zeros",
    signature=("n_in", "n_out", "bias"),
    defaults={"bias": True},
    params={
        "W": ParamLayout(layout.dense_weight_to_torch, layout.dense_weight_from_torch, "weight"),
        "b": ParamLayout(layout.same, layout.same, "bias"),
    },  # fmt: skip
    twin=twin,
    output_shape=output_shape,
    family=lambda config, shape: "with bias" if config.get("bias", True) else "without bias",
    draw_params=draw_params,
    cases={"main": main_cases, "tutorial": tutorial_cases, "batch": batch_cases},
    lifecycle=lifecycle,
    smoke=({"n_in": 6, "n_out": 3, "bias": True}, (2, 6)),
    smoke_alternatives=(
        ({"n_in": 6, "n_out": 3, "bias": False}, (2, 6)),
        ({"n_in": 6, "n_out": 3, "bias": True}, (1, 6)),
    ),
    candidates=candidates,
    secret=secret,
    strategy=strategy,
    flops=lambda config, shape: 2 * shape[0] * config["n_in"] * config["n_out"],
    adjoint=True,
    rows_in=True,
    weight_convention="dense_weight",
    weight_layouts={"out_in": (lambda w: w.T, lambda w: w.T)},  # a user's W (n_out, n_in)
    faults=faults,
    axes=lambda name, ndim: AXES[name],
    param_shapes=param_shapes,
)
