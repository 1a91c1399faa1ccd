"""The CS231n-style layers wrapped in the layer protocol: the 15 lines the README shows."""

from reference.impl.adapters import Conventions, function_layer, loss_function
from tests.impls import cs231n_layers as L

nchw = Conventions(images="NCHW", conv_weight="OIHW")
pool = lambda c: {"pool_height": c.kernel_size[0], "pool_width": c.kernel_size[1], "stride": c.one("stride")}  # noqa: E731
Conv2D = function_layer("Conv2D", L.conv_forward, L.conv_backward, conventions=nchw,
                        hyper=lambda c: {"stride": c.one("stride"), "pad": c.symmetric_pad()})  # fmt: skip
MaxPool2D = function_layer("MaxPool2D", L.max_pool_forward, L.max_pool_backward, conventions=nchw, hyper=pool)
AvgPool2D = function_layer("AvgPool2D", L.avg_pool_forward, L.avg_pool_backward, conventions=nchw, hyper=pool)
ReLU = function_layer("ReLU", L.relu_forward, L.relu_backward, conventions=nchw)
Flatten = function_layer("Flatten", L.flatten_forward, L.flatten_backward, conventions=nchw)
Dense = function_layer("Dense", L.affine_forward, L.affine_backward, conventions=nchw)
SoftmaxCrossEntropy = loss_function(L.softmax_loss, conventions=nchw)
