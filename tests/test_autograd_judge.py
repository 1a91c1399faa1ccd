"""The autograd judge: scratch_cnn passes every row; each injected fault fails exactly its rows."""

import sys
import textwrap

import pytest
from hypothesis import given, settings

from reference.cases.grid import grid, strategies
from reference.cli import main
from reference.impl.faults import FAULTS, FAULTS_BY_NAME
from reference.impl.protocol import load_impl
from reference.judges.autograd import dtypes_of, run_autograd, run_case
from reference.layers import LAYERS, LOSSES, OPTIONAL

GRID = grid()


def test_scratch_cnn_passes_every_row_of_the_grid():
    df = run_autograd(cases=GRID)
    assert len(df) > 900 and set(df["layer"]) == set(LAYERS + LOSSES + OPTIONAL)  # every kind but the optimisers
    assert (df["status"] == "pass").all(), df[df["status"] != "pass"].head().to_string()


def test_the_grid_exercises_zeros_ties_and_near_ties():
    df = run_autograd(cases=[c for c in GRID if c.layer in ("MaxPool2D", "ReLU")], dtypes=("float64",))
    assert (df[df.layer == "MaxPool2D"]["ties"] > 0).sum() >= 8
    assert (df[df.layer == "MaxPool2D"]["near_ties"] > 0).sum() >= 4
    assert (df[df.layer == "ReLU"]["zeros"] > 0).sum() >= 4


@settings(max_examples=60)
@given(strategies())
def test_scratch_cnn_passes_hypothesis_cases(case):
    for dtype in ("float64", "float32"):
        rows = run_case(load_impl(), case, dtype)
        assert rows and all(r["status"] == "pass" for r in rows), [(r["tensor"], r["note"]) for r in rows]


def judged_rows(fault_name, layer):
    fault = FAULTS_BY_NAME[fault_name]
    impl = fault.impl()
    for case in (c for c in GRID if c.layer == layer):
        for dtype in dtypes_of(case, ("float64", "float32")):
            for r in run_case(impl, case, dtype):
                yield fault.should_fail(case, r["tensor"], r), r["status"] != "pass", r


@pytest.mark.parametrize(
    "fault, layer",
    [
        ("relu_grad_one_at_zero", "ReLU"),
        ("maxpool_ties_to_every_max", "MaxPool2D"),
        ("avgpool_wrong_axis", "AvgPool2D"),
        ("conv_dW_missing_1_over_m", "Conv2D"),
        ("conv_flipped_kernel", "Conv2D"),
        ("softmax_without_max_shift", "SoftmaxCrossEntropy"),
        ("dense_dx_scaled", "Dense"),
        ("vacuous_dense", "Dense"),
        *[(f.name, f.layer) for f in FAULTS if f.layer in OPTIONAL],  # the kinds courses add
    ],
)
def test_a_wrong_layer_fails_exactly_the_rows_it_should(fault, layer):
    verdicts = list(judged_rows(fault, layer))
    wrong = [(r["case"], r["dtype"], r["tensor"], r["status"]) for expect, failed, r in verdicts
             if expect is not None and expect != failed]  # fmt: skip
    assert not wrong, wrong[:5]
    assert any(failed for _, failed, _ in verdicts)  # the fault was caught at least once
    assert any(not failed for _, failed, _ in verdicts) or fault == "vacuous_dense"  # and the rest still pass


def write_module(tmp_path, monkeypatch, name, source):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)


def test_the_cli_gives_one_clear_error_for_a_bad_impl_and_a_verdict_per_layer(tmp_path, capsys):
    assert main(["autograd", "--impl", "no.such.module", "--out", str(tmp_path)]) == 2
    assert "cannot import implementation 'no.such.module'" in capsys.readouterr().err
    assert main(["autograd", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Conv2D: PASS" in out and "MaxPool2D: PASS" in out
    assert (tmp_path / "autograd.csv").is_file() and (tmp_path / "autograd.md").is_file()


def test_the_cli_exits_nonzero_and_names_the_element_when_a_row_fails(tmp_path, monkeypatch, capsys):
    write_module(
        tmp_path,
        monkeypatch,
        "relu_at_zero_impl",
        """
        from scratch_cnn import *
        from reference.layers.relu import ReLUGradOneAtZero as ReLU
    """,
    )
    assert main(["autograd", "--impl", "relu_at_zero_impl", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if s.strip().startswith("ReLU:"))
    assert "FAIL" in line and "dx(" in line and "ours=" in line and "ref=" in line
    assert "rerun: python -m reference judge --impl relu_at_zero_impl --case 'ReLU[]" in out
