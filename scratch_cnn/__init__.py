"""scratch_cnn: a convolutional network from scratch in NumPy (NHWC, batch first)."""

from .activations import ReLU
from .architectures import ARCHITECTURES, build
from .conv import Conv2D
from .dense import Dense, Flatten
from .layer import Layer
from .losses import SoftmaxCrossEntropy
from .model import Sequential
from .optim import SGD
from .pooling import AvgPool2D, MaxPool2D

__all__ = [
    "ARCHITECTURES",
    "AvgPool2D",
    "Conv2D",
    "Dense",
    "Flatten",
    "Layer",
    "MaxPool2D",
    "ReLU",
    "SGD",
    "Sequential",
    "SoftmaxCrossEntropy",
    "build",
]
__version__ = "0.1.0"
