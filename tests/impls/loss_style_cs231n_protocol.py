"""The CS231n-style loss wrapped in the protocol: its own softmax handed over as the probabilities."""

from reference.impl.loss_adapters import loss_function
from tests.impls import loss_style_cs231n as L

SoftmaxCrossEntropy = loss_function(L.softmax_loss, probs=L.softmax)
