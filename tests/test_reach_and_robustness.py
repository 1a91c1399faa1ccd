"""Every layer reached, no judge crashing on what an implementation returns, forward and backward
judged apart, and every rerun command the judge prints reruns its case."""

import re
import shlex
import textwrap
import types

import pandas as pd

import scratch_cnn
from reference.cases.grid import KEPT_FAMILIES, Case, grid
from reference.cli import main
from reference.impl.protocol import load_impl
from reference.judges.autograd import AutogradJudge, run_case
from reference.judges.base import Context
from reference.judges.curves import CurvesJudge
from reference.judges.finite_diff import FiniteDiffJudge
from reference.judges.lifecycle import LifecycleJudge
from reference.judges.reach import MIN_JUDGED, reach, searchable
from reference.judges.rules import ProtocolJudge
from reference.report.console import rerun_command
from reference.report.tables import verdict_lines
from tests.test_train import fake_mnist

DATA = fake_mnist(n_train=400, n_test=200)
SMALL = [c for c in grid() if not c.network_layer and c.tag != "tutorial"][::6]


def write(tmp_path, name, source):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


# --- no judge crashes on wrong shapes or exceptions -------------------------------------------------


def test_every_judge_turns_wrong_shapes_everywhere_into_error_rows_not_a_crash():
    impl = load_impl("tests.impls.wrong_shapes")
    ctx = Context(impl, "wrong_shapes", SMALL, quick=True, networks={"tiny": 2, "seed": 2}, data=lambda: DATA)
    protocol = ProtocolJudge().run(ctx).rows
    assert protocol["status"].isin(["fail", "error"]).any()  # the rules it breaks (it constructs and runs)
    for judge in (AutogradJudge(), FiniteDiffJudge(crosscheck=False)):
        rows = fd = judge.run(ctx).rows
        assert len(rows) and not rows["status"].eq("pass").any(), judge.name  # nothing of it passes
        assert rows["note"].fillna("").str.len().gt(0).all(), judge.name  # every row says why
    # round two against a fresh instance: as wrong as each other where the shapes agree, named where not
    lifecycle = LifecycleJudge().run(ctx).rows
    assert lifecycle["status"].isin(["error", "fail", "vacuous"]).any()
    adjoint = fd[fd["tensor"] == "adjoint"]  # the identities' arrays, named: a wrong shape, or no gradient at all
    assert (
        len(adjoint) and adjoint["note"].str.contains("wrong shapes, adjoint identity not evaluated|grads has no").all()
    )
    # SGD raising NotImplementedError for weight decay: training is UNSUPPORTED, with the reason
    training = CurvesJudge().run(ctx).rows.iloc[0]
    assert training["status"] == "unsupported" and "weight decay is not implemented" in training["note"]
    # with an SGD that works, the wrong-shaped layers reach the lockstep: an error row, not a traceback
    layers = {n: getattr(impl, n) for n in ("Conv2D", "ReLU", "MaxPool2D", "Flatten", "Dense", "SoftmaxCrossEntropy")}
    working_sgd = types.SimpleNamespace(**layers, SGD=scratch_cnn.SGD)
    training = CurvesJudge().run(Context(working_sgd, "t", [], quick=True, data=lambda: DATA)).rows.iloc[0]
    assert training["status"] == "error" and training["note"].startswith("training stopped: "), training["note"]


def test_an_sgd_that_flattens_the_parameters_stops_training_with_an_error_row_at_its_own_line(tmp_path):
    path = write(
        tmp_path,
        "sgd_reshapes",
        """
        from scratch_cnn import *  # noqa: F403

        class SGD:
            def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
                self.params, self.lr = params, lr

            def step(self, grads):
                for k in self.params:
                    self.params[k] = (self.params[k] - self.lr * grads[k]).reshape(-1)  # rebinds, flattened
    """,
    )
    ctx = Context(load_impl(str(path)), "sgd_reshapes", [], quick=True, data=lambda: DATA)
    row = CurvesJudge().run(ctx).rows.iloc[0]
    assert row["status"] == "error" and row["note"].startswith("training stopped: ValueError"), row["note"]
    assert "(at sgd_reshapes.py:10 in step: `self.params[k] = " in row["note"]


def test_a_layer_raising_inside_the_lockstep_stops_training_with_an_error_row_naming_it(tmp_path):
    path = write(
        tmp_path,
        "relu_breaks",
        """
        import scratch_cnn
        from scratch_cnn import *  # noqa: F403

        class ReLU(scratch_cnn.ReLU):
            calls = 0

            def forward(self, x):
                ReLU.calls += 1
                if ReLU.calls > 5:
                    raise RuntimeError("the cache overflowed")
                return super().forward(x)
    """,
    )
    ctx = Context(load_impl(str(path)), "relu_breaks", [], quick=True, data=lambda: DATA)
    row = CurvesJudge().run(ctx).rows.iloc[0]
    assert row["status"] == "error" and "RuntimeError: the cache overflowed" in row["note"]


# --- forward and backward judged apart --------------------------------------------------------------


def test_a_backward_that_raises_leaves_its_forward_judged():
    impl = load_impl("tests.impls.several_faults")  # its MaxPool2D is scratch_cnn's

    class Pool:
        MaxPool2D = type("MaxPool2D", (impl.MaxPool2D,), {"backward": lambda self, d: 1 / 0})

    case = next(c for c in grid() if c.layer == "MaxPool2D" and c.values == "ties")
    rows = {r["tensor"]: r for r in run_case(Pool, case, "float64")}
    assert rows["out"]["status"] == "pass"  # the forward is right, and judged so
    assert rows["dx"]["status"] == "error" and rows["dx"]["note"].startswith("backward: ZeroDivisionError")


def test_a_backward_that_declares_a_limit_leaves_its_forward_judged_and_the_gradients_unsupported():
    impl = load_impl()

    def backward(self, dout):
        raise NotImplementedError("no backward for stride 3")

    class Pool:
        AvgPool2D = type("AvgPool2D", (impl.AvgPool2D,), {"backward": backward})

    case = next(c for c in grid() if c.layer == "AvgPool2D")
    rows = {r["tensor"]: r for r in run_case(Pool, case, "float32")}
    assert rows["out"]["status"] == "pass" and rows["dx"]["status"] == "unsupported"


# --- every layer reached ----------------------------------------------------------------------------


def test_the_tutorial_convolution_is_judged_on_the_tutorials_shapes_and_on_cases_the_search_finds():
    impl = load_impl("tests.impls.several_faults")
    cases = [c for c in grid() if c.layer == "Conv2D" and not c.network_layer and c.tag != "tutorial"]
    found = reach(Context(impl, "t", cases))
    assert found.reached["Conv2D"] == MIN_JUDGED and [c for c in found.added if not c.lifecycle]
    assert all(c.config["in_ch"] == 1 and c.config["padding"] == "valid" for c in found.added if not c.lifecycle)
    assert any(c.lifecycle for c in found.added)  # every lifecycle case refused: one in the region replaces them
    rows = AutogradJudge(("float64",)).run(Context(impl, "t", found.added)).rows
    assert rows["status"].eq("fail").any()  # and the flipped kernel is convicted there


def test_a_layer_that_refuses_everything_is_unsupported_with_what_was_tried_never_a_pass(tmp_path, capsys):
    path = write(
        tmp_path,
        "refuses",
        """
        import scratch_cnn
        from scratch_cnn import ReLU  # noqa: F401

        class Conv2D(scratch_cnn.Conv2D):
            def __init__(self, *args, **kwargs):
                raise NotImplementedError("this convolution is not written yet")
    """,
    )
    # nothing judged: exit 1, the run's verdict FAIL, never PASS (declared limits alone prove nothing)
    assert main(["judge", "--impl", str(path), "--quick", "--layers", "Conv2D", "--out", str(tmp_path / "r")]) == 1
    out = capsys.readouterr().out
    assert re.search(r"search: Conv2D: 0 supported case\(s\) found in \d+ tried \(none fits", out), out
    assert "Conv2D: UNSUPPORTED" in out and "Conv2D: PASS" not in out
    rows = pd.read_csv(tmp_path / "r" / "autograd.csv")
    assert rows.loc[rows["case"] == "search for supported cases", "status"].tolist() == ["unsupported"]


def test_a_verdict_line_with_no_case_judged_never_reads_as_a_pass():
    rows = pd.DataFrame([{"layer": "Conv2D", "case": f"c{i}", "status": "unsupported", "tensor": "*", "note": "no"}
                         for i in range(3)])  # fmt: skip
    assert verdict_lines(rows) == ["Conv2D: UNSUPPORTED: no case judged (3 unsupported)"]
    forward_only = pd.concat([rows, rows.assign(tensor="out", status="pass")])  # forwards judged, backwards declared
    assert verdict_lines(forward_only) == ["Conv2D: PASS 3 of 3 cases (3 rows of judged cases unsupported)"]


def test_the_protocol_rules_run_on_a_configuration_the_layer_supports():
    impl = load_impl("tests.impls.several_faults")
    ctx = Context(impl, "t", [Case("Conv2D", {}, (1,))])
    rows = ProtocolJudge().run(ctx).rows
    conv = rows[rows["layer"] == "Conv2D"].set_index("case")
    assert conv.loc["runs", "status"] == "pass" and "'in_ch': 1" in conv.loc["runs", "note"]
    assert conv.loc["params are live", "status"] == "pass" and conv.loc["dtype kept, float32", "status"] == "pass"


# --- every printed rerun command reruns its case ----------------------------------------------------


def test_every_rerun_command_the_judge_prints_reruns_a_failing_case(tmp_path, capsys):
    assert main(["judge", "--impl", "tests.impls.several_faults", "--quick", "--no-curves", "--layers",
                 "Conv2D,ReLU", "--out", str(tmp_path / "r")]) == 1  # fmt: skip
    printed = re.findall(r"rerun: (.+)", capsys.readouterr().out)
    summary = (tmp_path / "r" / "summary.md").read_text()
    commands = list(dict.fromkeys([*printed, *re.findall(r"Rerun: `([^`]+)`", summary)]))
    # and one case the search added, whose command is in the CSVs' rows rather than among the first printed
    autograd = pd.read_csv(tmp_path / "r" / "autograd.csv")
    added = autograd.loc[autograd["family"] == KEPT_FAMILIES["searched"], "case"]
    assert len(added), "the search added no case"
    commands.append(rerun_command("tests.impls.several_faults", added.iloc[0]))
    kinds = {"searched": False, "then": False, "plain": False}
    searched = {c.id for c in searchable(grid())}
    for i, command in enumerate(commands):
        argv = shlex.split(command)
        assert argv[:3] == ["python", "-m", "reference"], command
        case = argv[argv.index("--case") + 1]
        assert main([*argv[3:], "--out", str(tmp_path / f"rerun{i}")]) == 1, command  # the failure reproduces
        rows = pd.concat([pd.read_csv(f) for f in (tmp_path / f"rerun{i}").glob("*.csv") if f.stem in
                          ("autograd", "finite_diff", "lifecycle")])  # fmt: skip
        assert set(rows.loc[rows["status"] != "pass", "case"]) == {case}, command
        kinds["searched" if case in searched else "then" if " then " in case else "plain"] = True
    assert all(kinds.values()), (kinds, commands)  # a searched case, a lifecycle case and a grid case were rerun


def test_a_searched_case_id_is_accepted_by_case():
    from reference.pipeline import select_cases

    for case in searchable(grid())[::50]:
        assert select_cases(False, None, case.id)[0] == [case]


def test_a_configuration_that_raises_is_the_finding_and_the_other_rules_still_run_on_one_that_works(tmp_path):
    path = write(
        tmp_path,
        "same_breaks",
        """
        import numpy as np
        import scratch_cnn

        class Conv2D(scratch_cnn.Conv2D):
            def __init__(self, *args, padding="same", **kwargs):
                if padding == "same":
                    raise ValueError("same padding: index out of range")  # a bug, not a declared limit
                super().__init__(*args, padding=padding, **kwargs)

            def forward(self, x):
                out = super().forward(x.copy())
                x[...] = 0  # writes into the caller's input
                return out
    """,
    )
    rows = ProtocolJudge().run(Context(load_impl(str(path)), "t", [Case("Conv2D", {}, (1,))])).rows.set_index("case")
    assert rows.loc["runs", "status"] == "error" and "the other rules ran on config" in rows.loc["runs", "note"]
    assert rows.loc["inputs left unchanged", "status"] == "fail"  # found on the configuration that runs


def test_fail_fast_stops_each_judge_at_its_first_failing_case_and_says_so(tmp_path):
    out = tmp_path / "r"
    assert main(["autograd", "--impl", "tests.impls.several_faults", "--quick", "--layers", "Dense", "--fail-fast",
                 "--out", str(out)]) == 1  # fmt: skip
    rows = pd.read_csv(out / "autograd.csv")
    stopped = rows["note"].str.startswith("not run: --fail-fast", na=False)
    assert rows["status"].eq("fail").any() and stopped.sum() > 5  # the first failure kept, the rest not run
    assert not list(out.glob("heatmap-*.png"))  # and no pictures drawn
    assert main(["autograd", "--quick", "--layers", "Dense", "--fail-fast", "--out", str(tmp_path / "ok")]) == 0


def test_fail_fast_stops_only_the_failing_layer_so_a_correct_neighbour_still_passes(tmp_path):
    # several_faults' Dense is wrong, its MaxPool2D is scratch_cnn's: the pooling layer is judged whole
    out = tmp_path / "r"
    assert main(["autograd", "--impl", "tests.impls.several_faults", "--quick", "--layers", "Dense,MaxPool2D",
                 "--fail-fast", "--out", str(out)]) == 1  # fmt: skip
    rows = pd.read_csv(out / "autograd.csv")
    pool = rows[rows["layer"] == "MaxPool2D"]
    assert len(pool) > 5 and pool["status"].eq("pass").all(), pool["note"].dropna().head().tolist()
    assert rows.loc[rows["layer"] == "Dense", "note"].str.startswith("not run: --fail-fast", na=False).any()
