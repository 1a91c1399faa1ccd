"""Scratch arrays a layer reuses from one call to the next.

A fresh 40 MB array (the im2col patches of lenet's second convolution at batch 64) costs more to
allocate than to fill: the allocator maps new pages and the kernel zeroes each one on first touch
(measured: ~4 ms of a ~7 ms im2col). A workspace keeps such arrays alive between calls.

# NOTE: only arrays that never leave the layer belong here (patches, padded copies, partial sums):
# a caller keeps what forward and backward return, so those are always fresh arrays. A workspace
# array is overwritten by the layer's next call with the same shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Workspace:
    """Named scratch arrays, reallocated only when the requested shape or dtype changes."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def empty(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An array of ``shape`` and ``dtype`` holding what the last call left there (zeros when new)."""
        arr = self._arrays.get(name)
        if arr is None or arr.shape != shape or arr.dtype != np.dtype(dtype):
            arr = self._arrays[name] = np.zeros(shape, dtype=dtype)
        return arr

    def zeros(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An array of ``shape`` and ``dtype`` filled with zeros."""
        arr = self.empty(name, shape, dtype)
        arr.fill(0)
        return arr

    def clear(self) -> None:
        """Forget every array (their memory goes back once nothing else refers to them)."""
        self._arrays.clear()
