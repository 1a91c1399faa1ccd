"""MaxPool2D: the maximum of each window; its gradient goes to the window's first maximum in
row-major order (torch's rule; a tie is never "every maximum"), or as the layer declares."""

from __future__ import annotations

from typing import Any

import numpy as np

import scratch_cnn
from reference.layers import pooling
from reference.layers.case import Case
from reference.layers.faulty import Fault
from reference.layers.kind import Config, Convention, LayerKind
from scratch_cnn import pooling as numpy_pooling

NAME = "MaxPool2D"
ROUTES = ("first", "last", "split")


def twin(config: Config) -> Any:
    from torch import nn

    kernel, stride = pooling.windows(config)
    return nn.MaxPool2d(kernel, stride=stride)


def tutorial_cases() -> list[Case]:
    """2x2 max pooling of 26x26x8 (after the tutorials' 3x3 'valid' convolution of 28x28)."""
    pool = {"kernel_size": 2, "stride": None}
    return [Case(NAME, pool, (2, 26, 26, 8), "ties", seed=602, tag="tutorial"),
            Case(NAME, pool, (2, 26, 26, 8), "near_ties", seed=603, tag="tutorial")]  # fmt: skip


def _check_ties(route: Any) -> bool:
    if route not in ROUTES:
        raise ValueError(f"declared max-pool tie rule {route!r} is no subgradient rule ({', '.join(ROUTES)})")
    return route != "first"


def _routed(x: np.ndarray, g: np.ndarray, config: Config, route: str) -> np.ndarray:
    return pooling.route_max_pool(x, g, *pooling.windows(config), route)


def _tie_words(route: str) -> str:
    return f"max-pool ties to the {route} maximum" if route != "split" else "max-pool ties split evenly"


# --- the catalogue's faults, written against this kind ----------------------------------------


class MaxPoolTiesToEveryMax(scratch_cnn.MaxPool2D):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        cache = self._recall(dout)
        (kh, kw), stride = cache.kernel, cache.stride
        Ho, Wo = dout.shape[1:3]
        dx = np.zeros(cache.x_shape, dtype=dout.dtype)
        for a in range(kh):
            for b in range(kw):
                view = numpy_pooling._offset_view(self._x, a, b, stride, (Ho, Wo))
                numpy_pooling._offset_view(dx, a, b, stride, (Ho, Wo))[...] += np.where(view == self._out, dout, 0)
        return dx

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        self._out = super().forward(x)
        return self._out


def faults(build: Any) -> list[Any]:
    return [Fault("maxpool_ties_to_every_max", "max pool routes the gradient to every tied maximum",
                  lambda: build(MaxPool2D=MaxPoolTiesToEveryMax),
                  lambda c, t, s: c.layer == NAME and t == "dx" and s["ties"] > 0)]  # fmt: skip


KIND = LayerKind(
    per_sample=True,
    **pooling.shared_fields(NAME, np.max, 504, "ties", tutorial_cases),
    twin=twin,
    kink_needs=("ties", "near_ties"),
    conventions=(Convention("maxpool_ties", _check_ties, _routed, _tie_words),),
    window_max=True,
    faults=faults,
)
