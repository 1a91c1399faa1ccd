"""`nox -s verify`: fetch MNIST, run the three judges and the fault catalogue, write the reports,
run the gate. Reports are written into a temporary directory beside ``reports/latest`` and moved
into place at the end, so a crash never leaves a half-written ``latest/``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from reference.report.tables import markdown, write_atomic


class Stages:
    """Times each stage and prints what it is doing."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    @contextmanager
    def stage(self, name: str, what: str) -> Iterator[None]:
        print(f"[verify] {name}: {what}", flush=True)
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.rows.append({"stage": name, "seconds": round(seconds, 1)})
        print(f"[verify] {name}: done in {seconds:.1f}s", flush=True)


def run(args: argparse.Namespace) -> int:
    from reference.cases.grid import grid, sample
    from reference.core.verdicts import exit_code
    from reference.judges.autograd import AutogradJudge
    from reference.judges.base import Context
    from reference.judges.catalogue import CatalogueJudge
    from reference.judges.curves import CurvesJudge
    from reference.judges.finite_diff import FiniteDiffJudge
    from reference.judges.lifecycle import LifecycleJudge
    from reference.judges.rules import ProtocolJudge
    from reference.judging import judgement, mnist_loader, write_logs
    from reference.report.console import progress_sink
    from reference.report.gate import run_gate
    from reference.report.publish import check_out, new_staging, stamp, swap_into_place
    from reference.report.summary import write_summary
    from scratch_cnn.data import DataError

    reports: Path = args.reports
    latest, baseline_dir = reports / "latest", reports / "baseline"
    check_out(latest)
    stages = Stages()
    cases = sample(grid(), 0.25) if args.quick else grid()
    with stages.stage("data", "MNIST (cached after the first fetch, SHA-256 verified)"):
        load = mnist_loader(args.data_dir)
        try:
            load()
        except DataError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    curve_what = "lockstep only (quick)" if args.quick else f"lockstep + lenet {args.epochs} epochs + seed 1 epoch"
    plan = [
        (ProtocolJudge(), "the protocol's rules, one line each"),
        (AutogradJudge(), f"{len(cases)} cases x float64/float32 against the PyTorch twins"),
        (FiniteDiffJudge(), "central differences (float64), adjoints, networks, gradcheck cross-check"),
        (LifecycleJudge(), "two rounds on one instance against a fresh instance"),
        (CatalogueJudge(), "the fault catalogue through the judges (each must be caught)"),
        (CurvesJudge(), f"training beside the twin: {curve_what}"),
    ]
    results = {}
    # NOTE: the implementation (scratch_cnn by default) is judged like any other: in sandboxed workers,
    # its session closed before a report is written. The fault catalogue is the judges' own test (our
    # faults, built here), not a judgement of the implementation.
    with judgement(args) as j:
        print(f"[verify] judging {args.impl} in sandboxed workers ({j.session.sandbox}; run {j.session.run_id})")
        ctx = Context(
            j.impl, args.impl, cases, quick=args.quick, progress=progress_sink(), data=load, epochs=args.epochs
        )
        for judge, what in plan:
            with stages.stage(judge.name, what):
                result = judge.run(ctx)
                results[judge.name] = result
                print("\n".join("  " + line for line in judge.lines(result)))
        for e in j.session.events:
            print(f"  worker for {e['scope']}: {e['message']}")
    layer_rows = pd.concat([results[n].rows for n in ("protocol", "autograd", "finite_diff", "lifecycle")],
                           ignore_index=True)  # fmt: skip
    cross = results["finite_diff"].extra["gradcheck"][1]
    # NOTE: verify judges scratch_cnn strictly: it claims every option, so an unsupported or missing row fails.
    judges_ok = exit_code(layer_rows, strict=True) == 0 and (cross["status"] != "fail").all() \
        and bool(results["faults"].ok) and bool(results["curves"].ok) and not j.session.events  # fmt: skip
    reports.mkdir(parents=True, exist_ok=True)
    staging = new_staging(latest)
    try:
        for judge, _ in plan:
            judge.write(results[judge.name], staging, args.impl)
        write_logs(j, staging)
        write_atomic(staging / "run.json", json.dumps({"impl": args.impl, "quick": args.quick, "epochs": args.epochs}))
        table, code, message = run_gate(staging, baseline_dir)
        if table is not None:
            write_atomic(staging / "gate.csv", table.to_csv(index=False))
        stages.rows.append({"stage": "total", "seconds": round(sum(r["seconds"] for r in stages.rows), 1)})
        write_atomic(staging / "stages.csv", pd.DataFrame(stages.rows).to_csv(index=False))
        verdict = ("all judges pass" if judges_ok else "a judge FAILED") + "; " + message
        write_summary(staging, verdict, f"scratch-cnn verification: {args.impl}" + (" (quick)" if args.quick else ""),
                      impl_name=args.impl, stamp=j.stamp_lines())  # fmt: skip
        stamp(staging, {**j.run_info(), "quick": args.quick, "epochs": args.epochs, "command": "verify"})
        swap_into_place(staging, latest, carry=("junit*.xml",))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if table is not None:
        print(markdown(table))
    print(f"[verify] reports in {latest}/ (summary.md first, index.html, CSV files, plots)")
    print(f"[verify] {message}")
    if args.update_baseline:
        return update_baseline(latest, baseline_dir, judges_ok and not args.quick)
    return code if judges_ok or code else 1


def update_baseline(latest: Path, baseline_dir: Path, allowed: bool) -> int:
    """Write a new baseline from this run: only from a full run in which every judge passed."""
    from reference.report.gate import BASELINE_FILE, BaselineError, baseline_changes, baseline_from, load_baseline

    if not allowed:
        print("[verify] baseline NOT updated: it is written only from a full run in which every judge passed")
        return 1
    try:
        old = load_baseline(baseline_dir)
    except BaselineError:
        old = None
    new = baseline_from(latest)
    write_atomic(baseline_dir / BASELINE_FILE, json.dumps(new, indent=1, sort_keys=True) + "\n")
    print(f"[verify] baseline written to {baseline_dir / BASELINE_FILE}; changes:")
    for line in baseline_changes(old, new):
        print(f"  {line}")
    return 0
