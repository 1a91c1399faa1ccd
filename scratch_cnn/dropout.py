"""Inverted dropout."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validate import check_array
from .layer import Layer


def dropout_forward(x: np.ndarray, p: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """x -> (x * noise, noise): noise is 1 / (1 - p) where an element is kept (probability 1 - p), else 0.

    # NOTE: a uniform draw u in [0, 1) keeps its element when u >= p, which has probability exactly
    # 1 - p; the draw is in x's dtype (Generator.random takes float32), so float32 needs no float64 pass.
    """
    keep = rng.random(x.shape, dtype=x.dtype) >= x.dtype.type(p)
    noise = keep * x.dtype.type(1 / (1 - p))
    return x * noise, noise


class Dropout(Layer):
    """Inverted dropout (torch.nn.Dropout): in training mode each element is kept with probability
    ``1 - p`` and scaled by ``1 / (1 - p)``, a new mask from ``rng`` at every forward, and backward
    applies that forward's mask and scale; in eval mode forward and backward are the identity.
    No params, no buffers. ``rng``: a numpy.random.Generator (a fresh one when None)."""

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if (
            not isinstance(p, (int, float, np.integer, np.floating))
            or isinstance(p, bool)
            or not 0 <= p < 1  # NaN fails this too
        ):
            raise ValueError(f"Dropout: expected p in [0, 1), got {p!r}")
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise ValueError(f"Dropout: expected rng to be a numpy.random.Generator, got {type(rng).__name__}")
        self.p = float(p)
        self.rng = rng if rng is not None else np.random.default_rng()

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def forward(self, x: np.ndarray) -> np.ndarray:
        if isinstance(x, np.ndarray) and x.ndim >= 1:
            check_array("Dropout", x, rank=x.ndim)
        else:
            check_array("Dropout", x, rank=1)
        # the cache is a 1-tuple: (None,) after an eval-mode forward, whose backward is the identity
        if not self.training:
            return self._remember(x, (None,))
        out, noise = dropout_forward(x, self.p, self.rng)
        return self._remember(out, (noise,))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        (noise,) = self._recall(dout)
        return dout if noise is None else dout * noise
