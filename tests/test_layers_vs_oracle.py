"""Each vectorised kernel against the naive loop oracle, forward and backward, float64 to ~1e-12."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose

import scratch_cnn as sc
from tests import oracles
from tests.strategies import conv_cases, make_values, pool_cases

# float64 vectorised vs loop: both sum the same few dozen products in different orders, so they
# agree to a few ulps of the largest partial sum; 1e-12 relative / 1e-12 absolute leaves room for that.
TIGHT = dict(rtol=1e-12, atol=1e-12)


@given(conv_cases())
def test_conv_matches_loop_oracle(case):
    rng = np.random.default_rng(case["seed"])
    layer = sc.Conv2D(case["C"], case["K"], case["kernel"], case["stride"], case["padding"], case["bias"],
                      rng=rng, dtype=np.float64)  # fmt: skip
    if case["bias"]:
        layer.params["b"][...] = rng.uniform(-1, 1, case["K"])
    x = make_values(rng, (case["m"], case["H"], case["W"], case["C"]), "noise")
    out_shape = layer.output_shape(x.shape)
    if min(out_shape[1:3]) < 1:
        return
    out = layer.forward(x)
    assert_allclose(out, oracles.conv_forward(x, layer.params["W"], layer.params.get("b"), layer.stride,
                                              layer.pads), **TIGHT)  # fmt: skip
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    want_dx, want_dW, want_db = oracles.conv_backward(x, layer.params["W"], dout, layer.stride, layer.pads)
    assert_allclose(dx, want_dx, **TIGHT)
    assert_allclose(layer.grads["W"], want_dW, **TIGHT)
    assert ("b" in layer.grads) == case["bias"]
    if case["bias"]:
        assert_allclose(layer.grads["b"], want_db, **TIGHT)


@given(
    conv_cases(), st.lists(st.tuples(st.integers(1, 3), st.integers(0, 2), st.integers(0, 2)), min_size=2, max_size=4)
)
def test_one_conv_reused_across_shapes_matches_the_oracle_and_never_changes_what_it_returned(case, rounds):
    # the layer keeps its patches and padded input in a workspace between calls: every round must still
    # match the oracle, and nothing handed out earlier (outputs, dx, grads) may change afterwards
    rng = np.random.default_rng(case["seed"])
    layer = sc.Conv2D(case["C"], case["K"], case["kernel"], case["stride"], case["padding"], case["bias"],
                      rng=rng, dtype=np.float64)  # fmt: skip
    handed_out = []
    for m, dh, dw in rounds:
        x = make_values(rng, (m, case["H"] + dh, case["W"] + dw, case["C"]), "noise")
        out = layer.forward(x)
        dout = rng.standard_normal(out.shape)
        dx = layer.backward(dout)
        want_dx, want_dW, _ = oracles.conv_backward(x, layer.params["W"], dout, layer.stride, layer.pads)
        assert_allclose(out, oracles.conv_forward(x, layer.params["W"], layer.params.get("b"), layer.stride,
                                                  layer.pads), **TIGHT)  # fmt: skip
        assert_allclose(dx, want_dx, **TIGHT)
        assert_allclose(layer.grads["W"], want_dW, **TIGHT)
        handed_out += [(a, a.copy()) for a in (out, dx, layer.grads["W"])]
    assert all(np.array_equal(now, then) for now, then in handed_out)


def test_a_max_pool_window_of_more_than_256_elements_routes_to_its_first_maximum():
    x = np.zeros((1, 17, 17, 1))
    x[0, 16, 15, 0] = x[0, 16, 16, 0] = 1.0  # offsets 287 and 288: past what a uint8 index holds
    layer = sc.MaxPool2D(17)
    layer.forward(x)
    dx = layer.backward(np.ones((1, 1, 1, 1)))
    assert dx[0, 16, 15, 0] == 1.0 and dx.sum() == 1.0


@given(pool_cases())
def test_maxpool_matches_loop_oracle(case):
    rng = np.random.default_rng(case["seed"])
    layer = sc.MaxPool2D(case["kernel"], case["stride"])
    x = make_values(rng, (case["m"], case["H"], case["W"], case["C"]), case["values"])
    out = layer.forward(x)
    dout = rng.standard_normal(out.shape)
    want_out, want_dx = oracles.maxpool(x, layer.kernel_size, layer.stride, dout)
    assert_allclose(out, want_out, rtol=0, atol=0)  # a max is exact
    assert_allclose(layer.backward(dout), want_dx, **TIGHT)


@given(pool_cases())
def test_avgpool_matches_loop_oracle(case):
    rng = np.random.default_rng(case["seed"])
    layer = sc.AvgPool2D(case["kernel"], case["stride"])
    x = make_values(rng, (case["m"], case["H"], case["W"], case["C"]), case["values"])
    out = layer.forward(x)
    dout = rng.standard_normal(out.shape)
    want_out, want_dx = oracles.avgpool(x, layer.kernel_size, layer.stride, dout)
    assert_allclose(out, want_out, **TIGHT)
    assert_allclose(layer.backward(dout), want_dx, **TIGHT)


def test_maxpool_tie_goes_to_first_maximum_in_row_major_order():
    x = np.array([[1.0, 3.0], [3.0, 3.0]]).reshape(1, 2, 2, 1)
    layer = sc.MaxPool2D(2)
    layer.forward(x)
    dx = layer.backward(np.ones((1, 1, 1, 1)))
    assert dx.reshape(2, 2).tolist() == [[0.0, 1.0], [0.0, 0.0]]


def test_relu_gradient_at_zero_is_zero():
    layer = sc.ReLU()
    out = layer.forward(np.array([-1.0, 0.0, 2.0]))
    assert out.tolist() == [0.0, 0.0, 2.0]
    assert layer.backward(np.array([5.0, 5.0, 5.0])).tolist() == [0.0, 0.0, 5.0]


def test_dense_matches_definition():
    rng = np.random.default_rng(1)
    layer = sc.Dense(5, 3, rng=rng, dtype=np.float64)
    layer.params["b"][...] = rng.standard_normal(3)
    x, dout = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    assert_allclose(layer.forward(x), x @ layer.params["W"] + layer.params["b"], **TIGHT)
    assert_allclose(layer.backward(dout), dout @ layer.params["W"].T, **TIGHT)
    assert_allclose(layer.grads["W"], x.T @ dout, **TIGHT)
    assert_allclose(layer.grads["b"], dout.sum(0), **TIGHT)


def test_flatten_is_nhwc_order_and_inverts():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    layer = sc.Flatten()
    out = layer.forward(x)
    i, j, c = 1, 2, 3
    assert out[1, (i * 4 + j) * 5 + c] == x[1, i, j, c]
    assert np.array_equal(layer.backward(out), x)


@given(pool_cases())
def test_softmax_cross_entropy_matches_loop_oracle(case):
    rng = np.random.default_rng(case["seed"])
    m, K = case["m"] + 2, case["C"] + 1
    logits = make_values(rng, (m, K), case["values"]) * 30
    labels = rng.integers(0, K, m)
    loss_fn = sc.SoftmaxCrossEntropy()
    loss, probs = loss_fn.forward(logits, labels)
    want_loss, want_grad = oracles.softmax_cross_entropy(logits, labels)
    assert abs(loss - want_loss) <= 1e-12 * max(1.0, abs(want_loss))
    assert_allclose(probs.sum(1), 1.0, rtol=1e-12)
    assert_allclose(loss_fn.backward(), want_grad, **TIGHT)


def test_softmax_is_stable_for_huge_logits():
    loss, probs = sc.SoftmaxCrossEntropy().forward(np.array([[1000.0, 0.0], [0.0, -1000.0]], np.float32),
                                                   np.array([0, 1]))  # fmt: skip
    assert np.isfinite(loss) and np.all(np.isfinite(probs))
    assert abs(loss - 500.0) < 1e-3
