"""scratch_cnn: a convolutional network from scratch in NumPy (NHWC, batch first)."""

from .activations import LeakyReLU, ReLU, Sigmoid, Tanh
from .architectures import ARCHITECTURES, build
from .conv import Conv2D
from .dense import Dense, Flatten
from .dropout import Dropout
from .layer import Layer
from .losses import MSELoss, SoftmaxCrossEntropy
from .model import Sequential
from .normalization import BatchNorm1D, BatchNorm2D
from .optim import SGD, Adam, RMSprop
from .pooling import AvgPool2D, MaxPool2D

__all__ = [
    "ARCHITECTURES",
    "Adam",
    "AvgPool2D",
    "BatchNorm1D",
    "BatchNorm2D",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "Layer",
    "LeakyReLU",
    "MSELoss",
    "MaxPool2D",
    "RMSprop",
    "ReLU",
    "SGD",
    "Sequential",
    "Sigmoid",
    "SoftmaxCrossEntropy",
    "Tanh",
    "build",
]
__version__ = "0.1.0"
