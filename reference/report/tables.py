"""Writing judge tables: CSV (the machine-readable truth) and Markdown, and one-line verdicts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from reference.core.compare import FAILING, ROW_COLUMNS, WRONG

PASSING = {"pass"}  # kink elements are judged inside a row (subgradient rule); the row is pass or fail


def ordered(df: pd.DataFrame) -> pd.DataFrame:
    """The schema's columns first, extras after."""
    first = [c for c in ROW_COLUMNS if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def failed(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that are never a pass whatever the mode: fail, vacuous, error, timeout (not unsupported or
    missing); the shown-wrong ones (fail, vacuous, error) first."""
    bad = df[df["status"].isin(FAILING)]
    return bad.iloc[bad["status"].eq("timeout").to_numpy().argsort(kind="stable")]


def failures_first(df: pd.DataFrame) -> pd.DataFrame:
    """Errors, then failures, then the rest; stable within each group."""
    order = df["status"].map({"error": 0, "fail": 1, "vacuous": 1, "unsupported": 2, "missing": 2}).fillna(3)
    keys = [k for k in ("layer", "case", "dtype", "tensor") if k in df.columns]
    return df.assign(_o=order).sort_values(["_o", *keys], kind="stable").drop(columns="_o").reset_index(drop=True)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def readable(df: pd.DataFrame) -> pd.DataFrame:
    """Numbers in columns of mixed types (the gate's figures beside 'caught') to 3 significant
    digits, as the float columns are: 0.00965 where 0.00965138471192026 says no more."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = [f"{v:.3g}" if isinstance(v, float) and not isinstance(v, bool) else v for v in out[col]]
    return out


def numeric_text(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with each text cell that spells a real number (``0.40469727013942414``, ``1e-05``, ``nan``;
    not an integer like an id ``007``) as that number, so the tables show it to 3 significant digits."""
    import re

    number = re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][-+]?\d+|inf|nan)$", re.IGNORECASE)
    out = df.copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]):
            out[col] = pd.Series([float(v) if isinstance(v, str) and number.match(v.strip()) else v for v in out[col]],
                                 index=out.index, dtype=object)  # fmt: skip
    return out


def gate_failures(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """(the gate's rows that did not pass, their numbers as numbers; a line saying how many checks passed)."""
    bad = table[table["status"] != "pass"] if "status" in table else table
    return numeric_text(bad), f"{int((table['status'] == 'pass').sum())} of {len(table)} gate checks pass"


def markdown(df: pd.DataFrame, max_rows: int | None = None) -> str:
    shown = readable(df if max_rows is None else df.head(max_rows))
    text = shown.to_markdown(index=False, floatfmt=".3g") if len(shown) else "_(no rows)_"
    if max_rows is not None and len(df) > max_rows:
        text += f"\n\n_{len(df) - max_rows} more rows in the CSV._"
    return text


def write_table(df: pd.DataFrame, out: Path, stem: str, title: str,
                extra: dict[str, tuple[str, pd.DataFrame]] | None = None,
                lines: list[str] | None = None) -> tuple[Path, Path]:  # fmt: skip
    """Write ``out/stem.csv`` (every row) and ``out/stem.md`` (verdicts, a per-layer summary, the
    failing rows); each ``extra`` {suffix: (title, table)} goes into the Markdown and ``out/stem_suffix.csv``.
    ``lines``: ``verdict_lines(df)`` where the caller has them already."""
    df = ordered(df)
    csv_path, md_path = out / f"{stem}.csv", out / f"{stem}.md"
    write_atomic(csv_path, df.to_csv(index=False))
    bad = df[~df["status"].isin(PASSING)]
    verdicts = verdict_lines(df) if lines is None else lines
    body = [f"# {title}", "", *verdicts, "", "## Per layer", "", markdown(layer_summary(df)), ""]
    body += ["## Rows that did not pass", "", markdown(bad, 200) if len(bad) else "_none_", ""]
    for suffix, (name, table) in (extra or {}).items():
        body += [f"## {name}", "", markdown(table), ""]
        write_atomic(out / f"{stem}_{suffix}.csv", table.to_csv(index=False))
    write_atomic(md_path, "\n".join(body))
    return csv_path, md_path


def layer_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Rows, failures and worst errors per layer and dtype."""
    g = df.groupby(["layer", "dtype"], sort=True)
    errors = {c: (c, "max") for c in ("max_abs_err", "max_rel_err") if c in df.columns}
    summary = g.agg(rows=("status", "size"), failed=("status", lambda s: int(s.isin(FAILING).sum())),
                    unsupported=("status", lambda s: int((s == "unsupported").sum())),
                    missing=("status", lambda s: int((s == "missing").sum())), **errors)  # fmt: skip
    if "kinks" in df.columns:
        summary["kinks"] = g["kinks"].sum()
    return summary.reset_index()


def case_statuses(rows: pd.DataFrame, sev: pd.Series | None = None) -> pd.Series:
    """The status of each case (the worst of its rows), indexed by case; ``sev``: the rows' severities
    (``severity(rows, ["case"])``) where the caller has them already."""
    from reference.core.verdicts import SEVERITY, severity

    inverse = {v: k for k, v in reversed(list(SEVERITY.items()))}
    sev = severity(rows, ["case"]) if sev is None else sev
    return rows.assign(_s=sev).groupby("case")["_s"].min().map(inverse)


def telling(a: float, b: float) -> tuple[str, str]:
    """Two values with the digits that tell them apart, and no more (3 where they differ in the
    first, up to 17 where they differ in the last)."""
    import math

    scale = max(abs(a), abs(b))
    if not math.isfinite(a) or not math.isfinite(b) or a == b or scale == 0:
        return f"{a:.4g}", f"{b:.4g}"
    digits = min(17, max(3, math.ceil(-math.log10(abs(a - b) / scale)) + 2))
    return f"{a:.{digits}g}", f"{b:.{digits}g}"


def verdict_lines(df: pd.DataFrame) -> list[str]:
    """One line per layer, counted in cases (a case is as bad as its worst row), each status apart:
    PASS, or FAIL with the worst failing row spelled out."""
    from reference.core.verdicts import SEVERITY, severity

    lines = []
    # each row's severity in its (layer, case), once for every layer (a layer's cases are its own)
    df = df.assign(_sev=severity(df, ["layer", "case"]).to_numpy()) if len(df) else df.assign(_sev=0.0)
    for layer, rows in df.groupby("layer", sort=True):
        sev = rows["_sev"]
        counts = case_statuses(rows, sev).value_counts()
        n = int(counts.sum())
        parts = [
            f"{int(counts[s])} {s}"
            for s in ("fail", "vacuous", "error", "timeout", "unsupported", "missing")
            if s in counts
        ]
        # rows declared beyond the layer (a float32 of a float64-only layer) in cases otherwise judged
        declared_rows = int((rows["status"].isin(["unsupported", "missing"]) & (sev == SEVERITY["pass"])).sum())
        if declared_rows > 0:
            parts.append(f"{declared_rows} rows of judged cases unsupported")
        tail = f" ({', '.join(parts)})" if parts else ""
        bad = failed(rows)
        if bad.empty:
            passed = int(counts.get("pass", 0))
            if not passed and "family" in rows and rows["family"].eq("whole network").all():  # a network, said so
                from reference.core.verdicts import unjudged_verdict, unjudged_why

                lines.append(f"{layer}: {unjudged_verdict(rows['status'])}: {unjudged_why(rows)}")
                continue
            # NOTE: no case judged is never a pass: every case declared unsupported reads UNSUPPORTED
            word = "PASS" if passed else ("MISSING" if set(counts.index) == {"missing"} else "UNSUPPORTED")
            declared = rows["convention"].dropna().unique() if "convention" in rows else []
            tail += f"; judged against its {'; '.join(map(str, declared))}" if len(declared) else ""
            lines.append(f"{layer}: {word} {passed} of {n} cases{tail}" if passed
                         else f"{layer}: {word}: no case judged{tail}")  # fmt: skip
            continue
        w = bad.iloc[0]
        where = (
            f"{w['tensor']}{w['worst_index']}"
            if isinstance(w.get("worst_index"), str) and w["worst_index"]
            else w["tensor"]
        )
        values = "" if pd.isna(w.get("ours")) else " ours={} ref={}".format(*telling(w["ours"], w["ref"]))
        note = f"({w['note']})"
        if values and failed_on_a_rule(w):  # NOTE: its numbers agree: saying only them would read as a pass
            values += " agree within tolerance"
            note = f"but the row fails {rule_said(str(w['note']))}"
        why = w.get("diagnosis")
        why = f"; why: {why}" if isinstance(why, str) and why else ""
        word = "FAIL" if bad["status"].isin(WRONG).any() else "TIMEOUT"  # cut by a time limit only: not judged
        lines.append(
            f"{layer}: {word} {n - int(counts.get('pass', 0))} of {n} cases{tail}; first: {w['case']} {w['dtype']} {where}{values} {note}{why}"
        )
    return lines


# a rule a row can fail while every element's number is within tolerance: (note prefix, what it holds,
# why an element can agree while the rule does not)
RULES = {
    "window rule:": (
        "the max-pool window rule",
        "each element is judged on its own, and at a tie any share of the window's gradient is a valid "
        "subgradient for that element; but a max pool sends each window's gradient to one of its maxima, so "
        "the window's elements must sum to its upstream gradient, and they do not",
    ),
}


def failed_on_a_rule(row: pd.Series) -> bool:
    """A failing row whose worst element is inside its tolerance (its budget at most 1): it failed on a
    rule over several elements, not on a number."""
    budget = pd.to_numeric(pd.Series([row.get("budget")]), errors="coerce").iloc[0]
    return row.get("status") == "fail" and pd.notna(budget) and float(budget) <= 1.0


def rule_said(note: str) -> str:
    """Which rule a row failed, and why its elements' own numbers agree (a rule not in RULES: its note)."""
    for prefix, (name, why) in RULES.items():
        if note.startswith(prefix):
            return f"{name} ({note[len(prefix) :].strip()}): {why}"
    return f"a rule over its elements ({note})"
