"""A tutorial CNN, written the way such tutorials write it: one 28x28 image at a time, a 3x3
convolution with one input channel (valid, no bias), 2x2 max pooling, a fully connected layer, each
with ``forward(input)`` and ``backprop(d_L_d_out, learn_rate)`` that updates its own weights.
Everything computes in float64 (``np.zeros`` without a dtype). Correct, and with the bugs such code
typically has (the classes at the end). Wrapped by ``style_tutorial_protocol.py``."""

import numpy as np


class Conv3x3:
    """A convolution layer using 3x3 filters."""

    def __init__(self, num_filters):
        self.num_filters = num_filters
        self.filters = np.random.randn(num_filters, 3, 3) / 9  # divide by 9 to reduce the variance

    def iterate_regions(self, image):
        h, w = image.shape
        for i in range(h - 2):
            for j in range(w - 2):
                yield image[i : i + 3, j : j + 3], i, j

    def forward(self, input):
        """input: a 2-D image (h, w) -> (h - 2, w - 2, num_filters)."""
        self.last_input = input
        h, w = input.shape
        output = np.zeros((h - 2, w - 2, self.num_filters))
        for im_region, i, j in self.iterate_regions(input):
            output[i, j] = np.sum(im_region * self.filters, axis=(1, 2))
        return output

    def backprop(self, d_L_d_out, learn_rate):
        d_L_d_filters = np.zeros(self.filters.shape)
        d_L_d_input = np.zeros(self.last_input.shape)
        for im_region, i, j in self.iterate_regions(self.last_input):
            for f in range(self.num_filters):
                d_L_d_filters[f] += d_L_d_out[i, j, f] * im_region
                d_L_d_input[i : i + 3, j : j + 3] += d_L_d_out[i, j, f] * self.filters[f]
        self.filters -= learn_rate * d_L_d_filters
        return d_L_d_input


class MaxPool2:
    """A max pooling layer using a pool size of 2."""

    def iterate_regions(self, image):
        h, w, _ = image.shape
        for i in range(h // 2):
            for j in range(w // 2):
                yield image[i * 2 : i * 2 + 2, j * 2 : j * 2 + 2], i, j

    def forward(self, input):
        """input: (h, w, num_filters) -> (h // 2, w // 2, num_filters)."""
        self.last_input = input
        h, w, num_filters = input.shape
        output = np.zeros((h // 2, w // 2, num_filters))
        for im_region, i, j in self.iterate_regions(input):
            output[i, j] = np.amax(im_region, axis=(0, 1))
        return output

    def backprop(self, d_L_d_out):
        d_L_d_input = np.zeros(self.last_input.shape)
        for im_region, i, j in self.iterate_regions(self.last_input):
            h, w, f = im_region.shape
            amax = np.amax(im_region, axis=(0, 1))
            for f2 in range(f):
                done = False
                for i2 in range(h):
                    for j2 in range(w):
                        if not done and im_region[i2, j2, f2] == amax[f2]:  # the first maximum only
                            d_L_d_input[i * 2 + i2, j * 2 + j2, f2] = d_L_d_out[i, j, f2]
                            done = True
        return d_L_d_input


class FullyConnected:
    """A fully connected layer on one flattened input."""

    def __init__(self, input_len, nodes):
        self.weights = np.random.randn(input_len, nodes) / input_len
        self.biases = np.zeros(nodes)

    def forward(self, input):
        self.last_input_shape = input.shape
        input = input.flatten()
        self.last_input = input
        return np.dot(input, self.weights) + self.biases

    def backprop(self, d_L_d_out, learn_rate):
        d_L_d_w = self.last_input[np.newaxis].T @ d_L_d_out[np.newaxis]
        d_L_d_b = d_L_d_out
        d_L_d_inputs = self.weights @ d_L_d_out
        self.weights -= learn_rate * d_L_d_w
        self.biases -= learn_rate * d_L_d_b
        return d_L_d_inputs.reshape(self.last_input_shape)


# --- the bugs such code typically has -------------------------------------------------------------


class Conv3x3Flipped(Conv3x3):
    """'Convolution' as the textbook defines it: the filters flipped in space (torch cross-correlates)."""

    def forward(self, input):
        self.last_input = input
        h, w = input.shape
        output = np.zeros((h - 2, w - 2, self.num_filters))
        for im_region, i, j in self.iterate_regions(input):
            output[i, j] = np.sum(im_region[::-1, ::-1] * self.filters, axis=(1, 2))
        return output

    def backprop(self, d_L_d_out, learn_rate):
        d_L_d_filters = np.zeros(self.filters.shape)
        d_L_d_input = np.zeros(self.last_input.shape)
        for im_region, i, j in self.iterate_regions(self.last_input):
            for f in range(self.num_filters):
                d_L_d_filters[f] += d_L_d_out[i, j, f] * im_region[::-1, ::-1]
                d_L_d_input[i : i + 3, j : j + 3] += d_L_d_out[i, j, f] * self.filters[f, ::-1, ::-1]
        self.filters -= learn_rate * d_L_d_filters
        return d_L_d_input


class MaxPool2EveryTie(MaxPool2):
    """The gradient to every element equal to its window's maximum (ties: all of them)."""

    def backprop(self, d_L_d_out):
        d_L_d_input = np.zeros(self.last_input.shape)
        for im_region, i, j in self.iterate_regions(self.last_input):
            h, w, f = im_region.shape
            amax = np.amax(im_region, axis=(0, 1))
            for i2 in range(h):
                for j2 in range(w):
                    for f2 in range(f):
                        if im_region[i2, j2, f2] == amax[f2]:
                            d_L_d_input[i * 2 + i2, j * 2 + j2, f2] = d_L_d_out[i, j, f2]
        return d_L_d_input


class FullyConnectedDxAfterUpdate(FullyConnected):
    """Updates the weights first, then computes the input gradient from the updated weights."""

    def backprop(self, d_L_d_out, learn_rate):
        self.weights -= learn_rate * (self.last_input[np.newaxis].T @ d_L_d_out[np.newaxis])
        self.biases -= learn_rate * d_L_d_out
        return (self.weights @ d_L_d_out).reshape(self.last_input_shape)
