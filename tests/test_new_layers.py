"""Sigmoid, Tanh, LeakyReLU, BatchNorm1D/2D, Dropout, MSELoss, Adam, RMSprop and lenet-bn against torch
(float64: forward, dx, param grads, buffers, eval mode), their dtypes, their errors and their numerics."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose

import scratch_cnn as sc
from scratch_cnn.data import to_float
from scratch_cnn.train import TrainConfig, evaluate, run_training, train_step
from tests.strategies import make_values
from tests.test_train import fake_mnist

# float64, ours vs torch: the same formula evaluated in a different order (a reduction over a few
# dozen values, a fused kernel) agrees to a few ulps of the largest term; 1e-12 leaves room for that.
TIGHT = dict(rtol=1e-12, atol=1e-12)


def t(a):
    return torch.tensor(a)


def nchw(a):
    """NHWC numpy -> NCHW torch (a (m, n) array stays as it is)."""
    return t(a).permute(0, 3, 1, 2) if a.ndim == 4 else t(a)


def nhwc(a):
    a = a.detach()
    return (a.permute(0, 2, 3, 1) if a.ndim == 4 else a).numpy()


@st.composite
def activation_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    values = draw(st.sampled_from(["noise", "ties", "quantised", "huge"]))
    return dict(shape=shape, values=values, seed=draw(st.integers(0, 2**32 - 1)))


def activation_input(case):
    rng = np.random.default_rng(case["seed"])
    if case["values"] == "huge":  # exp(|x|) would overflow in float64 beyond ~709 (float32: ~88)
        return rng.uniform(-2000, 2000, case["shape"]), rng
    return make_values(rng, case["shape"], case["values"]), rng  # 'ties'/'quantised' hold exact zeros


ACTIVATIONS = {
    "Sigmoid": (sc.Sigmoid, {}, torch.sigmoid),
    "Tanh": (sc.Tanh, {}, torch.tanh),
    "LeakyReLU": (sc.LeakyReLU, {}, lambda x: F.leaky_relu(x, 0.01)),
    "LeakyReLU(0.2)": (sc.LeakyReLU, {"negative_slope": 0.2}, lambda x: F.leaky_relu(x, 0.2)),
    "LeakyReLU(-0.5)": (sc.LeakyReLU, {"negative_slope": -0.5}, lambda x: F.leaky_relu(x, -0.5)),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@given(case=activation_cases())
def test_activations_match_torch_in_float64(name, case):
    cls, kwargs, twin = ACTIVATIONS[name]
    x, rng = activation_input(case)
    dout = rng.standard_normal(x.shape)
    layer = cls(**kwargs)
    out = layer.forward(x)
    dx = layer.backward(dout)
    tx = t(x).requires_grad_()
    tout = twin(tx)
    tout.backward(t(dout))
    assert_allclose(out, tout.detach().numpy(), rtol=1e-15, atol=1e-16)
    assert_allclose(dx, tx.grad.numpy(), **TIGHT)
    assert layer.params == {} and layer.grads == {} and layer.buffers == {}


def test_leaky_relu_gradient_at_zero_is_the_negative_slope_as_torch():
    x = np.array([-1.0, 0.0, 2.0])
    tx = t(x).requires_grad_()
    F.leaky_relu(tx, 0.1).sum().backward()
    assert tx.grad.tolist() == [0.1, 0.1, 1.0]  # torch: the positive branch is x > 0
    layer = sc.LeakyReLU(0.1)
    assert layer.forward(x).tolist() == [-0.1, 0.0, 2.0]
    assert layer.backward(np.ones(3)).tolist() == [0.1, 0.1, 1.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_tanh_saturate_without_overflow_warnings(dtype):
    # the tests turn RuntimeWarnings into errors, so an overflowing exp would fail here
    x = np.array([-1e30, -1e4, -800.0, -100.0, -20.0, 0.0, 20.0, 100.0, 800.0, 1e4, 1e30], dtype)
    s, th = sc.Sigmoid(), sc.Tanh()
    out = s.forward(x)
    assert out.dtype == dtype and np.all(np.isfinite(out))
    assert out[0] == 0 and out[-1] == 1 and out[5] == 0.5
    assert np.all(np.diff(out) >= 0)
    # atol: torch's float32 sigmoid flushes sigmoid(-100) = 3.7e-44 (a subnormal) to 0; ours keeps it
    tol = dict(rtol=1e-6 if dtype == np.float32 else 1e-15, atol=np.finfo(dtype).tiny)
    assert_allclose(out, torch.sigmoid(t(x)).numpy(), **tol)
    assert np.all(np.isfinite(s.backward(np.ones_like(x))))
    assert_allclose(th.forward(x), np.tanh(x), rtol=0, atol=0)
    assert th.forward(x)[0] == -1 and th.forward(x)[-1] == 1
    assert np.all(np.isfinite(th.backward(np.ones_like(x))))


@st.composite
def batchnorm_cases(draw):
    two_d = draw(st.booleans())
    C = draw(st.integers(1, 4))
    if two_d:
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4)), C)
    else:
        shape = (draw(st.integers(2, 6)), C)
    if math.prod(shape[:-1]) == 1:  # a single value per channel cannot be trained on (tested below)
        shape = (2, *shape[1:])
    return dict(
        shape=shape,
        momentum=draw(st.sampled_from([0.1, 0.5, 1.0, 0.0])),
        eps=draw(st.sampled_from([1e-5, 1e-3])),
        values=draw(st.sampled_from(["noise", "ties", "quantised"])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def batchnorm_pair(shape, momentum, eps, rng, dtype=np.float64):
    C = shape[-1]
    ours = (sc.BatchNorm2D if len(shape) == 4 else sc.BatchNorm1D)(C, eps=eps, momentum=momentum, dtype=dtype)
    ours.params["gamma"][...] = rng.uniform(0.5, 2.0, C)
    ours.params["beta"][...] = rng.standard_normal(C)
    twin = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(C, eps=eps, momentum=momentum)
    twin = twin.to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        twin.weight.copy_(t(ours.params["gamma"]))
        twin.bias.copy_(t(ours.params["beta"]))
    return ours, twin


def step_both(ours, twin, x, dout):
    out = ours.forward(x)
    dx = ours.backward(dout)
    twin.zero_grad()
    tx = nchw(x).requires_grad_()
    tout = twin(tx)
    tout.backward(nchw(dout))
    return (out, dx), (nhwc(tout), nhwc(tx.grad))


def assert_same_as_twin(ours, twin, got, want, tol):
    for a, b in zip(got, want, strict=True):
        assert_allclose(a, b, **tol)
    assert_allclose(ours.grads["gamma"], twin.weight.grad.numpy(), **tol)
    assert_allclose(ours.grads["beta"], twin.bias.grad.numpy(), **tol)
    assert_allclose(ours.buffers["running_mean"], twin.running_mean.numpy(), **tol)
    assert_allclose(ours.buffers["running_var"], twin.running_var.numpy(), **tol)


@given(case=batchnorm_cases())
def test_batchnorm_matches_torch_in_training_then_in_eval_mode(case):
    rng = np.random.default_rng(case["seed"])
    ours, twin = batchnorm_pair(case["shape"], case["momentum"], case["eps"], rng)
    assert ours.training and ours.grads == {}
    for _ in range(2):  # two training steps: the running statistics move twice
        x = make_values(rng, case["shape"], case["values"]) * 3 + 1
        got, want = step_both(ours, twin, x, rng.standard_normal(case["shape"]))
        assert_same_as_twin(ours, twin, got, want, TIGHT)
    ours.training = False
    twin.eval()
    x = make_values(rng, case["shape"], case["values"]) * 3 + 1
    before = {k: v.copy() for k, v in ours.buffers.items()}
    got, want = step_both(ours, twin, x, rng.standard_normal(case["shape"]))
    assert_same_as_twin(ours, twin, got, want, TIGHT)
    assert all(np.array_equal(before[k], v) for k, v in ours.buffers.items())  # eval updates nothing


def test_batchnorm_buffers_start_as_torch_and_train_with_the_unbiased_variance():
    bn = sc.BatchNorm1D(2, dtype=np.float64)
    assert bn.buffers["running_mean"].tolist() == [0, 0] and bn.buffers["running_var"].tolist() == [1, 1]
    assert bn.params["gamma"].tolist() == [1, 1] and bn.params["beta"].tolist() == [0, 0]
    x = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 10.0]])
    out = bn.forward(x)
    assert_allclose(bn.buffers["running_mean"], [0.9 * 0 + 0.1 * 3, 0.1 * 10], rtol=1e-15)
    assert_allclose(bn.buffers["running_var"], [0.9 + 0.1 * 4.0, 0.9 + 0.1 * 0.0], rtol=1e-15)  # 8/2, not 8/3
    assert_allclose(out[:, 0], np.array([-2.0, 0.0, 2.0]) / np.sqrt(8 / 3 + 1e-5), rtol=1e-15)
    assert out[:, 1].tolist() == [0.0, 0.0, 0.0]  # the constant channel


@pytest.mark.parametrize("mode", ["training", "eval"])
def test_batchnorm_backward_follows_the_mode_of_its_forward(mode):
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    ours, twin = batchnorm_pair((5, 3), 0.1, 1e-5, rng)
    ours.training = mode == "training"
    twin.train(ours.training)
    out = ours.forward(x)
    ours.training = not ours.training  # switching between forward and backward changes nothing
    dx = ours.backward(dout)
    tx = t(x).requires_grad_()
    tout = twin(tx)
    tout.backward(t(dout))
    assert_allclose(out, tout.detach().numpy(), **TIGHT)
    assert_allclose(dx, tx.grad.numpy(), **TIGHT)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_with_a_large_offset_and_a_small_spread_does_not_cancel(dtype):
    # BN(x) = BN(x - c): the reference normalises the offset-free values (x - 1e4 is exact here), where
    # nothing can cancel. E[x^2] - E[x]^2 loses everything in float32 (1e8 carries ~7 digits, the
    # variance sits 8 digits below) and ~2 digits in float64 at this spread; so does an
    # uncorrected mean in float32 (its rounding error is a tenth of the spread).
    rng = np.random.default_rng(0)
    spread = 1e-3 if dtype == np.float64 else 0.05
    x = (1e4 + spread * rng.standard_normal((64, 7, 7, 3))).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    exact = sc.BatchNorm2D(3, dtype=np.float64)
    want = exact.forward(x.astype(np.float64) - 1e4)
    want_dx = exact.backward(dout.astype(np.float64))
    bn = sc.BatchNorm2D(3, dtype=dtype)
    tol = dict(rtol=0, atol=1e-9) if dtype == np.float64 else dict(rtol=0, atol=1e-4)
    assert_allclose(bn.forward(x), want, **tol)
    assert_allclose(bn.backward(dout), want_dx, **tol)
    assert_allclose(bn.buffers["running_mean"], 0.9 * 0 + 0.1 * x.astype(np.float64).mean((0, 1, 2)), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_of_a_constant_channel_is_finite_and_equals_beta(dtype):
    x = np.full((4, 3, 3, 2), 1e4, dtype)
    x[..., 1] = np.arange(36).reshape(4, 3, 3)
    bn = sc.BatchNorm2D(2, dtype=dtype)
    bn.params["beta"][...] = [0.25, 0.0]
    out = bn.forward(x)
    dx = bn.backward(np.ones_like(out))
    assert np.all(out[..., 0] == dtype(0.25))  # 0 / sqrt(eps) * gamma + beta, exactly
    assert np.all(np.isfinite(dx)) and all(np.all(np.isfinite(g)) for g in bn.grads.values())
    assert bn.buffers["running_var"][0] == dtype(0.9)  # 0.9 * 1 + 0.1 * 0


def test_dropout_keeps_with_probability_one_minus_p_scales_and_backpropagates_its_mask():
    p, n = 0.3, 200_000
    layer = sc.Dropout(p, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).uniform(1, 2, n)  # never 0, so a zero output is a dropped element
    out = layer.forward(x)
    kept = out != 0
    assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-15)
    dout = np.random.default_rng(2).standard_normal(n)
    dx = layer.backward(dout)
    assert np.array_equal(dx != 0, kept)
    assert_allclose(dx[kept], dout[kept] / (1 - p), rtol=1e-15)
    # kept ~ Binomial(n, 1 - p): 6 standard deviations (a false failure once in ~1e9 seeds; seeded anyway)
    assert abs(kept.sum() - n * (1 - p)) <= 6 * math.sqrt(n * p * (1 - p))
    out2 = layer.forward(x)  # a new mask each forward
    assert not np.array_equal(out2 != 0, kept)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_matches_torch_given_the_same_mask_and_is_the_identity_in_eval_mode(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5, 5, 3)).astype(dtype)
    layer = sc.Dropout(0.5, rng=np.random.default_rng(3))
    out = layer.forward(x)
    mask = out != 0
    # torch's dropout is x * bernoulli(1 - p) / (1 - p); given our mask, the same numbers
    want = (t(x) * t(mask.astype(dtype)) / (1 - 0.5)).numpy()
    assert out.dtype == dtype and np.array_equal(out, want)
    layer.training = False
    assert layer.forward(x) is x and np.array_equal(layer.forward(x), F.dropout(t(x), 0.5, training=False).numpy())
    dout = rng.standard_normal(x.shape).astype(dtype)
    assert np.array_equal(layer.backward(dout), dout)


def test_dropout_masks_come_from_its_generator_alone():
    x = np.ones((8, 16))
    a, b = sc.Dropout(0.5, rng=np.random.default_rng(7)), sc.Dropout(0.5, rng=np.random.default_rng(7))
    np.random.seed(0)  # a global seed changes nothing
    first = a.forward(x)
    np.random.seed(1)
    assert np.array_equal(first, b.forward(x))
    assert np.array_equal(sc.Dropout(0.0, rng=np.random.default_rng(0)).forward(x), x)


@st.composite
def mse_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    return dict(shape=shape, seed=draw(st.integers(0, 2**32 - 1)))


@given(case=mse_cases())
def test_mse_loss_matches_torch(case):
    rng = np.random.default_rng(case["seed"])
    pred, target = rng.standard_normal(case["shape"]), rng.standard_normal(case["shape"])
    loss_fn = sc.MSELoss()
    loss, returned = loss_fn.forward(pred, target)
    tp = t(pred).requires_grad_()
    tloss = F.mse_loss(tp, t(target))
    tloss.backward()
    assert returned is pred
    assert abs(loss - tloss.item()) <= 1e-14 * max(1.0, abs(loss))
    assert_allclose(loss_fn.backward(), tp.grad.numpy(), **TIGHT)
    assert_allclose(loss_fn.backward(), 2 * (pred - target) / pred.size, **TIGHT)


def test_mse_loss_computes_in_the_dtype_of_its_prediction():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    loss_fn = sc.MSELoss()
    loss, _ = loss_fn.forward(pred, np.zeros((2, 2)))  # a float64 target is cast to float32
    assert loss == 7.5 and isinstance(loss, float)
    assert loss_fn.backward().dtype == np.float32 and loss_fn.backward().tolist() == [[0.5, 1.0], [1.5, 2.0]]


OPTIMISERS = {
    "adam": (sc.Adam, torch.optim.Adam, dict(lr=0.01)),
    "adam-betas-eps-wd": (sc.Adam, torch.optim.Adam, dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "rmsprop": (sc.RMSprop, torch.optim.RMSprop, dict(lr=0.01)),
    "rmsprop-momentum": (sc.RMSprop, torch.optim.RMSprop, dict(lr=0.01, alpha=0.9, eps=1e-6, momentum=0.9)),
    "rmsprop-centered-wd": (
        sc.RMSprop,
        torch.optim.RMSprop,
        dict(lr=0.003, momentum=0.5, weight_decay=0.01, centered=True),
    ),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_optimisers_follow_torch_step_by_step_for_twenty_steps(name, dtype):
    ours_cls, torch_cls, kwargs = OPTIMISERS[name]
    rng = np.random.default_rng(0)
    params = {n: rng.standard_normal(s).astype(dtype) for n, s in [("0.W", (3, 4)), ("0.b", (4,)), ("1.gamma", (4,))]}
    tparams = {n: t(v.copy()).requires_grad_() for n, v in params.items()}
    wd = kwargs.get("weight_decay", 0.0)
    # our weight decay applies to weights (*.W) only: torch's twin is two parameter groups
    groups = [{"params": [tparams["0.W"]]}, {"params": [tparams["0.b"], tparams["1.gamma"]], "weight_decay": 0.0}]
    opt, topt = ours_cls(params, **kwargs), torch_cls(groups, **{**kwargs, "weight_decay": wd})
    tol = TIGHT if dtype == np.float64 else dict(rtol=2e-6, atol=2e-6)
    for step in range(20):
        scale = 10.0 ** rng.integers(-3, 2)  # gradients from 1e-3 to 10
        grads = {n: (rng.standard_normal(v.shape) * scale).astype(dtype) for n, v in params.items()}
        if step in (0, 3):
            grads["0.b"][:] = 0  # at step 1 a zero gradient meets zero state: only eps keeps the division finite
        opt.step(grads)
        for n, tp in tparams.items():
            tp.grad = t(grads[n])
        topt.step()
        for n, v in params.items():
            assert v.dtype == dtype
            assert_allclose(v, tparams[n].detach().numpy(), **tol, err_msg=f"{name} step {step + 1} {n}")


@pytest.mark.parametrize("cls", [sc.Adam, sc.RMSprop])
def test_optimiser_state_round_trips_through_its_state_dict(cls):
    rng = np.random.default_rng(0)
    a = {"0.W": rng.standard_normal((2, 3)), "0.b": rng.standard_normal(3)}
    kwargs = {"momentum": 0.9, "centered": True} if cls is sc.RMSprop else {}
    opt_a = cls(a, lr=0.01, **kwargs)
    grads = [{k: rng.standard_normal(v.shape) for k, v in a.items()} for _ in range(4)]
    for g in grads[:2]:
        opt_a.step(g)
    b = {k: v.copy() for k, v in a.items()}
    opt_b = cls(b, lr=0.01, **kwargs)
    opt_b.load_state_dict({k: np.array(v) for k, v in opt_a.state_dict().items()})
    for g in grads[2:]:
        opt_a.step(g)
        opt_b.step(g)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_every_layer_has_a_mode_and_buffers_and_sequential_sets_the_mode_of_all():
    model = sc.build("lenet-bn", np.random.default_rng(0))
    assert model.training and all(layer.training for layer in model)
    assert model.eval() is model and not model.training and not any(layer.training for layer in model)
    model.train()
    assert all(layer.training for layer in model)
    model.training = False
    assert not any(layer.training for layer in model)
    assert list(model.buffers) == ["1.running_mean", "1.running_var", "5.running_mean", "5.running_var"]
    assert all(layer.buffers == {} for layer in model if not isinstance(layer, sc.BatchNorm2D))
    assert sc.ReLU().training and sc.Conv2D(1, 1, 1).buffers == {}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_new_layers_keep_the_input_dtype_through_forward_backward_grads_and_buffers(dtype):
    rng = np.random.default_rng(0)
    cases = [
        (sc.Sigmoid(), (2, 3, 3, 2)),
        (sc.Tanh(), (2, 3)),
        (sc.LeakyReLU(0.2), (2, 3, 3, 2)),
        (sc.BatchNorm1D(3, dtype=dtype), (4, 3)),
        (sc.BatchNorm2D(2, dtype=dtype), (2, 3, 3, 2)),
        (sc.Dropout(0.5, rng=rng), (2, 3, 3, 2)),
    ]
    for training in (True, False):
        for layer, shape in cases:
            layer.training = training
            x = rng.standard_normal(shape).astype(dtype)
            out = layer.forward(x)
            dx = layer.backward(np.ones_like(out))
            assert out.dtype == dtype and dx.dtype == dtype and out.shape == shape == dx.shape, layer
            assert layer.grads.keys() == layer.params.keys(), layer
            assert all(a.dtype == dtype for d in (layer.grads, layer.params, layer.buffers) for a in d.values()), layer
    bn = sc.BatchNorm2D(2).astype(np.float64)  # astype converts buffers with the params
    assert all(v.dtype == np.float64 for v in (*bn.params.values(), *bn.buffers.values()))


def raises(match, fn, *args):
    with pytest.raises(ValueError, match=match):
        fn(*args)


def test_bad_input_and_arguments_raise_value_errors_that_name_the_layer():
    x = np.zeros((2, 3), np.float32)
    bn1, bn2 = sc.BatchNorm1D(3), sc.BatchNorm2D(3)
    raises(r"BatchNorm1D: expected input of rank 2, got rank 4", bn1.forward, np.zeros((2, 2, 2, 3), np.float32))
    raises(r"BatchNorm2D: expected input of rank 4, got rank 2", bn2.forward, x)
    raises(r"BatchNorm1D: expected \(m, n\) input with 3 channels in the last axis, got shape \(2, 4\)",
           bn1.forward, np.zeros((2, 4), np.float32))  # fmt: skip
    raises(r"BatchNorm2D: expected NHWC \(m, H, W, C\) input with 3 channels", bn2.forward, np.zeros((2, 3, 2, 2)))
    raises(r"BatchNorm1D: input dtype float64 does not match parameter dtype float32", bn1.forward, x.astype(float))
    raises(r"BatchNorm1D: input contains non-finite values \(1 NaN", bn1.forward, np.array([[np.nan, 0, 0], [0, 0, 0]]))
    raises(r"BatchNorm1D: expected more than 1 value per channel when training, got input shape \(1, 3\)",
           bn1.forward, x[:1])  # fmt: skip
    raises(r"BatchNorm2D: expected more than 1 value per channel when training, got input shape \(1, 1, 1, 3\)",
           bn2.forward, np.zeros((1, 1, 1, 3), np.float32))  # fmt: skip
    bn2.forward(np.zeros((1, 2, 1, 3), np.float32))  # two values per channel: torch trains on it, so do we
    bn1.training = False
    assert bn1.forward(x[:1]).shape == (1, 3)  # eval mode takes a batch of one
    raises(r"BatchNorm1D: expected num_features to be an int >= 1, got 0", sc.BatchNorm1D, 0)
    raises(r"BatchNorm2D: expected eps > 0, got 0", sc.BatchNorm2D, 3, 0)
    raises(r"BatchNorm2D: expected momentum in \[0, 1\], got 1.5", sc.BatchNorm2D, 3, 1e-5, 1.5)
    raises(r"Dropout: expected p in \[0, 1\), got 1", sc.Dropout, 1)
    raises(r"Dropout: expected p in \[0, 1\), got -0.1", sc.Dropout, -0.1)
    raises(r"Dropout: expected p in \[0, 1\), got nan", sc.Dropout, float("nan"))
    raises(r"Dropout: expected rng to be a numpy.random.Generator, got int", lambda: sc.Dropout(0.5, rng=0))
    raises(r"Dropout: expected input dtype float32 or float64, got int64", sc.Dropout(0.5).forward, np.zeros(3, int))
    raises(r"LeakyReLU: expected negative_slope to be a finite number, got inf", sc.LeakyReLU, float("inf"))
    raises(r"Sigmoid: expected input of rank 1, got rank 0", sc.Sigmoid().forward, np.array(1.0))
    raises(r"Tanh: expected input to be a numpy.ndarray, got list", sc.Tanh().forward, [1.0])
    for layer in (sc.Sigmoid(), sc.Tanh(), sc.LeakyReLU(), sc.Dropout(), sc.BatchNorm1D(3)):
        raises(rf"{layer.name}: backward called before forward", layer.backward, x)
        layer.forward(x)
        raises(rf"{layer.name}: expected upstream gradient of shape \(2, 3\), got \(3,\)", layer.backward, x[0])
    mse = sc.MSELoss()
    raises(r"MSELoss: backward called before forward", mse.backward)
    raises(r"MSELoss: expected target of pred's shape \(2, 3\) \(no broadcasting\), got shape \(3,\)",
           mse.forward, x, x[0])  # fmt: skip
    raises(r"MSELoss: target contains non-finite values", mse.forward, x, x + np.inf)
    raises(r"MSELoss: expected a non-empty pred", mse.forward, x[:0], x[:0])


def test_bad_optimiser_settings_and_missing_gradients_raise_value_errors():
    p = {"0.W": np.zeros(2)}
    raises(r"Adam: expected lr > 0, got 0", sc.Adam, p, 0)
    raises(r"Adam: expected betas\[1\] in \[0, 1\), got 1.0", lambda: sc.Adam(p, betas=(0.9, 1.0)))
    raises(r"Adam: expected betas to be a pair", lambda: sc.Adam(p, betas=0.9))
    raises(r"Adam: expected weight_decay >= 0, got -1", lambda: sc.Adam(p, weight_decay=-1))
    raises(r"RMSprop: expected alpha in \[0, 1\], got 1.5", lambda: sc.RMSprop(p, alpha=1.5))
    raises(r"RMSprop: expected momentum in \[0, 1\), got nan", lambda: sc.RMSprop(p, momentum=float("nan")))
    raises(r"RMSprop: expected eps > 0, got 0", lambda: sc.RMSprop(p, eps=0))
    raises(r"Adam: no gradient for parameters \['0.W'\]; run backward first", sc.Adam(p).step, {})
    raises(r"RMSprop: no gradient for parameters \['0.W'\]", sc.RMSprop(p).step, {})
    raises(r"Adam: optimiser state names unknown parameters \['9.W'\]",
           sc.Adam(p).load_state_dict, {"exp_avg:9.W": np.zeros(2)})  # fmt: skip


def small_bn_net(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return sc.Sequential([
        sc.Conv2D(1, 3, 3, bias=False, rng=rng, dtype=dtype), sc.BatchNorm2D(3, dtype=dtype), sc.MaxPool2D(2),
        sc.ReLU(), sc.Flatten(), sc.Dropout(0.5, rng=rng.spawn(1)[0]), sc.Dense(14 * 14 * 3, 4, rng=rng, dtype=dtype),
    ])  # fmt: skip


def test_lenet_bn_builds_trains_one_step_and_saves_and_loads_with_its_buffers(tmp_path):
    rng = np.random.default_rng(0)
    model = sc.build("lenet-bn", np.random.default_rng(1))
    types = [layer.name for layer in model]
    assert types == ["Conv2D", "BatchNorm2D", "MaxPool2D", "ReLU", "Conv2D", "BatchNorm2D", "MaxPool2D", "ReLU",
                     "Flatten", "Dense", "ReLU", "Dropout", "Dense"]  # fmt: skip
    assert model.params["9.W"].shape == (3136, 128) and model.layers[11].p == 0.5
    x, y = rng.random((8, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 8)
    before = {k: v.copy() for k, v in {**model.params, **model.buffers}.items()}
    loss, _ = train_step(model, sc.SoftmaxCrossEntropy(), sc.SGD(model.params, lr=0.01), x, y)
    assert np.isfinite(loss)
    assert all(not np.array_equal(before[k], v) for k, v in {**model.params, **model.buffers}.items())
    assert all(v.dtype == np.float32 for v in {**model.params, **model.buffers, **model.grads}.values())
    model.save(tmp_path / "m.npz")
    loaded = sc.Sequential.load(tmp_path / "m.npz")
    assert loaded.spec() == model.spec() and loaded.training
    for name, value in {**model.params, **model.buffers}.items():
        assert np.array_equal({**loaded.params, **loaded.buffers}[name], value), name
    model.eval()
    loaded.eval()
    assert np.array_equal(model.forward(x), loaded.forward(x))
    assert np.array_equal(model.forward(x), model.forward(x))  # eval mode: deterministic


def test_loading_a_model_whose_buffers_are_missing_or_damaged_is_a_clear_error(tmp_path):
    path = small_bn_net().save(tmp_path / "m.npz")
    with np.load(path) as data:
        arrays = dict(data)
    np.savez(tmp_path / "missing.npz", **{k: v for k, v in arrays.items() if k != "buffer:1.running_var"})
    with pytest.raises(ValueError, match=r"buffers \['1.running_mean'\] do not match its layers, which need"):
        sc.Sequential.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "nan.npz", **{**arrays, "buffer:1.running_var": np.full(3, np.nan, np.float32)})
    with pytest.raises(ValueError, match=r"buffer 1.running_var holds 3 NaN/Inf value\(s\) of 3"):
        sc.Sequential.load(tmp_path / "nan.npz")


def test_evaluation_runs_in_eval_mode_and_training_mode_comes_back():
    model = small_bn_net()
    images, labels = fake_mnist(n_train=8, n_test=16)["test"]
    x = to_float(images, np.float32)
    model.forward(x)  # one training forward moves the running statistics off 0 and 1
    result = evaluate(model, images, labels)
    assert model.training
    with model.evaluating():
        want = model.forward(x).argmax(1)
        assert not model.training
    assert np.array_equal(result["pred"], want)
    assert np.array_equal(model.predict_proba(x).argmax(1), want) and model.training
    model.layers[0].training = False  # a mixed mode is restored as it was, layer by layer
    evaluate(model, images, labels)
    assert [layer.training for layer in model] == [False] + [True] * 6


def test_a_resumed_lenet_bn_run_ends_with_the_weights_and_buffers_of_an_uninterrupted_one(tmp_path):
    data = fake_mnist(n_train=48, n_test=16)
    config = TrainConfig(arch="lenet-bn", epochs=2, batch_size=16, lr=0.01, log_every=100, seed=3, eval_limit=16)
    run_training(config, data, tmp_path / "whole", echo=lambda *_: None)
    run_training(replace(config, epochs=1), data, tmp_path / "cut", echo=lambda *_: None)
    run_training(config, data, tmp_path / "cut", resume=True, echo=lambda *_: None)
    whole, cut = sc.Sequential.load(tmp_path / "whole/model.npz"), sc.Sequential.load(tmp_path / "cut/model.npz")
    assert whole.buffers.keys() == cut.buffers.keys() != set()
    for name in [*whole.params, *whole.buffers]:
        assert np.array_equal({**whole.params, **whole.buffers}[name], {**cut.params, **cut.buffers}[name]), name
