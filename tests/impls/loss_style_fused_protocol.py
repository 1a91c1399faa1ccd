"""The tutorial's fused dense+softmax layer wrapped in the protocol: its affine part as Dense, its
softmax and training-loop loss as SoftmaxCrossEntropy."""

from reference.impl.loss_adapters import fused_dense_softmax
from tests.impls import loss_style_fused as F

Dense, SoftmaxCrossEntropy = fused_dense_softmax(
    lambda c: F.Softmax(c.n_in, c.n_out), loss=F.loss, grad=F.gradient, logits="last_totals", backprop="backprop"
)
