"""Writing judge tables: CSV (the machine-readable truth) and Markdown, and one-line verdicts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from reference.report.compare import ROW_COLUMNS

PASSING = {"pass"}  # kink elements are judged inside a row (subgradient rule); the row is pass or fail


def ordered(df: pd.DataFrame) -> pd.DataFrame:
    """The schema's columns first, extras after."""
    first = [c for c in ROW_COLUMNS if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def failed(df: pd.DataFrame) -> pd.DataFrame:
    return df[~df["status"].isin(PASSING)]


def failures_first(df: pd.DataFrame) -> pd.DataFrame:
    """Errors, then failures, then the rest; stable within each group."""
    order = df["status"].map({"error": 0, "fail": 1, "vacuous": 1}).fillna(2)
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


def markdown(df: pd.DataFrame, max_rows: int | None = None) -> str:
    shown = df if max_rows is None else df.head(max_rows)
    text = shown.to_markdown(index=False, floatfmt=".3g") if len(shown) else "_(no rows)_"
    if max_rows is not None and len(df) > max_rows:
        text += f"\n\n_{len(df) - max_rows} more rows in the CSV._"
    return text


def write_table(df: pd.DataFrame, out: Path, stem: str, title: str,
                extra: dict[str, tuple[str, pd.DataFrame]] | None = None) -> tuple[Path, Path]:  # fmt: skip
    """Write ``out/stem.csv`` (every row) and ``out/stem.md`` (verdicts, a per-layer summary, the
    failing rows); each ``extra`` {suffix: (title, table)} goes into the Markdown and ``out/stem_suffix.csv``."""
    df = ordered(df)
    csv_path, md_path = out / f"{stem}.csv", out / f"{stem}.md"
    write_atomic(csv_path, df.to_csv(index=False))
    bad = failed(df)
    body = [f"# {title}", "", *verdict_lines(df), "", "## Per layer", "", markdown(layer_summary(df)), ""]
    body += ["## Failing rows", "", markdown(bad, 200) if len(bad) else "_none_", ""]
    for suffix, (name, table) in (extra or {}).items():
        body += [f"## {name}", "", markdown(table), ""]
        write_atomic(out / f"{stem}_{suffix}.csv", table.to_csv(index=False))
    write_atomic(md_path, "\n".join(body))
    return csv_path, md_path


def layer_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Rows, failures and worst errors per layer and dtype."""
    g = df.groupby(["layer", "dtype"], sort=True)
    summary = g.agg(rows=("status", "size"), failed=("status", lambda s: int((~s.isin(PASSING)).sum())),
                    max_abs_err=("max_abs_err", "max"), max_rel_err=("max_rel_err", "max"))  # fmt: skip
    if "kinks" in df.columns:
        summary["kinks"] = g["kinks"].sum()
    return summary.reset_index()


def verdict_lines(df: pd.DataFrame) -> list[str]:
    """One line per layer: PASS with the row count, or FAIL with the worst failing row spelled out."""
    lines = []
    for layer, rows in df.groupby("layer", sort=True):
        bad = failed(rows)
        if bad.empty:
            lines.append(f"{layer}: PASS ({len(rows)} rows)")
            continue
        w = bad.iloc[0]
        where = (
            f"{w['tensor']}{w['worst_index']}"
            if isinstance(w.get("worst_index"), str) and w["worst_index"]
            else w["tensor"]
        )
        values = "" if pd.isna(w.get("ours")) else f" ours={w['ours']:.10g} ref={w['ref']:.10g}"
        lines.append(
            f"{layer}: FAIL {len(bad)} of {len(rows)} rows; first: {w['case']} {w['dtype']} {where}{values} ({w['note']})"
        )
    return lines
