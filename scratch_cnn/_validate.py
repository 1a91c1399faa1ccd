"""Input checks shared by every layer: each failure is a ValueError naming the layer."""

from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_array(layer: str, x: object, *, rank: int, what: str = "input") -> np.ndarray:
    """Check that ``x`` is a finite float32/float64 ndarray of the given rank; return it."""
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{layer}: expected {what} to be a numpy.ndarray, got {type(x).__name__}")
    if x.ndim != rank:
        raise ValueError(f"{layer}: expected {what} of rank {rank}, got rank {x.ndim} with shape {x.shape}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{layer}: expected {what} dtype float32 or float64, got {x.dtype}")
    if not np.all(np.isfinite(x)):
        n_nan = int(np.isnan(x).sum())
        n_inf = int(np.isinf(x).sum())
        raise ValueError(f"{layer}: {what} contains non-finite values ({n_nan} NaN, {n_inf} Inf)")
    return x


def check_dtype_matches(layer: str, x: np.ndarray, param: np.ndarray) -> None:
    """A layer computes in its input's dtype; parameters of another dtype are refused, not cast."""
    if x.dtype != param.dtype:
        raise ValueError(
            f"{layer}: input dtype {x.dtype} does not match parameter dtype {param.dtype}; "
            f"convert the layer first with .astype(np.{x.dtype})"
        )


def check_grad(layer: str, dout: object, expected_shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Check an upstream gradient against the shape and dtype of the forward output."""
    if not isinstance(dout, np.ndarray):
        raise ValueError(f"{layer}: expected upstream gradient to be a numpy.ndarray, got {type(dout).__name__}")
    if dout.shape != tuple(expected_shape):
        raise ValueError(f"{layer}: expected upstream gradient of shape {tuple(expected_shape)}, got {dout.shape}")
    if dout.dtype != dtype:
        raise ValueError(f"{layer}: expected upstream gradient dtype {dtype}, got {dout.dtype}")
    return dout


def pair(layer: str, name: str, value: object, *, minimum: int) -> tuple[int, int]:
    """Normalise an int or (int, int) constructor argument, checking it is >= ``minimum``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        out = (int(value), int(value))
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        out = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{layer}: expected {name} to be an int or a pair of ints, got {value!r}")
    if min(out) < minimum:
        raise ValueError(f"{layer}: expected {name} >= {minimum}, got {value!r}")
    return out


def positive_int(layer: str, name: str, value: object) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{layer}: expected {name} to be an int >= 1, got {value!r}")
    return int(value)


def float_dtype(layer: str, dtype: object) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise ValueError(f"{layer}: expected dtype float32 or float64, got {dtype!r}") from err
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"{layer}: expected dtype float32 or float64, got {dt}")
    return dt
