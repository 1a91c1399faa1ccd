"""``python -m reference grade SUBMISSIONS --out DIR``: a class judged at once on Dask.

One task per submission (reference.grade.task), on an embedded LocalCluster (``--workers N``, one
process per core by default) or an existing cluster (``--scheduler ADDRESS``). Each finished
submission's report is written as soon as it arrives (``DIR/<id>/``, swapped into place whole, with
``grade.json`` last), so Ctrl-C keeps every finished result and the same command goes on where it
stopped: a submission whose files' SHA-256 and the judge's version match its stored result is not
judged again (``--only ID,...`` rejudges chosen ones). The client writes every file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reference.grade.gradebook import (
    gradebook_row,
    gradescope,
    junit_xml,
    parse_points,
    stored,
    write_class_reports,
)
from reference.grade.submissions import Submission, SubmissionError, discover
from reference.grade.task import judge_submission, judge_version
from reference.impl.protocol import REQUIRED
from reference.report.publish import check_out, new_staging, swap_into_place
from reference.report.tables import write_atomic

PROGRESS_EVERY = 10.0  # seconds between progress lines


def judge_options(args: argparse.Namespace) -> list[str]:
    """The options every submission's ``reference judge`` runs with."""
    opts = ["--no-curves", "--parallel", "1"]  # one core per task: the cluster spreads the class
    if not args.full:
        opts.append("--quick")
    if args.layers:
        opts += ["--layers", args.layers]
    opts += ["--sandbox", args.sandbox, "--case-timeout", str(args.case_timeout), "--time-budget",
             str(args.time_budget), "--memory-mb", str(args.memory_mb), "--log-bytes", str(args.log_bytes)]  # fmt: skip
    return opts


@contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator[Any]:
    """A client of ``scheduler``, or of an embedded LocalCluster of ``workers`` single-threaded processes."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler, timeout="30s")
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)  # fmt: skip
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def write_submission(out: Path, sub: Submission, result: dict[str, Any]) -> None:
    """``out/<id>/``: the judge's report files, the notebook lines dropped, and grade.json (the stored
    result), in a staging folder swapped into place: never half a submission's report."""
    target = out / sub.id
    staging = new_staging(target)
    try:
        for name, data in result.get("files", {}).items():
            from reference.grade.task import safe_path

            path = safe_path(staging, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if sub.dropped:
            write_atomic(staging / "dropped_notebook_lines.txt", "\n".join(sub.dropped) + "\n")
        meta = {k: v for k, v in result.items() if k != "files"}
        meta.update(source=sub.source, entry=sub.entry, dropped=sub.dropped, files=sorted(result.get("files", {})))
        write_atomic(staging / "grade.json", json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n")
        swap_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_stored(out: Path, sub: Submission, version: str) -> dict[str, Any] | None:
    """The stored result of ``sub`` when its files and the judge are unchanged, with its report files."""
    meta = stored(out / sub.id / "grade.json")
    if not meta or meta.get("sha256") != sub.sha256 or meta.get("judge_version") != version:
        return None
    files = {}
    for name in meta.get("files", []):
        path = out / sub.id / name
        if path.is_file() and path.suffix == ".csv":
            files[name] = path.read_bytes()
    return {**meta, "files": files}


class Ticker:
    """Progress: a bar on a terminal (tqdm, with the failures so far); elsewhere a line every
    PROGRESS_EVERY seconds: done/total, failing so far, ETA."""

    def __init__(self, total: int, terminal: bool | None = None) -> None:
        self.total, self.done, self.failing = total, 0, 0
        self.start = self.last = time.monotonic()
        self.bar: Any = None
        if sys.stdout.isatty() if terminal is None else terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="grade", unit="submission", file=sys.stdout)

    def tick(self, failed: bool, force: bool = False) -> None:
        self.done += 1
        self.failing += failed
        if self.bar is not None:
            self.bar.set_postfix(failing=self.failing, refresh=False)
            self.bar.update(1)
            return
        now = time.monotonic()
        if force or now - self.last >= PROGRESS_EVERY or self.done == self.total:
            self.last = now
            rate = (now - self.start) / max(self.done, 1)
            eta = rate * (self.total - self.done)
            print(f"[grade] {self.done}/{self.total} judged, {self.failing} with a failing layer so far, "
                  f"{now - self.start:.0f}s elapsed, ETA {eta:.0f}s", flush=True)  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    graded = tuple(x.strip() for x in args.layers.split(",") if x.strip()) if args.layers else REQUIRED
    unknown_layers = [x for x in graded if x not in REQUIRED]
    if unknown_layers:
        raise ValueError(f"--layers: unknown layer(s) {', '.join(unknown_layers)}; choose from {', '.join(REQUIRED)}")
    points = parse_points(args.points, graded)
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1 (got {args.workers})")
    check_out(args.out)
    folder = Path(args.submissions)
    adapter = Path(args.adapter) if args.adapter else None
    if adapter is not None and not adapter.is_file():
        raise SubmissionError(f"--adapter {adapter}: no such file")
    subs = discover(folder, args.entry, adapter)
    if not subs:
        raise SubmissionError(f"SUBMISSIONS {folder}: no submission in it (.py files, folders or notebooks)")
    only = {s.strip() for s in args.only.split(",") if s.strip()} if args.only else None
    unknown = sorted(only - {s.id for s in subs}) if only else []
    if unknown:
        raise SubmissionError(f"--only: no submission {', '.join(unknown)}")
    args.out.mkdir(parents=True, exist_ok=True)
    version = judge_version()
    results: dict[str, dict[str, Any]] = {}
    todo: list[Submission] = []
    for sub in subs:
        prior = None if sub.problem or (only and sub.id in only) else load_stored(args.out, sub, version)
        if sub.problem:
            results[sub.id] = {"exit_code": 2, "output": f"error: {sub.problem}", "files": {}, "seconds": 0}
        elif prior is not None:
            results[sub.id] = prior
        elif only is None or sub.id in only:
            todo.append(sub)
        else:
            results[sub.id] = {"exit_code": None, "output": "error: not graded yet (run without --only)", "files": {}}
    reused = len(subs) - len(todo) - sum(1 for s in subs if s.problem)
    print(f"[grade] {len(subs)} submissions in {folder}: {len(todo)} to judge, {reused} unchanged since their "
          f"stored result, {sum(1 for s in subs if s.problem)} that cannot be judged (judge {version})", flush=True)  # fmt: skip
    interrupted = False
    if todo:
        interrupted = judge_all(args, todo, results)
    for sub in todo:  # what an interrupt left unjudged: a row that says so, judged by the next run
        results.setdefault(sub.id, {"exit_code": None, "files": {},
                                    "output": "error: not judged yet (interrupted); run the same command again"})  # fmt: skip
    rows = [gradebook_row(s, results[s.id], points) for s in subs]
    judged = sum(1 for s in subs if s.id in results and results[s.id].get("exit_code") is not None)
    headline = (f"{judged} of {len(subs)} submissions judged; mean score "
                f"{sum(r['score'] for r in rows) / len(rows):.2f} of {sum(points.values()):g}; judge {version}")  # fmt: skip
    write_class_reports(args.out, rows, headline, graded)
    if args.format == "gradescope":
        for sub, row in zip(subs, rows, strict=True):
            if (args.out / sub.id).is_dir():
                rerun = f"python -m reference judge --impl {sub.entry}"
                write_atomic(
                    args.out / sub.id / "results.json", json.dumps(gradescope(row, points, rerun), indent=1) + "\n"
                )
    if args.junit:
        suites = [(r["id"], [(layer, r[layer], r["_why"].get(layer, "")) for layer in graded]) for r in rows]
        write_atomic(Path(args.junit), junit_xml(suites))
    print(f"[grade] {headline}")
    print(f"[grade] gradebook: {args.out / 'gradebook.csv'}; class summary: {args.out / 'summary.md'}, index.html")
    if interrupted:
        print("[grade] interrupted: every finished submission is kept; run the same command again to go on",
              file=sys.stderr)  # fmt: skip
        return 2
    return 0


def judge_all(args: argparse.Namespace, todo: list[Submission], results: dict[str, dict[str, Any]]) -> bool:
    """Submit one task per submission and write each result as it comes; True when interrupted."""
    from distributed import as_completed

    options = judge_options(args)
    timeout = args.submission_timeout or args.time_budget + 120
    workers = args.workers or max(1, len(os.sched_getaffinity(0)))
    ticker = Ticker(len(todo))
    by_key = {}
    with dask_client(args.scheduler, workers) as client:
        futures = []
        for sub in todo:
            key = f"judge-{sub.id}-{sub.sha256[:12]}-{time.monotonic_ns()}"
            futures.append(client.submit(judge_submission, sub.spec(), options, timeout, key=key, pure=False,
                                         retries=args.retries))  # fmt: skip
            by_key[key] = sub
        try:
            for future in as_completed(futures):
                sub = by_key[future.key]
                try:
                    result = future.result()
                except Exception as err:  # the task itself failed (its worker was lost past the retries, say)
                    result = {"id": sub.id, "sha256": sub.sha256, "exit_code": None, "files": {},
                              "output": f"error: the grading task failed: {type(err).__name__}: {err}",
                              "judge_version": judge_version()}  # fmt: skip
                if result.get("exit_code") is not None:
                    write_submission(args.out, sub, result)
                results[sub.id] = result
                ticker.tick(result.get("exit_code") != 0)
        except KeyboardInterrupt:
            for f in futures:
                f.cancel()
            return True
        finally:
            ticker.close()
    return False
