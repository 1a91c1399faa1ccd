"""The one comparison primitive: shape and dtype first, then errors, worst element, status."""

import numpy as np

from reference.core.compare import compare
from reference.core.tolerances import AUTOGRAD, Tolerance

TOL = Tolerance(atol=1e-6, rtol=1e-6, reason="test")


def row(ours, ref, tol=TOL):
    return compare(np.asarray(ours), np.asarray(ref), tol, layer="L", case="c", tensor="t", judge="j")


def test_equal_arrays_pass_with_zero_error():
    r = row([1.0, -2.0], [1.0, -2.0])
    assert (r["status"], r["max_abs_err"], r["max_rel_err"]) == ("pass", 0.0, 0.0)


def test_the_worst_element_is_reported_with_both_values():
    r = row([[1.0, 2.0], [3.0, 4.5]], [[1.0, 2.0], [3.0, 4.0]])
    assert r["status"] == "fail" and r["worst_index"] == "(1, 1)" and (r["ours"], r["ref"]) == (4.5, 4.0)
    assert r["max_abs_err"] == 0.5 and abs(r["max_rel_err"] - 0.5 / 4.5) < 1e-15
    assert r["note"] == "1 of 4 elements out of tolerance"


def test_shape_dtype_empty_nonfinite_and_all_zero_inputs_fail_before_numbers_are_compared():
    assert "shape mismatch" in row(np.zeros(3), np.zeros(4))["note"]
    assert "dtype mismatch" in row(np.zeros(3, np.float32), np.zeros(3))["note"]
    assert row(np.zeros(0), np.zeros(0))["status"] == "fail"
    assert row([np.nan, 1.0], [1.0, 1.0])["note"] == "non-finite value in ours"
    assert row(np.zeros(3), np.zeros(3))["status"] == "vacuous"


def test_atol_is_relative_to_the_tensor_scale():
    tiny = np.array([1e-7, 2e-7])
    assert row(tiny * 1.5, tiny)["status"] == "fail"  # an absolute atol of 1e-6 would have passed this
    big = np.array([1e6, 1.0])
    assert row(big + [0.0, 0.5], big)["status"] == "pass"  # 0.5 is rounding-sized next to 1e6


def test_every_tolerance_in_the_table_has_a_reason():
    assert all(t.reason for t in AUTOGRAD.values())
    assert AUTOGRAD["float64"].rtol < AUTOGRAD["float32"].rtol
