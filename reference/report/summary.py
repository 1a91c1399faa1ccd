"""summary.md (what a person reads first) and index.html (the same tables, failures highlighted,
plots embedded) from the CSV files of a run."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import pandas as pd

from reference.report.tables import PASSING, layer_summary, markdown, write_atomic


def worst_per_tensor(df: pd.DataFrame) -> pd.DataFrame:
    """The worst discrepancy per layer, tensor and dtype (by absolute error), with its case."""
    rows = df.dropna(subset=["max_abs_err"])
    idx = rows.groupby(["layer", "tensor", "dtype"])["max_abs_err"].idxmax()
    return rows.loc[idx, ["layer", "tensor", "dtype", "max_abs_err", "max_rel_err", "worst_index", "case"]].reset_index(
        drop=True
    )


def load_tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    names = {"protocol": "protocol.csv", "autograd": "autograd.csv", "finite_diff": "finite_diff.csv",
             "lifecycle": "lifecycle.csv", "gradcheck": "finite_diff_gradcheck.csv",
             "faults": "faults.csv", "curve_checks": "curve_checks.csv", "curves": "curves.csv", "stages": "stages.csv",
             "gate": "gate.csv"}  # fmt: skip
    return {k: pd.read_csv(run_dir / v) for k, v in names.items() if (run_dir / v).is_file()}


def sections(run_dir: Path, verdict: str, impl_name: str = "scratch_cnn", stamp: str = "") -> list[tuple[str, Any]]:
    """(title, DataFrame or text) in reading order."""
    from reference.report.console import rerun_command

    from .coverage import coverage, layer_verdicts

    t = load_tables(run_dir)
    layer_judges = [t[j] for j in ("protocol", "autograd", "finite_diff", "lifecycle") if j in t]
    rows = pd.concat(layer_judges, ignore_index=True) if layer_judges else pd.DataFrame()
    worst = worst_failures(rows)
    out: list[tuple[str, Any]] = []
    if len(worst):
        lines = [f"- **{r.layer}**: {r.diagnosis} ({r.judge}, {r.tensor}). Rerun: `{rerun_command(impl_name, r.case)}`"
                 if r.judge != "protocol" else f"- **{r.layer}**: protocol rule broken: {r.case}: {r.note}"
                 for r in worst.itertuples()]  # fmt: skip
        out.append(("Failing layers: why, and the command that reruns the worst case alone", "\n".join(lines)))
    out.append(("Verdict", verdict))
    if stamp:
        out.append(("This run", stamp))
    if (run_dir / "incidents.csv").is_file():
        out.append(("Workers lost (the implementation ended, was killed, hung or sent garbage)",
                    pd.read_csv(run_dir / "incidents.csv")))  # fmt: skip
    if len(rows):
        out.append(("Verdict per layer (PASS, weak: passed without meeting its kinks, FAIL, UNSUPPORTED, MISSING)",
                    layer_verdicts(rows)))  # fmt: skip
    if "gate" in t:
        out.append(("Gate", t["gate"]))
    if "protocol" in t:
        broken = t["protocol"][t["protocol"]["status"] != "pass"]
        out.append(
            ("Protocol rules", broken[["layer", "case", "status", "note"]] if len(broken) else "every rule holds")
        )
    if len(rows):
        out.append(("Coverage per layer and configuration family", coverage(rows)))
    for judge in ("autograd", "finite_diff", "lifecycle"):
        if judge in t:
            df = t[judge]
            counts = layer_summary(df)
            out.append((f"{judge}: rows passed / failed / unsupported / missing per layer", counts))
            if "max_abs_err" in df.columns and df["max_abs_err"].notna().any():
                out.append((f"{judge}: worst discrepancy per layer and tensor", worst_per_tensor(df)))
            bad = df[~df["status"].isin(PASSING)]
            if len(bad):
                out.append((f"{judge}: rows that did not pass", bad.head(50)))
    if "gradcheck" in t:
        out.append(("gradcheck cross-check", t["gradcheck"]))
    if "faults" in t:
        out.append(("Fault catalogue: every injected fault must be caught", t["faults"]))
    if "curve_checks" in t:
        out.append(("Curves: bounds", t["curve_checks"]))
    if "curves" in t:
        epochs = t["curves"][t["curves"]["kind"] == "epoch"].drop(columns=["kind"])
        out.append(("Curves: per epoch (float32, ours = impl, twin = torch)", epochs))
    if "stages" in t:
        out.append(("Time per stage", t["stages"]))
    return out


def worst_failures(rows: pd.DataFrame) -> pd.DataFrame:
    """Per failing layer, its worst case: an error first, else the failing row that used the most of its
    tolerance. Columns: layer, judge, case, tensor, note, diagnosis."""
    from .tables import failed

    if rows.empty:
        return rows
    bad = failed(rows)
    bad = bad[bad["case"] != "*"] if len(bad) else bad
    if bad.empty:
        return bad
    bad = bad.assign(_e=(bad["status"] != "error").astype(int),
                     _b=-pd.to_numeric(bad.get("budget", pd.Series(0, index=bad.index)), errors="coerce").fillna(0))  # fmt: skip
    diag = bad["diagnosis"] if "diagnosis" in bad.columns else pd.Series("", index=bad.index)
    bad = bad.assign(diagnosis=diag.where(diag.notna() & (diag != ""), bad["note"]))
    bad = bad.sort_values(["layer", "_e", "_b"], kind="stable").groupby("layer", sort=True).head(1)
    return bad[["layer", "judge", "case", "tensor", "note", "diagnosis"]].reset_index(drop=True)


def write_summary(run_dir: Path, verdict: str, title: str, impl_name: str = "scratch_cnn", stamp: str = "") -> None:
    """summary.md and index.html; ``stamp``: the run's id, time, judged files' SHA-256 and sandbox."""
    parts = [f"# {title}", ""]
    for name, body in sections(run_dir, verdict, impl_name, stamp):
        parts += [f"## {name}", "", body if isinstance(body, str) else markdown(body), ""]
    plots = sorted(run_dir.glob("*.png"))
    if plots:
        parts += ["## Plots", "", *(f"![{p.stem}]({p.name})" for p in plots), ""]
    write_atomic(run_dir / "summary.md", "\n".join(parts))
    write_atomic(run_dir / "index.html", html_page(run_dir, verdict, title, impl_name, stamp))


STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1400px; }
table { border-collapse: collapse; font-size: 12px; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #eee; }
tr.bad td { background: #fdd; }
tr.skip td { background: #ffd; }
.verdict { font-size: 1.3em; font-weight: bold; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
"""


def html_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = []
    for _, row in df.iterrows():
        status = str(row.get("status", "pass"))
        verdict = str(row.get("verdict", ""))
        bad = status in ("fail", "error", "vacuous") or verdict == "FAIL"
        cls = "bad" if bad else ("skip" if status in ("skip", "unsupported", "missing") or verdict == "weak" else "")
        cells = "".join(f"<td>{html.escape(_fmt(row[c]))}</td>" for c in cols)
        body.append(f'<tr class="{cls}">{cells}</tr>')
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if pd.isna(v) else f"{v:.4g}"
    return str(v)


def html_page(run_dir: Path, verdict: str, title: str, impl_name: str = "scratch_cnn", stamp: str = "") -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]  # fmt: skip
    for name, body in sections(run_dir, verdict, impl_name, stamp):
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.append(f"<p class='verdict'>{html.escape(body)}</p>" if isinstance(body, str) else html_table(body))
    for png in sorted(run_dir.glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode()
        parts.append(f"<h2>{html.escape(png.stem)}</h2><img alt='{png.stem}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
