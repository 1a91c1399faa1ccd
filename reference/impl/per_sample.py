"""One sample at a time: code that takes one image (or one vector) where the protocol passes a batch.

| piece | its job | documented by |
|---|---|---|
| ``sampling``, ``Samples`` (``per_sample=``) | the batch split into their samples, in their layout, and their results stacked back into the protocol's | ``tests/test_adapter_pieces.py`` |
| ``with_caches``, ``summed`` | function pairs: each sample's backward with its own forward's cache, in order; the parameter gradients (of ``sum(dout * out)``) the samples' sum | ``tests/test_wrappers_perimage.py`` |
| ``replayed`` | a class that keeps only its last sample: backward in reverse, re-running each sample's forward first; the gradients summed | ``tests/test_adapter_pieces.py``, ``tests/test_adapter_styles.py`` |

NumPy and ``layouts`` only: this module runs in the sandboxed worker beside the code it wraps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.impl.layouts import (
    chw_flatten,
    flatten_from_protocol,
    flatten_to_protocol,
    nchw,
    sample_layouts,
    samples_from_theirs,
    samples_to_theirs,
)


@dataclass(frozen=True)
class Samples:
    """``per_sample=``: their code takes one sample, in ``lay_in``, and gives one in ``lay_out`` (see
    ``layouts.samples_to_theirs``). ``reorders_flat``: a per-sample Flatten of CHW samples, whose vector
    is in (C, H, W) order (put in the protocol's (H, W, C) order here). ``shape`` is the protocol's
    input shape of the current batch."""

    lay_in: str
    lay_out: str
    reorders_flat: bool = False

    def split(self, x: np.ndarray) -> list[np.ndarray]:
        """The protocol's input batch as their input samples."""
        return samples_to_theirs(x, self.lay_in)

    def stack(self, outs: list[Any], shape: tuple[int, ...]) -> np.ndarray:
        """Their output samples as the protocol's output batch."""
        y = samples_from_theirs(outs, self.lay_out)
        if not self.reorders_flat:
            return y
        m, H, W, C = shape
        # NOTE: a wrong number of elements is left as it is: the judges name the shape, not a reshape here
        return flatten_to_protocol(y, nchw(shape)) if np.shape(y) == (m, C * H * W) else y

    def split_dout(self, dout: np.ndarray, shape: tuple[int, ...]) -> list[np.ndarray]:
        """The protocol's upstream gradient as their output samples' gradients."""
        if self.reorders_flat:
            dout = flatten_from_protocol(dout, nchw(shape))
        return samples_to_theirs(dout, self.lay_out)

    def stack_dx(self, dxs: list[Any]) -> np.ndarray:
        """Their input samples' gradients as the protocol's dx."""
        return samples_from_theirs(dxs, self.lay_in)


def sampling(kind: str, layouts: str | tuple[str, str] | None) -> Samples | None:
    """The piece for ``per_sample=`` (None: their code takes the whole batch); ValueError, at wrap time,
    for an unknown layout."""
    lay_in, lay_out = sample_layouts(kind, layouts)
    if not layouts:
        return None
    return Samples(lay_in, lay_out, chw_flatten(kind, lay_in == "CHW"))  # type: ignore[arg-type]


def with_caches(douts: list[np.ndarray], caches: list[Any], backward: Callable[[np.ndarray, Any], Any]) -> list[Any]:
    """Function pairs: sample i's backward with sample i's cache, in order."""
    return [backward(d, cache) for d, cache in zip(douts, caches, strict=True)]


def summed(got: list[Any], with_bias: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The samples' ``(dx, dw, db)`` as the batch's ``(dw, db)``: their sum (db None without a bias)."""
    total = lambda k: np.sum([np.asarray(g[k]) for g in got], axis=0)  # noqa: E731
    return total(1), total(2) if with_bias else None


def replayed(douts: list[np.ndarray], samples: list[np.ndarray], forward: Callable[[np.ndarray], Any],
             backward: Callable[[np.ndarray], tuple[Any, dict[str, Any]]]) -> tuple[list[Any], dict[str, Any]]:  # fmt: skip
    """A class's backward, one sample at a time: (their dx per sample, in order; their gradients summed).

    # NOTE: their layer caches its last sample: sample i's backward needs sample i's forward run
    # last. The batch's forward ran them in order, so backward goes in reverse, re-running each
    # forward but the last's (with the weights unchanged: every update is captured and undone).
    """
    dxs, total = [], {}
    for i in reversed(range(len(douts))):
        if i != len(douts) - 1:
            forward(samples[i])
        dx, g = backward(douts[i])
        dxs.append(dx)
        for k, v in g.items():  # the protocol's grads are of sum(dout * out): the samples' sum
            total[k] = total[k] + np.asarray(v) if k in total else np.array(v, copy=True)
    return dxs[::-1], total
