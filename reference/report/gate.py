"""The regression gate: the figures of ``reports/latest`` against the committed ``reports/baseline``.

Fails (exit 1) on: any judge row failing; a share of the tolerance used more than DRIFT times its
baseline and above BUDGET_FLOOR (a drift, even inside tolerance); a curve or lockstep bound broken; a fault of the catalogue not caught; a layer,
tensor, check or fault present in the baseline and missing from the run (a check that silently
stopped running). Exit 2 when the baseline is missing or malformed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BASELINE_FILE = "baseline.json"
BASELINE_FORMAT = "scratch-cnn-baseline"
BASELINE_VERSION = 2  # 2: drift figures are shares of the tolerance ("budget"), not absolute errors
DRIFT = 10.0  # an error more than 10x its accepted figure is a regression even inside tolerance...
# ...once it uses a real share of its tolerance. Figures are budgets (error / the element's tolerance,
# see reference.core.compare), so the floor is in the tolerance's own terms: rounding errors come in
# powers of two and move with the BLAS thread split (a float64 dW went 1.4e-14 -> 1.1e-13 between two
# runs of the same code), i.e. from 1e-3 to 1e-2 of its budget; a figure under a quarter of its
# budget is noise, whatever its baseline. A real fault breaks the tolerance itself (a failing row).
BUDGET_FLOOR = 0.25
# The float64 lockstep difference is rounding grown over 200 steps (1e-14 to 5e-13 between runs);
# below a thousandth of its 1e-6 bound it is noise. A wrong gradient crosses the bound within steps.
LOCKSTEP_FLOOR = 1e-9
ERROR_KEYS = ["judge", "layer", "tensor", "dtype"]
JUDGE_FILES = {"protocol": "protocol.csv", "autograd": "autograd.csv", "finite_diff": "finite_diff.csv",
               "lifecycle": "lifecycle.csv", "faults": "faults.csv", "curves": "curve_checks.csv"}  # fmt: skip
GATE_COLUMNS = ["check", "baseline", "now", "bound", "status"]


class BaselineError(ValueError):
    """The baseline is missing or malformed; the message says how to create it."""


def read_csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


def figures(latest: Path) -> dict[str, Any]:
    """The figures a baseline holds, read from a run's CSV files (None where a file is absent)."""
    errors = []
    for judge in ("autograd", "finite_diff"):
        df = read_csv(latest / JUDGE_FILES[judge])
        if df is not None and len(df):
            if "budget" not in df.columns:
                df = df.assign(budget=np.nan)
            g = df.groupby(ERROR_KEYS[1:], dropna=False)[["max_abs_err", "budget"]].max().reset_index()
            errors += [{"judge": judge, **r} for r in g.to_dict("records")]
    lock = read_csv(latest / "lockstep.csv")
    checks = read_csv(latest / "curve_checks.csv")
    faults = read_csv(latest / "faults.csv")
    run = json.loads((latest / "run.json").read_text()) if (latest / "run.json").is_file() else {}
    return {
        "errors": errors,
        "lockstep_max_rel_diff": None if lock is None or lock.empty
        else float(lock[["loss_rel_diff", "param_rel_diff"]].max().max()),
        "curves": {} if checks is None else {r["check"]: float(r["value"]) for r in checks.to_dict("records")},
        "faults": [] if faults is None else sorted(faults["fault"]),
        "quick": bool(run.get("quick", False)),
    }  # fmt: skip


def load_baseline(baseline_dir: Path) -> dict[str, Any]:
    path = baseline_dir / BASELINE_FILE
    how = "create it from a passing full run with: nox -s verify -- --update-baseline"
    if not path.is_file():
        raise BaselineError(f"no baseline at {path}; {how}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BaselineError(f"baseline {path} is not valid JSON ({err}); {how}") from err
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT or data.get("version") != BASELINE_VERSION:
        raise BaselineError(f"baseline {path} is not a {BASELINE_FORMAT} v{BASELINE_VERSION} file; {how}")
    try:
        for e in data["errors"]:
            if not all(k in e for k in ERROR_KEYS) or not isinstance(e.get("budget"), (int, float)):
                raise KeyError(f"error entry {e}")
        for key in ("lockstep_bound", "lockstep_max_rel_diff"):
            float(data[key])
        for key in ("min_test_accuracy", "max_accuracy_gap", "max_test_loss_gap"):
            float(data["curves"][key])
        if not isinstance(data["faults"], list):
            raise KeyError("faults")
    except (KeyError, TypeError, ValueError) as err:
        raise BaselineError(f"baseline {path} is malformed (missing or bad {err}); {how}") from err
    return data


def _row(check: str, baseline: Any, now: Any, bound: str, ok: bool | None) -> dict[str, Any]:
    status = "skip" if ok is None else ("pass" if ok else "fail")
    return {"check": check, "baseline": baseline, "now": now, "bound": bound, "status": status}


def gate_table(latest: Path, baseline: dict[str, Any]) -> pd.DataFrame:
    """One row per check: check, baseline, now, bound, status (pass / fail / skip in a quick run)."""
    now = figures(latest)
    quick = now["quick"]
    rows = _judge_rows(latest, quick)
    rows += _drift_rows(now, baseline, quick)
    rows.append(_lockstep_row(now, baseline))
    rows += _curve_rows(now, baseline, quick)
    rows += _fault_rows(latest, baseline)
    table = pd.DataFrame(rows, columns=GATE_COLUMNS)
    order = table["status"].map({"fail": 0, "skip": 2}).fillna(1)
    return table.assign(_o=order).sort_values("_o", kind="stable").drop(columns="_o").reset_index(drop=True)


def _judge_rows(latest: Path, quick: bool) -> list[dict[str, Any]]:
    """Per judge's CSV: no row may fail (a missing CSV fails, but for the curves in a quick run)."""
    rows = []
    for judge, filename in JUDGE_FILES.items():
        df = read_csv(latest / filename)
        if df is None:
            rows.append(
                _row(f"{judge}: rows failing", 0, "missing", "0", None if quick and judge == "curves" else False)
            )
            continue
        bad = int((df["status"] != "pass").sum())
        rows.append(_row(f"{judge}: rows failing", 0, bad, "0", bad == 0))
    return rows


def _drift_rows(now: dict[str, Any], baseline: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """Per baseline error figure: the share of tolerance used now may not drift past its limit."""
    rows = []
    current = {tuple(e[k] for k in ERROR_KEYS): e["budget"] for e in now["errors"]}
    for e in baseline["errors"]:
        key = tuple(e[k] for k in ERROR_KEYS)
        name = f"{e['judge']} {e['layer']} {e['tensor']} {e['dtype']}: share of tolerance used"
        limit = max(DRIFT * float(e["budget"]), BUDGET_FLOOR) if np.isfinite(e["budget"]) else BUDGET_FLOOR
        if key not in current:
            rows.append(_row(name, e["budget"], "missing", f"<= {limit:.3g}", None if quick else False))
        elif np.isnan(current[key]):  # the run raised before comparing: its failing row says so
            rows.append(_row(name, e["budget"], "not compared", f"<= {limit:.3g}", False))
        else:
            rows.append(_row(name, e["budget"], current[key], f"<= {limit:.3g}", bool(current[key] <= limit)))
    return rows


def _lockstep_row(now: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """The lockstep's largest relative difference against its bound and its drifted baseline."""
    lock = now["lockstep_max_rel_diff"]
    lock_limit = min(
        float(baseline["lockstep_bound"]), max(DRIFT * float(baseline["lockstep_max_rel_diff"]), LOCKSTEP_FLOOR)
    )
    return _row("lockstep max relative difference", baseline["lockstep_max_rel_diff"],
                "missing" if lock is None else lock, f"< {lock_limit:.3g}", False if lock is None else bool(lock < lock_limit))  # fmt: skip


def _curve_rows(now: dict[str, Any], baseline: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """The curves' bounds (final accuracy, accuracy gap, test loss gap); a missing figure skips in a quick run."""
    rows = []
    curves, bounds = now["curves"], baseline["curves"]
    for check, limit, op in (
        ("final test accuracy (ours)", bounds["min_test_accuracy"], ">="),
        ("final test accuracy gap |ours - twin|", bounds["max_accuracy_gap"], "<="),
        ("largest test loss gap |ours - twin|", bounds["max_test_loss_gap"], "<="),
    ):
        value = curves.get(check)
        ok = (
            None
            if value is None and quick
            else (False if value is None else (value >= limit if op == ">=" else value <= limit))
        )
        accepted = bounds.get("measured", {}).get(check, "")
        rows.append(_row(check, accepted, "missing" if value is None else value, f"{op} {limit}", ok))
    return rows


def _fault_rows(latest: Path, baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Per fault of the baseline's catalogue: caught now."""
    rows = []
    faults_now = read_csv(latest / "faults.csv")
    caught = {} if faults_now is None else dict(zip(faults_now["fault"], faults_now["status"] == "pass", strict=True))
    for fault in baseline["faults"]:
        if fault not in caught:
            rows.append(_row(f"fault {fault}: caught", "caught", "missing", "caught", False))
        else:
            rows.append(
                _row(
                    f"fault {fault}: caught",
                    "caught",
                    "caught" if caught[fault] else "NOT caught",
                    "caught",
                    caught[fault],
                )
            )
    return rows


def run_gate(latest: Path, baseline_dir: Path) -> tuple[pd.DataFrame | None, int, str]:
    """(gate table, exit code, message): 0 pass, 1 regression, 2 baseline missing or malformed."""
    try:
        baseline = load_baseline(baseline_dir)
    except BaselineError as err:
        return None, 2, str(err)
    table = gate_table(latest, baseline)
    failed = table[table["status"] == "fail"]
    if len(failed):
        return table, 1, f"gate: FAIL, {len(failed)} of {len(table)} checks regressed"
    skipped = int((table["status"] == "skip").sum())
    return (
        table,
        0,
        f"gate: PASS, {len(table) - skipped} checks" + (f" ({skipped} skipped: quick run)" if skipped else ""),
    )


def baseline_from(latest: Path) -> dict[str, Any]:
    """A new baseline from a (passing, full) run's figures."""
    from reference.core.tolerances import LOCKSTEP_BOUND, MAX_ACCURACY_GAP, MAX_TEST_LOSS_GAP, MIN_TEST_ACCURACY

    now = figures(latest)
    return {
        "format": BASELINE_FORMAT,
        "version": BASELINE_VERSION,
        "errors": now["errors"],
        "lockstep_bound": LOCKSTEP_BOUND,
        "lockstep_max_rel_diff": now["lockstep_max_rel_diff"],
        "curves": {
            "min_test_accuracy": MIN_TEST_ACCURACY,
            "max_accuracy_gap": MAX_ACCURACY_GAP,
            "max_test_loss_gap": MAX_TEST_LOSS_GAP,
            "measured": now["curves"],
        },  # fmt: skip
        "faults": now["faults"],
    }


def baseline_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two baselines."""
    if old is None:
        return [f"new baseline: {len(new['errors'])} error figures, {len(new['faults'])} faults"]
    lines = []
    before = {tuple(e[k] for k in ERROR_KEYS): e.get("budget") for e in old.get("errors", [])}
    after = {tuple(e[k] for k in ERROR_KEYS): e.get("budget") for e in new["errors"]}
    for key in sorted(set(before) | set(after), key=str):
        if before.get(key) != after.get(key):
            lines.append(f"{' '.join(map(str, key))}: {before.get(key, 'absent')} -> {after.get(key, 'absent')}")
    for key in ("lockstep_max_rel_diff",):
        if old.get(key) != new.get(key):
            lines.append(f"{key}: {old.get(key)} -> {new.get(key)}")
    if old.get("curves", {}).get("measured") != new["curves"]["measured"]:
        lines.append(f"curves: {old.get('curves', {}).get('measured')} -> {new['curves']['measured']}")
    added, removed = set(new["faults"]) - set(old.get("faults", [])), set(old.get("faults", [])) - set(new["faults"])
    if added or removed:
        lines.append(f"faults: +{sorted(added)} -{sorted(removed)}")
    return lines or ["no changes"]
