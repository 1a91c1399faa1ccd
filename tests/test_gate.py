"""The gate on crafted runs: a regressed row, a missing layer and a drifted figure fail it (exit 1);
a missing or malformed baseline is exit 2."""

import json

import pandas as pd
import pytest

from reference.cli import main
from reference.report.gate import BASELINE_FILE, baseline_from, run_gate


def write_run(latest, *, autograd_rows, lockstep=1e-14, accuracy=0.99):
    latest.mkdir(parents=True, exist_ok=True)
    cols = ["judge", "layer", "case", "dtype", "tensor", "max_abs_err", "budget", "status"]
    pd.DataFrame(autograd_rows, columns=cols).to_csv(latest / "autograd.csv", index=False)
    pd.DataFrame([["finite_diff", "Dense", "c", "float64", "dW", 1e-10, 0.02, "pass"]], columns=cols).to_csv(
        latest / "finite_diff.csv", index=False
    )
    for judge in ("protocol", "lifecycle"):
        pd.DataFrame([[judge, "Dense", "c", "float64", "dW", 0.0, 0.0, "pass"]], columns=cols).to_csv(
            latest / f"{judge}.csv", index=False
        )
    pd.DataFrame({"step": [1, 2], "loss_rel_diff": [1e-16, lockstep], "param_rel_diff": [1e-16, lockstep]}).to_csv(
        latest / "lockstep.csv", index=False
    )
    pd.DataFrame(
        {
            "check": [
                "final test accuracy (ours)",
                "final test accuracy gap |ours - twin|",
                "largest test loss gap |ours - twin|",
            ],
            "value": [accuracy, 0.001, 0.002],
            "status": ["pass", "pass", "pass"],
        }
    ).to_csv(latest / "curve_checks.csv", index=False)
    pd.DataFrame({"fault": ["dense_dx_scaled"], "status": ["pass"]}).to_csv(latest / "faults.csv", index=False)
    (latest / "run.json").write_text(json.dumps({"quick": False}))


GOOD = [  # max_abs_err, then budget: the share of its tolerance the worst element used
    ["autograd", "Conv2D", "c1", "float64", "dW", 1e-12, 1e-3, "pass"],
    ["autograd", "ReLU", "c2", "float64", "dx", 0.0, 0.0, "pass"],
    ["autograd", "MaxPool2D", "c3", "float32", "dx", 1e-7, 0.01, "pass"],
]


@pytest.fixture
def baseline(tmp_path):
    write_run(tmp_path / "accepted", autograd_rows=GOOD)
    directory = tmp_path / "baseline"
    directory.mkdir()
    (directory / BASELINE_FILE).write_text(json.dumps(baseline_from(tmp_path / "accepted")))
    return directory


def test_an_unchanged_run_passes_the_gate(tmp_path, baseline):
    write_run(tmp_path / "latest", autograd_rows=GOOD)
    table, code, message = run_gate(tmp_path / "latest", baseline)
    assert code == 0 and (table["status"] == "pass").all(), table
    assert "PASS" in message


def test_a_regressed_row_a_missing_layer_and_a_drifted_figure_each_fail(tmp_path, baseline):
    rows = [
        ["autograd", "Conv2D", "c1", "float64", "dW", 5e-10, 0.5, "pass"],  # drift: 500x, half the tolerance
        ["autograd", "ReLU", "c2", "float64", "dx", 1.0, 2.0, "fail"],  # a regressed row: 2x its tolerance
        # MaxPool2D is gone: a check that silently stopped running
    ]
    write_run(tmp_path / "latest", autograd_rows=rows)
    table, code, _ = run_gate(tmp_path / "latest", baseline)
    assert code == 1
    failed = table[table["status"] == "fail"].set_index("check")
    assert failed.loc["autograd: rows failing", "now"] == 1
    assert failed.loc["autograd Conv2D dW float64: share of tolerance used", "now"] == 0.5
    assert failed.loc["autograd MaxPool2D dx float32: share of tolerance used", "now"] == "missing"
    assert len(failed) == 4  # the three above and the ReLU figure that rose from 0 to 2x its tolerance


def test_rounding_noise_far_inside_the_tolerance_never_fails_the_gate(tmp_path, baseline):
    # the same code on another BLAS thread split: a float64 dW 8x its accepted error, still 1% of its tolerance
    rows = [["autograd", "Conv2D", "c1", "float64", "dW", 8e-12, 8e-3, "pass"], GOOD[1], GOOD[2]]
    write_run(tmp_path / "latest", autograd_rows=rows, lockstep=5e-13)
    table, code, _ = run_gate(tmp_path / "latest", baseline)
    assert code == 0, table[table["status"] == "fail"]


def test_a_lockstep_drift_far_above_rounding_fails_even_inside_its_bound(tmp_path, baseline):
    write_run(tmp_path / "latest", autograd_rows=GOOD, lockstep=1e-7)
    failed = set(run_gate(tmp_path / "latest", baseline)[0].query("status == 'fail'")["check"])
    assert failed == {"lockstep max relative difference"}


def test_broken_curve_and_lockstep_bounds_fail_the_gate(tmp_path, baseline):
    write_run(tmp_path / "latest", autograd_rows=GOOD, lockstep=2e-6, accuracy=0.97)
    table, code, _ = run_gate(tmp_path / "latest", baseline)
    failed = set(table[table["status"] == "fail"]["check"])
    assert code == 1 and failed == {"lockstep max relative difference", "final test accuracy (ours)"}


@pytest.mark.parametrize(
    "content",
    [None, "{not json", json.dumps({"format": "other"}), json.dumps({"format": "scratch-cnn-baseline", "version": 2})],
)
def test_a_missing_or_malformed_baseline_is_exit_2_with_how_to_create_it(tmp_path, content, capsys):
    write_run(tmp_path / "latest", autograd_rows=GOOD)
    (tmp_path / "baseline").mkdir()
    if content is not None:
        (tmp_path / "baseline" / BASELINE_FILE).write_text(content)
    assert main(["gate", "--latest", str(tmp_path / "latest"), "--baseline", str(tmp_path / "baseline")]) == 2
    assert "--update-baseline" in capsys.readouterr().err


def test_the_gate_cli_prints_the_table_and_exits_1_on_regression(tmp_path, baseline, capsys):
    write_run(
        tmp_path / "latest",
        autograd_rows=[GOOD[0], GOOD[2], ["autograd", "ReLU", "c2", "float64", "dx", 0.0, 0.0, "fail"]],
    )
    assert main(["gate", "--latest", str(tmp_path / "latest"), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "| check" in out and "autograd: rows failing" in out and "FAIL" in out


def test_a_new_run_replaces_latest_whole_and_keeps_the_junit_xml(tmp_path):
    from reference.report.publish import swap_into_place

    latest, staging = tmp_path / "latest", tmp_path / ".latest-new"
    latest.mkdir()
    (latest / "junit-tests.xml").write_text("<testsuite/>")
    (latest / "stale.csv").write_text("old")
    staging.mkdir()
    (staging / "autograd.csv").write_text("new")
    swap_into_place(staging, latest, carry=("junit*.xml",))
    assert sorted(p.name for p in latest.iterdir()) == ["autograd.csv", "junit-tests.xml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]  # nothing half-written left beside it


def test_the_baseline_moves_only_when_allowed_and_says_what_changed(tmp_path, baseline, capsys):
    from reference.verify import update_baseline

    write_run(
        tmp_path / "latest",
        autograd_rows=[GOOD[0], GOOD[1], ["autograd", "MaxPool2D", "c3", "float32", "dx", 2e-7, 0.02, "pass"]],
    )
    before = (baseline / BASELINE_FILE).read_text()
    assert update_baseline(tmp_path / "latest", baseline, allowed=False) == 1
    assert (baseline / BASELINE_FILE).read_text() == before
    assert update_baseline(tmp_path / "latest", baseline, allowed=True) == 0
    assert "autograd MaxPool2D dx float32: 0.01 -> 0.02" in capsys.readouterr().out
    assert run_gate(tmp_path / "latest", baseline)[1] == 0
