"""The loss on probabilities wrapped in the protocol: their softmax, their loss, their dL/dp."""

from reference.impl.loss_adapters import probability_loss
from tests.impls import loss_style_probabilities as P

SoftmaxCrossEntropy = probability_loss(P.softmax, P.cross_entropy, P.cross_entropy_grad)
