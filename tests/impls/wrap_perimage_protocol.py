"""The per-image free functions (``tests/impls/wrap_perimage.py``: CHW images one at a time, 'valid'
square convolutions with OIHW filters and column biases, dense layers on column vectors, a one-hot column
label) in the layer protocol. ReLU, flatten, dense and the loss are lines of their training script."""

import numpy as np

from reference.impl.adapters import Conventions, function_layer
from reference.impl.loss_adapters import loss_function
from tests.impls import wrap_perimage as P

theirs = Conventions(conv_weight="OIHW", dense_weight="out_in", bias="column")
Conv2D = function_layer("Conv2D", lambda x, w, b, s: (P.convolution(x, w, b, s), (x, w, s)),
                        lambda d, c: P.convolutionBackward(d, *c), hyper=lambda c: c.one("stride"), per_sample="CHW",
                        conventions=theirs, supports={"padding": "valid", "square": True})  # fmt: skip
MaxPool2D = function_layer("MaxPool2D", lambda x, h: (P.maxpool(x, *h), (x, *h)), lambda d, c: P.maxpoolBackward(d, *c),
                           hyper=lambda c: (c.one("kernel_size"), c.one("stride")), per_sample="CHW",
                           supports={"square": True})  # fmt: skip
ReLU = function_layer("ReLU", lambda x: (np.where(x <= 0, 0, x), x), lambda d, x: np.where(x <= 0, 0, d))
Flatten = function_layer("Flatten", lambda x: (x.reshape(-1, 1), x.shape), lambda d, shape: d.reshape(shape),
                         per_sample=("CHW", "column"))  # fmt: skip
Dense = function_layer("Dense", lambda x, w, b: (w.dot(x) + b, (x, w)),
                       lambda d, c: (c[1].T.dot(d), d.dot(c[0].T), np.sum(d, axis=1).reshape(-1, 1)),
                       per_sample="column", conventions=theirs)  # fmt: skip
SoftmaxCrossEntropy = loss_function(lambda z, y: (P.categoricalCrossEntropy(P.softmax(z), y), P.softmax(z) - y),
                                    per_sample="column", labels="one_hot", grad="sum", probs=P.softmax)  # fmt: skip
