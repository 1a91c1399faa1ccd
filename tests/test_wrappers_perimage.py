"""Per-image free functions, wrapped as a new user would from the README alone (issue: "Verdicts you
can stake a grade on", item 8): ``convolution(image, filt, bias, s)`` and ``maxpool(image, f, s)`` on
one CHW image (``function_layer(..., per_sample="CHW")``), a flatten of that image in C order into a
column (``per_sample=("CHW", "column")``), 'valid' square code (``supports={"square": True}``), and a
loss whose value is the batch's mean and whose gradient ``p - y`` is the sum's (``loss_function(...,
grad="sum")``). The style is ours (``tests/impls/wrap_perimage.py``); its wrapper takes at most 15
lines; correct, it passes; each typical bug fails on the tensor that shows it. The declarations
themselves are tested at the end."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scratch_cnn
from reference.cases.grid import Case, grid
from reference.impl import adapters
from reference.impl.adapters import Conventions, class_layer, function_layer
from reference.impl.loss_adapters import loss_function
from reference.impl.protocol import load_impl
from reference.judges.base import Context
from reference.judges.finite_diff import FiniteDiffJudge
from tests.impls import wrap_perimage as P
from tests.test_adapter_styles import cases_of, failing, wrapping_lines
from tests.test_any_implementation import judge_all, verdicts

IMPLS = Path(__file__).parent / "impls"
WRAPPER = "tests.impls.wrap_perimage_protocol"
# their own arithmetic warns where it meets the 'large' logits (log 0, 0 * inf; exp overflow without
# the max shift): the judges must see the numbers a user's run gives, not an exception -W error made
NUMPY_WARNINGS = pytest.mark.filterwarnings(
    "ignore:overflow encountered:RuntimeWarning",
    "ignore:divide by zero encountered:RuntimeWarning",
    "ignore:invalid value encountered:RuntimeWarning",
)

VALID = {"in_ch": 2, "out_ch": 3, "kernel_size": 3, "stride": 1, "padding": "valid", "bias": True}
NAMED = {c.id: c for c in grid()}


def square_valid(c: Case) -> bool:
    """A small grid case their convolution takes: 'valid', square images and kernels."""
    return (c.layer == "Conv2D" and not c.network_layer and not c.lifecycle and c.config["padding"] == "valid"
            and c.input_shape[1] == c.input_shape[2] and c.config["kernel_size"] in (2, 3, 4)
            and np.prod(c.input_shape) <= 200)  # fmt: skip


CONV = [
    *[c for c in grid() if square_valid(c)][:5],
    NAMED["Conv2D[in_ch=1,out_ch=1,kernel_size=3,stride=1,padding=valid,bias=True] x3x7x8x1 noise s21"],  # H != W
    NAMED["Conv2D[in_ch=1,out_ch=4,kernel_size=2x3,stride=2,padding=valid,bias=True] x1x7x7x1 tiny s54"],  # 2x3 kernel
    *cases_of("Conv2D", 1, small=100, padding=["same"]),
    Case("Conv2D", VALID, (2, 5, 5, 2), "noise", 50, then=((3, 7, 7, 2), "mnist", 51)),  # two rounds, 'valid'
]
POOL = [
    NAMED["MaxPool2D[kernel_size=2,stride=None] x1x6x6x1 ties s16"],
    Case("MaxPool2D", {"kernel_size": 2, "stride": None}, (2, 6, 6, 2), "near_ties", 52),
    NAMED["MaxPool2D[kernel_size=3,stride=1] x1x6x6x3 ties s36"],  # overlapping windows
    NAMED["MaxPool2D[kernel_size=3,stride=2] x1x6x6x1 ties s40"],  # overlapping windows
    NAMED["MaxPool2D[kernel_size=2,stride=None] x1x6x8x1 near_ties s18"],  # H != W
]
DENSE = [c for c in grid() if c.layer == "Dense" and not c.tag and c.config["n_in"] == 7][:4]
LOSS = cases_of("SoftmaxCrossEntropy", 6)
PERIMAGE = [*CONV, *POOL, *cases_of("ReLU", 3), *cases_of("Flatten", 3), *DENSE, *LOSS]
LARGE = {c.id for c in LOSS if c.values == "large"}


def test_the_per_image_wrapper_takes_at_most_15_lines():
    assert 3 <= wrapping_lines(IMPLS / "wrap_perimage_protocol.py") <= 15


@NUMPY_WARNINGS
def test_the_per_image_functions_pass_every_layer_and_their_limits_are_declared():
    rows = judge_all(load_impl(WRAPPER), PERIMAGE, networks={})
    bad = failing(rows, rows["layer"])
    # one failure, the style's own: -sum(label * log(p)) is inf or nan where a probability underflows to 0
    assert set(bad["layer"]) == {"SoftmaxCrossEntropy"} and set(bad["case"]) <= LARGE, bad[["case", "tensor", "note"]]
    v = verdicts(rows[~rows["case"].isin(LARGE)])
    assert all(v[layer] == "PASS" for layer in ("Conv2D", "MaxPool2D", "ReLU", "Flatten", "Dense")), v
    assert v["SoftmaxCrossEntropy"] == "PASS"
    notes = " | ".join(rows.loc[rows["status"] == "unsupported", "note"])
    for said in ("square images only (H == W), got H=7, W=8", "square images only (H == W), got H=6, W=8",
                 "kernel_size must be square (one size for both axes), got (2, 3)", "padding must be 'valid'"):  # fmt: skip
        assert said in notes, said
    judged = rows[(rows["judge"] == "autograd") & (rows["status"] == "pass")]
    assert {"float32", "float64"} <= set(judged["dtype"]) and {"dW", "db", "dx", "out"} <= set(judged["tensor"])
    life = rows[(rows["judge"] == "lifecycle") & (rows["layer"] == "Conv2D")]
    assert len(life) and (life["status"] == "pass").all()


def test_the_wrapped_layers_chained_are_their_training_scripts_step():
    """Their ``conv`` (the lines ReLU, flatten, dense and the loss live in) against the wrapped layers
    with the same numbers: the protocol's gradients are the mean of their per-image ones.

    # NOTE: their flatten is in (C, H, W) order, the protocol's in (H, W, C): the first dense layer's
    # rows are the same weights in the other order (``chw`` below), which is what the wrapper's
    # per-sample flatten order declares."""
    impl, rng = load_impl(WRAPPER), np.random.default_rng(3)
    net = [impl.Conv2D(1, 2, 3, padding="valid", rng=rng), impl.ReLU(), impl.Conv2D(2, 3, 3, padding="valid", rng=rng),
           impl.ReLU(), impl.MaxPool2D(2), impl.Flatten(), impl.Dense(27, 5, rng=rng), impl.ReLU(),
           impl.Dense(5, 4, rng=rng)]  # fmt: skip
    parametric = [net[0], net[2], net[6], net[8]]
    for layer in parametric:
        layer.params["b"][...] = rng.uniform(-0.1, 0.1, layer.params["b"].shape)
    x, labels = rng.random((2, 10, 10, 1)), np.array([1, 3])
    loss_fn = impl.SoftmaxCrossEntropy()
    h = x
    for layer in net:
        h = layer.forward(h)
    loss, _ = loss_fn.forward(h, labels)
    d = loss_fn.backward()
    for layer in reversed(net):
        d = layer.backward(d)
    chw = lambda w: w.reshape(3, 3, 3, -1).transpose(2, 0, 1, 3).reshape(27, -1)  # noqa: E731  (rows HWC -> CHW)
    ws = [parametric[0].params["W"].transpose(3, 2, 0, 1), parametric[1].params["W"].transpose(3, 2, 0, 1),
          chw(parametric[2].params["W"]).T, parametric[3].params["W"].T]  # fmt: skip
    theirs = ws + [layer.params["b"].reshape(-1, 1) for layer in parametric]  # their f1, f2, w3, w4, b1, ..., b4
    per_image = [P.conv(x[i].transpose(2, 0, 1), np.eye(4)[labels[i]].reshape(-1, 1), theirs) for i in range(2)]
    assert np.isclose(loss, np.mean([r[0] for r in per_image]), rtol=1e-13)
    mean_grads = [np.mean([r[1][k] for r in per_image], axis=0) for k in range(8)]
    for k, layer in enumerate(parametric):
        kind = "Conv2D" if k < 2 else "Dense"
        want = adapters.weight_to_protocol(kind, mean_grads[k], Conventions(conv_weight="OIHW", dense_weight="out_in"))
        got = chw(layer.grads["W"]) if k == 2 else layer.grads["W"]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(layer.grads["b"], mean_grads[4 + k].reshape(-1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d, np.stack([r[2] for r in per_image]).transpose(0, 2, 3, 1) / 2, rtol=1e-12, atol=1e-15)


@pytest.fixture
def swapped(monkeypatch):
    """``swapped(name, bug)``: the wrapper made afresh around their module with ``name`` swapped for
    ``bug`` (undone, and made afresh, after).

    # NOTE: made afresh because ``probs=P.softmax`` is bound when the wrapper is imported; the lambdas
    # look their functions up at each call. The reused buffers start empty in every test.
    """
    import importlib

    wrapper = importlib.import_module(WRAPPER)
    monkeypatch.setattr(P, "_buffers", {})

    def swap(name, bug):
        monkeypatch.setattr(P, name, bug)
        return importlib.reload(wrapper)

    yield swap
    monkeypatch.undo()
    importlib.reload(wrapper)


@NUMPY_WARNINGS
@pytest.mark.parametrize(
    "name, bug, layer, tensor, diagnosis",
    [
        ("convolutionBackward", P.convolutionBackwardReused, "Conv2D", "dW", None),
        ("maxpoolBackward", P.maxpoolBackwardEveryTie, "MaxPool2D", "dx", "every tied maximum"),
        ("maxpoolBackward", P.maxpoolBackwardOverwrites, "MaxPool2D", "dx", None),
        ("softmax", P.softmaxUnshifted, "SoftmaxCrossEntropy", "probs", "without subtracting each row's maximum"),
    ],
    ids=["conv-gradient-buffers-reused", "maxpool-mask-every-tie", "maxpool-overlaps-overwritten", "softmax-unshifted"],
)
def test_a_per_image_bug_is_caught_on_the_tensor_that_shows_it(swapped, name, bug, layer, tensor, diagnosis):
    impl = swapped(name, bug)
    rows = judge_all(impl, [c for c in PERIMAGE if c.layer == layer], networks={})
    bad = failing(rows, layer)
    auto = bad[(bad["judge"] == "autograd") & (bad["tensor"] == tensor) & (bad["dtype"] == "float64")]
    assert verdicts(rows)[layer] == "FAIL" and len(auto), bad[["judge", "case", "tensor", "note"]]
    if diagnosis:
        assert auto["diagnosis"].str.contains(diagnosis).any(), auto["diagnosis"].tolist()
    if name == "convolutionBackward":  # each call adds every earlier call's dfilt, a fresh instance's too
        life = bad[(bad["judge"] == "lifecycle") & (bad["tensor"] == "dW")]
        assert len(life) and life["note"].str.contains("state kept from round 1").all()
        assert set(bad[bad["judge"] == "autograd"]["tensor"]) == {"dW"}
    if bug is P.maxpoolBackwardOverwrites:  # right where windows do not overlap
        assert auto["case"].str.contains("kernel_size=3,stride=[12]\\]").all()
        assert not bad["case"].str.contains("kernel_size=2").any()
    if name == "softmax":  # exp overflows only where the logits are large; the loss is theirs, and right
        assert set(bad["case"]) <= LARGE and auto["case"].nunique() == len(LARGE)


@NUMPY_WARNINGS
def test_a_loss_whose_gradient_is_the_sums_declared_as_the_means_fails_by_m_and_says_so():
    cost = lambda z, y: (P.categoricalCrossEntropy(P.softmax(z), y), P.softmax(z) - y)  # noqa: E731
    undeclared = loss_function(cost, per_sample="column", labels="one_hot", probs=P.softmax)  # grad="sum" left out
    rows = judge_all(types_namespace(SoftmaxCrossEntropy=undeclared), [c for c in LOSS if c.id not in LARGE],
                     networks={})  # fmt: skip
    auto = failing(rows, "SoftmaxCrossEntropy")
    auto = auto[auto["judge"] == "autograd"]
    batches = {int(c.split(" x")[1].split("x")[0]) for c in auto["case"]}
    assert len(auto) and set(auto["tensor"]) == {"dlogits"} and min(batches) > 1
    assert auto["diagnosis"].str.contains("ours = m x ref").all(), auto["diagnosis"].tolist()


def test_square_only_code_undeclared_is_wrong_on_other_images():
    conv = function_layer("Conv2D", lambda x, w, b, s: (P.convolution(x, w, b, s), (x, w, s)),
                          lambda d, c: P.convolutionBackward(d, *c), hyper=lambda c: c.one("stride"), per_sample="CHW",
                          conventions=Conventions(conv_weight="OIHW", bias="column"))  # fmt: skip
    rows = judge_all(types_namespace(Conv2D=conv), [c for c in CONV if c.input_shape[1] != c.input_shape[2]],
                     networks={})  # fmt: skip
    out = rows[(rows["judge"] == "autograd") & (rows["tensor"] == "out")]
    assert len(out) and out["note"].str.contains(r"shape mismatch: ours \(3, 5, 5, 1\), expected \(3, 5, 6, 1\)").all()
    failed = rows[(rows["judge"] == "autograd") & (rows["status"] == "fail")]
    assert set(failed["tensor"]) == {"out", "dx", "dW"}  # the bias gradient sums whatever it is given


def test_their_flatten_line_as_it_stands_takes_square_images_only():
    """``pooled.reshape((nf2 * dim2 * dim2, 1))``: one side taken for both, so a non-square image raises."""
    flat = function_layer("Flatten", lambda x: (x.reshape((x.shape[0] * x.shape[1] * x.shape[1], 1)), x.shape),
                          lambda d, shape: d.reshape(shape), per_sample=("CHW", "column"))  # fmt: skip
    cases = cases_of("Flatten", 3)
    rows = judge_all(types_namespace(Flatten=flat), cases, networks={})
    auto = rows[rows["judge"] == "autograd"]
    square = {c.id for c in cases if c.input_shape[1] == c.input_shape[2]}
    assert square and (auto.loc[auto["case"].isin(square), "status"] == "pass").all()
    other = auto[~auto["case"].isin(square)]
    assert len(other) and (other["status"] == "error").all() and other["note"].str.contains("cannot reshape").all()


@pytest.mark.parametrize("bug", [None, P.convolutionBackwardReused], ids=["correct", "conv-gradient-buffers-reused"])
def test_the_network_check_judges_a_network_the_per_image_code_takes(monkeypatch, bug):
    monkeypatch.setattr(P, "_buffers", {})
    if bug is not None:
        monkeypatch.setattr(P, "convolutionBackward", bug)
    rows = FiniteDiffJudge(crosscheck=False).run(Context(load_impl(WRAPPER), "t", [], networks={"tiny": 2})).rows
    default = rows[rows["case"] == "tiny network, 2 images 28x28"]
    assert default["status"].tolist() == ["unsupported"] and "padding must be 'valid'" in default["note"].iloc[0]
    assert "judged instead on a network it runs: every convolution 'valid'" in default["note"].iloc[0]
    searched = rows[rows["case"].str.contains("(searched: every convolution 'valid')", regex=False)]
    assert set(searched["tensor"]) == {"0.W", "0.b", "4.W", "4.b"}
    failed = set(searched.loc[searched["status"] != "pass", "tensor"])
    assert failed == (set() if bug is None else {"0.W"}), searched[["tensor", "status", "note"]]


def test_the_per_image_wrapper_is_judged_through_the_sandbox(tmp_path):
    from reference.cli import main

    case = next(c for c in CONV if c.config.get("bias") and c.input_shape[0] > 1 and not c.lifecycle)
    out = tmp_path / "out"
    assert main(["judge", "--impl", WRAPPER, "--case", case.id, "--out", str(out)]) == 0
    rows = pd.read_csv(out / "autograd.csv")
    assert set(rows["status"]) == {"pass"} and {"dW", "db", "dx"} <= set(rows["tensor"])


# --- the declarations -----------------------------------------------------------------------------------


def types_namespace(**layers):
    """A module holding only ``layers``."""
    import types

    return types.SimpleNamespace(**layers)


def affine_forward(x, w, b):
    """CS231n's affine layer on a batch ``(m, n_in)``; also takes one sample ``(n_in,)``."""
    return x @ w + b, (x, w)


def affine_backward(d, cache):
    x, w = cache
    return d @ w.T, np.outer(x, d) if x.ndim == 1 else x.T @ d, d.sum(axis=0) if d.ndim == 2 else d


def test_a_per_sample_function_layer_sums_the_samples_gradients_and_equals_the_batched_one():
    one, batch = (function_layer("Dense", affine_forward, affine_backward, per_sample=lay) for lay in ("n", None))
    rng = np.random.default_rng(1)
    a, b = one(4, 3, rng=np.random.default_rng(0)), batch(4, 3, rng=np.random.default_rng(0))
    x, d = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    np.testing.assert_allclose(a.forward(x), b.forward(x), rtol=1e-14)
    np.testing.assert_allclose(a.backward(d), b.backward(d), rtol=1e-14)
    for k in ("W", "b"):
        np.testing.assert_allclose(a.grads[k], b.grads[k], rtol=1e-13)
    assert a.backward(d).dtype == np.float64 and a.grads["W"].shape == (4, 3)


@pytest.mark.parametrize("how", ["function", "class"])
def test_a_per_sample_flatten_of_chw_images_is_put_in_the_protocols_order(how):
    class Flat:  # a class that flattens one CHW image into a column, as their training script does
        def forward(self, x):
            self.shape = x.shape
            return x.reshape(-1, 1)

        def backward(self, d):
            return d.reshape(self.shape)

    lay = ("CHW", "column")
    layer = (function_layer("Flatten", lambda x: (x.reshape(-1, 1), x.shape), lambda d, s: d.reshape(s), per_sample=lay)
             if how == "function" else class_layer("Flatten", lambda c: Flat(), per_sample=lay))()  # fmt: skip
    ours, rng = scratch_cnn.Flatten(), np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 5, 2))
    np.testing.assert_array_equal(layer.forward(x), ours.forward(x))
    d = rng.standard_normal((3, 40))
    np.testing.assert_array_equal(layer.backward(d), ours.backward(d))


def test_the_column_layout_is_undone_by_its_inverse_and_a_wrong_shape_is_left_for_the_judges():
    x = np.arange(12.0).reshape(3, 4)
    samples = adapters.samples_to_theirs(x, "column")
    assert samples[0].shape == (4, 1) and np.array_equal(adapters.samples_from_theirs(samples, "column"), x)
    assert adapters.samples_from_theirs([np.zeros((4, 4))] * 3, "column").shape == (3, 4, 4)
    with pytest.raises(NotImplementedError, match="column vectors"):
        adapters.samples_to_theirs(np.zeros((2, 3, 3, 1)), "column")
    with pytest.raises(ValueError, match="per-sample Flatten gives"):
        function_layer("Flatten", lambda x: (x, None), lambda d, c: d, per_sample="CHW")


def test_square_only_and_an_input_predicate_are_declared_limits_checked_at_forward():
    relu = function_layer("ReLU", lambda x: (np.maximum(x, 0), x), lambda d, x: d * (x > 0), supports={"square": True})
    relu().forward(np.zeros((2, 4, 4, 1)))  # square: inside
    relu().forward(np.zeros((2, 5)))  # not an image: nothing to be square
    with pytest.raises(NotImplementedError, match=r"ReLU input \(2, 4, 5, 1\) is outside the declared region: "
                       r"square images only \(H == W\), got H=4, W=5"):  # fmt: skip
        relu().forward(np.zeros((2, 4, 5, 1)))
    even = function_layer("ReLU", lambda x: (x, x), lambda d, x: d,
                          supports={"input": lambda shape: shape[0] % 2 == 0 or "even batches only"})  # fmt: skip
    even().forward(np.zeros((2, 3)))
    with pytest.raises(NotImplementedError, match="even batches only"):
        even().forward(np.zeros((3, 3)))
    conv = function_layer("Conv2D", lambda x, w, b: (x, None), lambda d, c: (d, 0, 0), supports={"square": True})
    conv(1, 1, 3)
    with pytest.raises(NotImplementedError, match=r"stride must be square \(one size for both axes\), got \(1, 2\)"):
        conv(1, 1, 3, stride=(1, 2))


def test_a_loss_with_a_means_value_and_the_sums_gradient_is_the_protocols_loss_once_declared():
    def cost(z, y):  # the batch at once: the mean's value, the sum's gradient p - onehot
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return -np.mean(np.log(p[np.arange(len(y)), y])), p - np.eye(z.shape[1])[y]

    rng = np.random.default_rng(4)
    z, y = rng.standard_normal((5, 3)), rng.integers(0, 3, 5)
    ours = scratch_cnn.SoftmaxCrossEntropy()
    want = ours.forward(z, y)[0], ours.backward()
    one_at_a_time = lambda z, y: (P.categoricalCrossEntropy(P.softmax(z), y), P.softmax(z) - y)  # noqa: E731
    for declared in (loss_function(cost, grad="sum"),
                     loss_function(one_at_a_time, per_sample="column", labels="one_hot", grad="sum")):  # fmt: skip
        got = declared()
        assert np.isclose(got.forward(z, y)[0], want[0], rtol=1e-14)
        np.testing.assert_allclose(got.backward(), want[1], rtol=1e-13)
    undeclared = loss_function(cost)()  # the gradient taken as the mean's: m times too large
    assert np.isclose(undeclared.forward(z, y)[0], want[0], rtol=1e-14)
    np.testing.assert_allclose(undeclared.backward(), 5 * want[1], rtol=1e-13)
    with pytest.raises(ValueError, match="grad='total'"):
        loss_function(cost, grad="total")
