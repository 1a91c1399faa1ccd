"""The finite-difference judge: scratch_cnn passes (kinks included); wrong gradients are caught."""

import numpy as np
import pytest
from hypothesis import assume, given, settings

import scratch_cnn
from reference.cases.grid import Case, grid, strategies
from reference.impl.faults import FAULTS_BY_NAME
from reference.impl.protocol import load_impl
from reference.judges import finite_diff as fd

GRID = grid()
IMPL = load_impl()


def rows_of(impl, layer, adjoint=True, limit=24):
    """FD rows of about ``limit`` grid cases of ``layer``, every k-th (so every kernel size is among them)."""
    cases = [c for c in GRID if c.layer == layer]
    rows = []
    for case in cases[:: max(1, len(cases) // limit)]:
        rows += fd.run_case(impl, case, attribution=False)
        if adjoint and layer in fd.ADJOINT_LAYERS:
            rows += fd.adjoint_rows(impl, case)
    return rows


def test_scratch_cnn_passes_every_row_including_kinks_and_attribution_blames_no_one():
    df = fd.run_finite_diff(IMPL, GRID, networks={"tiny": 2})
    assert (df["status"] == "pass").all(), df[df["status"] != "pass"].head().to_string()
    assert set(df["kind"]) == {"element", "adjoint", "network"}
    assert df[df.layer.isin(["ReLU", "MaxPool2D"])]["kinks"].sum() > 100  # kinks were met and judged, not skipped
    assert set(df["attribution"].dropna()) == {"none"}


def test_the_whole_seed_network_gradient_matches_finite_differences():
    rows = fd.network_rows(IMPL, "seed", 2)
    assert len(rows) == 12 and all(r["status"] == "pass" for r in rows), [(r["tensor"], r["note"]) for r in rows]
    # each tensor judged along random directions, or on a recorded subset (n/N seed=...) where they met a kink
    assert all("random directions" in r["checked"] or "/" in r["checked"] for r in rows)


@pytest.mark.parametrize(
    "fault, wrong, right", [("dense_dx_scaled", "0.W", "13.W"), ("conv_bias_grad_dropped", "0.b", "0.W")]
)
def test_a_wrong_layer_gradient_shows_in_the_whole_network_rows(fault, wrong, right):
    # the random directions find it, the element sweep that follows localises it to the tensor's elements
    rows = {r["tensor"]: r for r in fd.network_rows(FAULTS_BY_NAME[fault].impl(), "seed", 2)}
    assert rows[wrong]["status"] == "fail" and "/" in rows[wrong]["checked"], rows[wrong]
    assert rows[right]["status"] == "pass", rows[right]


@pytest.mark.parametrize(
    "fault, layer, tensor",
    [
        ("conv_dW_sign_flip", "Conv2D", "dW"),
        ("conv_bias_grad_dropped", "Conv2D", "db"),
        ("dense_dx_scaled", "Dense", "dx"),
        ("conv_backward_off_by_one_pad", "Conv2D", "dx"),
        ("maxpool_ties_to_every_max", "MaxPool2D", "dx"),
    ],
)
def test_a_wrong_gradient_is_caught(fault, layer, tensor):
    rows = rows_of(FAULTS_BY_NAME[fault].impl(), layer)
    caught = [r for r in rows if r["status"] == "fail" and r["tensor"] == tensor]
    assert caught, f"{fault} passed every {layer} row"
    assert all(r["status"] == "pass" for r in rows if r["tensor"] not in (tensor,) and not r["tensor"].startswith("<"))


def test_the_window_rule_catches_ties_routed_to_every_maximum():
    rows = rows_of(FAULTS_BY_NAME["maxpool_ties_to_every_max"].impl(), "MaxPool2D")
    assert any("window rule" in r["note"] for r in rows)


def test_a_vacuous_layer_is_flagged_not_passed():
    rows = rows_of(FAULTS_BY_NAME["vacuous_dense"].impl(), "Dense")
    assert rows and all(r["status"] == "vacuous" for r in rows)


def test_three_way_attribution_blames_the_implementation_when_it_alone_disagrees():
    case = next(c for c in GRID if c.layer == "Dense" and c.input_shape[0] > 1)
    rows = fd.run_case(FAULTS_BY_NAME["dense_dx_scaled"].impl(), case)
    assert {r["tensor"]: r["attribution"] for r in rows} == {"dx": "ours", "dW": "none", "db": "none"}


def test_adjoint_identities_hold_to_rounding_for_every_linear_layer():
    for layer in fd.ADJOINT_LAYERS:
        rows = [r for case in GRID if case.layer == layer for r in fd.adjoint_rows(IMPL, case)]
        assert rows and all(r["status"] == "pass" for r in rows), layer
        assert max(r["max_abs_err"] for r in rows) < 1e-10


def test_gradcheck_agrees_on_kink_free_cases_and_fails_where_ours_finds_kinks():
    tie = next(c for c in GRID if c.id == "MaxPool2D[kernel_size=2,stride=1] x1x6x6x3 ties s20")
    smooth = Case(
        "Conv2D",
        {"in_ch": 2, "out_ch": 2, "kernel_size": 3, "stride": 1, "padding": "same", "bias": True},
        (1, 5, 5, 2),
        "noise",
        4,
    )
    cross = fd.gradcheck_crosscheck(IMPL, [tie, smooth]).set_index("layer")
    assert (
        cross.loc["Conv2D", "kinks"] == 0
        and cross.loc["Conv2D", "gradcheck"] == "pass"
        and cross.loc["Conv2D", "ours"] == "pass"
    )
    assert (
        cross.loc["MaxPool2D", "kinks"] > 0
        and cross.loc["MaxPool2D", "gradcheck"] == "fail"
        and cross.loc["MaxPool2D", "ours"] == "pass"
    )


def test_the_step_is_scaled_to_the_value_and_exactly_representable():
    arr = np.array([0.0, 3.0, -10.0])
    p = fd.probe(lambda: float(np.sum(arr**3)), arr, [(0,), (1,), (2,)], scale=1e3, checked="3/3")
    assert p.h[0] == pytest.approx(1e-6) and p.h[2] == pytest.approx(1e-5, rel=1e-6)
    exact = 3 * np.array([0.0, 9.0, 100.0])
    assert np.all(np.abs(p.central - exact) <= p.bound)  # the error estimate covers the true error
    assert np.all(p.bound < 1e-4 * np.maximum(np.abs(exact), 1))  # and is not vacuous
    assert list(arr) == [0.0, 3.0, -10.0]  # restored
    assert not p.kink.any()
    q = fd.probe(lambda: float(np.abs(arr).sum()), arr, [(0,)], scale=1e3, checked="1/3")
    assert q.kink[0] and (q.left[0], q.right[0]) == pytest.approx((-1.0, 1.0))


@settings(max_examples=30)
@given(strategies())
def test_scratch_cnn_passes_hypothesis_cases(case):
    rows = fd.run_case(IMPL, case, attribution=False)
    assume(not any(r["status"] == "vacuous" for r in rows))  # e.g. a ReLU whose inputs are all negative
    assert all(r["status"] == "pass" for r in rows), [(r["tensor"], r["note"], r["worst_index"]) for r in rows]


def test_a_gradient_of_the_wrong_shape_is_an_error_row_not_a_crash():
    import scratch_cnn
    from reference.impl.faults import _impl

    class ShortDx(scratch_cnn.Dense):
        def backward(self, dout):
            return super().backward(dout)[:, :-1]

    case = next(c for c in GRID if c.layer == "Dense" and c.config["n_in"] > 1)
    rows = {r["tensor"]: r for r in fd.run_case(_impl(Dense=ShortDx), case, attribution=False)}
    assert rows["dx"]["status"] == "error" and "gradient shape" in rows["dx"]["note"]
    assert rows["dW"]["status"] == "pass"


def test_a_clean_tensor_is_judged_on_random_directions_and_a_wrong_one_is_swept_element_by_element():
    case = next(c for c in GRID if c.layer == "Dense" and c.values == "noise")
    assert all("random directions over all" in r["checked"] for r in fd.run_case(IMPL, case, attribution=False))
    wrong = fd.run_case(FAULTS_BY_NAME["dense_dx_scaled"].impl(), case, attribution=False)
    swept = next(r for r in wrong if r["tensor"] == "dx")
    assert swept["status"] == "fail" and "random directions" not in swept["checked"]  # localised: n/N elements


class DenseLastRowForgotten(scratch_cnn.Dense):
    """A student's loop over the inputs that stops one short (``range(n_in - 1)``): dW's last row stays 0."""

    def backward(self, d):
        dx = super().backward(d)
        self.grads["W"][-1] = 0.0
        return dx


def test_one_forgotten_row_of_a_weight_gradient_fails_the_directions_and_the_sweep_names_its_elements():
    from reference.impl.faults import _impl

    case = next(c for c in GRID if c.layer == "Dense" and c.values == "noise" and c.config["n_in"] > 2)
    row = next(
        r for r in fd.run_case(_impl(Dense=DenseLastRowForgotten), case, attribution=False) if r["tensor"] == "dW"
    )
    assert row["status"] == "fail" and "random directions" not in row["checked"]
    assert row["worst_index"].startswith(f"({case.config['n_in'] - 1},")


def test_directions_move_every_element_by_an_exact_step():
    base = np.random.default_rng(0).standard_normal((3, 5)) * np.array([1e-300, 1e-8, 1.0, 1e3, 1e8])
    for d in fd.directions(base, 2, seed=1):
        assert np.count_nonzero(d) == d.size
        for mult in (1, -1, 2, -2):
            assert np.array_equal((base + mult * d) - base, mult * d)  # no rounding at any trial


SWEPT_STUDENT = '''
import numpy as np
from scratch_cnn import Dense as _Dense


class ReLU:
    """A student's ReLU that "saves memory": it writes into its input."""

    params: dict = {}
    grads: dict = {}

    def forward(self, x):
        self.mask = x > 0
        x[~self.mask] = 0
        return x

    def backward(self, dout):
        return dout * self.mask


class Dense(_Dense):
    """One wrong weight gradient: the random directions see it, the element sweep of W finds which."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["W"][0, 0] += 1.0
        return dx
'''


def test_a_sweep_in_a_worker_gives_the_numbers_of_the_same_sweep_in_this_process(tmp_path):
    """The worker's sweep (x sent once, a fresh copy of it each trial, a parameter written in place and
    restored) and the stacked sweep of a per-sample layer judge as the calls made here one by one do,
    even for a forward that writes into its input."""
    from reference.judging import judgement
    from reference.sandbox import requests

    path = tmp_path / "swept.py"
    path.write_text(SWEPT_STUDENT)
    cases = [next(c for c in grid() if c.layer == "ReLU" and c.values == "zeros" and not c.lifecycle),
             next(c for c in grid() if c.layer == "Dense" and c.values == "noise" and not c.lifecycle)]  # fmt: skip
    here = {c.id: fd.run_case(load_impl(str(path)), c, attribution=False) for c in cases}
    with judgement(str(path)) as j:
        there = {}
        for c in cases:
            with requests.scope(j.impl, c.layer):
                there[c.id] = fd.run_case(j.impl, c, attribution=False)
    keys = ["tensor", "status", "kinks", "checked", "worst_index", "max_abs_err"]
    for c in cases:
        assert [{k: r.get(k) for k in keys} for r in there[c.id]] == [{k: r.get(k) for k in keys} for r in here[c.id]]
    relu, dense = (({r["tensor"]: r for r in here[c.id]}) for c in cases)
    assert relu["dx"]["status"] == "pass" and relu["dx"]["kinks"] > 0  # the element sweep ran, on fresh copies
    assert dense["dW"]["status"] == "fail" and dense["dW"]["worst_index"] == "(0, 0)" and "/" in dense["dW"]["checked"]
