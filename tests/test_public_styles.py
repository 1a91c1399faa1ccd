"""The styles of two public from-scratch CNNs, written here in our own code (issue 19, item 8): NHWC
loop layers whose ``backpropagate(dZ, learning_rate)`` updates the weights inside and whose weights
appear at the first forward (``tests/impls/style_stein.py``), and NCHW course modules whose backward
returns None and leaves ``self.dx``, ``self.dw``, ``self.db`` (``tests/impls/style_gatech.py``). Each
wraps in at most 15 lines, passes every layer it has where it is right, and fails, on the case and
tensor that show it, with each bug such code has."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reference.impl.adapters import Conventions, class_layer
from reference.impl.protocol import load_impl
from tests.impls import style_gatech, style_stein
from tests.test_adapter_styles import cases_of, failing, lifecycle, pools, wrapping_lines
from tests.test_any_implementation import judge_all, verdicts

IMPLS = Path(__file__).parent / "impls"

CONV = [
    *cases_of("Conv2D", 6, small=100),
    *cases_of("Conv2D", 2, small=100, padding=["valid"]),
    *cases_of("Conv2D", 1, small=150, padding=["same"], kernel_size=[3]),
]


@pytest.mark.parametrize("wrapper", ["style_stein_protocol", "style_gatech_protocol"])
def test_each_public_style_wraps_in_at_most_15_lines(wrapper):
    assert 3 <= wrapping_lines(IMPLS / f"{wrapper}.py") <= 15


# --- NHWC loops, the update inside backpropagate, weights drawn at the first forward, float64 ---------

STEIN = [
    *CONV,
    *pools("MaxPool2D")[:4],
    *pools("AvgPool2D")[2:4],
    *cases_of("ReLU", 4),
    *cases_of("Flatten", 2),
    *cases_of("SoftmaxCrossEntropy", 6),
    *lifecycle("Conv2D")[:1],
]


def test_the_stein_style_passes_every_layer_it_has_and_its_loss_clip_is_named():
    impl = load_impl("tests.impls.style_stein_protocol")
    rows = judge_all(impl, STEIN, networks={})
    v = verdicts(rows[~rows["case"].str.contains("large")])
    assert all(v[layer] == "PASS" for layer in ("Conv2D", "MaxPool2D", "AvgPool2D", "ReLU", "Flatten")), v
    assert v["SoftmaxCrossEntropy"] == "PASS" and not hasattr(impl, "Dense")  # its bias is W's last column
    # its one failure: the loss on probabilities clipped at 1e-15 (the style's), only where p[label] underflows
    bad = failing(rows, rows["layer"])
    assert len(bad) and (bad["layer"] == "SoftmaxCrossEntropy").all() and bad["case"].str.contains("large").all()
    auto = bad[bad["judge"] == "autograd"]
    assert set(auto["tensor"]) == {"loss"} and auto["diagnosis"].str.contains("clip\\(p\\[label\\], 1e-15").all()
    # float64 throughout (np.zeros without dtype): declared, so float32 is not judged and says why
    f32 = rows[(rows["dtype"] == "float32") & (rows["layer"] != "SoftmaxCrossEntropy")]
    assert len(f32) and (f32["status"] == "unsupported").all()
    assert f32["note"].str.contains("declared float64_only|outside the declared region|not square").all()
    # the weights made at the first forward are the ones the judges write: a conv case of every padding passed
    passed = rows[(rows["judge"] == "autograd") & (rows["layer"] == "Conv2D") & (rows["status"] == "pass")]
    assert all(
        passed["case"].str.contains(p, regex=False).any() for p in ("padding=valid", "padding=same", "padding=1,")
    )


@pytest.mark.parametrize(
    "name, bug, layer, tensor, diagnosis",
    [
        ("ConvLayer", style_stein.ConvLayerBiasInLoop, "Conv2D", "out", None),
        ("PoolLayer_Max", style_stein.PoolLayer_MaxEveryTie, "MaxPool2D", "dx", "every tied maximum"),
    ],
    ids=["conv-bias-added-inside-the-innermost-loop", "maxpool-every-tie"],
)
def test_a_stein_style_bug_is_caught_on_the_tensor_that_shows_it(monkeypatch, name, bug, layer, tensor, diagnosis):
    monkeypatch.setattr(style_stein, name, bug)  # the wrapper's lambdas look the class up at each construction
    rows = judge_all(load_impl("tests.impls.style_stein_protocol"), [c for c in STEIN if c.layer == layer], networks={})
    bad = failing(rows, layer)
    auto = bad[(bad["judge"] == "autograd") & (bad["tensor"] == tensor) & (bad["dtype"] == "float64")]
    assert verdicts(rows)[layer] == "FAIL" and len(auto), bad[["judge", "case", "tensor", "note"]]
    assert (auto["status"] == "fail").all()
    if diagnosis:  # only where a window holds a tie
        assert auto["diagnosis"].str.contains(diagnosis).all() and (auto["ties"] > 0).all()
    else:  # every output gets every filter's bias, oh*ow times over: the outputs, not the gradients, are wrong
        assert set(bad[bad["judge"] == "autograd"]["tensor"]) == {"out"}
        assert not auto["diagnosis"].str.contains("constant factor|dtype").any()


# --- NCHW modules whose backward returns None and leaves self.dx, self.dw, self.db ---------------------

GATECH = [
    *CONV,
    *pools("MaxPool2D")[:4],
    *cases_of("ReLU", 4),
    *cases_of("Dense", 4),
    *lifecycle("Conv2D")[:1],
    *lifecycle("Dense")[:1],
]


def test_the_gatech_style_passes_every_layer_it_has_in_both_dtypes():
    rows = judge_all(load_impl("tests.impls.style_gatech_protocol"), GATECH, networks={})
    assert not failing(rows, rows["layer"]).size, failing(rows, rows["layer"])[["layer", "case", "tensor", "note"]]
    v = verdicts(rows)
    assert all(v[layer] == "PASS" for layer in ("Conv2D", "MaxPool2D", "ReLU", "Dense")), v
    impl = load_impl("tests.impls.style_gatech_protocol")
    assert not any(hasattr(impl, layer) for layer in ("AvgPool2D", "Flatten", "SoftmaxCrossEntropy"))
    judged = rows[(rows["judge"] == "autograd") & (rows["status"] == "pass")]
    assert {"float32", "float64"} <= set(judged["dtype"]) and judged["tensor"].isin(["dW", "db"]).any()


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_a_conv_dx_cropped_with_p_minus_p_is_empty_at_padding_zero_only(monkeypatch, padding):
    monkeypatch.setattr(style_gatech, "Conv2D", style_gatech.Conv2DCropped)
    cases = [c for c in CONV if c.config["padding"] == padding and c.config["bias"]]
    rows = judge_all(load_impl("tests.impls.style_gatech_protocol"), cases, networks={})
    if padding == "same":  # p = 1 for a 3x3 kernel: [1:-1] is the right crop
        assert not failing(rows, "Conv2D").size and verdicts(rows)["Conv2D"] == "PASS"
        return
    bad = failing(rows, "Conv2D")
    auto = bad[bad["judge"] == "autograd"]
    assert verdicts(rows)["Conv2D"] == "FAIL" and set(auto["tensor"]) == {"dx"}
    assert auto["note"].str.contains(r"shape mismatch: ours \(\d+, 0, 0, 1\), expected").all()
    assert bad[bad["judge"] == "finite_diff"]["note"].str.contains("dx \\(\\d+, 0, 0, 1\\)|gradient shape").any()


def test_a_conv_dx_allocated_in_float64_fails_float32_only_and_is_named_a_dtype_promotion(monkeypatch):
    monkeypatch.setattr(style_gatech, "Conv2D", style_gatech.Conv2DFloat64)
    rows = judge_all(
        load_impl("tests.impls.style_gatech_protocol"), [c for c in GATECH if c.layer == "Conv2D"], networks={}
    )
    bad = failing(rows, "Conv2D")
    auto = bad[bad["judge"] == "autograd"]
    assert len(auto) and set(auto["dtype"]) == {"float32"} and set(auto["tensor"]) == {"dx"}
    assert auto["note"].str.contains("dtype mismatch: ours float64, expected float32").all()
    assert auto["diagnosis"].str.contains("dtype promotion").all()
    rule = rows[(rows["judge"] == "protocol") & (rows["case"] == "dtype kept, float32")]
    assert rule["status"].tolist() == ["fail"] and "dx is float64" in rule["note"].iloc[0]


def test_a_backward_that_returns_none_is_read_from_its_attributes_by_one_declaration():
    dense = class_layer("Dense", lambda c: style_gatech.Linear(c.n_in, c.n_out), conventions=Conventions(),
                        backward=lambda layer, d: (layer.backward(d), layer.dx)[1],
                        params={"W": "weight", "b": "bias"}, grads={"W": "dw", "b": "db"})(3, 2)  # fmt: skip
    rng = np.random.default_rng(0)
    x, d = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    dense.forward(x)
    dx = dense.backward(d)
    np.testing.assert_allclose(dx, d @ dense.params["W"].T, rtol=1e-14)
    np.testing.assert_allclose(dense.grads["W"], x.T @ d, rtol=1e-14)
    np.testing.assert_allclose(dense.grads["b"], d.sum(axis=0), rtol=1e-14)
    assert np.shares_memory(dense.params["W"], dense.inner.weight)  # the live array, not a copy


def test_the_stein_style_through_the_sandbox_keeps_its_first_forward_weights_and_its_captured_update(tmp_path):
    from reference.cli import main

    case = next(c for c in CONV if c.config["padding"] == "same" and c.config["kernel_size"] == 3)
    out = tmp_path / "out"
    main(["judge", "--impl", "tests.impls.style_stein_protocol", "--case", case.id, "--out", str(out)])
    rows = pd.read_csv(out / "autograd.csv")
    assert set(rows.loc[rows["dtype"] == "float64", "status"]) == {"pass"}
    assert set(rows.loc[rows["dtype"] == "float64", "tensor"]) >= {"out", "dx", "dW", "db"}
    assert (rows.loc[rows["dtype"] == "float32", "status"] == "unsupported").all()
