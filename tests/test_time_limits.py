"""Time limits judge correctness, not speed: a call may take at least --case-timeout, and more where
the layer's calls have been slow (its measured cost per byte, scaled by what the call is sent), so
slow loop code is judged in full while a hang is cut at its first limit, as a ``timeout`` row that
names the limit and the cost it measured, never a ``fail``."""

import textwrap

import pandas as pd

from reference.cli import main
from reference.sandbox.client import Session

SLOW = """
import time
from scratch_cnn import *  # noqa
from scratch_cnn import Dense as _Dense

class Dense(_Dense):
    def forward(self, x):
        time.sleep(0.05 + x.nbytes * 1e-5)  # a Python loop over the batch: slow, slower on a larger batch
        {twist}
        return super().forward(x)
"""
HANGS_ON_A_TRAINING_BATCH = "while x.shape[0] == 128:\n            pass"


def judge(tmp_path, twist="pass", *options):
    (tmp_path / "layers.py").write_text(textwrap.dedent(SLOW.format(twist=twist)))
    out = tmp_path / "out"
    code = main(["judge", "--impl", str(tmp_path / "layers.py"), "--layers", "Dense", "--quick", "--no-curves",
                 "--judges", "autograd", "--case-timeout", "0.2", "--out", str(out), *options])  # fmt: skip
    return code, pd.read_csv(out / "autograd.csv"), pd.read_csv(out / "verdicts.csv").set_index("layer")


def test_a_slow_correct_layer_is_judged_in_full_though_its_large_calls_take_longer_than_the_least_limit(tmp_path):
    code, rows, verdicts = judge(tmp_path)
    assert code == 0 and set(rows["status"]) == {"pass"}
    assert (rows["case"].str.contains("x128x20")).any()  # the call of 0.25 s on a training batch was judged


def test_without_the_measured_cost_the_same_layer_would_have_timed_out(tmp_path, monkeypatch):
    monkeypatch.setattr(Session, "SLOW_FACTOR", 0.0)  # the limit is --case-timeout alone
    code, rows, _ = judge(tmp_path)
    assert code == 1 and (rows["status"] == "timeout").any()
    assert not (rows["status"] == "fail").any()


def test_a_hang_is_a_timeout_row_naming_the_limit_and_the_cost_it_measured_never_a_fail(tmp_path):
    code, rows, verdicts = judge(tmp_path, HANGS_ON_A_TRAINING_BATCH)
    timed = rows[rows["status"] == "timeout"]
    assert code == 1 and len(timed) and not (rows["status"] == "fail").any()
    first = timed["note"].iloc[0]
    assert "per call" in first and "its slowest call of Dense so far took" in first and "--case-timeout" in first


def test_grade_scores_a_timeout_as_the_teacher_chooses():
    from types import SimpleNamespace

    from reference.grade.gradebook import gradebook_row

    verdicts = (b"layer,verdict,why,rows_pass\nDense,TIMEOUT,1 case(s) cut,12\nReLU,TIMEOUT,3 case(s) cut,0\n"
                b"Conv2D,PASS,9 cases judged,40\n")  # fmt: skip
    sub = SimpleNamespace(id="alice", name="alice.py", problem="", files={"a": b""}, sha256="0", dropped=[])
    result = {"files": {"verdicts.csv": verdicts}, "exit_code": 1}
    points = {"Dense": 2.0, "ReLU": 1.0, "Conv2D": 3.0}
    assert gradebook_row(sub, result, points)["score"] == 3.0  # zero: what was cut is not proven
    judged_only = gradebook_row(sub, result, points, "judged-only")
    assert judged_only["score"] == 5.0 and judged_only["Dense"] == "TIMEOUT"  # ReLU judged nothing: still 0


HANGS_IN_BACKWARD = """
from scratch_cnn import *  # noqa
from scratch_cnn import ReLU as _ReLU


class ReLU(_ReLU):
    def backward(self, dout):
        while True:  # an infinite loop left in
            pass
"""


def test_a_hang_costs_one_limit_for_its_layer_shared_by_every_judge_and_the_other_layers_are_judged(tmp_path):
    # the cost of a hang is counted in limits hit (the session's incidents), not in seconds: one for
    # ReLU across the protocol, autograd, finite-difference and lifecycle judges, none for Dense
    (tmp_path / "layers.py").write_text(HANGS_IN_BACKWARD)
    out = tmp_path / "out"
    assert main(["judge", "--impl", str(tmp_path / "layers.py"), "--layers", "ReLU,Dense", "--quick", "--no-curves",
                 "--case-timeout", "2", "--out", str(out)]) == 1  # fmt: skip
    incidents = pd.read_csv(out / "incidents.csv")
    assert incidents[["scope", "reason"]].values.tolist() == [["ReLU", "timeout"]]
    rows = pd.concat([pd.read_csv(out / f"{j}.csv") for j in ("autograd", "finite_diff", "lifecycle")])
    relu = rows[rows["layer"] == "ReLU"]
    assert set(relu["judge"]) == {"autograd", "finite_diff", "lifecycle"} and set(relu["status"]) == {"timeout"}
    verdicts = pd.read_csv(out / "verdicts.csv").set_index("layer")["verdict"]
    assert verdicts["ReLU"] == "TIMEOUT" and verdicts["Dense"] == "PASS"
