"""Flatten: NHWC images ``(m, H, W, C)`` to rows ``(m, H*W*C)`` in NHWC order (channels fastest)."""

from __future__ import annotations

from typing import Any

import numpy as np

import scratch_cnn
from reference.layers.case import Case
from reference.layers.faulty import CurveFault
from reference.layers.kind import Config, LayerKind

NAME = "Flatten"


def twin(config: Config) -> Any:
    from torch import nn

    from reference.layers import layout

    class Flatten(nn.Module):
        """NCHW -> (m, H*W*C) in the protocol's NHWC flatten order."""

        def forward(self, x: Any) -> Any:
            return layout.flatten_nchw_as_nhwc(x)

    return Flatten()


def main_cases() -> list[Case]:
    return [Case(NAME, {}, (1, 3, 4, 2), "noise", 0), Case(NAME, {}, (3, 5, 2, 4), "mnist", 1),
            Case(NAME, {}, (2, 4, 4, 3), "zeros", 2)]  # fmt: skip


def tutorial_cases() -> list[Case]:
    return [Case(NAME, {}, (2, 13, 13, 8), "noise", seed=606, tag="tutorial")]


def lifecycle() -> list[Case]:
    return [Case(NAME, {}, (2, 4, 4, 3), "noise", seed=510, then=((2, 4, 4, 3), "noise", 511)),
            Case(NAME, {}, (2, 4, 4, 3), "noise", seed=511, then=((3, 2, 6, 5), "noise", 512))]  # fmt: skip


def candidates() -> list[Case]:
    shapes = [(2, 4, 4, 1), (2, 3, 4, 5), (1, 4, 4, 2)]
    return [Case(NAME, {}, shape, "noise", seed=700 + i, tag="searched") for i, shape in enumerate(shapes)]


def secret(rng: np.random.Generator, seed: int) -> list[Case]:
    shape = (int(rng.integers(1, 5)), int(rng.integers(1, 11)), int(rng.integers(1, 11)), int(rng.integers(1, 5)))
    return [Case(NAME, {}, shape, str(rng.choice(["noise", "zeros", "ties", "large"])), seed, tag="secret")]


# --- the catalogue's faults, written against this kind ----------------------------------------


class FlattenNCHW(scratch_cnn.Flatten):
    """Flattens in NCHW order (width fastest) where the protocol says NHWC (channels fastest)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._remember(x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1), x.shape)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        m, H, W, C = self._recall(dout)
        return dout.reshape(m, C, H, W).transpose(0, 2, 3, 1)


def curve_faults(build: Any) -> list[Any]:

    return [
        CurveFault(
            "flatten_nchw_order", "flatten in NCHW order, not the twin's NHWC", lambda: build(Flatten=FlattenNCHW)
        )
    ]


KIND = LayerKind(
    per_sample=True,
    name=NAME,
    images=True,
    flattens=True,
    twin=twin,
    output_shape=lambda config, shape: (shape[0], int(np.prod(shape[1:]))),
    family=lambda config, shape: "flatten",
    cases={"main": main_cases, "tutorial": tutorial_cases},
    lifecycle=lifecycle,
    smoke=({}, (2, 3, 4, 5)),
    smoke_alternatives=(({}, (2, 4, 4, 1)), ({}, (1, 3, 4, 5))),
    candidates=candidates,
    secret=secret,
    faults=curve_faults,
    axes=lambda name, ndim: ("m", "hwc") if name == "g" else ("m", "h", "w", "c"),
    pointwise=True,
)
