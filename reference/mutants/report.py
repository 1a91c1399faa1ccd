"""The mutation run's reports: mutants.csv (one row per mutant), files.csv (per file), summary.md
(the kill rate, per file, per judge, every survivor with its diff, every equivalent with its reason)
and index.html; written whole in a staging folder and swapped into place."""

from __future__ import annotations

import html
import shutil
import time
from pathlib import Path

import pandas as pd

from reference.report.publish import check_out, new_staging, stamp, swap_into_place
from reference.report.summary import STYLE, html_table
from reference.report.tables import markdown, write_atomic

STATUSES = ["killed", "timed out", "survived", "equivalent", "outside the protocol", "judge error"]
SET_ASIDE = ("equivalent", "outside the protocol")  # listed with reasons, not in the kill rate


def per_file(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per file: mutants, a count per status, the kill rate of the non-equivalent ones."""
    counts = rows.pivot_table(index="file", columns="status", values="id", aggfunc="count", fill_value=0)
    counts = counts.reindex(columns=STATUSES, fill_value=0)
    counts.insert(0, "mutants", counts.sum(axis=1))
    counts["kill rate"] = [kill_rate(rows[rows["file"] == f]) for f in counts.index]
    return counts.reset_index()


def kill_rate(rows: pd.DataFrame) -> str:
    """Killed (a timeout is a kill: the judge stopped it) over the mutants not set aside, as a percent."""
    live = rows[~rows["status"].isin(SET_ASIDE)]
    killed = live["status"].isin(["killed", "timed out"]).sum()
    return f"{100 * killed / len(live):.1f}% ({killed} of {len(live)})" if len(live) else "n/a (all equivalent)"


def per_judge(rows: pd.DataFrame) -> pd.DataFrame:
    """Which stage killed how many (the first failing stage; later stages did not run)."""
    killed = rows[rows["status"].isin(["killed", "timed out"])]
    return killed.groupby("killed_by").size().rename("mutants").sort_values(ascending=False).reset_index()


def write_reports(rows: pd.DataFrame, out: Path, *, seconds: float, workers: int, equivalent: dict[str, tuple[str, str]],
                  sampled: bool, seed: int) -> None:  # fmt: skip
    check_out(out)
    files, judges = per_file(rows), per_judge(rows)
    survivors = rows[rows["status"].isin(["survived", "judge error"])]
    stale = sorted(set(equivalent) - set(rows.loc[rows["status"].isin(SET_ASIDE), "key"]) & set(rows["key"]))
    head = [
        "# Mutation run of scratch_cnn, judged by the judges",
        "",
        f"**Kill rate: {kill_rate(rows)}** of the non-equivalent mutants; {len(rows)} mutants "
        f"({'a seeded sample, seed ' + str(seed) if sampled else 'chosen'}), "
        f"{(rows['status'] == 'equivalent').sum()} equivalent and {(rows['status'] == 'outside the protocol').sum()} "
        "outside the protocol (changing only what the protocol leaves to the implementation: invalid input, "
        "error messages, initial weights), each listed "
        "with its reason in reference/mutants/equivalent.csv.",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {seconds / 60:.1f} min with "
        f"{workers} mutants at once.",
        "",
    ]
    body = [*head, "## Per file", "", markdown(files), "", "## Which judge killed them", "",
            markdown(judges), ""]  # fmt: skip
    body += ["## Survivors (non-equivalent, not killed)", ""]
    if len(survivors):
        for r in survivors.itertuples():
            body += [f"### {r.id}: {r.file} {r.function} ({r.status})", "", "```diff", r.diff.rstrip(), "```", ""]
    else:
        body += ["_none_", ""]
    eq = rows[rows["status"].isin(SET_ASIDE)]
    body += ["## Equivalent, or outside the protocol", "",
             markdown(eq[["id", "status", "file", "function", "before", "after", "reason"]])
             if len(eq) else "_none in this run_", ""]  # fmt: skip
    if stale:
        body += ["## Listed as equivalent but killed in this run (remove them from equivalent.csv)", "",
                 *[f"- `{k}`" for k in stale], ""]  # fmt: skip
    staging = new_staging(out)
    try:
        write_atomic(staging / "mutants.csv", rows.to_csv(index=False))
        write_atomic(staging / "files.csv", files.to_csv(index=False))
        write_atomic(staging / "summary.md", "\n".join(body))
        write_atomic(staging / "survivors.diff", "".join(survivors["diff"]) if len(survivors) else "")
        write_atomic(staging / "index.html", page(head, files, judges, survivors, eq))
        stamp(staging, {"command": "mutants", "mutants": len(rows), "kill_rate": kill_rate(rows), "seconds": seconds})
        swap_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def page(head: list[str], files: pd.DataFrame, judges: pd.DataFrame, survivors: pd.DataFrame,
         eq: pd.DataFrame) -> str:  # fmt: skip
    rate = html.escape(head[2].replace("**", ""))
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Mutation run</title>",
             f"<style>{STYLE}</style></head><body><h1>Mutation run of scratch_cnn</h1>",
             f"<p class='verdict'>{rate}</p><p>{html.escape(head[4])}</p>",
             "<h2>Per file</h2>", html_table(files), "<h2>Which judge killed them</h2>", html_table(judges),
             "<h2>Survivors</h2>"]  # fmt: skip
    if len(survivors):
        for r in survivors.itertuples():
            parts.append(f"<h3>{html.escape(r.id)}: {html.escape(r.file)} {html.escape(r.function)}</h3>"
                         f"<pre>{html.escape(r.diff)}</pre>")  # fmt: skip
    else:
        parts.append("<p>none</p>")
    parts += ["<h2>Equivalent, or outside the protocol</h2>",
              html_table(eq[["id", "status", "file", "function", "before", "after", "reason"]]) if len(eq) else "<p>none</p>",
              "</body></html>"]  # fmt: skip
    return "".join(parts)
