"""The smallest input that shows each bug (reference/judges/shrink.py): a shrunk case's id carries its
numbers and reads back exactly; the search keeps what makes a failure (a batch of 2 for a missing
1/m, a tie for a tie bug) and stays within its budget; and for four student implementations, each
with one bug, judged in sandboxed workers as the CLI judges them, the smallest failing input is
small, integer, fails the same tensor with the same diagnosis, is shown in the console, summary.md
and the heat-map list, and its printed rerun command reproduces exactly that failure."""

import math
import re
import shlex
import time

import numpy as np
import pandas as pd
import pytest

from reference.cases.grid import case_inputs, grid, upstream_gradient
from reference.cli import main
from reference.impl import faults
from reference.judges import shrink
from reference.judges.autograd import run_case
from reference.layers import conv2d, maxpool2d
from reference.pipeline import select_cases
from reference.report.heatmap import load_index

# --- ids -----------------------------------------------------------------------------------------------


def test_an_id_spells_out_every_number_and_reads_back_exactly():
    w = np.arange(12, dtype=np.float64).reshape(2, 2, 1, 3) - 5
    x = np.array([0.1, -2.0, 0.0, 3.0, 3.0, 3.0, 3.0, np.float32(0.7)], dtype=np.float64).reshape(1, 2, 4, 1)
    given = shrink.Given(x, {"W": w, "b": np.array([1.0, 0.0, -1.0])}, np.ones((1, 1, 3, 3)))
    config = {"in_ch": 1, "out_ch": 3, "kernel_size": (2, 2), "stride": 1, "padding": "valid", "bias": True}
    case = shrink.make_case("Conv2D", config, given)
    assert case.id == ("shrunk: Conv2D[in_ch=1,out_ch=3,kernel_size=2x2,stride=1,padding=valid,bias=True] x1x2x4x1 "
                       f"x=0.1,-2,0,3*4,{float(np.float32(0.7))!r} W=-5,-4,-3,-2,-1,0,1,2,3,4,5,6 b=1,0,-1 g=1*9")  # fmt: skip
    back = shrink.parse_id(case.id)
    assert back.id == case.id and back.config == config and back.input_shape == (1, 2, 4, 1)
    for dtype in ("float64", "float32"):
        ours, theirs = back.given_inputs(dtype), case.given_inputs(dtype)
        assert ours["x"].dtype == np.dtype(dtype)
        for key in ("x", "g"):
            assert np.array_equal(ours[key], theirs[key])
        assert all(np.array_equal(ours["params"][k], theirs["params"][k]) for k in ("W", "b"))
    # case_inputs and upstream_gradient give the case's own numbers, to every judge
    inputs = case_inputs(back, "float32")
    assert np.array_equal(inputs["x"], x.astype(np.float32)) and inputs["x"][0, 1, 3, 0] == np.float32(0.7)
    assert np.array_equal(upstream_gradient(inputs, (1, 1, 3, 3)), np.ones((1, 1, 3, 3), np.float32))
    loss = shrink.make_case("SoftmaxCrossEntropy", {}, shrink.Given(np.array([[0.0, 759.0]]), labels=np.array([1])))
    assert loss.id == "shrunk: SoftmaxCrossEntropy[] x1x2 x=0,759 labels=1"
    assert shrink.parse_id(loss.id).given.labels.tolist() == [1]


@pytest.mark.parametrize("text, why", [
    ("shrunk: ReLU[] x1x2 x=1 g=1,1", "x has 1 numbers"),
    ("shrunk: Bogus[] x1 x=1", "unknown layer"),
    ("shrunk: ReLU[] x1x1 x=1 g=nan", "not a finite number"),
    ("shrunk: MaxPool2D[kernel_size=2,stride=None] x1x2x2x1 x=1,1,0,3", "numbers for x, g expected"),
    ("shrunk: MaxPool2D[kernel_size=2,stride=None] x1x2x2x1 x=1,1,0,3.0 g=1", "does not read back"),
    ("shrunk: SoftmaxCrossEntropy[] x1x2 x=0,1 labels=2", "labels must be class indices"),
    ("MaxPool2D[kernel_size=2,stride=None] x1x2x2x1 ties s1", "expected 'shrunk:"),
])  # fmt: skip
def test_a_malformed_id_is_refused_naming_why(text, why):
    with pytest.raises(ValueError, match=re.escape(why)) as err:
        shrink.parse_id(text)
    assert str(err.value).startswith("--case:")


def test_case_resolves_a_shrunk_id_alone_and_refuses_a_malformed_one():
    text = "shrunk: MaxPool2D[kernel_size=2,stride=None] x1x2x2x1 x=1,1,0,3 g=1"
    cases, networks = select_cases(True, "ReLU", text)
    assert [c.id for c in cases] == [text] and networks == {}
    with pytest.raises(ValueError, match="^--case:"):
        select_cases(False, None, text.replace("g=1", "g=1,2"))


# --- the pieces of the search --------------------------------------------------------------------------


def test_ranked_integers_keep_order_signs_ties_and_zeros():
    a = np.array([-0.3, 0.0, 0.25, 0.25, -1e-6, 7.5, 0.0, 0.25 + 1e-6])
    r = shrink.ranked(a)
    assert r.tolist() == [-2, 0, 1, 1, -1, 3, 0, 2]
    assert np.array_equal(np.sign(r), np.sign(a)) and np.array_equal(
        np.argsort(a, kind="stable"), np.argsort(r, kind="stable")
    )


def test_a_diagnosis_class_drops_the_numbers_and_an_added_remark_but_keeps_the_hypothesis():
    one = "ours = m x ref (c = 3; m = 3) on every element: the 1/m of the mean loss is missing"
    two = "ours = m x ref (c = 2; m = 2) on every element: the 1/m of the mean loss is missing (here 2 and C are the same number)"
    assert shrink.same_class(shrink.diagnosis_class(two), shrink.diagnosis_class(one))
    flip = "the sign of one element is flipped: dW(0, 2, 1, 3) (ours = -ref there, every other element right)"
    assert shrink.diagnosis_class(flip) == shrink.diagnosis_class(flip.replace("(0, 2, 1, 3)", "(0, 0, 0, 0)"))
    assert not shrink.same_class(shrink.diagnosis_class(flip), shrink.diagnosis_class(one))
    shift = "dx is the reference shifted by one row (ours[i, j] = ref[i+1, j+0]): the padding is off by one"
    other = "dx is the reference shifted by one row and column (ours[i, j] = ref[i-1, j-1]): the padding is off by one"
    assert shrink.diagnosis_class(shift) == shrink.diagnosis_class(other) == "the padding is off by one"
    ties = "the gradient goes to every tied maximum of a window (torch and the protocol: the first one only)"
    split = "the gradient is split evenly across a window's tied maxima (torch and the protocol: all to the first)"
    assert not shrink.same_class(shrink.diagnosis_class(ties), shrink.diagnosis_class(split))
    assert shrink.diagnosis_class("unexplained") == "" and shrink.diagnosis_class(float("nan")) == ""
    row = {
        "status": "error",
        "tensor": "*",
        "note": "IndexError: index 3 is out of bounds (at layers.py:12 in backward)",
    }
    assert shrink.failure_of(row) == ("*", "error", "IndexError at layers.py:12 in backward")


def case_of(case_id):
    return next(c for c in grid() if c.id == case_id)


def test_a_bug_that_needs_a_batch_of_two_keeps_two_and_the_numbers_become_small_integers():
    impl = faults._impl(Conv2D=conv2d.ConvDWMissingOneOverM)
    case = case_of("Conv2D[in_ch=2,out_ch=1,kernel_size=1,stride=2,padding=1,bias=False] x3x9x10x2 tiny s5")
    row = next(r for r in run_case(impl, case, "float64") if r["status"] == "fail" and r["tensor"] == "dW")
    found = shrink.shrink(case, row, lambda c, d: run_case(impl, c, d))
    given = found.case.given
    assert given.x.shape[0] == 2 and given.x.shape[1:3] == (1, 1)  # a missing 1/m needs m > 1
    assert all(np.array_equal(a, np.round(a)) and np.abs(a).max() <= 3 for _, a in given.arrays())
    assert found.row["tensor"] == "dW" and "1/m of the mean loss is missing" in found.row["diagnosis"]
    assert found.calls <= shrink.CALLS and "batch 3 -> 2" in found.steps


def test_the_search_stops_at_its_call_and_time_caps():
    impl = faults._impl(MaxPool2D=maxpool2d.MaxPoolTiesToEveryMax)
    case = case_of("MaxPool2D[kernel_size=2,stride=None] x2x26x26x8 ties s602")
    row = next(r for r in run_case(impl, case, "float64") if r["status"] == "fail" and r["tensor"] == "dx")
    calls = shrink.shrink(case, row, lambda c, d: run_case(impl, c, d), calls=3)
    assert calls.calls == 3 and calls.stopped == "3 calls" and calls.case is not None  # the best found so far stays

    def slow(c, d):
        time.sleep(0.3)
        return run_case(impl, c, d)

    started = time.monotonic()
    timed = shrink.shrink(case, row, slow, seconds=0.5)
    assert timed.calls <= 3 and timed.stopped.startswith("0.5 s") and time.monotonic() - started < 2.5


# --- four students, each with one bug, judged as the CLI judges them ---------------------------------------

STUDENTS = {  # impl: (layer, tensor that fails, a words of its diagnosis, largest batch, largest spatial side)
    "shrink_pool_ties": ("MaxPool2D", "dx", "every tied maximum", 1, 4),
    "shrink_relu_zero": ("ReLU", "dx", "exact zero of the input", 1, 4),
    "shrink_dense_db": ("Dense", "db", "db has shape", 2, None),
    "shrink_conv_pad": ("Conv2D", "dx", "shifted by one", 1, 4),
}


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """Each student judged once (sandboxed, --quick --no-curves, its layer), and its printed rerun run."""
    results = {}
    for name, (layer, *_) in STUDENTS.items():
        out = tmp_path_factory.mktemp(name)
        impl = f"tests/impls/{name}.py"
        code, printed = run_cli(["judge", "--impl", impl, "--quick", "--no-curves", "--layers", layer,
                                 "--judges", "protocol,autograd", "--out", str(out / "judge")])  # fmt: skip
        line = next((s for s in printed.splitlines() if s.strip().startswith(f"{layer}: smallest failing input:")), "")
        rerun = re.search(r"^    rerun: (.+)$", printed.split(line, 1)[1], re.M).group(1) if line else ""
        argv = shlex.split(rerun)
        again, again_printed = run_cli([*argv[3:], "--out", str(out / "rerun")]) if rerun else (None, "")
        results[name] = {"code": code, "printed": printed, "line": line, "rerun": rerun, "argv": argv,
                         "out": out / "judge", "again": again, "again_out": out / "rerun"}  # fmt: skip
    return results


def run_cli(argv):
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(argv)
    return code, buffer.getvalue()


@pytest.mark.parametrize("name", list(STUDENTS))
def test_the_smallest_failing_input_is_small_integer_and_fails_the_same_way(judged, name):
    layer, tensor, words, batch, side = STUDENTS[name]
    r = judged[name]
    assert r["code"] == 1 and r["line"], r["printed"][-3000:]
    table = pd.read_csv(r["out"] / "autograd_shrunk.csv")
    assert list(table["layer"]) == [layer]
    row = table.iloc[0]
    case = shrink.parse_id(row["case"])  # what --case reads back
    given = case.given
    assert given.x.shape[0] <= batch and (side is None or max(given.x.shape[1:3]) <= side), row["case"]
    assert all(np.array_equal(a, np.round(a)) for _, a in given.arrays()), row["case"]  # small integers
    assert all(np.abs(a).max() <= 9 for _, a in given.arrays())
    assert row["tensor"] == tensor and words in row["diagnosis"], row.to_dict()
    # the same tensor and diagnosis class as the worst case it was shrunk from
    autograd = pd.read_csv(r["out"] / "autograd.csv")
    origin = autograd[(autograd["case"] == row["from_case"]) & (autograd["dtype"] == row["dtype"])
                      & (autograd["tensor"] == tensor)].iloc[0]  # fmt: skip
    assert origin["status"] == "fail" and shrink.failure_of(origin.to_dict())[:2] == (tensor, "fail")
    assert shrink.same_class(shrink.diagnosis_class(row["diagnosis"]), shrink.diagnosis_class(origin["diagnosis"]))
    from_shape = [int(n) for n in re.search(r"\] x(\d+(?:x\d+)*) ", row["from_case"]).group(1).split("x")]
    assert given.x.size < math.prod(from_shape)


@pytest.mark.parametrize("name", list(STUDENTS))
def test_it_is_shown_in_the_console_the_summary_and_the_heat_maps(judged, name):
    layer = STUDENTS[name][0]
    r = judged[name]
    case = pd.read_csv(r["out"] / "autograd_shrunk.csv").iloc[0]["case"]
    assert "where torch gives" in r["line"] or "shape mismatch" in r["line"], r["line"]
    assert r["rerun"] == f"python -m reference judge --impl tests/impls/{name}.py --case {shlex.quote(case)}"
    summary = (r["out"] / "summary.md").read_text()
    assert "## Smallest failing inputs" in summary and f"`{r['rerun']}`" in summary
    assert r["line"].split("smallest failing input: ", 1)[1] in summary
    pictures = load_index(r["out"])
    smallest = pictures[pictures["kind"] == "smallest"]
    if STUDENTS[name][1] == "db":  # a shape mismatch: nothing to subtract, told by the row and not drawn
        assert smallest.empty and "shape mismatch" in r["line"]
        return
    assert list(smallest["case"]) == [case] and list(smallest["layer"]) == [layer]
    assert (r["out"] / f"heatmap-{layer}-smallest.png").is_file()
    assert f"heatmap-{layer}-smallest.png" in summary


@pytest.mark.parametrize("name", list(STUDENTS))
def test_its_printed_rerun_command_reproduces_exactly_that_failure(judged, name):
    layer, tensor = STUDENTS[name][:2]
    r = judged[name]
    case = r["argv"][r["argv"].index("--case") + 1]
    assert r["again"] == 1, r["rerun"]
    rows = pd.concat([pd.read_csv(r["again_out"] / f"{j}.csv") for j in ("autograd", "finite_diff")])
    assert set(rows["case"]) == {case}
    failing = rows[rows["status"] != "pass"]
    assert "vacuous" not in set(failing["status"]), failing[["judge", "tensor", "status", "note"]]  # all compared
    shrunk = pd.read_csv(r["out"] / "autograd_shrunk.csv").iloc[0]
    same = failing[
        (failing["judge"] == "autograd") & (failing["tensor"] == tensor) & (failing["dtype"] == shrunk["dtype"])
    ]
    assert len(same) == 1 and str(same.iloc[0]["worst_index"]) == str(shrunk["worst_index"])  # nan: a shape
    assert shrink.diagnosis_class(same.iloc[0]["diagnosis"]) == shrink.diagnosis_class(shrunk["diagnosis"])


def test_a_right_implementation_shows_no_smallest_failing_input(tmp_path):
    code, printed = run_cli(["judge", "--impl", "scratch_cnn", "--quick", "--no-curves", "--layers", "MaxPool2D,ReLU",
                             "--judges", "protocol,autograd", "--out", str(tmp_path)])  # fmt: skip
    assert code == 0 and "smallest failing input" not in printed
    assert not (tmp_path / "autograd_shrunk.csv").exists() and not list(tmp_path.glob("heatmap*"))
    assert "Smallest failing inputs" not in (tmp_path / "summary.md").read_text()
