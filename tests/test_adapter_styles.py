"""One declaration per style: real from-scratch code as its authors write it (a tutorial that takes one
image at a time and updates its weights inside backprop, a Keras-like NCHW library with optimizers
inside its layers, a course notebook's loop functions), each wrapped in at most 15 lines by
reference.impl.adapters, judged PASS where it is right and FAIL, on the case and tensor that show
it, with each bug such code typically has."""

import ast
import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reference.cases.grid import Case, grid
from reference.cli import main
from reference.impl import styles
from reference.impl.adapters import Conventions, RecordingOptimizer, class_layer
from reference.impl.faults import _impl
from reference.impl.protocol import load_impl
from tests.impls import style_keras, style_notebook, style_tutorial
from tests.test_any_implementation import judge_all, verdicts

IMPLS = Path(__file__).parent / "impls"
WRAPPERS = ["style_tutorial_protocol", "style_keras_protocol", "style_notebook_protocol"]


def wrapping_lines(path: Path) -> int:
    """Lines of a wrapper file that are neither blank, a comment, an import nor its docstring."""
    source = path.read_text()
    tree = ast.parse(source)
    skip = set()
    for node in tree.body:
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if isinstance(node, (ast.Import, ast.ImportFrom)) or docstring:
            skip.update(range(node.lineno, node.end_lineno + 1))
    lines = source.splitlines()
    return sum(
        1 for i, line in enumerate(lines, 1) if i not in skip and line.strip() and not line.strip().startswith("#")
    )


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_each_style_wraps_in_at_most_15_lines(wrapper):
    assert 3 <= wrapping_lines(IMPLS / f"{wrapper}.py") <= 15


@pytest.fixture
def wrapped(monkeypatch):
    """``wrapped(wrapper, module, Name=buggy)``: the wrapper module, its declarations made afresh around
    the user's module with ``Name`` swapped for the buggy version (undone, and made afresh, after)."""
    reloaded = []

    def make(wrapper, module=None, **swaps):
        for name, bug in swaps.items():
            monkeypatch.setattr(module, name, bug)
        mod = importlib.reload(importlib.import_module(f"tests.impls.{wrapper}"))
        reloaded.append(mod)
        return mod

    yield make
    monkeypatch.undo()
    for mod in reloaded:
        importlib.reload(mod)


def failing(rows, layer):
    return rows[(rows["layer"] == layer) & rows["status"].isin(["fail", "error"])]


def cases_of(layer, limit, small=64, batch=1, **config):
    """Up to ``limit`` grid cases of ``layer`` (no network shapes) with the given config values, at
    most ``small`` input elements per sample and at least ``batch`` samples, one per value kind first."""
    picked = [c for c in grid() if c.layer == layer and not c.network_layer and not c.lifecycle
              and np.prod(c.input_shape[1:]) <= small and c.input_shape[0] >= batch
              and all(c.config.get(k) in v for k, v in config.items())]  # fmt: skip
    picked.sort(key=lambda c: (c.values, np.prod(c.input_shape)))
    first = {c.values: c for c in reversed(picked)}
    return (list(first.values()) + [c for c in picked if c not in first.values()])[:limit]


def pools(layer):
    """A few pooling cases: 2x2 windows on exact ties and near-ties, 3x3 windows with stride 1, per-axis
    windows, and windows that leave a remainder of the input."""
    plain = [c for c in grid() if c.layer == layer and not c.network_layer and not c.lifecycle and c.tag != "edge"]
    two = [c for c in plain if c.config["kernel_size"] in (2, (2, 2)) and np.prod(c.input_shape) <= 200]
    return [
        *[next(c for c in two if c.values == kind) for kind in ("ties", "near_ties", "mnist")],
        next(c for c in plain if c.config == {"kernel_size": 3, "stride": 1} and c.input_shape[1] == 6),
        next(c for c in plain if c.config["kernel_size"] == (2, 3) and c.config["stride"] == 2),
        next(c for c in two if c.config["stride"] is None and c.input_shape[1] % 2),  # a remainder of the input
    ]


def lifecycle(layer):
    return [c for c in grid() if c.layer == layer and c.lifecycle]


# --- the tutorial CNN: one image at a time, updates inside backprop, float64 throughout ----------------

TUTORIAL_CONV = {"in_ch": 1, "out_ch": 2, "kernel_size": 3, "stride": 1, "padding": "valid", "bias": False}
TUTORIAL = [
    Case("Conv2D", TUTORIAL_CONV, (2, 6, 6, 1), "noise", 1),
    Case("Conv2D", {**TUTORIAL_CONV, "out_ch": 3}, (1, 5, 7, 1), "mnist", 2),
    Case("Conv2D", TUTORIAL_CONV, (2, 5, 5, 1), "noise", 3, then=((3, 6, 7, 1), "zeros", 4)),
    Case("Conv2D", {**TUTORIAL_CONV, "in_ch": 2}, (1, 5, 5, 2), "noise", 5),  # outside: two input channels
    *cases_of("MaxPool2D", 6, kernel_size=[2, (2, 2)], stride=[None, 2, (2, 2)]),
    *cases_of("MaxPool2D", 1, kernel_size=[3]),  # outside: 3x3 windows
    *[c for c in cases_of("Dense", 12) if c.config["bias"]][:4],
    *cases_of("Dense", 1, bias=[False]),  # outside: no bias
    *lifecycle("Dense")[:1],
]


def test_the_tutorial_cnn_passes_where_it_is_judged_and_declares_the_rest():
    rows = judge_all(load_impl("tests.impls.style_tutorial_protocol"), TUTORIAL, networks={})
    assert set(rows["status"]) <= {"pass", "unsupported", "missing"}, failing(rows, rows["layer"]).head()
    f64 = rows[rows["dtype"] != "float32"]
    assert all(verdicts(f64)[layer] == "PASS" for layer in ("Conv2D", "MaxPool2D", "Dense"))
    judged = rows[(rows["judge"] == "autograd") & (rows["status"] == "pass")]
    assert judged["case"].str.contains("in_ch=1,out_ch=2,kernel_size=3,stride=1,padding=valid,bias=False").any()
    # float32: declared float64_only, every such row unsupported and saying so
    f32 = rows[rows["dtype"] == "float32"]
    assert len(f32) and (f32["status"] == "unsupported").all()
    assert f32["note"].str.contains("declared float64_only|outside the declared region").all()
    assert f32["note"].str.contains("declared float64_only").sum() >= 10
    # outside the declared region: unsupported, the configuration and the region named
    outside = rows[(rows["judge"] == "autograd") & rows["note"].str.contains("outside the declared region", na=False)]
    notes = " | ".join(outside["note"])
    assert "in_ch must be 1" in notes and "kernel_size must be 2" in notes and "bias must be True" in notes
    assert "Conv2D (in_ch=2, out_ch=2, kernel_size=(3, 3)" in notes


@pytest.mark.parametrize(
    "swap, layer, tensor, diagnosis",
    [
        (("Conv3x3", style_tutorial.Conv3x3Flipped), "Conv2D", "out", "kernel flipped in space"),
        (("MaxPool2", style_tutorial.MaxPool2EveryTie), "MaxPool2D", "dx", "every tied maximum"),
        (("FullyConnected", style_tutorial.FullyConnectedDxAfterUpdate), "Dense", "dx", None),
    ],
    ids=["conv-filters-flipped", "maxpool-every-tie", "dense-dx-after-the-update"],
)
def test_a_tutorial_bug_is_caught_on_the_tensor_that_shows_it(wrapped, swap, layer, tensor, diagnosis):
    impl = wrapped("style_tutorial_protocol", style_tutorial, **dict([swap]))
    rows = judge_all(impl, [c for c in TUTORIAL if c.layer == layer], networks={})
    bad = failing(rows, layer)
    assert verdicts(rows)[layer] == "FAIL"
    auto = bad[(bad["judge"] == "autograd") & (bad["tensor"] == tensor) & (bad["dtype"] == "float64")]
    assert len(auto), bad[["judge", "case", "tensor", "note"]]
    if diagnosis:
        assert auto["diagnosis"].str.contains(diagnosis).all(), auto["diagnosis"].tolist()
    if layer == "MaxPool2D":  # only where a window holds a tie
        assert (auto["ties"] > 0).all() or (auto["near_ties"] > 0).all()
    if layer == "Dense":  # update='change' runs the update at a rate of 2**20: the dx far off, dW and db right
        assert bad["tensor"].isin(["dx", "<Ax,y> vs <x,A^T y>"]).all()


# --- the Keras-like NCHW library: set_input_shape, forward_pass/backward_pass, optimizers inside -------

KERAS = [
    *cases_of("Conv2D", 6, small=200),
    *cases_of("Conv2D", 2, small=200, padding=["same"], bias=[False]),
    *pools("MaxPool2D"),
    *pools("AvgPool2D")[2:5],
    *cases_of("ReLU", 7),
    *cases_of("Flatten", 2),
    *cases_of("Dense", 6),
    *[c for layer in ("Conv2D", "MaxPool2D", "Dense", "Flatten") for c in lifecycle(layer)],
]


def test_the_keras_like_library_passes_every_layer_and_its_assertions_are_declared_limits():
    rows = judge_all(load_impl("tests.impls.style_keras_protocol"), KERAS, networks={})
    assert not failing(rows, rows["layer"]).size, failing(rows, rows["layer"])[["layer", "case", "tensor", "note"]]
    v = verdicts(rows)
    assert all(v[layer] == "PASS" for layer in ("Conv2D", "MaxPool2D", "AvgPool2D", "ReLU", "Flatten", "Dense")), v
    unsupported = rows[rows["status"] == "unsupported"]
    assert unsupported["note"].str.contains("AssertionError: the pool windows must cover").any()
    assert (
        rows[(rows["case"] == "params and grads, bias=False") & (rows["layer"] == "Conv2D")]["status"].eq("pass").all()
    )


def test_a_relu_grad_of_one_at_zero_undeclared_fails_at_the_zeros(wrapped, monkeypatch):
    monkeypatch.setitem(style_keras.Activation.activation_functions, "relu", style_keras.ReLUGradAtZeroOne)
    impl = wrapped("style_keras_protocol")
    rows = judge_all(impl, [c for c in KERAS if c.layer == "ReLU"], networks={})
    bad = failing(rows, "ReLU")
    assert len(bad) and set(bad["tensor"]) <= {"dx", "<Ax,y> vs <x,A^T y>"} and (bad["zeros"] > 0).all()
    assert bad[bad["judge"] == "autograd"]["diagnosis"].str.contains("ReLU'\\(0\\) taken as 1").all()


def test_a_conv_bias_gradient_summed_over_the_wrong_axis_fails_on_db(wrapped):
    impl = wrapped("style_keras_protocol", style_keras, Conv2D=style_keras.Conv2DBiasWrongAxis)
    rows = judge_all(impl, [c for c in KERAS if c.layer == "Conv2D"], networks={})
    bad = failing(rows, "Conv2D")
    assert len(bad) and set(bad[bad["judge"] == "autograd"]["tensor"]) == {"db"}
    assert bad["note"].str.contains("shape mismatch: ours \\(9,\\), expected \\(1,\\)").any()


# --- the course notebook: loop functions over NHWC batches, (1, 1, 1, n_C) biases, dW carrying 1/m -----

NOTEBOOK = [
    *cases_of("Conv2D", 4, small=100),
    *cases_of("Conv2D", 2, small=100, batch=2, kernel_size=[1, 2, 3]),
    *pools("MaxPool2D"),
    *pools("AvgPool2D")[2:5],
    *cases_of("ReLU", 7),
    *cases_of("Dense", 6),
    *lifecycle("Dense"),
]


def test_the_notebook_functions_pass_and_a_non_square_kernel_is_declared():
    rows = judge_all(load_impl("tests.impls.style_notebook_protocol"), NOTEBOOK, networks={})
    assert not failing(rows, rows["layer"]).size, failing(rows, rows["layer"])[["layer", "case", "tensor", "note"]]
    v = verdicts(rows)
    assert all(v[layer] == "PASS" for layer in ("Conv2D", "MaxPool2D", "AvgPool2D", "ReLU", "Dense")), v
    assert rows["note"].str.contains("square \\(f, f\\) kernels only", na=False).any()


@pytest.mark.parametrize(
    "swap, layer, tensor, diagnosis",
    [
        (("conv_backward", style_notebook.conv_backward_last_sample), "Conv2D", "dW", None),
        (("pool_backward", style_notebook.pool_backward_every_tie), "MaxPool2D", "dx", "every tied maximum"),
    ],
    ids=["conv-grads-of-the-last-sample-only", "maxpool-mask-every-tie"],
)
def test_a_notebook_bug_is_caught_on_the_tensor_that_shows_it(wrapped, swap, layer, tensor, diagnosis):
    impl = wrapped("style_notebook_protocol", style_notebook, **dict([swap]))
    rows = judge_all(impl, [c for c in NOTEBOOK if c.layer == layer], networks={})
    bad = failing(rows, layer)
    auto = bad[(bad["judge"] == "autograd") & (bad["tensor"] == tensor)]
    assert verdicts(rows)[layer] == "FAIL" and len(auto), bad[["judge", "case", "tensor", "note"]]
    if diagnosis:
        assert auto["diagnosis"].str.contains(diagnosis).all()
    if layer == "Conv2D":  # the last sample only: right on a batch of one, wrong on every larger batch
        assert all(int(case.split(" x")[1].split("x")[0]) > 1 for case in auto["case"])
        assert set(bad[bad["judge"] == "autograd"]["tensor"]) <= {"dW", "db"}


# --- the sandbox: a wrapper judged as any user's module is, through the trust boundary -----------------


def test_a_wrapped_style_is_judged_through_the_sandbox(tmp_path):
    case = next(c for c in grid() if c.layer == "Conv2D" and not c.tag and c.config["padding"] == "same"
                and c.config["in_ch"] > 1 and np.prod(c.input_shape) <= 300)  # fmt: skip
    out = tmp_path / "out"
    code = main(["judge", "--impl", "tests.impls.style_keras_protocol", "--case", case.id, "--out", str(out)])
    rows = pd.concat([pd.read_csv(out / f"{j}.csv") for j in ("autograd", "finite_diff")], ignore_index=True)
    assert code == 0 and len(rows) and set(rows["status"]) == {"pass"}, rows[["case", "tensor", "status", "note"]]
    assert pd.read_csv(out / "verdicts.csv").set_index("layer")["verdict"]["Conv2D"] == "PASS"


def test_a_per_sample_float64_only_style_through_the_sandbox_says_what_it_did_not_judge(tmp_path):
    case = pools("MaxPool2D")[0]  # 2x2 windows on exact ties
    out = tmp_path / "out"
    main(["judge", "--impl", "tests.impls.style_tutorial_protocol", "--case", case.id, "--out", str(out)])
    rows = pd.read_csv(out / "autograd.csv")
    assert set(rows.loc[rows["dtype"] == "float64", "status"]) == {"pass"}
    f32 = rows[rows["dtype"] == "float32"]
    assert len(f32) and (f32["status"] == "unsupported").all() and f32["note"].str.contains("float64_only").all()


# --- the capture of a gradient from an update inside backward --------------------------------------------


class Rebinds:
    """`self.W = self.W - lr * dW` (a new array each step), the batch size divided out after the product."""

    def __init__(self, n_in, n_out):
        self.W, self.b = np.random.default_rng(0).standard_normal((n_in, n_out)), np.zeros(n_out)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, d, lr):
        m = d.shape[0]
        dx = d @ self.W.T
        self.W = self.W - lr * (self.x.T @ d * m) / m  # a sum gradient times m, divided back out
        self.b = self.b - lr * d.sum(axis=0)
        return dx


class SliceWise(Rebinds):
    """`self.W[i] -= lr * dW[i]`, one row at a time, and `self.b += -lr * db`."""

    def backward(self, d, lr):
        dW, dx = self.x.T @ d, d @ self.W.T
        for i in range(dW.shape[0]):
            self.W[i] -= lr * dW[i]
        self.b += -lr * d.sum(axis=0)
        return dx


@pytest.mark.parametrize("mode", ["product", "change"])
@pytest.mark.parametrize("user", [Rebinds, SliceWise])
def test_an_update_inside_backward_gives_the_gradient_and_leaves_the_weights_as_they_were(mode, user):
    dense = class_layer("Dense", lambda c: user(c.n_in, c.n_out), params={"W": "W", "b": "b"}, update=mode)(4, 3)
    live = dense.params
    before = {k: (v, v.copy()) for k, v in live.items()}
    rng = np.random.default_rng(1)
    x, d = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    dense.forward(x)
    dense.backward(d)
    exact = {"W": x.T @ d, "b": d.sum(axis=0)}
    for key, (array, values) in before.items():
        assert dense.params[key] is not None and np.shares_memory(dense.params[key], array)  # the same live arrays
        assert np.array_equal(dense.params[key], values)  # bit for bit
        if mode == "product":
            np.testing.assert_allclose(dense.grads[key], exact[key], rtol=1e-15, atol=1e-15)
        else:  # (before - after) / 2**20: a relative error of a few eps of the weights' scale
            np.testing.assert_allclose(dense.grads[key], exact[key], rtol=1e-9, atol=1e-9)


def test_product_mode_cannot_see_a_dx_computed_after_the_update_and_change_mode_does():
    make = lambda c: style_tutorial.FullyConnectedDxAfterUpdate(c.n_in, c.n_out)  # noqa: E731
    names = {"W": "weights", "b": "biases"}
    x, d = np.random.default_rng(2).standard_normal((2, 4)), np.random.default_rng(3).standard_normal((2, 3))
    dx = {}
    for mode in ("product", "change"):
        layer = class_layer("Dense", make, params=names, update=mode, per_sample="n", backward="backprop")(4, 3)
        layer.params["W"][...] = np.random.default_rng(4).standard_normal((4, 3))
        layer.forward(x)
        dx[mode] = layer.backward(d)
    right = d @ layer.params["W"].T
    np.testing.assert_allclose(dx["product"], right, rtol=1e-12)  # the documented blind spot of 'product'
    assert np.abs(dx["change"] - right).max() > 1e3 * np.abs(right).max()


def test_an_optimizer_kept_in_the_layer_records_the_gradient_and_changes_nothing():
    rec = RecordingOptimizer()
    w = np.ones(3)
    assert rec.update(w, np.arange(3.0)) is w and np.array_equal(rec.grad, np.arange(3.0))
    import copy

    assert isinstance(copy.copy(rec), RecordingOptimizer) and copy.copy(rec).grad is None


def test_per_sample_gradients_are_summed_over_the_batch():
    dense = class_layer("Dense", lambda c: style_tutorial.FullyConnected(c.n_in, c.n_out), per_sample="n",
                        params={"W": "weights", "b": "biases"}, update="product", backward="backprop")(3, 2)  # fmt: skip
    rng = np.random.default_rng(5)
    x, d = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    out = dense.forward(x)
    np.testing.assert_allclose(out, x @ dense.params["W"] + dense.params["b"], rtol=1e-14)
    dx = dense.backward(d)
    # NOTE: the samples' gradients are summed in another order than the GEMM's (and each sample's dx is
    # a product of its own), so an element where the products cancel (0.0009 or 0.00018 from terms of
    # ~0.5) agrees to eps x the terms, not eps x itself
    np.testing.assert_allclose(dense.grads["W"], x.T @ d, rtol=1e-14, atol=4 * np.finfo(float).eps)
    np.testing.assert_allclose(dense.grads["b"], d.sum(axis=0), rtol=1e-14, atol=4 * np.finfo(float).eps)
    np.testing.assert_allclose(dx, d @ dense.params["W"].T, rtol=1e-14, atol=4 * np.finfo(float).eps)


# --- declared limits and conventions -----------------------------------------------------------------


def test_a_declared_region_and_an_exception_that_means_unsupported_become_not_implemented():
    class Asserts:
        def __init__(self, c):
            assert c.kernel_size == (2, 2), f"{c.kernel_size} windows: only 2x2 here"

    pool = class_layer("MaxPool2D", Asserts, unsupported=AssertionError)  # declaring never raises
    with pytest.raises(NotImplementedError, match=r"AssertionError: \(3, 3\) windows: only 2x2 here"):
        pool(3)
    by_dict = class_layer("Conv2D", lambda c: None, supports={"padding": {"same", "valid"}, "stride": 1})
    with pytest.raises(NotImplementedError, match=r"Conv2D \(in_ch=1.*outside the declared region: padding must be"):
        by_dict(1, 2, 3, padding=2)
    by_predicate = class_layer("Dense", lambda c: None, supports=lambda c: c.n_in <= 4 or "at most 4 inputs")
    with pytest.raises(NotImplementedError, match="at most 4 inputs"):
        by_predicate(5, 2)
    with pytest.raises(NotImplementedError, match="float64_only"):
        class_layer("Dense", lambda c: None, float64_only=True)(2, 2, dtype=np.float32)


def test_a_kink_convention_is_published_on_the_class_and_its_instances_and_checked_at_wrap_time():
    relu = class_layer("ReLU", lambda c: style_keras.Activation("relu"), kinks={"relu_grad_at_zero": 1.0},
                       forward="forward_pass", backward="backward_pass")  # fmt: skip
    assert relu.kink_conventions == {"relu_grad_at_zero": 1.0} and relu().kink_conventions == {"relu_grad_at_zero": 1.0}
    assert class_layer("ReLU", lambda c: None).kink_conventions == {}
    for bad, match in [({"relu_grad_at_zero": 1.5}, r"not a number in \[0, 1\]"), ({"relu_grad_at_zero": -0.1}, "not a"),
                       ({"relu_grad": 1}, "unknown kink convention"), ({"maxpool_ties": "every"}, "about MaxPool2D")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            class_layer("ReLU", lambda c: None, kinks=bad)
    with pytest.raises(ValueError, match="'first', 'last' or 'split'"):
        class_layer("MaxPool2D", lambda c: None, kinks={"maxpool_ties": "every"})


def test_a_declared_relu_grad_of_one_at_zero_is_judged_against_the_declaration_and_named(monkeypatch):
    from reference.core.verdicts import layer_verdicts

    monkeypatch.setitem(style_keras.Activation.activation_functions, "relu", style_keras.ReLUGradAtZeroOne)
    relu = class_layer("ReLU", lambda c: style_keras.Activation("relu"), kinks={"relu_grad_at_zero": 1.0},
                       forward="forward_pass", backward="backward_pass", conventions=Conventions(images="NCHW"))  # fmt: skip
    rows = judge_all(_impl(ReLU=relu), [c for c in KERAS if c.layer == "ReLU"], networks={})
    assert (
        not failing(rows, "ReLU").size
        and rows["convention"].str.contains("ReLU'\\(0\\) = 1 \\(declared", na=False).any()
    )
    verdict = layer_verdicts(rows).set_index("layer").loc["ReLU"]
    assert verdict["verdict"] == "PASS" and "judged against its ReLU'(0) = 1 (declared" in verdict["why"]


def test_the_change_rate_is_a_power_of_two():
    assert styles.CHANGE_RATE == 2.0 ** round(np.log2(styles.CHANGE_RATE))


def test_the_adapters_transposes_are_the_layout_modules_and_importing_them_needs_no_torch():
    import subprocess
    import sys

    from reference.impl import adapters
    from reference.layers import layout

    x = np.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    assert np.array_equal(adapters.images_to_nchw(x), layout.images_to_torch(x))
    assert np.array_equal(adapters.images_to_nhwc(x), layout.images_from_torch(x))
    assert np.array_equal(adapters.conv_weight_to_oihw(x), layout.conv_weight_to_torch(x))
    assert np.array_equal(adapters.conv_weight_to_hwio(x), layout.conv_weight_from_torch(x))
    code = "import sys, reference.impl.adapters, reference.impl.styles; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


@pytest.mark.parametrize("lay, shape", [("HW", (3, 4, 5, 1)), ("HWC", (3, 4, 5, 2)), ("CHW", (3, 4, 5, 2)),
                                        ("n", (3, 7)), ("any", (3, 2, 5))])  # fmt: skip
def test_each_per_sample_layout_is_undone_by_its_inverse(lay, shape):
    from reference.impl.adapters import samples_from_theirs, samples_to_theirs

    x = np.random.default_rng(6).standard_normal(shape)
    samples = samples_to_theirs(x, lay)
    assert len(samples) == shape[0] and samples[0].shape == {"HW": (4, 5), "CHW": (2, 4, 5)}.get(lay, shape[1:])
    assert np.array_equal(samples_from_theirs(samples, lay), x)
    if lay == "HW":
        with pytest.raises(NotImplementedError, match="one-channel images"):
            samples_to_theirs(np.zeros((1, 4, 4, 3)), lay)
