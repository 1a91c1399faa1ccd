"""The course-derived NHWC loop layers (``forward_propagate`` / ``backpropagate(dZ, learning_rate)``
updating the weights inside, weights drawn at the first forward, float64 throughout) in the layer
protocol. Their dense layer keeps its bias as W's last column: no declaration says that, so it is
left out (Dense MISSING); ReLU and the softmax exist only as the fused layers' lambdas."""

import numpy as np

from reference.impl.adapters import Conventions, class_layer, function_layer
from reference.impl.loss_adapters import loss_function, one_hot
from tests.impls import style_stein as L

stein = dict(forward="forward_propagate", backward="backpropagate", update="product", float64_only=True)
# their weights appear at the first forward (the input's channels unknown before): one forward on zeros makes them
first = lambda layer, c: layer.forward_propagate(np.zeros((1, *c.kernel_size, c.in_ch))) is not None and layer  # noqa: E731
Conv2D = class_layer("Conv2D", lambda c: first(L.ConvLayer(c.out_ch, c.one("kernel_size"), c.one("stride"), c.symmetric_pad()), c),
                     **stein, conventions=Conventions(bias="image"), params={"W": "W", "b": "b"}, supports={"bias": True})  # fmt: skip
MaxPool2D = class_layer("MaxPool2D", lambda c: L.PoolLayer_Max(c.one("kernel_size"), c.one("stride")), **stein)
AvgPool2D = class_layer("AvgPool2D", lambda c: L.PoolLayer_Avg(c.one("kernel_size"), c.one("stride")), **stein)
Flatten = class_layer("Flatten", lambda c: L.FlatLayer(), **stein)
relu, soft = L.FCLayer_ReLU(1), L.FCLayer_Softmax(1)
ReLU = function_layer("ReLU", lambda x: (relu.activate(x), x), lambda d, x: relu.gradient(d, x), float64_only=True)


def cce(z, y):  # the network's loss on the softmax layer's probabilities; train hands that layer A - Y
    A, Y = soft.activate(z), one_hot(y, z.shape[1], z.dtype)
    return L.categorical_cross_entropy(A, Y), soft.gradient(A - Y, z) / len(z)  # its dW divides by m


SoftmaxCrossEntropy = loss_function(cce, probs=soft.activate)
