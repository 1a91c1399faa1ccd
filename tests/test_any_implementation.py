"""The judges on code we did not write: another layout and style through the adapters, partial
implementations, and the bugs real from-scratch code has, each caught by a named case."""

import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import scratch_cnn
from reference.cases.grid import grid, sample
from reference.cli import main
from reference.core.verdicts import exit_code, layer_verdicts
from reference.impl.adapters import Conventions, class_layer
from reference.impl.faults import _impl
from reference.impl.protocol import ImplError, load_impl
from reference.judges.autograd import AutogradJudge
from reference.judges.base import Context
from reference.judges.finite_diff import FiniteDiffJudge
from reference.judges.finite_diff import run_case as fd_case
from reference.judges.lifecycle import LifecycleJudge
from reference.judges.rules import ProtocolJudge, check_protocol, protocol_lines

QUICK = sample(grid(), 0.25)
JUDGES = (ProtocolJudge(), AutogradJudge(), FiniteDiffJudge(crosscheck=False), LifecycleJudge())


def judge_all(impl, cases=QUICK, networks=None):
    ctx = Context(impl, "test", cases, networks={"tiny": 2} if networks is None else networks)
    return pd.concat([j.run(ctx).rows for j in JUDGES], ignore_index=True)


def verdicts(rows):
    return dict(zip(*layer_verdicts(rows)[["layer", "verdict"]].T.values, strict=True))


def write_module(tmp_path, monkeypatch, name, source):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)
    return tmp_path / f"{name}.py"


# --- another layout and style, correct: it passes --------------------------------------------------


def test_a_cs231n_style_nchw_implementation_passes_end_to_end_through_the_adapters():
    # every sampled case but the built-in networks' full-size layers, which its loop convolution takes minutes over
    rows = judge_all(load_impl("tests.impls.cs231n_protocol"), [c for c in QUICK if not c.network_layer])
    # its one finding: softmax_loss indexes probs[range(m), y] unchecked, so a label -1 is scored as the last class
    unchecked = (rows["case"] == "labels outside [0, K) refused") & (rows["status"] == "fail")
    assert unchecked.sum() == 1 and "label -1" in rows.loc[unchecked, "note"].iloc[0]
    rows = rows[~unchecked]
    assert set(rows["status"]) <= {"pass", "unsupported"}, rows[~rows.status.isin(["pass", "unsupported"])].head()
    v = verdicts(rows)
    assert all(v[layer] == "PASS" for layer in ("Conv2D", "ReLU", "MaxPool2D", "AvgPool2D", "Flatten", "Dense"))
    unsupported = rows[rows["status"] == "unsupported"]
    # declared limits, named; and softmax_loss returns no probabilities, so none are judged (never rebuilt)
    assert len(unsupported) and unsupported["note"].str.contains("NotImplementedError|gives no probabilities").all()
    assert set(unsupported.loc[unsupported["note"].str.contains("probabilities"), "tensor"]) == {"probs"}
    assert exit_code(rows, strict=False) == 0 and exit_code(rows, strict=True) == 1


class ColumnMajorDense:
    """Andrew Ng's course style: W (n_out, n_in), x (n_in, m), b (n_out, 1), dW carrying 1/m."""

    def __init__(self, n_in, n_out):
        self.W, self.b = np.random.default_rng(1).standard_normal((n_out, n_in)), np.zeros((n_out, 1))

    def forward(self, x):
        self.x = x
        return self.W @ x + self.b

    def backward(self, dz):
        m = self.x.shape[1]
        self.dW, self.db = dz @ self.x.T / m, dz.sum(axis=1, keepdims=True) / m
        return self.W.T @ dz


def test_a_column_major_class_with_out_in_weights_and_grads_carrying_1_over_m_passes():
    style = Conventions(dense_weight="out_in", dense_x="columns", bias="column", param_grads="carry_1/m")

    def build(c):
        if not c.bias:  # the course's layer always has a bias: declared, so bias=False is unsupported, not ignored
            raise NotImplementedError("this Dense always has a bias")
        return ColumnMajorDense(c.n_in, c.n_out)

    dense = class_layer("Dense", build, conventions=style, params={"W": "W", "b": "b"}, grads={"W": "dW", "b": "db"})
    cases = [c for c in grid() if c.layer == "Dense" and c.config["bias"]]
    rows = judge_all(_impl(Dense=dense), cases, networks={})
    declared = rows["case"] == "params and grads, bias=False"
    assert rows.loc[declared, "status"].tolist() == ["unsupported"]
    assert len(rows) > 40 and (rows.loc[~declared, "status"] == "pass").all(), rows[rows.status != "pass"].head()


# --- partial implementations --------------------------------------------------------------------


def test_a_partial_implementation_is_judged_for_what_it_has_and_the_rest_is_missing(tmp_path, monkeypatch, capsys):
    write_module(tmp_path, monkeypatch, "conv_relu_only", "from scratch_cnn import Conv2D, ReLU\n")
    out = tmp_path / "report"
    assert main(["judge", "--impl", "conv_relu_only", "--quick", "--out", str(out)]) == 0
    v = pd.read_csv(out / "verdicts.csv").set_index("layer")["verdict"].to_dict()
    assert v["Conv2D"] == "PASS" and v["ReLU"] == "PASS"
    assert {v[k] for k in ("MaxPool2D", "AvgPool2D", "Flatten", "Dense", "SoftmaxCrossEntropy")} == {"MISSING"}
    assert "training: not judged (the module has no SGD)" in capsys.readouterr().out
    assert (out / "summary.md").is_file() and (out / "index.html").is_file()
    assert main(["judge", "--impl", "conv_relu_only", "--quick", "--strict", "--out", str(out)]) == 1


def test_a_module_with_nothing_to_judge_or_that_does_not_import_is_one_clear_error(tmp_path, monkeypatch):
    write_module(tmp_path, monkeypatch, "empty_impl", "import numpy\n")
    with pytest.raises(ImplError, match="defines none of the protocol's classes"):
        load_impl("empty_impl")
    with pytest.raises(ImplError, match="no such file"):
        load_impl(str(tmp_path / "nope.py"))


def test_an_implementation_given_as_a_file_path_outside_sys_path_is_loaded(tmp_path):
    (tmp_path / "helpers.py").write_text("from scratch_cnn import ReLU as MyReLU\n")
    (tmp_path / "layers.py").write_text("from helpers import MyReLU as ReLU\n")  # a sibling import
    assert load_impl(str(tmp_path / "layers.py")).ReLU is scratch_cnn.ReLU


class EvenOnlyMaxPoolEveryTie(scratch_cnn.MaxPool2D):
    """A blog's max pool: 2x2/2 on even sides only (declared), gradient to every near-maximum."""

    def forward(self, x):
        if self.kernel_size != (2, 2) or self.stride != (2, 2) or x.shape[1] % 2 or x.shape[2] % 2:
            raise NotImplementedError("only 2x2 windows with stride 2 on even sides")
        self.x, out = x, super().forward(x)
        self.out = out
        return out

    def backward(self, dout):
        big = np.repeat(np.repeat(self.out, 2, axis=1), 2, axis=2)
        mask = np.isclose(self.x, big)  # every tied (and nearly tied) maximum gets the gradient
        return mask * np.repeat(np.repeat(dout, 2, axis=1), 2, axis=2)


class PoolFixedChannels(scratch_cnn.AvgPool2D):
    """Allocates its output for the channel count of the first call, once."""

    def forward(self, x):
        if not hasattr(self, "channels"):
            self.channels = x.shape[3]
        return super().forward(x[..., : self.channels])


class ReLUFlattening(scratch_cnn.ReLU):
    """Reshapes its input to 2-D 'for speed' and never back."""

    def forward(self, x):
        return super().forward(x.reshape(x.shape[0], -1) if x.ndim != 2 else x)


class ReLUOneDimToTwo(scratch_cnn.ReLU):
    """Treats a vector as a batch of one row: the 1-D input comes back 2-D."""

    def forward(self, x):
        return super().forward(x.reshape(1, -1) if x.ndim == 1 else x)


class DenseAccumulating(scratch_cnn.Dense):
    """Adds each backward's gradients to the last ones (the zero_grad the user forgot)."""

    def backward(self, dout):
        old = {k: v.copy() for k, v in self.grads.items()}
        dx = super().backward(dout)
        self.grads = {k: v + old.get(k, 0) for k, v in self.grads.items()}
        return dx


class ConvStaleInput(scratch_cnn.Conv2D):
    """Keeps the first input it saw for every later backward."""

    def forward(self, x):
        self.first = getattr(self, "first", x)
        out = super().forward(self.first if self.first.shape == x.shape else x)
        return super().forward(x) if self.first is x else out


class DenseParamsCopies:
    """A user's own Dense: correct maths, but `params` a property that returns copies."""

    def __init__(self, n_in, n_out, bias=True, *, rng=None, dtype=np.float64):
        rng = rng if rng is not None else np.random.default_rng()
        self.W = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
        self.b = np.zeros(n_out, dtype=dtype) if bias else None
        self.grads = {}

    @property
    def params(self):
        return {"W": self.W.copy(), **({"b": self.b.copy()} if self.b is not None else {})}

    def forward(self, x):
        self.x = x
        return x @ self.W + (self.b if self.b is not None else 0)

    def backward(self, dout):
        self.grads = {"W": self.x.T @ dout, **({"b": dout.sum(axis=0)} if self.b is not None else {})}
        return dout @ self.W.T


class LossClamped(scratch_cnn.SoftmaxCrossEntropy):
    """-log(p + eps) in the forward; the textbook (p - onehot) / m gradient in the backward."""

    def forward(self, logits, labels):
        loss, probs = super().forward(logits, labels)
        m = len(labels)
        return float(-np.log(probs[np.arange(m), labels] + 1e-4).mean()), probs


@pytest.mark.parametrize(
    "bug, layer, judge, caught_by",
    [
        (EvenOnlyMaxPoolEveryTie, "MaxPool2D", "autograd", "near_ties"),  # judged on the even sides it takes
        (PoolFixedChannels, "AvgPool2D", "lifecycle", "then x3x6x8x5"),  # round 2 brings 5 channels
        (ReLUFlattening, "ReLU", "autograd", "x2x3x5"),
        (ReLUOneDimToTwo, "ReLU", "autograd", "ReLU[] x7 "),  # the rank-1 cases
        (DenseAccumulating, "Dense", "lifecycle", "then x3x6"),
    ],
    ids=[
        "maxpool-every-tie-even-only",
        "pool-fixed-channels",
        "relu-breaks-rank",
        "relu-1d-to-2d",
        "dense-accumulates",
    ],
)
def test_a_real_bug_is_caught_by_a_named_case(bug, layer, judge, caught_by):
    rows = judge_all(_impl(**{layer: bug}), [c for c in grid() if c.layer == layer], networks={})
    bad = rows[rows["status"].isin(["fail", "error"]) & (rows["judge"] == judge)]
    assert bad["case"].str.contains(caught_by, regex=False).any(), bad[["case", "tensor", "note"]].head()
    assert verdicts(rows)[layer] == "FAIL"


def test_the_even_only_pool_is_judged_on_ties_and_its_limits_are_unsupported_not_failed():
    rows = judge_all(_impl(MaxPool2D=EvenOnlyMaxPoolEveryTie), [c for c in grid() if c.layer == "MaxPool2D"], {})
    auto = rows[rows["judge"] == "autograd"]
    judged_tie_cases = auto[auto["status"].isin(["pass", "fail"]) & (auto["ties"] > 0)]
    assert judged_tie_cases["case"].nunique() >= 4
    assert (auto["status"] == "unsupported").sum() > 50 and not (auto["status"] == "error").any()


def test_accumulated_gradients_and_a_stale_input_are_explained():
    rows = LifecycleJudge().run(Context(_impl(Dense=DenseAccumulating, Conv2D=ConvStaleInput), "t", grid())).rows
    dense = rows[(rows.layer == "Dense") & (rows.status == "fail")]
    assert dense["diagnosis"].str.contains("accumulate across calls").any()
    conv = rows[(rows.layer == "Conv2D") & (rows.status != "pass")]
    assert len(conv) and conv["diagnosis"].str.contains("repeats round 1").any()


def test_params_returning_copies_is_named_at_load_not_reported_as_a_maths_bug(tmp_path, monkeypatch, capsys):
    lines = protocol_lines(check_protocol(_impl(Dense=DenseParamsCopies)))
    assert lines == [
        "protocol: Dense: FAIL params are live: params['W'][...] = 0 does not read back as zeros: "
        "`params` returns copies, so nothing written into it reaches the layer"
    ]
    rows = (
        AutogradJudge().run(Context(_impl(Dense=DenseParamsCopies), "t", [c for c in QUICK if c.layer == "Dense"])).rows
    )
    assert (rows["status"] == "error").all() and rows["note"].str.contains("params\\['W'\\] is not live").all()


def test_a_clamped_loss_is_attributed_to_its_forward():
    case = next(c for c in grid() if c.layer == "SoftmaxCrossEntropy" and c.values == "noise" and c.input_shape[0] > 1)
    row = fd_case(_impl(SoftmaxCrossEntropy=LossClamped), case)[0]
    assert row["status"] == "fail" and row["attribution"] == "forward"


def test_grads_cleared_by_forward_and_a_dtype_change_are_one_line_each():
    class ClearsGrads(scratch_cnn.Conv2D):
        def forward(self, x):
            self.grads = {}
            return super().forward(x)

    class Upcasts(scratch_cnn.ReLU):
        def forward(self, x):
            return super().forward(x).astype(np.float64)

    lines = protocol_lines(check_protocol(_impl(Conv2D=ClearsGrads, ReLU=Upcasts)))
    assert any(line.startswith("protocol: Conv2D: FAIL grads survive a later forward") for line in lines)
    assert any(line.startswith("protocol: ReLU: FAIL dtype kept, float32: out is float64") for line in lines)


def test_an_erroring_implementation_still_gets_every_report_and_counts_each_case_once(tmp_path, monkeypatch):
    write_module(tmp_path, monkeypatch, "always_raises", """
        import scratch_cnn
        from scratch_cnn import *
        class Conv2D(scratch_cnn.Conv2D):
            def forward(self, x):
                raise RuntimeError("boom")
    """)  # fmt: skip
    out = tmp_path / "report"
    assert main(["finite-diff", "--impl", "always_raises", "--quick", "--layers", "Conv2D", "--out", str(out)]) == 1
    df = pd.read_csv(out / "finite_diff.csv")
    assert (df["status"] == "error").all() and df["note"].str.contains(
        "RuntimeError: boom \\(at always_raises.py:"
    ).all()
    assert df["case"].is_unique  # one row per case: no adjoint row counted twice
    assert (out / "finite_diff_gradcheck.csv").is_file() and (out / "finite_diff.md").is_file()


def test_a_weak_verdict_when_a_pool_never_met_a_tie():
    no_ties = [c for c in grid() if c.layer == "MaxPool2D" and c.values == "noise" and not c.lifecycle]
    rows = judge_all(scratch_cnn, no_ties, networks={})
    assert verdicts(rows)["MaxPool2D"] == "weak"


def test_one_case_reruns_alone_and_a_wrong_case_id_is_named(tmp_path, capsys):
    case = next(c for c in grid() if c.layer == "ReLU" and c.values == "zeros")
    assert main(["judge", "--case", case.id, "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "autograd.csv")
    assert set(df["case"]) == {case.id}
    assert main(["judge", "--case", case.id + "x", "--out", str(tmp_path)]) == 2
    assert "did you mean" in capsys.readouterr().err


class IntOnlyConv(scratch_cnn.Conv2D):
    """A blog's convolution: ints only, and it says so."""

    def __init__(self, in_ch, out_ch, kernel_size, stride=1, padding="same", bias=True, **kw):
        if any(isinstance(v, (tuple, list)) for v in (kernel_size, stride, padding)):
            raise NotImplementedError("kernel_size, stride and padding are ints here")
        super().__init__(in_ch, out_ch, kernel_size, stride, padding, bias, **kw)


def test_the_whole_network_check_passes_an_int_only_layer_the_int_form_of_each_config():
    from reference.judges.finite_diff import network_rows

    rows = network_rows(_impl(Conv2D=IntOnlyConv), "tiny", 2)
    assert rows and all(r["status"] == "pass" for r in rows), [(r["tensor"], r["note"]) for r in rows]


def test_a_relu_computed_in_place_on_its_input_is_named_by_the_protocol():
    class InPlaceReLU(scratch_cnn.ReLU):
        def forward(self, x):
            out = super().forward(x)
            np.maximum(x, 0, out=x)  # "saves memory"
            return out

    lines = protocol_lines(check_protocol(_impl(ReLU=InPlaceReLU)))
    assert lines == [
        "protocol: ReLU: FAIL inputs left unchanged: x modified in place by forward: a layer must not write into "
        "arrays it is given (the previous layer may still hold them)"
    ]


class ConvFastFirstLayerForgetsBias(scratch_cnn.Conv2D):
    """A user's fast path for the first layer: dW from the cached patches, no dx, and the bias forgotten."""

    def backward_params(self, dout):
        cols = self._recall(dout).cols
        self.grads["W"] = (cols.T @ dout.reshape(-1, self.out_ch)).reshape(self.params["W"].shape)


def test_a_backward_params_that_leaves_a_stale_gradient_is_named_by_the_protocol():
    assert protocol_lines(check_protocol(_impl(Conv2D=ConvFastFirstLayerForgetsBias), ["Conv2D"])) == [
        "protocol: Conv2D: FAIL backward_params agrees with backward: grads ['b'] after backward_params differ from "
        "backward's for the same forward (networks call backward_params on their first layer in training, so a "
        "training run would use these)"
    ]
    ours = check_protocol(scratch_cnn, ["Conv2D", "Dense", "ReLU"])
    agrees = ours[ours["case"] == "backward_params agrees with backward"]
    assert list(agrees["layer"]) == ["Conv2D", "Dense"] and (agrees["status"] == "pass").all()  # ReLU: no params
