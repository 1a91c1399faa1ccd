"""Dropout(p, rng=...): inverted dropout. In training mode each element is kept with probability 1 - p
and scaled by 1 / (1 - p), a new mask each forward, the same mask in backward; in eval mode the
identity. Judged against its own randomness: the mask is read from its output."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import scratch_cnn
from reference.layers.case import Case, upstream_gradient
from reference.layers.faulty import Fault
from reference.layers.kind import Config, LayerKind

NAME = "Dropout"
Z = 5.0  # NOTE: the kept count is refused beyond 5 standard deviations of Binomial(n, 1 - p): a right
# dropout fails one case in ~1.7 million; a wrong p (or none) is that far off on a few hundred elements
SHAPES = [(16, 32), (4, 8, 8, 3), (2, 300), (64, 10)]
RATES = (0.5, 0.2, 0.75)


def self_reference(inputs: dict[str, Any], ours: dict[str, Any], g: np.ndarray, config: Config) -> tuple[dict, list]:
    """(the reference, its checks) from what the layer returned. Training: the mask is where its output is
    not 0 (the inputs are never 0); the reference output is x / (1 - p) there and 0 elsewhere, dx is
    g / (1 - p) on the same mask; the kept count must agree with 1 - p (a binomial test). Eval: the
    identity (out = x, dx = g)."""
    dtype = inputs["x"].dtype  # the reference in float64, rounded once to the case's dtype
    x = np.asarray(inputs["x"], dtype=np.float64)
    p = float(config.get("p", 0.5))
    identity = {"out": inputs["x"], "dx": g, "g": g}
    if config.get("mode", "train") == "eval":
        return identity, []
    out = np.asarray(ours.get("out"), dtype=np.float64)
    if out.shape != x.shape:  # the shape row says so
        return identity, []
    kept = out != 0
    ref = {
        "out": np.where(kept, x / (1 - p), 0.0).astype(dtype),
        "dx": np.where(kept, g / (1 - p), 0.0).astype(dtype),
        "g": g,
    }
    n, k = x.size, int(kept.sum())
    spread = Z * math.sqrt(n * p * (1 - p)) + 1
    share = abs(k - n * (1 - p)) / spread  # of the deviation the test allows: the gate's figure for this row
    note = (f"{k} of {n} elements kept, expected {n * (1 - p):.1f} +- {spread:.1f} (p = {p:g}: Binomial(n, 1 - p) "
            f"within {Z:g} standard deviations)")  # fmt: skip
    return ref, [("kept fraction", share <= 1, note, share)]


def twin(config: Config) -> Any:
    """torch's Dropout in the case's mode: in eval mode the identity, the reference of finite differences
    and two rounds (training mode is judged against its own randomness, never against this twin's)."""
    from torch import nn

    return nn.Dropout(float(config.get("p", 0.5))).train(config.get("mode", "train") == "train")


def _masked(scale: Any, mask_from: str = "out") -> Any:
    """The variant whose kept elements are where ours's ``mask_from`` is not 0, scaled by ``scale(p)``."""

    def compute(config: Config, inputs: dict[str, Any], ours: dict[str, Any]) -> dict[str, np.ndarray] | None:
        seen = ours.get(mask_from)
        if seen is None or np.shape(seen) != np.shape(inputs["x"]):
            return None
        p, kept = float(config.get("p", 0.5)), np.asarray(seen) != 0
        x, g = np.asarray(inputs["x"], dtype=np.float64), upstream_gradient(inputs, np.shape(seen)).astype(np.float64)
        return {"out": np.where(kept, x * scale(p), 0.0), "dx": np.where(kept, g * scale(p), 0.0)}

    return compute


VARIANTS = {
    "not_rescaled": ("dropout without the 1 / (1 - p) rescale (kept elements as they are)", _masked(lambda p: 1.0)),
    "rescaled_by_p": ("dropout rescaling by 1 / p instead of 1 / (1 - p)", _masked(lambda p: 1 / p)),
    "mask_in_eval": ("dropout applying a mask (and its 1 / (1 - p)) in eval mode, where it is the identity",
                     _masked(lambda p: 1 / (1 - p))),
    "fresh_mask_in_backward": ("a dropout backward with a mask of its own, not the forward's",
                               _masked(lambda p: 1 / (1 - p), mask_from="dx")),
}  # fmt: skip


def cases() -> list[Case]:
    out = []
    for i, (shape, p) in enumerate((s, p) for s in SHAPES for p in RATES):
        for mode in ("train", "eval"):
            out.append(Case(NAME, {"p": p, "mode": mode}, shape, "noise", seed=1000 + 2 * i + (mode == "eval")))
    return out


class DropoutNotRescaled(scratch_cnn.Dropout):
    def forward(self, x: np.ndarray) -> np.ndarray:
        out = super().forward(x)
        return out * (1 - self.p) if self.training else out  # the 1 / (1 - p) undone


class DropoutRescaledByP(scratch_cnn.Dropout):
    def forward(self, x: np.ndarray) -> np.ndarray:
        out = super().forward(x)
        return out * (1 - self.p) / self.p if self.training else out


class DropoutInEval(scratch_cnn.Dropout):
    def forward(self, x: np.ndarray) -> np.ndarray:
        training, self.training = self.training, True
        try:
            return super().forward(x)  # the mask applied in eval mode too
        finally:
            self.training = training


class DropoutFreshMaskInBackward(scratch_cnn.Dropout):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        super().backward(dout)
        if not self.training:
            return dout
        keep = self.rng.random(dout.shape) >= self.p  # a new mask, not the forward's
        return dout * keep / dout.dtype.type(1 - self.p)


def faults(build: Any) -> list[Any]:
    def shows(mode: str, tensor: str | None = None) -> Any:
        return lambda c, t, s: c.layer == NAME and c.config.get("mode") == mode and (tensor is None or t == tensor)

    # the two rescaling faults leave the mask and backward right: only the output shows them
    return [Fault("dropout_not_rescaled", "dropout without the 1 / (1 - p) rescale", lambda: build(Dropout=DropoutNotRescaled), shows("train", "out")),
            Fault("dropout_rescaled_by_p", "dropout rescaled by 1 / p instead of 1 / (1 - p)",
                  lambda: build(Dropout=DropoutRescaledByP), lambda c, t, s: shows("train", "out")(c, t, s) and c.config["p"] != 0.5),
            Fault("dropout_in_eval", "dropout applies its mask in eval mode", lambda: build(Dropout=DropoutInEval), shows("eval")),
            Fault("dropout_fresh_mask_in_backward", "dropout's backward draws a fresh mask",
                  lambda: build(Dropout=DropoutFreshMaskInBackward), shows("train", "dx"))]  # fmt: skip


KIND = LayerKind(
    name=NAME,
    optional=True,
    signature=("p",),
    defaults={"p": 0.5},
    extras=("rng",),
    modes=("train", "eval"),
    self_reference=self_reference,
    twin=twin,
    repeatable=False,
    family=lambda config, shape: f"{config.get('mode', 'train')} mode, p = {config.get('p', 0.5):g}",
    cases={"main": cases},
    smoke=({"p": 0.5, "mode": "train"}, (16, 32)),
    smoke_alternatives=(({"p": 0.5, "mode": "eval"}, (16, 32)),),
    candidates=lambda: [Case(NAME, {"p": 0.5, "mode": "train"}, (8, 64), "noise", seed=700, tag="searched")],
    secret=lambda rng, seed: [
        Case(
            NAME,
            {"p": float(np.round(rng.uniform(0.1, 0.9), 2)), "mode": "train"},
            (int(rng.integers(8, 33)), int(rng.integers(16, 65))),
            "noise",
            seed,
            tag="secret",
        )
    ],  # fmt: skip
    flops=lambda config, shape: 2 * int(np.prod(shape)),
    pointwise=True,
    faults=faults,
    variants=VARIANTS,
)
