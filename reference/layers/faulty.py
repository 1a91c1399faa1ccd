"""A fault of the catalogue: scratch_cnn with one deliberately wrong piece, and which rows must show it.

Each layer kind declares its own faults (``LayerKind.faults(build)``, written in its module, where
``build(**overrides)`` is scratch_cnn's protocol classes with some replaced); reference.impl.faults
gathers them. A ``Fault`` says which autograd rows it must fail
(``should_fail(case, tensor, row)``: True, or None for a row where the fault sits at the edge of the
dtype's tolerance and either verdict is right; every other row must still pass); a ``CurveFault`` is
caught by the training judge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Fault:
    name: str
    description: str
    impl: Callable[[], Any]
    should_fail: Callable[[Any, str, dict[str, Any]], bool | None]

    @property
    def layer(self) -> str:
        """The layer type this fault replaces."""
        import scratch_cnn

        impl = self.impl()
        return next(n for n in vars(impl) if getattr(impl, n) is not getattr(scratch_cnn, n))


@dataclass(frozen=True)
class CurveFault:
    name: str
    description: str
    impl: Callable[[], Any]
    labels_for_impl: Callable[[np.ndarray], np.ndarray] | None = None
