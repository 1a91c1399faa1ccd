"""A from-scratch deep-learning library in the Keras-like style of the machine-learning-from-scratch
projects: NCHW images, conv weights ``(n_filters, C, fh, fw)`` and biases ``(n_filters, 1)``, layers
told their input shape (``set_input_shape``; ``input_shape=`` in the constructor), ``initialize
(optimizer)`` that copies an optimizer object into the layer, ``forward_pass(X, training)`` and
``backward_pass(accum_grad)`` that hands each gradient to its optimizer (``self.W =
self.W_opt.update(self.W, grad_w)``) and keeps none. Pooling asserts what it cannot take. Correct,
and with the bugs such code typically has (the classes at the end). Wrapped by
``style_keras_protocol.py``."""

import copy
import math

import numpy as np


class StochasticGradientDescent:
    def __init__(self, learning_rate=0.01, momentum=0):
        self.learning_rate, self.momentum, self.w_updt = learning_rate, momentum, None

    def update(self, w, grad_wrt_w):
        if self.w_updt is None:
            self.w_updt = np.zeros(np.shape(w))
        self.w_updt = self.momentum * self.w_updt + (1 - self.momentum) * grad_wrt_w
        return w - self.learning_rate * self.w_updt


def determine_padding(filter_shape, output_shape="same"):
    if output_shape == "valid":
        return (0, 0), (0, 0)
    fh, fw = filter_shape  # "same": the output as large as the input (stride 1), the odd pixel at the end
    return (int(math.floor((fh - 1) / 2)), int(math.ceil((fh - 1) / 2))), (
        int(math.floor((fw - 1) / 2)), int(math.ceil((fw - 1) / 2)))  # fmt: skip


def image_to_column(images, filter_shape, stride, output_shape="same"):
    """(m, C, H, W) -> columns (C * fh * fw, out_h * out_w * m), the batch index fastest."""
    fh, fw = filter_shape
    pad_h, pad_w = determine_padding(filter_shape, output_shape)
    padded = np.pad(images, ((0, 0), (0, 0), pad_h, pad_w), mode="constant")
    m, C, H, W = padded.shape
    out_h, out_w = (H - fh) // stride + 1, (W - fw) // stride + 1
    cols = np.empty((C, fh, fw, out_h, out_w, m), dtype=images.dtype)
    for a in range(fh):
        for b in range(fw):
            patch = padded[:, :, a : a + stride * out_h : stride, b : b + stride * out_w : stride]
            cols[:, a, b] = patch.transpose(1, 2, 3, 0)
    return cols.reshape(C * fh * fw, -1)


def column_to_image(cols, images_shape, filter_shape, stride, output_shape="same"):
    """The adjoint of image_to_column: columns summed back into (m, C, H, W)."""
    m, C, H, W = images_shape
    fh, fw = filter_shape
    pad_h, pad_w = determine_padding(filter_shape, output_shape)
    Hp, Wp = H + sum(pad_h), W + sum(pad_w)
    out_h, out_w = (Hp - fh) // stride + 1, (Wp - fw) // stride + 1
    cols = cols.reshape(C, fh, fw, out_h, out_w, m)
    padded = np.zeros((m, C, Hp, Wp), dtype=cols.dtype)
    for a in range(fh):
        for b in range(fw):
            padded[:, :, a : a + stride * out_h : stride, b : b + stride * out_w : stride] += cols[:, a, b].transpose(
                3, 0, 1, 2
            )
    return padded[:, :, pad_h[0] : pad_h[0] + H, pad_w[0] : pad_w[0] + W]


class Layer:
    input_shape = None
    trainable = True

    def set_input_shape(self, shape):
        self.input_shape = shape

    def layer_name(self):
        return self.__class__.__name__

    def parameters(self):
        return 0


class Conv2D(Layer):
    def __init__(self, n_filters, filter_shape, input_shape=None, padding="same", stride=1, use_bias=True):
        self.n_filters, self.filter_shape, self.input_shape = n_filters, filter_shape, input_shape
        self.padding, self.stride, self.use_bias = padding, stride, use_bias

    def initialize(self, optimizer):
        fh, fw = self.filter_shape
        channels = self.input_shape[0]
        limit = 1 / math.sqrt(np.prod(self.filter_shape))
        self.W = np.random.uniform(-limit, limit, size=(self.n_filters, channels, fh, fw))
        self.w0 = np.zeros((self.n_filters, 1))
        self.W_opt, self.w0_opt = copy.copy(optimizer), copy.copy(optimizer)

    def parameters(self):
        return np.prod(self.W.shape) + (np.prod(self.w0.shape) if self.use_bias else 0)

    def forward_pass(self, X, training=True):
        batch_size = X.shape[0]
        self.layer_input = X
        self.X_col = image_to_column(X, self.filter_shape, stride=self.stride, output_shape=self.padding)
        self.W_col = self.W.reshape((self.n_filters, -1))
        output = self.W_col.dot(self.X_col)
        if self.use_bias:
            output = output + self.w0
        output = output.reshape(self.output_shape() + (batch_size,))
        return output.transpose(3, 0, 1, 2)

    def backward_pass(self, accum_grad):
        accum_grad = accum_grad.transpose(1, 2, 3, 0).reshape(self.n_filters, -1)
        if self.trainable:
            grad_w = accum_grad.dot(self.X_col.T).reshape(self.W.shape)
            self.W = self.W_opt.update(self.W, grad_w)
            if self.use_bias:
                grad_w0 = np.sum(accum_grad, axis=1, keepdims=True)
                self.w0 = self.w0_opt.update(self.w0, grad_w0)
        accum_grad = self.W_col.T.dot(accum_grad)
        return column_to_image(accum_grad, self.layer_input.shape, self.filter_shape, self.stride, self.padding)

    def output_shape(self):
        channels, height, width = self.input_shape
        pad_h, pad_w = determine_padding(self.filter_shape, output_shape=self.padding)
        output_height = (height + np.sum(pad_h) - self.filter_shape[0]) / self.stride + 1
        output_width = (width + np.sum(pad_w) - self.filter_shape[1]) / self.stride + 1
        return self.n_filters, int(output_height), int(output_width)


class Dense(Layer):
    def __init__(self, n_units, input_shape=None, use_bias=True):
        self.layer_input, self.input_shape, self.n_units, self.use_bias = None, input_shape, n_units, use_bias

    def initialize(self, optimizer):
        limit = 1 / math.sqrt(self.input_shape[0])
        self.W = np.random.uniform(-limit, limit, (self.input_shape[0], self.n_units))
        self.w0 = np.zeros((1, self.n_units))
        self.W_opt, self.w0_opt = copy.copy(optimizer), copy.copy(optimizer)

    def forward_pass(self, X, training=True):
        self.layer_input = X
        return X.dot(self.W) + (self.w0 if self.use_bias else 0)

    def backward_pass(self, accum_grad):
        W = self.W  # the weights the forward used
        if self.trainable:
            grad_w = self.layer_input.T.dot(accum_grad)
            self.W = self.W_opt.update(self.W, grad_w)
            if self.use_bias:
                grad_w0 = np.sum(accum_grad, axis=0, keepdims=True)
                self.w0 = self.w0_opt.update(self.w0, grad_w0)
        return accum_grad.dot(W.T)

    def output_shape(self):
        return (self.n_units,)


class ReLU:
    def __call__(self, x):
        return np.where(x >= 0, x, 0)

    def gradient(self, x):
        return (x > 0).astype(x.dtype)


class Activation(Layer):
    activation_functions = {"relu": ReLU}

    def __init__(self, name):
        self.activation_name, self.activation_func = name, self.activation_functions[name]()

    def forward_pass(self, X, training=True):
        self.layer_input = X
        return self.activation_func(X)

    def backward_pass(self, accum_grad):
        return accum_grad * self.activation_func.gradient(self.layer_input)

    def output_shape(self):
        return self.input_shape


class PoolingLayer(Layer):
    def __init__(self, pool_shape=(2, 2), stride=1, padding=0):
        self.pool_shape, self.stride, self.padding = pool_shape, stride, padding

    def forward_pass(self, X, training=True):
        self.layer_input = X
        batch_size, channels, height, width = X.shape
        _, out_height, out_width = self.output_shape()
        X = X.reshape(batch_size * channels, 1, height, width)
        X_col = image_to_column(X, self.pool_shape, self.stride, "valid")
        output = self._pool_forward(X_col)
        return output.reshape(out_height, out_width, batch_size, channels).transpose(2, 3, 0, 1)

    def backward_pass(self, accum_grad):
        batch_size, _, _, _ = accum_grad.shape
        channels, height, width = self.input_shape
        accum_grad = accum_grad.transpose(2, 3, 0, 1).ravel()
        accum_grad_col = self._pool_backward(accum_grad)
        accum_grad = column_to_image(accum_grad_col, (batch_size * channels, 1, height, width), self.pool_shape,
                                     self.stride, "valid")  # fmt: skip
        return accum_grad.reshape((batch_size,) + self.input_shape)

    def output_shape(self):
        channels, height, width = self.input_shape
        assert (height - self.pool_shape[0]) % self.stride == 0, "the pool windows must cover the input's height"
        assert (width - self.pool_shape[1]) % self.stride == 0, "the pool windows must cover the input's width"
        out_height = (height - self.pool_shape[0]) // self.stride + 1
        out_width = (width - self.pool_shape[1]) // self.stride + 1
        return channels, int(out_height), int(out_width)


class MaxPooling2D(PoolingLayer):
    def _pool_forward(self, X_col):
        arg_max = np.argmax(X_col, axis=0).flatten()  # the first maximum of each window
        self.cache = arg_max
        return X_col[arg_max, range(arg_max.size)]

    def _pool_backward(self, accum_grad):
        accum_grad_col = np.zeros((np.prod(self.pool_shape), accum_grad.size), dtype=accum_grad.dtype)
        accum_grad_col[self.cache, range(accum_grad.size)] = accum_grad
        return accum_grad_col


class AveragePooling2D(PoolingLayer):
    def _pool_forward(self, X_col):
        return np.mean(X_col, axis=0)

    def _pool_backward(self, accum_grad):
        accum_grad_col = np.zeros((np.prod(self.pool_shape), accum_grad.size), dtype=accum_grad.dtype)
        accum_grad_col[:, range(accum_grad.size)] = 1.0 / accum_grad_col.shape[0] * accum_grad
        return accum_grad_col


class Flatten(Layer):
    def __init__(self, input_shape=None):
        self.prev_shape, self.input_shape = None, input_shape

    def forward_pass(self, X, training=True):
        self.prev_shape = X.shape
        return X.reshape((X.shape[0], -1))

    def backward_pass(self, accum_grad):
        return accum_grad.reshape(self.prev_shape)

    def output_shape(self):
        return (np.prod(self.input_shape),)


# --- the bugs such code typically has -------------------------------------------------------------


class ReLUGradAtZeroOne(ReLU):
    """ReLU'(0) = 1 (x >= 0): a valid subgradient, but not torch's convention; declared or not."""

    def gradient(self, x):
        return (x >= 0).astype(x.dtype)


class Conv2DBiasWrongAxis(Conv2D):
    """The bias gradient summed over the wrong axis of the column matrix (its positions, not its filters)."""

    def backward_pass(self, accum_grad):
        cols = accum_grad.transpose(1, 2, 3, 0).reshape(self.n_filters, -1)
        self.W = self.W_opt.update(self.W, cols.dot(self.X_col.T).reshape(self.W.shape))
        if self.use_bias:
            self.w0 = self.w0_opt.update(self.w0, np.sum(cols, axis=0, keepdims=True))
        return column_to_image(self.W_col.T.dot(cols), self.layer_input.shape, self.filter_shape, self.stride,
                               self.padding)  # fmt: skip
