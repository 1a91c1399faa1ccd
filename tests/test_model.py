"""Sequential, SGD, save/load, architectures, and a short training run whose loss falls."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import scratch_cnn as sc


def synthetic_digits(n, rng):
    """Two-class 28x28 images: a bright left half or a bright right half, plus noise."""
    labels = rng.integers(0, 2, n)
    x = rng.random((n, 28, 28, 1)).astype(np.float32) * 0.2
    x[labels == 0, :, :14] += 0.8
    x[labels == 1, :, 14:] += 0.8
    return x, labels


@pytest.mark.parametrize("arch", ["seed", "tiny", "lenet"])
def test_architectures_map_28x28_images_to_ten_logits(arch):
    model = sc.build(arch, np.random.default_rng(0))
    assert model.forward(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 10)


def test_seed_network_trains_on_a_small_batch_and_its_loss_falls():
    rng = np.random.default_rng(0)
    model = sc.build("seed", rng)
    x, y = synthetic_digits(64, rng)
    loss_fn, opt = sc.SoftmaxCrossEntropy(), sc.SGD(model.params, lr=0.05, momentum=0.9)
    losses = []
    for _ in range(15):
        loss, _ = loss_fn.forward(model.forward(x), y)
        model.backward(loss_fn.backward())
        opt.step(model.grads)
        losses.append(loss)
    assert losses[-1] < 0.5 * losses[0], losses


def test_sgd_matches_torch_update_rule_by_hand():
    p = {"0.W": np.array([1.0, -2.0]), "0.b": np.array([0.5])}
    opt = sc.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)
    g = {"0.W": np.array([0.2, 0.4]), "0.b": np.array([1.0])}
    opt.step(g)  # v = g + wd*p (weights only); p -= lr*v
    v_w = np.array([0.2 + 0.01 * 1.0, 0.4 + 0.01 * -2.0])
    np.testing.assert_allclose(p["0.W"], [1.0 - 0.1 * v_w[0], -2.0 - 0.1 * v_w[1]], rtol=1e-15)
    np.testing.assert_allclose(p["0.b"], [0.5 - 0.1 * 1.0], rtol=1e-15)
    w_before = p["0.W"].copy()
    opt.step(g)
    v_w = 0.9 * v_w + (np.array([0.2, 0.4]) + 0.01 * w_before)
    np.testing.assert_allclose(p["0.W"], w_before - 0.1 * v_w, rtol=1e-15)


def test_save_then_load_restores_every_parameter(tmp_path):
    model = sc.build("seed", np.random.default_rng(3), dtype=np.float64)
    path = model.save(tmp_path / "m.npz")
    loaded = sc.Sequential.load(path)
    assert loaded.spec() == model.spec()
    for name, value in model.params.items():
        assert_array_equal(loaded.params[name], value)
        assert loaded.params[name].dtype == np.float64
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_loading_a_file_that_is_not_ours_is_a_clear_error(tmp_path):
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(ValueError, match="has no __spec__ entry: not a scratch-cnn model"):
        sc.Sequential.load(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not an .npz archive"):
        sc.Sequential.load(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="does not exist"):
        sc.Sequential.load(tmp_path / "missing.npz")


def test_loading_a_model_with_other_shapes_is_a_clear_error(tmp_path):
    model = sc.build("tiny", np.random.default_rng(0))
    path = model.save(tmp_path / "m.npz")
    with np.load(path) as data:
        arrays = dict(data)
    arrays["param:0.W"] = np.zeros((5, 5, 1, 4), np.float32)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"parameter 0.W has shape \(5, 5, 1, 4\), expected \(3, 3, 1, 4\)"):
        sc.Sequential.load(path)


def test_params_and_grads_have_the_same_stable_names():
    model = sc.build("tiny", np.random.default_rng(0))
    x = np.zeros((2, 28, 28, 1), np.float32)
    model.backward(np.ones_like(model.forward(x)))
    assert list(model.params) == ["0.W", "0.b", "4.W", "4.b"]
    assert model.grads.keys() == model.params.keys()


def test_a_model_is_callable_and_its_repr_lists_layers_and_shapes():
    model = sc.build("tiny", np.random.default_rng(0))
    x = np.zeros((2, 28, 28, 1), np.float32)
    assert np.array_equal(model(x), model.forward(x))
    text = repr(model)
    assert text.splitlines()[0] == "Sequential(5 layers, 7,890 parameters, float32)"
    assert "(4) Dense(n_in=784, n_out=10, bias=True)  [W (784, 10), b (10,)]" in text


def test_pooling_before_relu_trains_bit_for_bit_like_relu_before_pooling():
    from scratch_cnn.train import train_step
    from tests.test_train import fake_mnist

    def net(order):
        rng = np.random.default_rng(3)
        conv, dense = sc.Conv2D(1, 4, 3, rng=rng), sc.Dense(14 * 14 * 4, 4, rng=rng)
        dense.params["b"][...] = 0.01  # make some pre-activations sit exactly at the ReLU kink too
        middle = [sc.MaxPool2D(2), sc.ReLU()] if order == "pool first" else [sc.ReLU(), sc.MaxPool2D(2)]
        return sc.Sequential([conv, *middle, sc.Flatten(), dense])

    images, labels = fake_mnist(n_train=128)["train"]
    x = np.where(images > 100, images, 0).astype(np.float32) / 255  # exact zeros, as MNIST has
    models = {order: net(order) for order in ("pool first", "relu first")}
    for model in models.values():
        opt, loss_fn = sc.SGD(model.params, lr=0.1, momentum=0.9), sc.SoftmaxCrossEntropy()
        for step in range(4):
            batch = slice(32 * step, 32 * step + 32)
            train_step(model, loss_fn, opt, x[batch], labels[batch].astype(np.intp))
    a, b = models["pool first"].params, models["relu first"].params
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_backward_skips_the_images_gradient_and_fills_the_same_grads_bit_for_bit(dtype):
    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype(dtype)
    grads = {}
    for input_grad in (True, False):
        model = sc.build("lenet", np.random.default_rng(1), dtype=dtype)
        dx = model.backward(np.ones_like(model.forward(x)), input_grad=input_grad)
        assert (dx.shape == x.shape and dx.dtype == dtype) if input_grad else dx is None
        grads[input_grad] = model.grads
    assert all(np.array_equal(grads[True][k], grads[False][k]) for k in grads[True])


def test_a_first_layer_whose_backward_is_overridden_still_runs_that_backward_in_training():
    # a user's variant of our Conv2D (here: dW without the 1/m) must be what training uses, not our fast path
    class ConvForgetsOneOverM(sc.Conv2D):
        def backward(self, dout):
            dx = super().backward(dout)
            self.grads["W"] = self.grads["W"] * dout.shape[0]
            return dx

    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    model = sc.Sequential([ConvForgetsOneOverM(1, 4, 3, rng=np.random.default_rng(2)), sc.MaxPool2D(2), sc.Flatten(),
                           sc.Dense(14 * 14 * 4, 10, rng=np.random.default_rng(3))])  # fmt: skip
    g = np.ones_like(model.forward(x))
    model.backward(g, input_grad=False)
    params_only = model.grads["0.W"].copy()
    model.forward(x)
    model.backward(g)
    assert np.array_equal(params_only, model.grads["0.W"])
