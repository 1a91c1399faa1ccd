"""Weight initialisation from an explicit numpy.random.Generator."""

from __future__ import annotations

import numpy as np


def he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, dtype: np.dtype) -> np.ndarray:
    """He (Kaiming) normal: N(0, 2 / fan_in); suits ReLU networks. Returns ``shape`` in ``dtype``."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def glorot_uniform(
    rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int, dtype: np.dtype
) -> np.ndarray:
    """Glorot (Xavier) uniform: U(-a, a) with a = sqrt(6 / (fan_in + fan_out))."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


INITIALISERS = ("he", "glorot")


def init_weight(
    name: str, rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int, dtype: np.dtype
) -> np.ndarray:
    if name == "he":
        return he_normal(rng, shape, fan_in, dtype)
    if name == "glorot":
        return glorot_uniform(rng, shape, fan_in, fan_out, dtype)
    raise ValueError(f"unknown initialiser {name!r}; expected one of {INITIALISERS}")
