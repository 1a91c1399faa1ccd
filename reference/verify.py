"""`nox -s verify`: fetch MNIST, run the three judges and the fault catalogue, write the reports,
run the gate. Reports are written into a temporary directory beside ``reports/latest`` and moved
into place at the end, so a crash never leaves a half-written ``latest/``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from reference.report.tables import write_atomic


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


def swap_into_place(staging: Path, latest: Path) -> None:
    """Replace ``latest`` with ``staging``; JUnit XML written by the test session is carried over."""
    if latest.is_dir():
        for junit in latest.glob("junit*.xml"):
            if not (staging / junit.name).exists():
                shutil.copy2(junit, staging / junit.name)
        old = latest.with_name(f".{latest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        latest.rename(old)
        staging.rename(latest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(latest)


def run(args: argparse.Namespace) -> int:
    from reference.cases.grid import grid, sample
    from reference.cli import progress_bar
    from reference.impl.protocol import load_impl
    from reference.judges.autograd import run_autograd
    from reference.judges.catalogue import run_catalogue
    from reference.judges.curves import curve_judge
    from reference.judges.finite_diff import gradcheck_cases, gradcheck_crosscheck, run_finite_diff
    from reference.report.gate import run_gate
    from reference.report.summary import write_summary
    from reference.report.tables import failed, verdict_lines, write_table
    from scratch_cnn.data import DataError, load_mnist

    reports: Path = args.reports
    latest, baseline_dir = reports / "latest", reports / "baseline"
    reports.mkdir(parents=True, exist_ok=True)
    impl = load_impl(args.impl)
    stages = Stages()
    staging = Path(tempfile.mkdtemp(prefix=".latest-", dir=reports))
    staging.chmod(0o755)  # mkdtemp makes it private; a report directory is for reading
    bars: dict[str, Any] = {}

    def progress(desc: str, done: int, total: int) -> None:
        bars.setdefault(desc, progress_bar(desc))(done, total)

    try:
        cases = sample(grid(), 0.25) if args.quick else grid()
        with stages.stage("data", "MNIST (cached after the first fetch, SHA-256 verified)"):
            try:
                data = load_mnist(args.data_dir)
            except DataError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
        with stages.stage("autograd", f"{len(cases)} cases x float64/float32 against the PyTorch twins"):
            ag = run_autograd(impl, cases, progress=lambda d, t: progress("autograd", d, t))
            write_table(ag, staging, "autograd", f"Autograd judge: {args.impl} vs PyTorch")
            print("\n".join("  " + line for line in verdict_lines(ag)))
        with stages.stage("finite_diff", "central differences (float64), adjoints, networks, gradcheck cross-check"):
            fd = run_finite_diff(impl, cases, progress=lambda d, t: progress("finite differences", d, t))
            cross = gradcheck_crosscheck(impl, gradcheck_cases(cases), fd)
            write_table(fd, staging, "finite_diff", f"Finite-difference judge: {args.impl}",
                        extra={"gradcheck": ("gradcheck cross-check", cross)})  # fmt: skip
            print("\n".join("  " + line for line in verdict_lines(fd)))
        with stages.stage("faults", "the fault catalogue through the judges (each must be caught)"):
            faults = run_catalogue(cases, data, progress=lambda d, t: progress("fault catalogue", d, t))
            write_atomic(staging / "faults.csv", faults.to_csv(index=False))
            print(f"  {int((faults['status'] == 'pass').sum())} of {len(faults)} faults caught")
        curve_what = "lockstep only (quick)" if args.quick else f"lockstep + lenet {args.epochs} epochs + seed 1 epoch"
        with stages.stage("curves", f"training beside the twin: {curve_what}"):
            curves = curve_judge(impl, data, staging, epochs=args.epochs, quick=args.quick, progress=progress)
            for _, row in curves["checks"].iterrows():
                print(f"  {row['status'].upper():4} {row['check']}: {row['value']:.6g} (bound {row['bound']})")
        write_atomic(staging / "run.json", json.dumps({"impl": args.impl, "quick": args.quick, "epochs": args.epochs}))
        judges_ok = failed(ag).empty and failed(fd).empty and (cross["status"] == "pass").all() \
            and (faults["status"] == "pass").all() and curves["ok"]  # fmt: skip
        table, code, message = run_gate(staging, baseline_dir)
        if table is not None:
            write_atomic(staging / "gate.csv", table.to_csv(index=False))
        stages.rows.append({"stage": "total", "seconds": round(sum(r["seconds"] for r in stages.rows), 1)})
        write_atomic(staging / "stages.csv", pd.DataFrame(stages.rows).to_csv(index=False))
        verdict = ("all judges pass" if judges_ok else "a judge FAILED") + "; " + message
        write_summary(staging, verdict, f"scratch-cnn verification: {args.impl}" + (" (quick)" if args.quick else ""))
        swap_into_place(staging, latest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if table is not None:
        print(table.to_markdown(index=False, floatfmt=".3g"))
    print(f"[verify] reports in {latest}/ (summary.md first, index.html, CSV files, plots)")
    print(f"[verify] {message}")
    if args.update_baseline:
        return update_baseline(latest, baseline_dir, judges_ok and not args.quick)
    return code


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
