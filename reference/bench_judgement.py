"""The cost of a judgement (issue: a class in minutes): `judge --no-curves`, quick and on the full grid,
on scratch_cnn and on per-sample loop code, each in a fresh process; CPU and wall seconds split by
judge and by where they go (the judge's ``costs.csv``, reference/costs.py), and the judge's own share.

Every figure is measured in this run; the floor of a judgement is the time inside the implementation.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

# the loop-based implementation: a course notebook's NHWC layers with explicit per-sample Python loops
LOOP_IMPL = "tests.impls.style_notebook_protocol"
MODES = {"quick": ["--quick"], "full": []}
CHOICES = (*MODES, "check")  # check: a student's script calling reference.check() on two layers it defines
STUDENT_SCRIPT = """
import numpy as np
from reference import check


class ReLU:
    params: dict = {}
    grads: dict = {}

    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask


class Dense:
    def __init__(self, n_in, n_out, bias=True, *, rng, dtype=np.float64):
        self.params = {"W": (rng.standard_normal((n_in, n_out)) * 0.1).astype(dtype)}
        if bias:
            self.params["b"] = np.zeros(n_out, dtype)
        self.grads = {}

    def forward(self, x):
        self.x = x
        out = x @ self.params["W"]
        return out + self.params["b"] if "b" in self.params else out

    def backward(self, dout):
        self.grads["W"] = self.x.T @ dout
        if "b" in self.params:
            self.grads["b"] = dout.sum(axis=0)
        return dout @ self.params["W"].T


if __name__ == "__main__":
    result = check(ReLU, Dense)
    print("OUT", result.out)
    print("EXIT", result.exit_code)
"""


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children and their descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def judge_once(impl: str, mode: str, root: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """Run `judge --impl IMPL [--quick] --no-curves` in a fresh process: its totals (CPU of the judge
    and its workers from the kernel's accounts, wall) and its costs.csv."""
    out = Path(tempfile.mkdtemp(prefix=f"judge-{mode}-", dir=root))
    command = [sys.executable, "-m", "reference", "judge", "--impl", impl, *MODES[mode], "--no-curves",
               "--out", str(out)]  # fmt: skip
    cpu, wall = children_cpu(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    cpu, wall = children_cpu() - cpu, time.perf_counter() - wall
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-600:]}")
    return {"impl": impl, "mode": mode, "exit": done.returncode, "wall_s": wall, "cpu_s": cpu}, pd.read_csv(
        out / "costs.csv"
    )


def check_once(root: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """A student's script that defines ReLU and Dense and calls ``check(ReLU, Dense)`` (quick and
    fail-fast, as in a notebook), run in a fresh process: its totals and its judgement's costs.csv."""
    script = Path(tempfile.mkdtemp(prefix="check-", dir=root)) / "homework.py"
    script.write_text(STUDENT_SCRIPT)
    cpu, wall = children_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=script.parent)
    cpu, wall = children_cpu() - cpu, time.perf_counter() - wall
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.startswith(("OUT ", "EXIT ")))
    if done.returncode != 0 or lines.get("EXIT") != "0":
        raise RuntimeError(f"check() on a right ReLU and Dense did not pass: {done.stdout[-600:]} {done.stderr[-600:]}")
    run = {"impl": "check(ReLU, Dense) in a script", "mode": "check", "exit": 0, "wall_s": wall, "cpu_s": cpu}
    return run, pd.read_csv(Path(lines["OUT"]) / "costs.csv")


def split(run: dict[str, Any], costs: pd.DataFrame) -> dict[str, Any]:
    """One row of judgement.csv: the run's CPU split into the implementation's calls, the twins, the
    judge's own Python, the workers' start-up and imports, the exchanges (the workers' CPU outside the
    implementation), the judge process's start-up (its CPU before the first judge: imports, the
    session), and the rest (its reports, the session's close)."""
    total = costs[costs["judge"] == "total"].iloc[0]
    startup = costs.loc[costs["judge"] == "(start-up)", "judge_cpu_s"].sum()
    judged = costs[~costs["judge"].isin(["total", "(start-up)"])]
    cases = int(judged["cases"].max()) if len(judged) else 0
    impl = float(total["impl_cpu_s"])
    parts = {
        "implementation_s": impl,
        "twins_s": float(total["twins_cpu_s"]),
        "judge_own_s": float(total["judge_own_cpu_s"]),
        "worker_startup_s": float(total["startup_cpu_s"]),
        "exchanges_s": float(total["worker_cpu_s"]) - impl,
    }
    parts["judge_startup_s"] = float(startup)
    parts["reports_and_rest_s"] = run["cpu_s"] - sum(parts.values())
    return {**run, "cases": cases, **parts, "judge_share": 1 - impl / run["cpu_s"],
            "workers": int(total["workers"]), "calls_per_case": float(total["impl_calls"]) / max(cases, 1),
            "exchanges_per_case": float(total["exchanges"]) / max(cases, 1),
            "cpu_per_case_s": run["cpu_s"] / max(cases, 1)}  # fmt: skip


def judgement_tables(impls: list[str], modes: list[str], repeats: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(judgement.csv: a row per implementation and mode; judgement_by_judge.csv: costs.csv of each).

    # NOTE: this machine's CPU seconds for the same judgement move by 10-15% from run to run (and
    # more between hours), so each judgement of a fast implementation runs ``repeats`` times: its row
    # is the run of median CPU, with the least and the most beside it. The loop code runs once: its
    # minute is the implementation's own, and its spread small beside it."""
    rows, by_judge = [], []
    with tempfile.TemporaryDirectory(prefix="scratch-cnn-bench-") as root:
        for impl in impls:
            for mode in (m for m in modes if m in MODES):
                times = 1 if impl == LOOP_IMPL else max(1, repeats)
                runs = []
                for k in range(times):
                    print(f"[bench] judging {impl} ({mode}, --no-curves) in a fresh process, run {k + 1} of "
                          f"{times} ...", flush=True)  # fmt: skip
                    runs.append(judge_once(impl, mode, Path(root)))
                runs.sort(key=lambda r: r[0]["cpu_s"])
                run, costs = runs[len(runs) // 2]
                spread = {"runs": times, "cpu_s_min": runs[0][0]["cpu_s"], "cpu_s_max": runs[-1][0]["cpu_s"]}
                rows.append({**split(run, costs), **spread})
                by_judge.append(costs.assign(impl=impl, mode=mode))
        if "check" in modes:
            print("[bench] a student's script calling check(ReLU, Dense) ...", flush=True)
            run, costs = check_once(Path(root))
            rows.append({**split(run, costs), "runs": 1, "cpu_s_min": run["cpu_s"], "cpu_s_max": run["cpu_s"]})
            by_judge.append(costs.assign(impl=run["impl"], mode="check"))
    return pd.DataFrame(rows).round(3), pd.concat(by_judge, ignore_index=True).round(3)
