"""The layers courses assign, through the judges: scratch_cnn's pass every judge; each classic bug is
caught and named; a module without them is not blamed for it; CS231n-style code is judged through
its adapters, correct and with the bug students write."""

import pandas as pd
import pytest

from reference.cases.grid import grid, layer_cases, repeatable
from reference.core.verdicts import layer_verdicts
from reference.impl.faults import FAULTS
from reference.impl.protocol import load_impl
from reference.judges.autograd import dtypes_of
from reference.judges.autograd import run_case as autograd_case
from reference.judges.base import Context
from reference.judges.catalogue import leading_diagnosis
from reference.judges.finite_diff import run_case as fd_case
from reference.judges.lifecycle import LifecycleJudge
from reference.judges.optimizers import OptimizerJudge
from reference.judges.optimizers import run_case as optimizer_case
from reference.judges.rules import check_protocol
from reference.layers import OPTIMIZERS, OPTIONAL

GRID = grid()
OWN = {name: [c for c in GRID if c.layer == name and not c.lifecycle] for name in (*OPTIONAL, *OPTIMIZERS)}


def autograd_rows(impl, cases):
    return [r for c in cases for d in dtypes_of(c, ("float64", "float32")) for r in autograd_case(impl, c, d)]


def optimizer_rows(impl, cases):
    return [r for c in cases for d in ("float64", "float32") for r in optimizer_case(impl, c, d)]


def failing(rows):
    return [(r["case"], r["dtype"], r["tensor"], r["note"]) for r in rows if r["status"] != "pass"]


# --- scratch_cnn's own: every judge passes ------------------------------------------------------------


@pytest.mark.parametrize("layer", OPTIONAL)
def test_scratch_cnn_s_course_layers_pass_finite_differences(layer):
    cases = [c for c in OWN[layer] if repeatable(c)][::2]
    rows = [r for c in cases for r in fd_case(load_impl(), c)]
    assert rows and not failing(rows), failing(rows)[:3]


def test_scratch_cnn_s_course_layers_pass_the_lifecycle_and_the_rules():
    ctx = Context(load_impl(), "scratch_cnn", [c for c in GRID if c.layer in OPTIONAL])
    lifecycle = LifecycleJudge().run(ctx).rows
    assert set(lifecycle["layer"]) >= {"BatchNorm1D", "BatchNorm2D", "Sigmoid", "Tanh", "LeakyReLU"}
    assert (lifecycle["status"] == "pass").all(), lifecycle[lifecycle["status"] != "pass"].to_string()
    rules = check_protocol(load_impl(), list(OPTIONAL))
    assert set(rules["layer"]) == set(OPTIONAL) and (rules["status"] == "pass").all(), rules[rules["status"] != "pass"]


def test_scratch_cnn_s_optimisers_follow_torch_optim_step_by_step():
    result = OptimizerJudge().run(Context(load_impl(), "scratch_cnn", GRID))
    rows = result.rows
    assert set(rows["layer"]) == set(OPTIMIZERS) and len(rows) >= 40
    assert (rows["status"] == "pass").all(), rows[rows["status"] != "pass"].to_string()
    verdicts = layer_verdicts(rows).set_index("layer")["verdict"]
    assert (verdicts == "PASS").all(), verdicts


def test_dropout_is_judged_against_its_own_randomness_with_a_stated_binomial_test():
    rows = autograd_rows(load_impl(), [c for c in OWN["Dropout"] if c.config["mode"] == "train"])
    kept = [r for r in rows if r["tensor"] == "kept fraction"]
    assert kept and all(r["status"] == "pass" and "standard deviations" in r["note"] for r in kept)
    assert all(0 <= r["budget"] <= 1 for r in kept)  # the share of the allowed deviation: the gate holds it
    assert {r["tensor"] for r in rows} == {"out", "dx", "kept fraction"} and not failing(rows)


def test_a_dropout_that_keeps_the_wrong_fraction_fails_the_binomial_test():
    import scratch_cnn

    class KeepsTooMany(scratch_cnn.Dropout):  # p read as the probability of keeping, not of dropping
        def forward(self, x):
            p, self.p = self.p, 1 - self.p
            try:
                return super().forward(x)
            finally:
                self.p = p

    impl = type("M", (), {"Dropout": KeepsTooMany})
    cases = [c for c in OWN["Dropout"] if c.config["mode"] == "train" and c.config["p"] != 0.5]
    kept = [r for r in autograd_rows(impl, cases) if r["tensor"] == "kept fraction"]
    assert kept and all(r["status"] == "fail" and r["budget"] > 1 for r in kept)


# --- each classic bug caught and named --------------------------------------------------------------

NAMED = {  # fault -> words its leading diagnosis must hold
    "sigmoid_overflowing": "non-finite",
    "sigmoid_grad_overflowing": "non-finite",
    "tanh_grad_from_input": "(grad_from_input)",
    "leaky_relu_grad_one_at_zero": "LeakyReLU'(0) taken as 1",
    "mse_summed": "x ref",
    "dropout_not_rescaled": "(not_rescaled)",
    "dropout_rescaled_by_p": "(rescaled_by_p)",
    "dropout_in_eval": "(mask_in_eval)",
    "dropout_fresh_mask_in_backward": "(fresh_mask_in_backward)",
    **{
        f"batchnorm{d}_{w}": f"({w})"
        for d in ("1d", "2d")
        for w in (
            "unbiased_variance",
            "eps_outside_sqrt",
            "dgamma_wrong_axes",
            "constant_statistics",
            "eval_uses_batch_stats",
            "running_var_biased",
        )
    },  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_every_course_layer_fault_is_caught_and_named(name):
    fault = next(f for f in FAULTS if f.name == name)
    rows = autograd_rows(fault.impl(), OWN[fault.layer])
    assert failing(rows), f"{name} was not caught"
    assert NAMED[name] in leading_diagnosis(rows), leading_diagnosis(rows)


@pytest.mark.parametrize("fault", [f for f in FAULTS if f.layer in OPTIMIZERS], ids=lambda f: f.name)
def test_every_optimiser_fault_is_caught_step_by_step_and_named(fault):
    rows = optimizer_rows(fault.impl(), OWN[fault.layer])
    bad = [r for r in rows if r["status"] != "pass"]
    assert bad and all("first off after step" in r["note"] for r in bad)
    variant = {"adam_without_bias_correction": "no_bias_correction", "adam_eps_inside_sqrt": "eps_inside_sqrt",
               "adam_step_not_advanced": "t_not_advanced", "rmsprop_no_momentum_buffer": "no_momentum_buffer"}[fault.name]  # fmt: skip
    assert f"({variant})" in leading_diagnosis(rows)


# --- a module without them ----------------------------------------------------------------------------


def test_a_module_without_the_course_layers_is_not_blamed_for_them():
    from reference.judges.base import case_rows

    impl = load_impl("tests.impls.cs231n_protocol")  # the blog's seven, nothing else
    ctx = Context(impl, "cs231n", [c for c in layer_cases(GRID) if c.layer in OPTIONAL])
    rows = case_rows(ctx, "autograd", ctx.cases, lambda c: autograd_case(impl, c, "float64"), "autograd")
    assert rows.empty
    assert set(check_protocol(impl, list(OPTIONAL))["layer"]) <= set()
    assert OptimizerJudge().run(Context(impl, "cs231n", GRID)).rows.empty


# --- CS231n's style, through its adapters ---------------------------------------------------------------


def course_impl(**replaced):
    """tests.impls.cs231n_course_protocol with some classes rebuilt around other functions."""
    from reference.impl.course_adapters import batchnorm_functions, dropout_functions, update_rule
    from tests.impls import cs231n_course as L
    from tests.impls import cs231n_course_protocol as P

    built = {"BatchNorm1D": lambda f, b: batchnorm_functions("BatchNorm1D", f, b),
             "BatchNorm2D": lambda f, b: batchnorm_functions("BatchNorm2D", f, b, layout="NCHW"),
             "Dropout": lambda f, b: dropout_functions(f, b), "Adam": lambda rule: update_rule("Adam", rule, P.adam_config)}  # fmt: skip
    names = {k: getattr(P, k) for k in ("BatchNorm1D", "BatchNorm2D", "Dropout", "Adam")}
    names.update({k: built[k](*(getattr(L, f) for f in fns)) for k, fns in replaced.items()})
    return type("CourseModule", (), names)


def test_cs231n_style_batch_norm_dropout_and_adam_pass_through_their_adapters():
    impl = load_impl("tests.impls.cs231n_course_protocol")
    for layer in ("BatchNorm1D", "BatchNorm2D", "Dropout"):
        rows = autograd_rows(impl, OWN[layer])
        assert rows and not failing(rows), (layer, failing(rows)[:3])
    bn = pd.DataFrame(autograd_rows(impl, OWN["BatchNorm1D"]))
    assert bn["convention"].dropna().str.contains("biased batch variance").any()  # CS231n's running variance, named
    opt = pd.DataFrame(optimizer_rows(impl, OWN["Adam"]))
    assert (opt["status"] == "unsupported").any() and set(opt["status"]) == {"pass", "unsupported"}  # no weight decay


def test_a_declared_running_variance_convention_is_held_to():
    from reference.impl.course_adapters import batchnorm_functions
    from tests.impls import cs231n_course as L

    says_unbiased = batchnorm_functions(
        "BatchNorm1D", L.batchnorm_forward, L.batchnorm_backward, running_var="unbiased"
    )
    rows = autograd_rows(type("M", (), {"BatchNorm1D": says_unbiased}), OWN["BatchNorm1D"])
    assert {t for _, _, t, _ in failing(rows)} == {"running_var"}


@pytest.mark.parametrize(
    "replaced, layer, words",
    [
        ({"BatchNorm1D": ("batchnorm_forward", "batchnorm_backward_no_dvar")}, "BatchNorm1D", ""),
        (
            {"BatchNorm2D": ("spatial_batchnorm_forward_reshaped", "spatial_batchnorm_backward_reshaped")},
            "BatchNorm2D",
            "",
        ),
        ({"Dropout": ("dropout_forward_unscaled", "dropout_backward")}, "Dropout", "(not_rescaled)"),
    ],
)
def test_cs231n_style_bugs_are_caught(replaced, layer, words):
    rows = autograd_rows(course_impl(**replaced), OWN[layer])
    assert failing(rows) and words in leading_diagnosis(rows)


def test_cs231n_style_adam_without_bias_correction_is_caught_and_named():
    rows = optimizer_rows(course_impl(Adam=("adam_no_bias_correction",)), OWN["Adam"])
    assert failing(rows) and "(no_bias_correction)" in leading_diagnosis(rows)


def test_the_adapters_refuse_what_they_do_not_know():
    from reference.impl.course_adapters import batchnorm_functions, dropout_functions

    with pytest.raises(ValueError, match="layout is 'NHWC' or 'NCHW'"):
        batchnorm_functions("BatchNorm2D", print, print, layout="HWCN")
    with pytest.raises(ValueError, match="keep is 'p'"):
        dropout_functions(print, print, keep="q")


# --- the gradebook: a column for a course layer some submission has, points only where asked -------------


def test_a_course_layer_in_the_class_gets_a_column_and_points_only_where_asked():
    from types import SimpleNamespace

    from reference.grade.gradebook import gradebook_row, parse_points, present_kinds

    def judged(verdicts):
        table = pd.DataFrame({"layer": list(verdicts), "verdict": list(verdicts.values()), "why": "",
                              "rows_pass": [10] * len(verdicts)})  # fmt: skip
        return {"files": {"verdicts.csv": table.to_csv(index=False).encode()}, "exit_code": 0}

    blog = dict.fromkeys(
        ("Conv2D", "ReLU", "MaxPool2D", "AvgPool2D", "Flatten", "Dense", "SoftmaxCrossEntropy"), "PASS"
    )
    with_bn = judged({**blog, "BatchNorm2D": "FAIL"})
    without = judged(blog)
    assert present_kinds([with_bn, without]) == ["BatchNorm2D"]
    sub = lambda i: SimpleNamespace(id=i, problem="", files=[], sha256="", dropped=[])  # noqa: E731
    shown = {**parse_points(None), "BatchNorm2D": 0.0}  # what grade does when nobody gave it points
    plain = gradebook_row(sub("a"), without, shown)
    assert plain["BatchNorm2D"] == "MISSING" and plain["score"] == plain["max_score"] == 7
    graded = parse_points("BatchNorm2D=2")
    assert graded["BatchNorm2D"] == 2 and gradebook_row(sub("b"), with_bn, graded)["score"] == 7
    with pytest.raises(ValueError, match="course layer"):
        parse_points("Softmax=2")
