"""AvgPool2D: the mean of each window; its gradient spreads each window's share evenly."""

from __future__ import annotations

from typing import Any

import numpy as np

import scratch_cnn
from reference.layers import pooling
from reference.layers.case import Case
from reference.layers.faulty import Fault
from reference.layers.kind import Config, LayerKind
from scratch_cnn import pooling as numpy_pooling

NAME = "AvgPool2D"


def twin(config: Config) -> Any:
    from torch import nn

    kernel, stride = pooling.windows(config)
    return nn.AvgPool2d(kernel, stride=stride)


def tutorial_cases() -> list[Case]:
    return [Case(NAME, {"kernel_size": 2, "stride": None}, (2, 26, 26, 8), "mnist", seed=604, tag="tutorial")]


# --- the catalogue's faults, written against this kind ----------------------------------------


class AvgPoolWrongAxis(scratch_cnn.AvgPool2D):
    """Averages kw rows by kh columns: the window's axes swapped."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, cache = numpy_pooling.avgpool_forward(x, self.kernel_size[::-1], self.stride[::-1])
        return self._remember(out, cache)


def faults(build: Any) -> list[Any]:

    def shows(case: Any, tensor: str, stats: dict[str, int]) -> bool:
        (kh, kw), (sh, sw) = pooling.windows(case.config)
        return case.layer == NAME and (kh != kw or sh != sw)

    return [Fault("avgpool_wrong_axis", "average pool with the window's axes swapped",
                  lambda: build(AvgPool2D=AvgPoolWrongAxis), shows)]  # fmt: skip


KIND = LayerKind(
    per_sample=True,
    **pooling.shared_fields(NAME, np.mean, 506, "noise", tutorial_cases),
    twin=twin,
    adjoint=True,
    faults=faults,
)
