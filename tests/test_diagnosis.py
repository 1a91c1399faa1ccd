"""Diagnoses: each hypothesis on its own evidence, every fault of the catalogue explained as expected,
and a correct implementation explained by nothing (it has nothing to explain)."""

import numpy as np
import pytest

import scratch_cnn
from reference.cases.grid import Case, case_inputs, grid, layer_cases, repeatable, upstream_gradient
from reference.core import diagnosis as dg
from reference.impl.faults import CURVE_FAULTS, FAULTS_BY_NAME
from reference.judges.autograd import dtypes_of
from reference.judges.autograd import run_case as autograd_case
from reference.judges.catalogue import leading_diagnosis
from reference.judges.curves import lockstep_verdict, run_lockstep
from reference.judges.finite_diff import run_case as fd_case
from tests.test_train import fake_mnist

RNG = np.random.default_rng(0)
REF = RNG.standard_normal((3, 4, 4, 2))


def ev(ours, ref=REF, **kw):
    kw.setdefault("layer", "Conv2D")
    kw.setdefault("tensor", "dW")
    return dg.Evidence(kw.pop("layer"), kw.pop("tensor"), ours, ref, **kw)


# --- each hypothesis alone: it fires on its bug and stays silent on the right answer -----------------


def test_constant_factors_are_named_by_their_scale():
    x = np.zeros((3, 5, 5, 1))
    assert "ours = m x ref" in dg.constant_factor(ev(REF * 3, x=x))
    assert "divided by the batch size twice" in dg.constant_factor(ev(REF / 3, x=x))
    assert "sign is flipped throughout" in dg.constant_factor(ev(-REF))
    assert "1.01 x ref" in dg.constant_factor(ev(REF * 1.01))
    assert "window's 1/(kh*kw) is missing" in dg.constant_factor(
        ev(REF * 4, layer="AvgPool2D", config={"kernel_size": 2})
    )
    assert dg.constant_factor(ev(REF + 0.1)) is None  # an offset is no factor


def test_a_sign_flip_on_one_element_or_one_channel():
    one = REF.copy()
    one[1, 2, 3, 0] *= -1
    assert "one element is flipped: dW(1, 2, 3, 0)" in dg.sign_flip_some(ev(one))
    chan = REF.copy()
    chan[..., 1] *= -1
    assert "flipped on channel 1" in dg.sign_flip_some(ev(chan))
    assert dg.sign_flip_some(ev(REF * 1.5)) is None


def test_failing_elements_at_exact_zeros_of_a_relu_input():
    x = np.array([[0.0, 1.0, -1.0, 0.0]])
    g = np.array([[2.0, 3.0, 4.0, 5.0]])
    right = g * (x > 0)
    assert "ReLU'(0) taken as 1" in dg.at_input_zeros(ev(g * (x >= 0), right, layer="ReLU", tensor="dx", x=x, g=g))
    wrong_elsewhere = g * (x >= 0) * np.array([[1, 1, 0, 1]])  # element 2 is wrong too, and not at a zero
    wrong_elsewhere[0, 2] = 1.0
    assert dg.at_input_zeros(ev(wrong_elsewhere, right, layer="ReLU", tensor="dx", x=x, g=g)) is None


@pytest.mark.parametrize("rule, words", [("every", "every tied maximum"), ("split", "split evenly"),
                                         ("last", "last maximum"), ("isclose", "np.isclose")])  # fmt: skip
def test_each_max_pool_tie_routing_is_recognised(rule, words):
    x = np.array([[1, 1, 0, 2], [0, 1 + 1e-7, 2, 2], [3, 3, 1, 0], [3, 0, 0, 1]], dtype=float)[None, :, :, None]
    g = np.array([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None]
    first = dg.route_max_pool(x, g, (2, 2), (2, 2), "first")
    ours = dg.route_max_pool(x, g, (2, 2), (2, 2), rule)
    found = dg.pool_tie_routing(ev(ours, first, layer="MaxPool2D", tensor="dx", x=x, g=g, config={"kernel_size": 2}))
    assert words in found


def test_a_spatial_shift_by_one_and_a_flipped_kernel():
    shifted = np.zeros_like(REF)
    shifted[:, :-1] = REF[:, 1:]
    assert "shifted by one row" in dg.spatial_shift(ev(shifted, tensor="dx"))
    w = RNG.standard_normal((3, 3, 2, 4))
    assert "flipped in space" in dg.flipped_kernel(ev(w[::-1, ::-1], w))
    square = RNG.standard_normal((3, 3, 2, 2))
    assert "channel axes transposed" in dg.flipped_kernel(ev(square.transpose(0, 1, 3, 2), square))
    assert dg.spatial_shift(ev(REF * 2, tensor="dx")) is None


def test_dtype_promotion_overflow_and_lifecycle_evidence():
    assert "float32 in, float64 out" in dg.dtype_promotion(ev(REF, REF.astype(np.float32), dtype="float32"))
    prior = RNG.standard_normal(REF.shape)
    assert "accumulate across calls" in dg.accumulated(ev(prior + REF, prior=prior))
    assert "repeats round 1" in dg.stale_cache(ev(prior, prior=prior))


def loss_ev(ours, x, labels, tensor="loss", rerun=None, dtype="float64"):
    ref = np.asarray(1.0, dtype=dtype) if tensor == "loss" else np.ones(x.shape, dtype=dtype)
    return ev(np.asarray(ours, dtype=dtype), ref, layer="SoftmaxCrossEntropy", tensor=tensor, x=x.astype(dtype),
              labels=np.asarray(labels), rerun=rerun, dtype=dtype)  # fmt: skip


BIG = np.array([[1000.0, 0.0, 0.0], [0.0, 800.0, 1.0]])  # exp(1000) overflows in float64; the labels' p are 0


def no_shift(logits):
    """An implementation without the max shift: NaN where exp overflows, as its own numbers show."""
    p = dg._softmax(logits, "none")
    return {"probs": p, "dlogits": p / len(logits)}


def test_no_max_shift_is_named_only_where_the_implementation_itself_is_finite_on_shifted_logits():
    ours = no_shift(BIG)["dlogits"]  # NaN exactly where exp(1000) and exp(800) overflow
    said = dg.overflow_without_max_shift(loss_ev(ours, BIG, [0, 1], "dlogits", no_shift))
    assert "without subtracting each row's maximum" in said and "exp overflows in float64 for 2 logits" in said
    assert dg.overflow_without_max_shift(loss_ev(ours, BIG, [0, 1], "dlogits")) is None  # nothing shown: no cause
    still_nan = lambda logits: {"dlogits": np.full_like(logits, np.nan)}  # noqa: E731
    assert dg.overflow_without_max_shift(loss_ev(ours, BIG, [0, 1], "dlogits", still_nan)) is None
    small = np.array([[3.0, 0.0, 1.0]])  # exp does not overflow here: whatever made the nan, it was not that
    assert dg.overflow_without_max_shift(loss_ev(np.full((1, 3), np.nan), small, [0], "dlogits", no_shift)) is None
    # exp(1000) overflows, but this implementation's NaNs are a whole row far below the batch's maximum
    far = np.array([[1000.0, 0.0, 0.0], [-800.0, -900.0, -850.0]])
    batch = lambda logits: {"probs": dg._softmax(logits, "batch")}  # noqa: E731
    nan_row = batch(far)["probs"]
    assert dg.overflow_without_max_shift(loss_ev(nan_row, far, [0, 1], "probs", batch)) is None
    said = dg.diagnose(loss_ev(nan_row, far, [0, 1], "probs", batch))
    assert "non-finite where the reference is finite: NaN at 3 of 6 elements, first probs[1, 0]" in said, said
    assert "whole batch's maximum" in said and "overflow" not in said and "clip" not in said, said


def test_an_underflowed_probability_under_a_log_is_named_by_what_it_did():
    stable = lambda logits: {"probs": dg._softmax(logits)}  # noqa: E731  its own p of the labels: exactly 0
    said = dg.underflowed_probability(loss_ev(np.inf, BIG, [1, 0], rerun=stable))  # the labels' logits far below
    assert "probability is 0 in float64 in 2 of 2 rows of its own probabilities" in said and "logsumexp" in said
    assert dg.underflowed_probability(loss_ev(np.inf, BIG, [0, 1], rerun=stable)) is None  # the labels are the maxima
    assert dg.underflowed_probability(loss_ev(np.inf, BIG, [1, 0])) is None  # its own numbers unknown: not claimed
    nan = lambda logits: {"probs": np.full_like(logits, np.nan)}  # noqa: E731  its own p is NaN, not 0
    assert dg.underflowed_probability(loss_ev(np.inf, BIG, [1, 0], rerun=nan)) is None


def test_a_clip_is_named_by_its_floor_or_by_its_upper_bound_that_float32_cannot_hold():
    x, labels = np.array([[60.0, 0.0, 0.0], [0.0, 1.0, 2.0]]), [1, 2]
    p = dg._softmax(x)[np.arange(2), labels]
    capped = -np.log(np.clip(p, 1e-15, 1.0)).mean()
    assert "clip(p[label], 1e-15" in dg.clipped_probability(loss_ev(capped, x, labels))
    assert dg.clipped_probability(loss_ev(-np.log(p).mean(), x, labels)) is None  # unclipped: no such cause
    one = np.array([[30.0, 0.0, 0.0]])  # p = 1.0 exactly in float32, and the label's p is not 0
    stable = lambda logits: {"probs": dg._softmax(logits)}  # noqa: E731
    said = dg.clipped_probability(loss_ev(np.inf, one, [0], rerun=stable, dtype="float32"))
    assert "1 - 1e-15 is 1.0 in float32" in said
    assert dg.clipped_probability(loss_ev(np.inf, one, [0], rerun=stable, dtype="float64")) is None
    nan = lambda logits: {"probs": np.full_like(logits, np.nan)}  # noqa: E731  its own probabilities hold no 1.0
    assert dg.clipped_probability(loss_ev(np.inf, one, [0], rerun=nan, dtype="float32")) is None


def test_no_constant_factor_for_one_element_and_a_factor_near_one_carries_its_digits():
    assert dg.constant_factor(ev(np.array([2.5]), np.array([1.0]))) is None
    said = dg.constant_factor(ev(REF * (1 + 3e-7), REF, tol=dg.Tolerance(atol=1e-12, rtol=1e-12, reason="tight")))
    assert said.startswith("ours = (1 + 3e-07) x ref"), said


def test_the_loss_clamp_from_either_judge():
    loss = dg.loss_clamp(ev(np.array(1.3), np.array(1.2), layer="SoftmaxCrossEntropy", tensor="loss",
                            others={"loss": "fail", "dlogits": "pass"}))  # fmt: skip
    assert "-log(p + eps)" in loss
    fd = dg.loss_clamp(ev(REF, REF * 1.001, layer="SoftmaxCrossEntropy", tensor="dlogits", attribution="forward"))
    assert "not the function the backward differentiates" in fd


def test_nothing_fitting_is_unexplained_never_a_guess():
    noise = REF + RNG.standard_normal(REF.shape)
    assert dg.diagnose(ev(noise)) == dg.UNEXPLAINED


# --- the catalogue: every fault gets its diagnosis ---------------------------------------------------

EXPECTED = {
    "relu_grad_one_at_zero": "ReLU'(0) taken as 1",
    "maxpool_ties_to_every_max": "every tied maximum",
    "avgpool_wrong_axis": "axes are swapped",
    "conv_dW_missing_1_over_m": "ours = m x ref",
    "conv_dW_sign_flip": "the sign of one element is flipped",
    "conv_bias_grad_dropped": "ours is all zeros: db",
    "dense_dx_scaled": "ours = 1.01 x ref",
    "conv_backward_off_by_one_pad": "shifted by one",
    "conv_flipped_kernel": "kernel flipped in space",
    "softmax_without_max_shift": "without subtracting each row's maximum",
    "vacuous_dense": "ours is all zeros",
}
GRID = [c for c in grid() if not c.lifecycle and not c.tag]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_fault_of_the_catalogue_gets_its_diagnosis(name):
    fault = FAULTS_BY_NAME[name]
    impl = fault.impl()
    cases = [c for c in GRID if c.layer == fault.layer]
    cases = cases[::3] if len(cases) > 30 else cases  # a third of the big layers' cases, every kind still among them
    rows = [r for c in cases for d in ("float64", "float32") for r in autograd_case(impl, c, d)]
    rows += [r for c in cases for r in fd_case(impl, c)]
    assert EXPECTED[name] in leading_diagnosis(rows)


@pytest.mark.parametrize("fault", CURVE_FAULTS, ids=lambda f: f.name)
def test_every_training_fault_names_its_step_and_the_layer_or_the_loss(fault):
    verdict = lockstep_verdict(run_lockstep(fault.impl(), fake_mnist(n_train=200, n_test=50), steps=6,
                                            labels_for_impl=fault.labels_for_impl))  # fmt: skip
    expected = (
        "the loss left the bound at step 1" if fault.name in ("flatten_nchw_order", "shuffled_labels") else "of layer"
    )
    assert expected in verdict["diagnosis"] and "step" in verdict["diagnosis"]


def test_a_correct_implementation_gets_no_diagnosis():
    judged = layer_cases(GRID)  # the optimiser cases are the optimiser judge's
    rows = [
        r for c in judged[::4] for d in dtypes_of(c, ("float64", "float32")) for r in autograd_case(scratch_cnn, c, d)
    ]
    rows += [r for c in judged[::8] if repeatable(c) for r in fd_case(scratch_cnn, c)]
    assert rows and not any(r.get("diagnosis") for r in rows)


def test_near_ties_routed_by_a_tolerance_are_named():
    from reference.impl.faults import _impl
    from tests.test_any_implementation import EvenOnlyMaxPoolEveryTie

    case = Case("MaxPool2D", {"kernel_size": 2, "stride": 2}, (2, 8, 8, 3), "near_ties", seed=71)
    inputs = case_inputs(case, "float64")
    assert upstream_gradient(inputs, (2, 4, 4, 3)).shape == (2, 4, 4, 3)
    rows = autograd_case(_impl(MaxPool2D=EvenOnlyMaxPoolEveryTie), case, "float64")
    dx = next(r for r in rows if r["tensor"] == "dx")
    assert dx["status"] == "fail" and "np.isclose" in dx["diagnosis"]


def test_a_wrong_shape_is_named_before_its_dtype_and_an_empty_crop_at_padding_zero_is_named_as_such():
    empty = np.zeros((2, 0, 0, 1), dtype=np.float32)
    said = dg.diagnose(ev(empty, REF, tensor="dx", config={"padding": "valid"}))
    assert "axes [1, 2] are empty" in said and "dx[p:-p]" in said
    assert dg.dtype_promotion(ev(empty, REF)) is None  # the shape is the finding, not the dtype
    assert dg.wrong_shape(ev(REF[:, :-1], REF, tensor="dx")).startswith("dx has shape")


def test_contributions_dropped_name_the_rows_that_got_nothing():
    ref = RNG.standard_normal((1, 6, 6, 2)) + 3.0  # no zeros of its own
    ours = ref.copy()
    ours[:, 2:] = 0.0  # a loop that stopped after two rows of windows
    said = dg.dropped_contributions(ev(ours, ref, tensor="dx"))
    assert "rows 2-5" in said and "columns 0-5" in said
    assert dg.dropped_contributions(ev(ref * 2, ref, tensor="dx")) is None


def test_ours_that_equals_its_reference_gets_only_the_attribution_s_hypotheses():
    # the finite-difference judge: torch agrees with ours, the differences of this forward do not
    said = dg.diagnose(ev(REF, REF.copy(), layer="Conv2D", tensor="db", attribution="forward",
                          alternatives=lambda variant: {"db": REF}))  # fmt: skip
    assert "finite differences of this implementation's forward" in said
    assert "flipped" not in said and "x ref" not in said
    assert dg.diagnose(ev(REF, REF.copy())) == dg.UNEXPLAINED  # nothing to explain, no cause named
