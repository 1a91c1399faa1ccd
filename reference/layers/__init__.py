"""The layer kinds the judges know, one declaration each (reference.layers.kind.LayerKind), in their
protocol order. To add a kind: write its module here (a ``KIND``), its scratch_cnn implementation and
its tests, and list it below; nothing else in ``reference/`` names it.

| module | kind |
|---|---|
| `conv2d` | Conv2D |
| `maxpool2d`, `avgpool2d` (sharing `pooling`) | MaxPool2D, AvgPool2D |
| `relu` | ReLU |
| `flatten` | Flatten |
| `dense` | Dense |
| `softmax_cross_entropy` | SoftmaxCrossEntropy |
| `sigmoid`, `tanh`, `leaky_relu` (sharing `elementwise`) | Sigmoid, Tanh, LeakyReLU (optional: judged where present) |
| `batchnorm1d`, `batchnorm2d` (sharing `batchnorm`) | BatchNorm1D, BatchNorm2D (optional; modes, buffers) |
| `dropout` | Dropout (optional; judged against its own randomness) |
| `mse_loss` | MSELoss (optional) |
| `adam`, `rmsprop` (sharing `optimizer`) | Adam, RMSprop (optional optimisers, judged step by step against torch.optim) |
"""

from __future__ import annotations

from reference.layers import (
    adam,
    avgpool2d,
    batchnorm1d,
    batchnorm2d,
    conv2d,
    dense,
    dropout,
    flatten,
    leaky_relu,
    maxpool2d,
    mse_loss,
    relu,
    rmsprop,
    sigmoid,
    softmax_cross_entropy,
    tanh,
)
from reference.layers.kind import Convention, LayerKind, ParamLayout

KINDS: dict[str, LayerKind] = {
    m.KIND.name: m.KIND
    for m in (
        conv2d,
        relu,
        maxpool2d,
        avgpool2d,
        flatten,
        dense,
        softmax_cross_entropy,  # the blog's network
        sigmoid,
        tanh,
        leaky_relu,
        batchnorm1d,
        batchnorm2d,
        dropout,
        mse_loss,  # what courses add
        adam,
        rmsprop,
    )  # fmt: skip
}
NAMES = tuple(KINDS)
LAYERS = tuple(n for n, k in KINDS.items() if k.role == "layer" and not k.optional)
LOSSES = tuple(n for n, k in KINDS.items() if k.role == "loss" and not k.optional)
OPTIONAL = tuple(n for n, k in KINDS.items() if k.optional and k.role != "optimizer")  # judged where present
OPTIMIZERS = tuple(n for n, k in KINDS.items() if k.role == "optimizer")
PARAMETRIC = tuple(n for n, k in KINDS.items() if k.parametric)
NETWORK_LOSS = LOSSES[0]  # NOTE: the loss scratch_cnn's built-in networks are trained with (the first loss kind)

__all__ = [
    "KINDS",
    "LAYERS",
    "LOSSES",
    "NAMES",
    "NETWORK_LOSS",
    "PARAMETRIC",
    "Convention",
    "LayerKind",
    "ParamLayout",
    "kind",
]


def kind(name: str) -> LayerKind:
    """The declaration of ``name``; KeyError naming the kinds there are."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"no layer kind {name!r}; the judges know {', '.join(KINDS)}") from None
