"""The benchmark's floor: the matrix products of a lenet step, counted from the architecture."""

import numpy as np

from reference.bench import gemm_operands


def flops(products):
    return sum(2 * a[0] * a[1] * b[1] * times for _, a, b, times in products)


def test_the_floor_multiplies_conformable_matrices_for_every_conv_and_dense_layer():
    products = gemm_operands(8)
    assert all(a[1] == b[0] for _, a, b, _ in products)
    assert {what.split()[0] for what, *_ in products} == {"0", "3", "7", "9"}  # lenet's convs and denses


def test_the_first_layer_pays_no_dx_and_the_others_pay_forward_dw_and_dx_alike():
    products = gemm_operands(8)
    by_layer = {i: [p for p in products if p[0].startswith(f"{i} ")] for i in ("0", "3", "7")}
    forward = {i: flops([p for p in ps if p[0].endswith("forward")]) for i, ps in by_layer.items()}
    assert flops(by_layer["0"]) == 2 * forward["0"]  # forward and dW, no dx of the images
    assert flops(by_layer["3"]) == 3 * forward["3"] == 3 * 2 * 8 * 14 * 14 * 64 * 5 * 5 * 32
    assert flops(by_layer["7"]) == 3 * forward["7"] == 3 * 2 * 8 * 3136 * 128
    assert np.isclose(flops(products) / 8, flops(gemm_operands(16)) / 16)  # linear in the batch


def test_the_judgement_split_adds_up_to_the_kernel_s_count_and_names_the_implementation_s_share():
    import pandas as pd

    from reference.bench_judgement import split

    costs = pd.DataFrame([
        {"judge": "(start-up)", "judge_cpu_s": 3.0},
        {"judge": "autograd", "cases": 10, "impl_cpu_s": 1.0, "twins_cpu_s": 0.5, "judge_own_cpu_s": 2.0,
         "startup_cpu_s": 0.4, "worker_cpu_s": 1.5, "workers": 2, "impl_calls": 100, "exchanges": 40},
        {"judge": "total", "cases": 10, "impl_cpu_s": 1.0, "twins_cpu_s": 0.5, "judge_own_cpu_s": 2.0,
         "startup_cpu_s": 0.4, "worker_cpu_s": 1.5, "workers": 2, "impl_calls": 100, "exchanges": 40},
    ])  # fmt: skip
    row = split({"impl": "x", "mode": "quick", "exit": 0, "wall_s": 9.0, "cpu_s": 10.0}, costs)
    parts = ["implementation_s", "twins_s", "judge_own_s", "worker_startup_s", "exchanges_s", "judge_startup_s",
             "reports_and_rest_s"]  # fmt: skip
    assert (
        abs(sum(row[p] for p in parts) - 10.0) < 1e-12
        and row["exchanges_s"] == 0.5
        and abs(row["reports_and_rest_s"] - 2.6) < 1e-12
    )
    assert row["judge_share"] == 0.9 and row["calls_per_case"] == 10 and row["exchanges_per_case"] == 4


def test_the_class_figures_on_paper_scale_from_the_one_worker_cost_and_never_beat_one_submission():
    import pandas as pd

    from reference.bench_grade import on_paper

    table = pd.DataFrame([{"dask_workers": 1, "cores": 2, "per_submission_s": 30.0, "submissions_per_hour": 120},
                          {"dask_workers": 2, "cores": 2, "per_submission_s": 17.0, "submissions_per_hour": 212}])  # fmt: skip
    lines = on_paper(table)
    assert "30.0 s of wall time per submission (120 submissions/hour)" in lines[0]
    assert "212 submissions/hour with 2 workers: a class of 300 in 85 min" in lines[1]
    assert "a class of 300 in 2.3 min" in lines[2]  # 300 x 30 s / 64 cores
    assert "a class of 300 in 0.5 min" in lines[3]  # 300 x 30 s / 640 would be 14 s: one submission's 30 s is the floor


def test_a_judgement_of_the_fast_implementation_is_its_median_run_of_three_and_the_loop_code_runs_once(monkeypatch):
    import pandas as pd

    import reference.bench_judgement as bj

    spent = iter([12.0, 9.0, 10.0, 70.0])  # three runs of scratch_cnn, then one of the loop code
    calls = []

    def judge_once(impl, mode, root):
        cpu = next(spent)
        calls.append(impl)
        costs = pd.DataFrame([{"judge": "(start-up)", "judge_cpu_s": 1.0},
                              {"judge": "total", "cases": 5, "impl_cpu_s": cpu / 10, "twins_cpu_s": 0.0,
                               "judge_own_cpu_s": 1.0, "startup_cpu_s": 0.1, "worker_cpu_s": cpu / 5,
                               "workers": 2, "impl_calls": 50, "exchanges": 20}])  # fmt: skip
        return {"impl": impl, "mode": mode, "exit": 0, "wall_s": cpu, "cpu_s": cpu}, costs

    monkeypatch.setattr(bj, "judge_once", judge_once)
    table, _ = bj.judgement_tables(["scratch_cnn", bj.LOOP_IMPL], ["quick"], repeats=3)
    assert calls == ["scratch_cnn"] * 3 + [bj.LOOP_IMPL]
    fast, loop = table.iloc[0], table.iloc[1]
    assert (fast["cpu_s"], fast["cpu_s_min"], fast["cpu_s_max"], fast["runs"]) == (10.0, 9.0, 12.0, 3)
    assert fast["implementation_s"] == 1.0  # the median run's own split, not a mix of runs
    assert (loop["cpu_s"], loop["runs"]) == (70.0, 1)
