"""The catalogue of injected faults: wrong layers and training loops that the judges must catch.

Each layer kind writes its own faults (``LayerKind.faults``, in its module under reference.layers);
this module gathers them, and holds the training loop's own (the optimiser, the labels). A fault is
an implementation (a namespace following the layer protocol) equal to scratch_cnn except for one
deliberately wrong piece; a layer ``Fault`` says which autograd rows it must fail
(``should_fail(case, tensor, stats)``; all others must still pass); a ``CurveFault`` must break the
lockstep. ``nox -s verify`` runs every fault through the judges and the gate requires each caught.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

import scratch_cnn
from reference.layers import KINDS
from reference.layers.faulty import CurveFault, Fault

# NOTE: the classes a fault's namespace holds: every kind's, and the optimiser of the training judge
CLASSES = (*KINDS, "SGD")


def with_layers(**overrides: Any) -> types.SimpleNamespace:
    """scratch_cnn's protocol classes, some replaced."""
    base = {n: getattr(scratch_cnn, n) for n in CLASSES}
    base.update(overrides)
    return types.SimpleNamespace(**base)


_impl = with_layers  # the name earlier code uses
_DECLARED = [f for k in KINDS.values() for f in k.faults(with_layers)]
FAULTS: list[Fault] = [f for f in _DECLARED if isinstance(f, Fault)]
FAULTS_BY_NAME = {f.name: f for f in FAULTS}


# --- training-loop faults, for the curve judge ----------------------------------------------------


class SGDMomentumTwice(scratch_cnn.SGD):
    """The velocity decayed by the momentum twice per step."""

    def step(self, grads: dict[str, np.ndarray]) -> None:
        for v in self.velocity.values():
            v *= self.momentum
        super().step(grads)


class SGDDecayingBiases(scratch_cnn.SGD):
    """Weight decay applied to biases too (the twin, like scratch_cnn, decays weights only)."""

    def step(self, grads: dict[str, np.ndarray]) -> None:
        grads = {k: (g + self.weight_decay * self.params[k] if k.endswith(".b") else g) for k, g in grads.items()}
        super().step(grads)


CURVE_FAULTS: list[CurveFault] = [
    CurveFault("sgd_momentum_twice", "momentum applied twice per step", lambda: _impl(SGD=SGDMomentumTwice)),
    CurveFault(
        "weight_decay_on_biases",
        "weight decay on biases, which the twin does not decay",
        lambda: _impl(SGD=SGDDecayingBiases),
    ),
    *(f for f in _DECLARED if isinstance(f, CurveFault)),
    CurveFault(
        "shuffled_labels",
        "each batch's labels rolled by one against its images",
        lambda: _impl(),
        lambda y: np.roll(y, 1),
    ),
]
