"""Every judge reaches every layer (issue: "Verdicts you can stake a grade on", item 5): the lifecycle
judge, the protocol rules and the whole-network checks each have configurations of their own, and
where a layer raises there, an error (a bug, an assertion) as much as a declared limit, they search
for a configuration it takes instead of stopping: the error stays the finding, and the bug behind it
is convicted too. ``tests/impls/reach_errors.py`` holds the layers."""

import re

import pandas as pd
import pytest

import scratch_cnn
from reference.cases.grid import Case, grid
from reference.impl.faults import _impl
from reference.impl.protocol import load_impl
from reference.judges.base import Context
from reference.judges.finite_diff import FiniteDiffJudge
from reference.judges.lifecycle import LifecycleJudge
from reference.judges.reach import SEARCHED, reach, searchable
from reference.judges.rules import ProtocolJudge, check_protocol
from reference.layers.dense import DenseDxScaled
from tests.impls import reach_errors

ERRORS = "tests.impls.reach_errors"
# what a run holds of each layer: its lifecycle cases (all 'same' for Conv2D, 2x2 windows for the pool)
# and the tutorials' shapes
RUN = [c for c in grid() if c.layer in ("Conv2D", "MaxPool2D") and (c.lifecycle or c.tag == "tutorial")]


def searched_rounds(found):
    return [c for c in found.added if c.lifecycle]


# --- lifecycle ---------------------------------------------------------------------------------------


def test_a_conv_that_raises_on_same_padding_and_accumulates_its_gradient_is_convicted_by_the_lifecycle_judge():
    impl = load_impl(ERRORS)
    found = reach(Context(impl, "t", RUN))
    conv = [c for c in searched_rounds(found) if c.layer == "Conv2D"]
    assert len(conv) == 1 and conv[0].config["padding"] == "valid" and conv[0].tag == SEARCHED
    assert "ValueError: invalid literal for int() with base 10: 'same'" in found.notes["Conv2D lifecycle"]
    rows = LifecycleJudge().run(Context(impl, "t", [*RUN, *found.added])).rows
    rows = rows[rows["layer"] == "Conv2D"]
    grid_rounds = rows[~rows["case"].isin([c.id for c in conv])]
    assert len(grid_rounds) == 2 and (grid_rounds["status"] == "error").all()  # 'same': the error stays the finding
    searched = rows[rows["case"] == conv[0].id].set_index("tensor")
    assert searched.loc["dW", "status"] == "fail" and searched.loc["out", "status"] == "pass"
    assert "gradients accumulate across calls" in searched.loc["dW", "diagnosis"]
    assert searched.loc["db", "status"] == "fail" if "db" in searched.index else conv[0].config["bias"] is False


def test_a_layer_whose_lifecycle_cases_run_gets_no_searched_round():
    found = reach(Context(load_impl(), "t", RUN))  # scratch_cnn: both lifecycle cases of each layer run
    assert not searched_rounds(found) and not [note for key, note in found.notes.items() if "lifecycle" in key]


def test_a_lifecycle_case_on_an_input_only_a_fresh_instance_refuses_is_replaced_by_one_it_takes():
    class SquareOnlyPool(scratch_cnn.MaxPool2D):  # an undeclared limit: a bug on non-square images
        def forward(self, x):
            if x.shape[1] != x.shape[2]:
                raise IndexError("index 6 is out of bounds for axis 1 with size 6")
            return super().forward(x)

    impl = _impl(MaxPool2D=SquareOnlyPool)
    run = [c for c in RUN if c.layer == "MaxPool2D" and (c.tag or c.then[0][1] != c.then[0][2])]  # 4x4 then 6x8
    found = reach(Context(impl, "t", run))
    (case,) = searched_rounds(found)
    assert case.input_shape[1] == case.input_shape[2] and case.then[0][1] == case.then[0][2]
    assert case.id in {c.id for c in searchable(grid())}  # --case reruns it


# --- protocol rules ----------------------------------------------------------------------------------


def test_the_protocol_rules_run_on_a_configuration_found_beyond_their_own_few():
    rows = ProtocolJudge().run(Context(load_impl(ERRORS), "t", [Case("MaxPool2D", {}, (1,))])).rows.set_index("case")
    runs = rows.loc["runs"]
    assert runs["status"] == "error" and "AssertionError: this pool is AlexNet's" in runs["note"]
    assert "the other rules ran on config {'kernel_size': 3, 'stride': 2}" in runs["note"]
    kept = rows.loc["returned arrays stay the caller's"]
    assert kept["status"] == "fail" and "buffer it reuses" in kept["note"]  # the bug behind the assertion


def test_a_layer_that_raises_everywhere_says_how_many_configurations_it_refused():
    class Broken(scratch_cnn.Conv2D):
        def forward(self, x):
            raise TypeError("unsupported operand type(s) for @: 'list' and 'float'")

    (row,) = check_protocol(_impl(Conv2D=Broken), ["Conv2D"]).to_dict("records")
    assert row["status"] == "error" and "TypeError: unsupported operand" in row["note"]
    tried = int(re.search(r"no other of (\d+) configurations ran", row["note"]).group(1))
    assert tried > 5 + 20, row["note"]  # its own five and the search's


def test_output_shape_is_checked_on_a_configuration_the_layer_takes_when_the_per_axis_one_is_declared_beyond_it():
    class SquarePool(scratch_cnn.MaxPool2D):  # takes one window size; its output_shape takes the height twice
        def __init__(self, kernel_size=2, stride=None):
            if isinstance(kernel_size, tuple) and kernel_size[0] != kernel_size[1]:
                raise NotImplementedError("square windows only")
            super().__init__(kernel_size, stride)

        def output_shape(self, shape):
            m, H, W, C = shape
            k, s = self.kernel_size[0], self.stride[0]
            return (m, (H - k) // s + 1, (H - k) // s + 1, C)

    rows = check_protocol(_impl(MaxPool2D=SquarePool), ["MaxPool2D"]).set_index("case")
    row = rows.loc["output_shape agrees with forward"]
    assert row["status"] == "fail" and "= (2, 2, 2, 2), forward returns (2, 2, 4, 2)" in row["note"], row["note"]
    assert "NotImplementedError: square windows only" in row["note"]  # what was refused, and where it ran instead


# --- whole networks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dense", [None, DenseDxScaled], ids=["correct", "dense-dx-scaled"])
def test_the_network_check_judges_a_network_the_layers_take_when_the_default_raises(dense):
    impl = _impl(Conv2D=reach_errors.Conv2D, **({"Dense": dense} if dense else {}))
    rows = FiniteDiffJudge(crosscheck=False).run(Context(impl, "t", [], networks={"tiny": 2})).rows
    default = rows[rows["case"] == "tiny network, 2 images 28x28"]
    assert (
        default["status"].tolist() == ["error"] and "ValueError: invalid literal for int()" in default["note"].iloc[0]
    )
    searched = rows[rows["case"] == "tiny network, 2 images 28x28 (searched: every convolution 'valid')"]
    assert set(searched["tensor"]) == {"0.W", "0.b", "4.W", "4.b"}
    failed = set(searched.loc[searched["status"] != "pass", "tensor"])
    assert failed == (set() if dense is None else {"0.W", "0.b"}), searched[["tensor", "status", "note"]]


def test_a_network_no_variant_of_which_runs_says_what_was_tried():
    impl = _impl(Conv2D=reach_errors.Conv2D, MaxPool2D=reach_errors.MaxPool2D)  # 2x2 pooling in every network
    (row,) = FiniteDiffJudge(crosscheck=False).run(Context(impl, "t", [], networks={"tiny": 2})).rows.to_dict("records")
    assert row["status"] == "error" and "none of 3 other networks ran either" in row["note"], row["note"]


def test_the_search_reaches_the_lifecycle_judge_through_the_sandbox(tmp_path, capsys):
    from reference.cli import main

    out = tmp_path / "out"
    assert main(["lifecycle", "--impl", ERRORS, "--quick", "--layers", "Conv2D", "--out", str(out)]) == 1
    assert (
        "search: Conv2D: no lifecycle case of the run runs on a fresh instance (ValueError" in capsys.readouterr().out
    )
    rows = pd.read_csv(out / "lifecycle.csv")
    dw = rows[(rows["tensor"] == "dW") & rows["case"].str.contains("padding=valid")]
    assert len(dw) == 1 and dw["status"].iloc[0] == "fail" and "accumulate across calls" in dw["diagnosis"].iloc[0]
