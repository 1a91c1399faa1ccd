"""Where a judgement's time goes (reference/costs.py): `judge` writes costs.csv, a row per judge with the
implementation's own calls counted and timed in the worker, the twins' CPU, the workers' start-up and
the exchanges; slow code shows as the implementation's time, not the judge's."""

import textwrap

import numpy as np
import pandas as pd

from reference import costs
from reference.cli import main
from reference.judges.runs import forget_twins


def judged_costs(tmp_path, source, *options):
    (tmp_path / "impl.py").write_text(textwrap.dedent(source))
    out = tmp_path / "out"
    code = main(["judge", "--impl", str(tmp_path / "impl.py"), "--quick", "--no-curves", "--out", str(out), *options])
    return code, pd.read_csv(out / "costs.csv").set_index("judge")


def test_judge_writes_a_row_per_judge_with_the_implementation_s_calls_counted_in_the_worker(tmp_path):
    forget_twins()  # this process's earlier judgements of the same cases would be found in the memo
    code, table = judged_costs(tmp_path, "from scratch_cnn import *  # noqa\n", "--layers", "Dense")
    assert code == 0
    assert {"protocol", "autograd", "finite_diff", "lifecycle", "total", "(start-up)"} <= set(table.index)
    fd = table.loc["finite_diff"]
    assert fd["impl_calls"] > 0 and fd["exchanges"] > 0 and 0 < fd["impl_cpu_s"] <= fd["worker_cpu_s"]
    assert table.loc["autograd", "twins_cpu_s"] > 0  # torch computed the reference there
    judges = table.drop(index=["total", "(start-up)"])
    assert table.loc["total", "impl_calls"] == judges["impl_calls"].sum()  # the start-up row is not in the total
    assert table.loc["total", "workers"] >= 1 and table.loc["total", "startup_cpu_s"] > 0


def test_a_slow_layer_s_time_is_charged_to_the_implementation_not_to_the_judge(tmp_path):
    slow = """
        import time
        from scratch_cnn import *  # noqa
        from scratch_cnn import Dense as _Dense

        class Dense(_Dense):
            def forward(self, x):
                end = time.process_time() + 0.004  # a student's per-sample loop: CPU, not sleep
                while time.process_time() < end:
                    pass
                return super().forward(x)
    """
    _, table = judged_costs(tmp_path, slow, "--layers", "Dense", "--judges", "autograd")
    forwards = (pd.read_csv(tmp_path / "out" / "autograd.csv")["tensor"] == "out").sum()  # one per case and dtype
    row = table.loc["autograd"]
    assert forwards > 10 and row["impl_cpu_s"] >= 0.004 * forwards  # every forward's spin, inside the worker
    assert row["impl_cpu_s"] <= row["worker_cpu_s"]


def test_accounts_add_up_across_threads():
    import threading

    before = costs.snapshot(None)["twins_cpu_s"]

    def spin():
        with costs.account("twins"):
            sum(i * i for i in range(200_000))

    threads = [threading.Thread(target=spin) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert costs.snapshot(None)["twins_cpu_s"] - before > 0


def test_a_cases_twin_is_computed_once_per_inputs_and_handed_out_as_copies(monkeypatch):
    from reference.cases.grid import case_inputs, grid
    from reference.judges import runs

    forget_twins()
    computed = []
    real = runs._twin_computed
    monkeypatch.setattr(runs, "_twin_computed", lambda case, inputs: computed.append(case.id) or real(case, inputs))
    case = next(c for c in grid() if c.layer == "Dense" and not c.lifecycle)
    first = runs.twin_run(case, case_inputs(case, "float64"))
    first["dx"][...] = 0.0  # a judge that writes into what it got
    again = runs.twin_run(case, case_inputs(case, "float64"))  # the same numbers: the memo's copy
    assert len(computed) == 1 and np.abs(again["dx"]).max() > 0
    inputs = case_inputs(case, "float64")
    doubled = runs.twin_run(case, {**inputs, "params": {k: 2 * v for k, v in inputs["params"].items()}})
    assert len(computed) == 2 and not np.allclose(doubled["out"], again["out"])  # other inputs: computed anew
    runs.twin_run(case, case_inputs(case, "float32"))
    assert len(computed) == 3  # another dtype: another result
