"""``grade`` on a real Dask cluster of 1, 2 and 4 worker processes (issue: a class in minutes).

For each size, a ``dask scheduler`` and a ``dask worker --nworkers N --nthreads 1`` are started as
processes of their own on 127.0.0.1, the same class of correct submissions is graded through
``--scheduler`` with grade's defaults (the quick grid, no curves), and the wall time is measured:
submissions per hour, and from the one-worker figure the per-submission cost and, on paper, a class
of 300 on a 64-core node and on ten of them.

    python -m reference.bench_grade [--size 8] [--workers 1,2,4] [--out reports/latest/bench]

# NOTE: the cluster here speaks plain TCP on 127.0.0.1 (``--insecure-scheduler``): a measurement on
# one machine, with no submission able to reach it other than the class being measured (all of them
# scratch_cnn re-exported). A real cluster is started with TLS (README: Grading a class).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from reference.report.tables import markdown, write_atomic

CLASS_OF = 300  # the class the figures on paper are for
NODE_CORES = 64


def make_class(folder: Path, size: int) -> Path:
    """``size`` correct submissions (scratch_cnn re-exported, each file distinct)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(size):
        (folder / f"student{i:03d}.py").write_text(f"from scratch_cnn import *  # noqa: F403\n# student {i}\n")
    return folder


@contextlib.contextmanager
def cluster(workers: int, root: Path) -> Iterator[str]:
    """A ``dask scheduler`` and ``dask worker --nworkers N`` as separate processes; yields the address."""
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    scheduler_file = root / f"scheduler-{workers}.json"
    procs = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                               str(scheduler_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers",
                                       str(workers), "--nthreads", "1", "--no-dashboard"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def grade_once(klass: Path, address: str, out: Path) -> float:
    """Seconds of wall time ``grade`` takes on the class through the cluster at ``address``."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "reference", "grade", str(klass), "--out", str(out), "--scheduler",
                           address, "--insecure-scheduler"], capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - start
    book = out / "gradebook.csv"
    if done.returncode != 0 or not book.is_file():
        raise RuntimeError(f"grade exited {done.returncode}: {done.stderr[-800:]}")
    scores = pd.read_csv(book)
    if not (scores["score"] == scores["max_score"]).all():
        raise RuntimeError(f"a correct submission lost points on the cluster:\n{scores.to_string()}")
    return seconds


def scaling(size: int = 8, workers: tuple[int, ...] = (1, 2, 4)) -> pd.DataFrame:
    """A row per cluster size: wall seconds, submissions per hour, and the speed-up over one worker."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="scratch-cnn-bench-grade-") as tmp:
        root = Path(tmp)
        klass = make_class(root / "class", size)
        for n in workers:
            print(f"[bench] grade: {size} submissions on a Dask cluster of {n} worker process(es) ...", flush=True)
            with cluster(n, root) as address:
                seconds = grade_once(klass, address, root / f"grades-{n}")
            rows.append({"dask_workers": n, "cores": os.cpu_count(), "submissions": size, "wall_s": round(seconds, 1),
                         "per_submission_s": round(seconds / size, 2),
                         "submissions_per_hour": round(size / seconds * 3600)})  # fmt: skip
    table = pd.DataFrame(rows)
    table["speedup"] = (table["wall_s"].iloc[0] / table["wall_s"]).round(2)
    return table


def on_paper(table: pd.DataFrame) -> list[str]:
    """The figures for a class of 300 on a 64-core node and on ten, from the one-worker cost (a worker
    per core, no shared bottleneck: the grader only receives and writes the reports)."""
    one = float(table.loc[table["dask_workers"] == 1, "per_submission_s"].iloc[0])
    best = table.loc[table["submissions_per_hour"].idxmax()]
    lines = [f"- one worker: {one:.1f} s of wall time per submission ({3600 / one:.0f} submissions/hour)",
             f"- this machine ({int(best['cores'])} cores): at best {int(best['submissions_per_hour'])} submissions/hour "
             f"with {int(best['dask_workers'])} workers: a class of {CLASS_OF} in {CLASS_OF / best['submissions_per_hour'] * 60:.0f} min"]  # fmt: skip
    for nodes in (1, 10):
        cores = NODE_CORES * nodes
        minutes = CLASS_OF * one / cores / 60
        lines.append(f"- on paper, {nodes} node(s) of {NODE_CORES} cores ({cores} workers, one per core): a class of "
                     f"{CLASS_OF} in {max(minutes, one / 60):.1f} min (no faster than one submission: {one:.0f} s)")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reference.bench_grade", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--size", type=int, default=8, help="submissions in the class (all correct)")
    ap.add_argument("--workers", default="1,2,4", help="cluster sizes (Dask worker processes), comma-separated")
    ap.add_argument("--out", type=Path, default=Path("reports/latest/bench"), help="grade_scaling.csv and .md here")
    args = ap.parse_args(argv)
    try:
        workers = tuple(int(w) for w in args.workers.split(",") if w.strip())
    except ValueError:
        print(f"error: --workers takes integers, not {args.workers!r}", file=sys.stderr)
        return 2
    if args.size < 1 or not workers or min(workers) < 1 or workers[0] != 1:
        print("error: --size >= 1 and --workers starting at 1 (the figures scale from one worker)", file=sys.stderr)
        return 2
    table = scaling(args.size, workers)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "grade_scaling.csv", table.to_csv(index=False))
    text = ["# grade on Dask: the same class on clusters of 1, 2 and 4 worker processes", "",
            f"`python -m reference.bench_grade --size {args.size} --workers {args.workers}`: a `dask scheduler` and "
            "`dask worker --nworkers N --nthreads 1` started as processes of their own, grade's defaults (quick "
            "grid, no curves).", "", markdown(table), "", *on_paper(table), ""]  # fmt: skip
    write_atomic(args.out / "grade_scaling.md", "\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
