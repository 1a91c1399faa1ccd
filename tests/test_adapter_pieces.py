"""The pieces ``class_layer`` and ``function_layer`` are composed of, each on its own: one keyword, one
piece, one short test that shows what it does (reference.impl.layouts, per_sample, calls, capture,
limits). The styles they make up are judged whole in tests/test_adapter_styles.py."""

import numpy as np
import pytest

from reference.impl.calls import FunctionPair, Methods, ParamPaths, call, get_path, set_path
from reference.impl.capture import OptimizerCapture, ReadGrads, RecordingOptimizer, UpdateCapture, gradient_capture
from reference.impl.layouts import Config, Conventions, Layout, configure, describe, param_shape
from reference.impl.limits import Limits
from reference.impl.per_sample import Samples, replayed, sampling

RNG = np.random.default_rng(0)


# --- layouts: the protocol's configuration and a whole batch's arrays -----------------------------------


def test_configure_reads_the_protocol_call_in_signature_order_with_its_defaults():
    conv = configure("Conv2D", (1, 2, (2, 3)), {"padding": "same"})
    assert conv == Config((2, 3), (1, 1), ((0, 1), (1, 1)), in_ch=1, out_ch=2)  # 'same': the extra row at the bottom
    assert describe("Conv2D", conv).startswith("(in_ch=1, out_ch=2, kernel_size=(2, 3), stride=(1, 1)")
    assert configure("MaxPool2D", (3,), {}).stride == (3, 3)  # a pool without a stride strides by its window
    assert configure("Dense", (4, 5), {"bias": False}) == Config(n_in=4, n_out=5, bias=False)
    assert param_shape("Conv2D", conv) == ((2, 3, 1, 2), 6) and param_shape("ReLU", Config()) is None


def test_a_layout_converts_a_batch_its_parameters_and_gradients_between_theirs_and_the_protocols():
    x = RNG.standard_normal((2, 3, 4, 5))  # NHWC
    images = Layout("ReLU", Conventions(images="NCHW"))
    assert images.x(x).shape == (2, 5, 3, 4) and np.array_equal(images.out(images.x(x), x.shape), x)
    flat = Layout("Flatten", Conventions(images="NCHW"))  # their vector in (C, H, W) order
    theirs = images.x(x).reshape(2, -1)
    assert np.array_equal(flat.out(theirs, x.shape), x.reshape(2, -1))
    assert np.array_equal(flat.dout(x.reshape(2, -1), x.shape), theirs)
    dense = Layout(
        "Dense", Conventions(dense_x="columns", dense_weight="out_in", bias="column", param_grads="carry_1/m")
    )
    assert dense.x(np.zeros((2, 3))).shape == (3, 2) and dense.dx(np.zeros((3, 2))).shape == (2, 3)
    w, b = dense.theirs({"W": np.zeros((3, 4))}, np.float64)  # no bias: zeros, in their layout
    assert w.shape == (4, 3) and b.shape == (4, 1)
    np.testing.assert_array_equal(dense.grad("W", np.ones((4, 3)) / 8, m=8), np.ones((3, 4)))  # the 1/m undone


# --- per_sample: one sample at a time ----------------------------------------------------------------------


def test_samples_split_a_batch_in_their_layout_and_stack_their_results_back():
    assert sampling("Conv2D", None) is None
    with pytest.raises(ValueError, match="per_sample='NCHW'"):
        sampling("Conv2D", "NCHW")
    conv = sampling("Conv2D", ("HW", "HWC"))
    x = RNG.standard_normal((3, 4, 5, 1))
    assert [s.shape for s in conv.split(x)] == [(4, 5)] * 3
    assert conv.stack([np.zeros((2, 3, 2))] * 3, x.shape).shape == (3, 2, 3, 2)
    flat = sampling("Flatten", ("CHW", "column"))
    assert flat == Samples("CHW", "column", reorders_flat=True)
    x = RNG.standard_normal((2, 3, 4, 5))
    columns = [s.reshape(-1, 1) for s in flat.split(x)]  # their flatten: a column in (C, H, W) order
    assert np.array_equal(flat.stack(columns, x.shape), x.reshape(2, -1))  # the protocol's (H, W, C) order
    assert np.array_equal(flat.split_dout(x.reshape(2, -1), x.shape)[1], columns[1])


def test_replayed_runs_backward_in_reverse_rerunning_each_forward_but_the_last_and_sums_the_gradients():
    calls = []

    def forward(s):
        calls.append(("forward", s))

    def backward(d):
        calls.append(("backward", d))
        return -d, {"W": np.full(2, float(d))}

    dxs, total = replayed([1, 2, 3], ["a", "b", "c"], forward, backward)
    assert dxs == [-1, -2, -3] and np.array_equal(total["W"], [6.0, 6.0])
    assert calls == [("backward", 3), ("forward", "b"), ("backward", 2), ("forward", "a"), ("backward", 1)]


# --- calls: how their code is called and where its arrays are -------------------------------------------


class Theirs:
    def __init__(self):
        self.params, self.grads, self.shapes = {"W": np.ones((2, 2), dtype=np.float32)}, {"W": np.eye(2)}, []

    def go(self, x, *rate):
        return x, rate


def test_paths_calls_and_methods_reach_into_their_layer():
    layer = Theirs()
    set_path(layer, "params.b", np.zeros(2))  # a dict on the way is indexed
    assert (
        get_path(layer, "params.b").shape == (2,)
        and call("go", layer, 1) == (1, ())
        and call(Theirs.go, layer, 2)[0] == 2
    )
    methods = Methods("go", lambda inner, d, lr: ("back", lr), lambda inner, shape: inner.shapes.append(shape))
    user = lambda fn, *args: fn(*args)  # noqa: E731  (Limits.call without declared exceptions)
    methods.run_forward(user, layer, np.zeros((4, 3, 2)), one_sample=False)
    methods.run_forward(user, layer, np.zeros((3, 2)), one_sample=True)
    assert layer.shapes == [(3, 2), (3, 2)] and methods.run_backward(user, layer, 0, 0.5) == ("back", 0.5)


def test_param_paths_are_declared_per_configuration_or_their_own_params_dict_and_cast_to_the_dtype():
    layer = Theirs()
    per_config = ParamPaths(lambda c: {"W": "params.W"} if c.bias else {})
    assert per_config.for_config(Config(bias=False)) == {} and ParamPaths().for_config(Config()) is None
    names = ParamPaths.resolve(None, layer)  # not declared: their own params dict's keys, live
    assert names == {"W": "params.W"}
    ParamPaths.cast(layer, names, np.dtype(np.float64))
    assert layer.params["W"].dtype == np.float64


def test_a_function_pair_is_called_with_the_weights_then_the_hyper_parameters():
    dense = FunctionPair(print, print, hyper=lambda c: c.n_in, parametric=True)
    assert dense.args(7, ("w", "b")) == ("w", "b", 7) and dense.split(("dx", "dw", "db")) == ("dx", ("dw", "db"))
    relu = FunctionPair(print, print)
    assert relu.args(None, ()) == () and relu.split("dx") == ("dx", ())


# --- capture: how gradients are captured ---------------------------------------------------------------


def test_gradients_are_read_where_they_are_kept_or_recorded_from_an_optimizer_in_the_layer():
    layer, names = Theirs(), {"W": "params.W"}
    assert ReadGrads().read(layer, names) == {"W": layer.grads["W"]}  # default: their grads dict
    assert ReadGrads({"W": "missing"}).read(layer, names) == {}  # not there (yet): none
    assert ReadGrads(lambda inner: {"W": 1, "b": 2, "c": None}).read(layer, {"W": "", "c": ""}) == {"W": 1}

    class KeepsOptimizer:
        opt = None

        def backward(self, d):
            self.opt.update(None, d * 2)
            return d

    inner = KeepsOptimizer()
    dx, grads = OptimizerCapture({"W": "opt"}).backward(lambda: inner.backward(np.ones(2)), inner, names)
    assert isinstance(inner.opt, RecordingOptimizer) and np.array_equal(grads["W"], [2.0, 2.0])
    dx, grads = OptimizerCapture({"b": "opt"}).backward(lambda: 0, layer, names)  # no such parameter: read instead
    assert np.array_equal(grads["W"], np.eye(2))


def test_the_capture_is_chosen_update_first_then_optimizer_then_read():
    assert gradient_capture("change", {"W": "opt"}) == UpdateCapture("change")
    assert gradient_capture(None, {"W": "opt"}, {"W": "dW"}) == OptimizerCapture({"W": "opt"}, ReadGrads({"W": "dW"}))
    assert gradient_capture() == ReadGrads() and ReadGrads.live and not UpdateCapture.live
    with pytest.raises(ValueError, match="update='sgd': expected 'product' or 'change'"):
        gradient_capture("sgd")


# --- limits: what one layer declares -----------------------------------------------------------------------


def test_limits_check_the_configuration_the_input_and_their_own_not_supported():
    limits = Limits("Conv2D", {"stride": 1, "square": True}, unsupported=AssertionError, float64_only=True)
    conv = configure("Conv2D", (1, 2, 3), {})
    limits.check_config(conv, np.float64)
    with pytest.raises(NotImplementedError, match=r"Conv2D \(in_ch=1.* outside the declared region: stride must be 1"):
        limits.check_config(configure("Conv2D", (1, 2, 3), {"stride": 2}), np.float64)
    with pytest.raises(NotImplementedError, match="declared float64_only"):
        limits.check_config(conv, np.float32)
    with pytest.raises(NotImplementedError, match=r"input \(1, 4, 5, 1\) is outside .* square images only"):
        limits.check_input(np.zeros((1, 4, 5, 1)))

    def refuses():
        raise AssertionError("only 2x2")

    with pytest.raises(NotImplementedError, match=r"AssertionError: only 2x2 \(declared unsupported\)"):
        limits.call(refuses)
