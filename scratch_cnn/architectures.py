"""Named networks: ``lenet`` (the default), ``lenet-bn`` (with batch norm and dropout), ``seed`` (the blog's
network), plus ``tiny`` for tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .activations import ReLU
from .conv import Conv2D
from .dense import Dense, Flatten
from .dropout import Dropout
from .model import Sequential
from .normalization import BatchNorm2D
from .pooling import MaxPool2D

# NOTE: max pooling and ReLU commute exactly: max(relu(a), relu(b)) == relu(max(a, b)) in floating
# point, and so do their gradients (a window whose maximum is <= 0 passes nothing either way: ReLU'(0)
# = 0 and every value relu maps to 0 ties at a zero gradient). Pooling first runs the ReLU, forward and
# backward, on a quarter of the elements. tests/test_model.py trains both orders and compares the
# weights bit for bit.


def lenet(rng: np.random.Generator, dtype: Any = np.float32) -> Sequential:
    """conv5x5 1->32, maxpool 2, ReLU, conv5x5 32->64, maxpool 2, ReLU, dense 3136->128, ReLU, dense 128->10."""
    return Sequential([
        Conv2D(1, 32, 5, rng=rng, dtype=dtype), MaxPool2D(2), ReLU(),
        Conv2D(32, 64, 5, rng=rng, dtype=dtype), MaxPool2D(2), ReLU(),
        Flatten(), Dense(7 * 7 * 64, 128, rng=rng, dtype=dtype), ReLU(), Dense(128, 10, rng=rng, dtype=dtype),
    ])  # fmt: skip


def lenet_bn(rng: np.random.Generator, dtype: Any = np.float32) -> Sequential:
    """lenet with batch norm and dropout: conv5x5 1->32 (no bias), BatchNorm2D(32), maxpool 2, ReLU,
    conv5x5 32->64 (no bias), BatchNorm2D(64), maxpool 2, ReLU, dense 3136->128, ReLU, Dropout(0.5),
    dense 128->10.

    # NOTE: the convs have no bias: batch norm subtracts each channel's mean right after, so a bias
    # would cancel exactly (zero gradient in training, folded into beta in effect). Pooling sits
    # before the ReLU as in lenet (the order of the module NOTE above: identical, and cheaper);
    # BatchNorm -> ReLU -> pool gives the same numbers. The Dropout's generator is spawned from
    # ``rng`` (Generator.spawn draws nothing from it), so the weights are those ``rng`` gives
    # whatever the masks.
    """
    return Sequential([
        Conv2D(1, 32, 5, bias=False, rng=rng, dtype=dtype), BatchNorm2D(32, dtype=dtype), MaxPool2D(2), ReLU(),
        Conv2D(32, 64, 5, bias=False, rng=rng, dtype=dtype), BatchNorm2D(64, dtype=dtype), MaxPool2D(2), ReLU(),
        Flatten(), Dense(7 * 7 * 64, 128, rng=rng, dtype=dtype), ReLU(), Dropout(0.5, rng=rng.spawn(1)[0]),
        Dense(128, 10, rng=rng, dtype=dtype),
    ])  # fmt: skip


def seed(rng: np.random.Generator, dtype: Any = np.float32) -> Sequential:
    """The blog's network: conv5x5 1->4, conv5x5 4->4, maxpool, conv3x3 4->8, conv3x3 8->16, maxpool,
    dense 784->128, dense 128->10; all "same", ReLU after each conv (after the pool where one follows)
    and the first dense."""
    return Sequential([
        Conv2D(1, 4, 5, rng=rng, dtype=dtype), ReLU(), Conv2D(4, 4, 5, rng=rng, dtype=dtype), MaxPool2D(2), ReLU(),
        Conv2D(4, 8, 3, rng=rng, dtype=dtype), ReLU(), Conv2D(8, 16, 3, rng=rng, dtype=dtype), MaxPool2D(2), ReLU(),
        Flatten(), Dense(7 * 7 * 16, 128, rng=rng, dtype=dtype), ReLU(), Dense(128, 10, rng=rng, dtype=dtype),
    ])  # fmt: skip


def tiny(rng: np.random.Generator, dtype: Any = np.float32) -> Sequential:
    """A small conv-pool-dense net for tests: conv3x3 1->4, maxpool 2, ReLU, dense 196*4... on 28x28 input."""
    return Sequential([
        Conv2D(1, 4, 3, rng=rng, dtype=dtype), MaxPool2D(2), ReLU(),
        Flatten(), Dense(14 * 14 * 4, 10, rng=rng, dtype=dtype),
    ])  # fmt: skip


ARCHITECTURES: dict[str, Callable[..., Sequential]] = {"lenet": lenet, "lenet-bn": lenet_bn, "seed": seed, "tiny": tiny}


def build(name: str, rng: np.random.Generator, dtype: Any = np.float32) -> Sequential:
    """Build a named architecture with weights drawn from ``rng``."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](rng, dtype)
