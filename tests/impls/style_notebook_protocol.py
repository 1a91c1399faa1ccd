"""The course notebook's functions (NHWC loops, hparameters dicts, (1, 1, 1, n_C) biases; the dense
part column-major, dW carrying 1/m) in the layer protocol."""

from functools import partial

from reference.impl.adapters import Conventions, function_layer
from tests.impls import style_notebook as L

pool = lambda c: {"f": c.one("kernel_size"), "stride": c.one("stride")}  # noqa: E731
Conv2D = function_layer("Conv2D", L.conv_forward, L.conv_backward, conventions=Conventions(bias="image"),
                        hyper=lambda c: {"stride": c.one("stride"), "pad": c.symmetric_pad()},
                        supports=lambda c: c.kernel_size[0] == c.kernel_size[1] or "square (f, f) kernels only")  # fmt: skip
MaxPool2D = function_layer(
    "MaxPool2D", partial(L.pool_forward, mode="max"), partial(L.pool_backward, mode="max"), hyper=pool
)
AvgPool2D = function_layer("AvgPool2D", partial(L.pool_forward, mode="average"), partial(L.pool_backward, mode="average"),
                           hyper=pool)  # fmt: skip
ReLU = function_layer("ReLU", L.relu, L.relu_backward)
Dense = function_layer("Dense", L.linear_forward, L.linear_backward,
                       conventions=Conventions(dense_weight="out_in", dense_x="columns", bias="column", param_grads="carry_1/m"))  # fmt: skip
