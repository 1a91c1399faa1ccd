"""`nox -s verify`: fetch MNIST, run the three judges and the fault catalogue, write the reports,
run the gate. Reports are written into a temporary directory beside ``reports/latest`` and moved
into place at the end, so a crash never leaves a half-written ``latest/``."""

from __future__ import annotations

import json
from pathlib import Path

from reference import pipeline
from reference.pipeline import Options
from reference.report.tables import gate_failures, markdown, write_atomic


def run(options: Options, new_baseline: bool = False) -> int:
    """verify's run (``options.command == "verify"``, ``options.out`` reports/latest, ``options.baseline``
    reports/baseline) through the one pipeline; then the gate's table and message, and with
    ``new_baseline`` (--update-baseline) a new baseline from this run. Exit 0 every judge and the gate
    pass, 1 a judge failed or a figure regressed, 2 no baseline (or it is malformed)."""
    assert options.command == "verify" and options.baseline is not None, "verify's options"
    outcome = pipeline.run(options)
    assert outcome.gate is not None
    table, _, message = outcome.gate
    if table is not None:  # the whole table is gate.csv; the console shows only what did not pass
        bad, line = gate_failures(table)
        print(f"[verify] {line}" + (":" if len(bad) else ""))
        if len(bad):
            print(markdown(bad))
    print(f"[verify] reports in {options.out}/ (summary.md first, index.html, CSV files, plots)")
    print(f"[verify] {message}")
    if new_baseline:
        return update_baseline(options.out, options.baseline, outcome.passed and not options.quick)
    return outcome.code


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
