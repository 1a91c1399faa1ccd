"""The CS231n-style batch norm, dropout and Adam wrapped in the layer protocol (with the blog's layers
from scratch_cnn): the lines the README shows."""

from reference.impl.course_adapters import batchnorm_functions, dropout_functions, update_rule
from scratch_cnn import AvgPool2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU, SoftmaxCrossEntropy  # noqa: F401
from tests.impls import cs231n_course as L

BatchNorm1D = batchnorm_functions("BatchNorm1D", L.batchnorm_forward, L.batchnorm_backward)
BatchNorm2D = batchnorm_functions(
    "BatchNorm2D", L.spatial_batchnorm_forward, L.spatial_batchnorm_backward, layout="NCHW"
)
Dropout = dropout_functions(L.dropout_forward, L.dropout_backward)


def adam_config(hyper):
    if hyper.get("weight_decay"):
        raise NotImplementedError("the update rule has no weight decay")
    (beta1, beta2) = hyper.get("betas", (0.9, 0.999))
    return {"learning_rate": hyper["lr"], "beta1": beta1, "beta2": beta2, "epsilon": hyper.get("eps", 1e-8)}


Adam = update_rule("Adam", L.adam, adam_config)
