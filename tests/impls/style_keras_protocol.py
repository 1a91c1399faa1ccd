"""The Keras-like NCHW library (input shapes set before each call, optimizers inside the layers,
``forward_pass``/``backward_pass``, assertions for what it cannot take) in the layer protocol."""

from reference.impl.adapters import Conventions, RecordingOptimizer, class_layer
from tests.impls import style_keras as L

keras = dict(conventions=Conventions(images="NCHW", conv_weight="OIHW"), backward="backward_pass",
             forward=lambda layer, x: layer.forward_pass(x, training=True), unsupported=AssertionError,
             input_shape=lambda layer, shape: layer.set_input_shape(shape))  # fmt: skip
built = lambda layer: layer.initialize(RecordingOptimizer()) or layer  # noqa: E731  (their network does this)
with_bias = lambda c: {"W": "W", "b": "w0"} if c.bias else {"W": "W"}  # noqa: E731
Conv2D = class_layer("Conv2D", lambda c: built(L.Conv2D(c.out_ch, c.kernel_size, (c.in_ch, None, None), c.padding_mode(),
                     c.one("stride"), use_bias=c.bias)), **keras, params=with_bias, optimizer={"W": "W_opt", "b": "w0_opt"})  # fmt: skip
Dense = class_layer("Dense", lambda c: built(L.Dense(c.n_out, (c.n_in,), use_bias=c.bias)), **keras, params=with_bias,
                    grads=lambda layer: {"W": layer.W_opt.grad, "b": layer.w0_opt.grad})  # fmt: skip
MaxPool2D = class_layer("MaxPool2D", lambda c: L.MaxPooling2D(c.kernel_size, c.one("stride")), **keras)
AvgPool2D = class_layer("AvgPool2D", lambda c: L.AveragePooling2D(c.kernel_size, c.one("stride")), **keras)
ReLU = class_layer("ReLU", lambda c: L.Activation("relu"), **keras)
Flatten = class_layer("Flatten", lambda c: L.Flatten(), **keras)
