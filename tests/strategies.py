"""Hypothesis strategies shared by the tests: layer configurations and inputs with zeros and ties."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


@st.composite
def conv_cases(draw, max_size=7):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(
        st.one_of(
            st.just("valid"),
            st.just("same") if stride == (1, 1) else st.just("valid"),
            st.integers(0, 2),
            st.tuples(st.integers(0, 2), st.integers(0, 2)),
        )
    )
    H = draw(st.integers(kh, max_size))
    W = draw(st.integers(kw, max_size))
    m, C, K = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return dict(m=m, H=H, W=W, C=C, K=K, kernel=(kh, kw), stride=stride, padding=padding, bias=bias, seed=seed)


@st.composite
def pool_cases(draw, max_size=8):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    H, W = draw(st.integers(kh, max_size)), draw(st.integers(kw, max_size))
    m, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    values = draw(st.sampled_from(["noise", "ties", "quantised"]))
    seed = draw(st.integers(0, 2**32 - 1))
    return dict(m=m, H=H, W=W, C=C, kernel=(kh, kw), stride=stride, values=values, seed=seed)


def make_values(rng: np.random.Generator, shape, kind: str) -> np.ndarray:
    """float64 values: 'noise' (uniform), 'ties' (few distinct values, so windows tie), 'quantised'
    (MNIST-like: mostly exact zeros, a few levels)."""
    if kind == "ties":
        return rng.integers(-2, 3, size=shape).astype(np.float64)
    if kind == "quantised":
        return np.where(rng.random(shape) < 0.6, 0.0, rng.integers(1, 4, size=shape) / 3.0)
    return rng.uniform(-1, 1, size=shape)
