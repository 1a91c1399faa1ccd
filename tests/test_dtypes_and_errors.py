"""dtype preservation and the documented errors for bad input."""

import numpy as np
import pytest

import scratch_cnn as sc

X32 = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)


def layers(dtype):
    rng = np.random.default_rng(0)
    return [
        (sc.Conv2D(3, 4, 3, rng=rng, dtype=dtype), X32),
        (sc.Conv2D(3, 2, (2, 3), stride=2, padding=1, rng=rng, dtype=dtype), X32),
        (sc.ReLU(), X32),
        (sc.MaxPool2D(2), X32),
        (sc.MaxPool2D(3, 2), X32),
        (sc.AvgPool2D(2), X32),
        (sc.AvgPool2D((3, 2), 1), X32),
        (sc.Flatten(), X32),
        (sc.Dense(8 * 8 * 3, 5, rng=rng, dtype=dtype), X32.reshape(2, -1)),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved_through_forward_backward_and_grads(dtype):
    for layer, x in layers(dtype):
        out = layer.forward(x.astype(dtype))
        dx = layer.backward(np.ones_like(out))
        assert out.dtype == dtype and dx.dtype == dtype, layer
        assert all(g.dtype == dtype for g in layer.grads.values()), layer
        assert layer.grads.keys() == layer.params.keys(), layer


def raises(match, fn, *args):
    with pytest.raises(ValueError, match=match):
        fn(*args)


def test_bad_inputs_raise_value_errors_that_name_the_layer():
    conv = sc.Conv2D(3, 4, 3, rng=np.random.default_rng(0))
    raises(r"Conv2D: expected input of rank 4, got rank 3", conv.forward, X32[0])
    raises(r"Conv2D: expected 3 input channels", conv.forward, X32[..., :2])
    raises(r"Conv2D: expected input dtype float32 or float64, got int64", conv.forward, X32.astype(np.int64))
    raises(
        r"Conv2D: input contains non-finite values \(1 NaN, 0 Inf\)",
        conv.forward,
        np.where(X32 == X32[0, 0, 0, 0], np.nan, X32),
    )
    raises(
        r"Conv2D: input contains non-finite values \(0 NaN, 1 Inf\)",
        conv.forward,
        np.where(X32 == X32[0, 0, 0, 0], np.inf, X32),
    )
    raises(r"Conv2D: input dtype float64 does not match parameter dtype float32", conv.forward, X32.astype(np.float64))
    raises(r"Conv2D: input spatial size \(2, 2\) is too small for kernel \(3, 3\)",
           sc.Conv2D(3, 4, 3, padding="valid").forward, X32[:, :2, :2])  # fmt: skip
    raises(
        r"MaxPool2D: input spatial size \(1, 8\) is smaller than the window \(2, 2\)",
        sc.MaxPool2D(2).forward,
        X32[:, :1],
    )
    raises(r"AvgPool2D: expected input of rank 4", sc.AvgPool2D(2).forward, X32[0])
    raises(r"Dense: expected 10 input features, got shape \(2, 192\)", sc.Dense(10, 2).forward, X32.reshape(2, -1))
    raises(r"ReLU: expected input to be a numpy.ndarray, got list", sc.ReLU().forward, [1.0])
    raises(
        r"SoftmaxCrossEntropy: expected labels in \[0, 2\]",
        sc.SoftmaxCrossEntropy().forward,
        np.zeros((2, 3)),
        np.array([0, 3]),
    )
    raises(
        r"SoftmaxCrossEntropy: expected labels as a 1-D integer array",
        sc.SoftmaxCrossEntropy().forward,
        np.zeros((2, 3)),
        np.array([0.0, 1.0]),
    )
    raises(r"SoftmaxCrossEntropy: expected 2 labels", sc.SoftmaxCrossEntropy().forward, np.zeros((2, 3)), np.array([0]))


def test_backward_before_forward_or_with_wrong_gradient_is_an_error():
    raises(r"Conv2D: backward called before forward", sc.Conv2D(3, 4, 3).backward, np.zeros((2, 8, 8, 4), np.float32))
    raises(r"SoftmaxCrossEntropy: backward called before forward", sc.SoftmaxCrossEntropy().backward)
    pool = sc.MaxPool2D(2)
    pool.forward(X32)
    raises(
        r"MaxPool2D: expected upstream gradient of shape \(2, 4, 4, 3\), got \(2, 4, 4, 2\)",
        pool.backward,
        np.zeros((2, 4, 4, 2), np.float32),
    )
    raises(r"MaxPool2D: expected upstream gradient dtype float32, got float64", pool.backward, np.zeros((2, 4, 4, 3)))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: sc.Conv2D(3, 4, 0), r"Conv2D: expected kernel_size >= 1, got 0"),
        (lambda: sc.Conv2D(3, 4, 3, stride=0), r"Conv2D: expected stride >= 1"),
        (lambda: sc.Conv2D(3, 4, 3, padding=-1), r"Conv2D: expected padding >= 0"),
        (lambda: sc.Conv2D(3, 4, 3, stride=2, padding="same"), r"Conv2D: padding='same' needs stride 1"),
        (lambda: sc.Conv2D(3, 4, 3, padding="full"), r"Conv2D: expected padding 'same', 'valid'"),
        (lambda: sc.Conv2D(0, 4, 3), r"Conv2D: expected in_ch to be an int >= 1, got 0"),
        (lambda: sc.Conv2D(3, 4, 3, dtype=np.int32), r"Conv2D: expected dtype float32 or float64, got int32"),
        (lambda: sc.MaxPool2D(0), r"MaxPool2D: expected kernel_size >= 1"),
        (lambda: sc.AvgPool2D(2, stride=(1, 0)), r"AvgPool2D: expected stride >= 1"),
        (lambda: sc.Dense(3, 0), r"Dense: expected n_out to be an int >= 1"),
        (lambda: sc.Dense(3, 2, init="zeros"), r"Dense: unknown init 'zeros'"),
        (lambda: sc.SGD({}, lr=0.0), r"SGD: expected lr > 0"),
        (lambda: sc.SGD({}, lr=0.1, momentum=1.0), r"SGD: expected 0 <= momentum < 1"),
    ],
)
def test_constructor_arguments_are_validated(make, match):
    with pytest.raises(ValueError, match=match):
        make()
