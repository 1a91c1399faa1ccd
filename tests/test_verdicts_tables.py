"""Verdicts that match what was judged, over every verdict table the judges write: a verdict is PASS
only with passing rows, a layer or network with no judged row is UNSUPPORTED (MISSING when every
row is missing) with why; a row that fails on a rule says so; a failing network or training run is
laid at the first layer whose own judgement fails."""

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from reference.core.compare import FAILING, ROW_COLUMNS, STATUSES, WRONG
from reference.core.verdicts import attribute, blame, exit_code, layer_verdicts, own_failures
from reference.report.tables import verdict_lines

LAYERS = ("Conv2D", "MaxPool2D", "ReLU", "Dense")
NETWORKS = ("seed", "tiny")
JUDGED = ("pass", *FAILING)
NOTES = ("", "NotImplementedError: square images only", "not run: a time-out", "3 of 8 elements out of tolerance")


@st.composite
def a_row(draw):
    """One row as a judge writes it: a layer's case, a rule, or a whole network's parameter."""
    status = draw(st.sampled_from(STATUSES))
    note = draw(st.sampled_from(NOTES))
    if draw(st.booleans()):  # a network: the finite-difference judge's rows of it
        arch = draw(st.sampled_from(NETWORKS))
        return {"judge": "finite_diff", "layer": arch, "case": f"{arch} network, 3 images 28x28", "dtype": "float64",
                "tensor": draw(st.sampled_from(["*", "0.W", "3.b"])), "status": status, "note": note,
                "family": "whole network", "kind": "network"}  # fmt: skip
    judge = draw(st.sampled_from(["protocol", "autograd", "finite_diff", "lifecycle"]))
    return {"judge": judge, "layer": draw(st.sampled_from(LAYERS)), "dtype": "float64",
            "case": draw(st.sampled_from(["runs", "c1", "c2", "*"] if judge == "protocol" else ["c1", "c2", "c3", "*"])),
            "tensor": draw(st.sampled_from(["dx", "out", "*"])), "status": status, "note": note,
            "family": draw(st.sampled_from(["f1", "f2"])), "kind": "element",
            "ties": draw(st.sampled_from([0, 2])), "near_ties": draw(st.sampled_from([0, 1])),
            "zeros": draw(st.sampled_from([0, 3]))}  # fmt: skip


def table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for col in ROW_COLUMNS:
        if col not in df:
            df[col] = np.nan
    return df


@given(st.lists(a_row(), min_size=1, max_size=25))
def test_no_pass_without_a_passing_row_and_nothing_judged_is_unsupported(rows):
    df = table(rows)
    verdicts = layer_verdicts(df).set_index("layer")
    for layer, lrows in df.groupby("layer"):
        v = verdicts.loc[layer]
        statuses = set(lrows["status"])
        assert v["verdict"] in ("PASS", "weak", "FAIL", "TIMEOUT", "UNSUPPORTED", "MISSING"), v
        assert isinstance(v["why"], str) and v["why"], v
        if v["verdict"] in ("PASS", "weak"):
            assert "pass" in statuses and v["rows_pass"] > 0, (layer, v.to_dict(), statuses)
        assert (v["verdict"] == "FAIL") == bool(statuses & set(WRONG)), (layer, v.to_dict(), statuses)
        assert (v["verdict"] == "TIMEOUT") == ("timeout" in statuses and not statuses & set(WRONG)), (
            layer,
            v.to_dict(),
        )
        if not statuses & set(JUDGED):
            assert v["verdict"] == ("MISSING" if statuses == {"missing"} else "UNSUPPORTED"), (layer, v.to_dict())
    # each judge's own table (its .md and the terminal): one line per layer, worded the same way
    for judge, jrows in df.groupby("judge"):
        lines = {line.split(":", 1)[0]: line for line in verdict_lines(jrows)}
        for layer, lrows in jrows.groupby("layer"):
            statuses, line = set(lrows["status"]), lines[layer]
            head = line.split(":", 1)[1].strip()
            if head.startswith("PASS"):
                assert "pass" in statuses, (judge, line, statuses)
            assert head.startswith("FAIL") == bool(statuses & set(WRONG)), (judge, line, statuses)
            assert head.startswith("TIMEOUT") == ("timeout" in statuses and not statuses & set(WRONG)), (judge, line)
            if not statuses & set(JUDGED):
                assert head.startswith("MISSING" if statuses == {"missing"} else "UNSUPPORTED"), (judge, line)
    # and the exit code: 0 only where something passed and nothing failed
    if exit_code(df, strict=False) == 0:
        assert df["status"].eq("pass").any() and not df["status"].isin(FAILING).any()


def test_a_network_whose_one_row_is_unsupported_is_unsupported_with_why_never_a_pass():
    # the false PASS: 'seed: PASS, 1 rows pass' with rows_pass = 0
    why = "NotImplementedError: one square image at a time (m == 1, H == W)"
    df = table([{"judge": "finite_diff", "layer": "seed", "case": "seed network, 3 images 28x28", "tensor": "*",
                 "dtype": "float64", "status": "unsupported", "note": why, "family": "whole network",
                 "kind": "network"}])  # fmt: skip
    v = layer_verdicts(df).set_index("layer").loc["seed"]
    assert v["verdict"] == "UNSUPPORTED" and why in v["why"] and "network not judged" in v["why"]
    assert verdict_lines(df) == [f"seed: UNSUPPORTED: network not judged: {why}"]
    assert exit_code(df, strict=False) == 1  # nothing judged: never a pass
    # the same network judged: a pass that counts its passing rows, not every row
    judged = table([*df.to_dict("records"), {**df.iloc[0].to_dict(), "tensor": "0.W", "status": "pass", "note": ""}])
    assert layer_verdicts(judged).set_index("layer").loc["seed", "why"].startswith("1 rows pass")


def test_a_row_that_fails_on_a_rule_says_which_and_that_its_numbers_agree():
    row = {"judge": "finite_diff", "layer": "MaxPool2D", "case": "MaxPool2D[kernel_size=2,stride=1] x1x6x6x3 ties s20",
           "dtype": "float64", "tensor": "dx", "worst_index": "(0, 4, 3, 0)", "ours": 4.174273699311948,
           "ref": 4.174273698597586, "budget": 0.0008, "status": "fail",
           "note": "window rule: total gradient 12.5191 != total upstream gradient 10.5021"}  # fmt: skip
    (line,) = verdict_lines(table([row]))
    assert "ours=4.17427369931 ref=4.1742736986 agree within tolerance" in line, line
    assert "fails the max-pool window rule (total gradient 12.5191 != total upstream gradient 10.5021)" in line
    assert "sum to its upstream gradient" in line
    # a row that fails on its numbers reads as before: no 'agree'
    (line,) = verdict_lines(table([{**row, "budget": 40.0, "note": "3 of 108 elements out of tolerance"}]))
    assert "agree" not in line and "(3 of 108 elements out of tolerance)" in line


def own_rows(*failing: str) -> list[dict]:
    """Rows of the layers' own judgements: each kind passes, those named fail."""
    return [{"judge": "autograd", "layer": kind, "case": f"{kind} c1", "tensor": "dx", "dtype": "float64",
             "status": "fail" if kind in failing else "pass", "note": "", "diagnosis": f"{kind}'s own bug",
             "family": "f1", "budget": 3.0}
            for kind in ("Conv2D", "ReLU", "MaxPool2D", "Flatten", "Dense", "SoftmaxCrossEntropy")]  # fmt: skip


TRAINING = {"judge": "curves", "layer": "training", "case": "lockstep max relative difference (loss or parameter)",
            "tensor": "-", "dtype": "", "status": "fail", "family": "training", "network": "seed", "broken_layer": 2,
            "diagnosis": "the first parameter out was 2.b, of layer 2 (Conv2D)", "note": "40 steps"}  # fmt: skip


def test_a_training_failure_is_laid_at_the_first_layer_whose_own_judgement_fails():
    # seed: Conv2D 0, ReLU 1, Conv2D 2, MaxPool2D 3, ..., Dense 11 and 13; 2.b out first
    blamed = attribute(table([*own_rows("MaxPool2D", "Dense"), TRAINING])).set_index("layer").loc["training"]
    assert blamed["blame"] == "MaxPool2D", blamed["diagnosis"]
    assert blamed["diagnosis"].startswith("attributed to MaxPool2D (layer 3 of seed), the first layer at or after "
                                          "layer 2 whose own judgement fails (autograd, MaxPool2D c1, dx: MaxPool2D's own bug)")  # fmt: skip
    assert "2.b, of layer 2 (Conv2D)" in blamed["diagnosis"]  # what the lockstep saw, kept after it
    # the parameter's own layer when it fails itself; the loss after every layer; nothing when no layer fails
    assert attribute(table([*own_rows("Conv2D", "MaxPool2D"), TRAINING])).iloc[-1]["blame"] == "Conv2D"
    loss = attribute(table([*own_rows("SoftmaxCrossEntropy"), TRAINING])).iloc[-1]
    assert loss["blame"] == "SoftmaxCrossEntropy" and "(the loss)" in loss["diagnosis"]
    assert attribute(table([*own_rows(), TRAINING])).iloc[-1]["blame"] == ""
    # a failure first seen after every failing layer (a forward bug upstream): the first one before it
    assert blame("seed", 11, own_failures(table(own_rows("MaxPool2D"))))[0] == "MaxPool2D"


def test_a_network_failure_is_laid_at_a_layer_in_the_network_s_verdict_too():
    network = {"judge": "finite_diff", "layer": "tiny", "case": "tiny network, 4 images 28x28", "tensor": "0.b",
               "dtype": "float64", "status": "fail", "note": "2 of 4 elements out of tolerance",
               "family": "whole network", "kind": "network", "diagnosis": "the network's loss gradient w.r.t. 0.b"}  # fmt: skip
    df = table([*own_rows("MaxPool2D"), network])
    v = layer_verdicts(df).set_index("layer").loc["tiny"]
    assert v["verdict"] == "FAIL" and "attributed to MaxPool2D" in v["why"], v["why"]
    said = attribute(df).set_index("layer").loc["tiny", "diagnosis"]
    assert said.startswith("attributed to MaxPool2D (layer 1 of tiny)"), said
