"""What a teacher reads: the gradebook (one row per submission), the class summary (per layer how
many PASS / FAIL / ..., the bugs the class made and who made them, a score histogram, the slowest),
Gradescope's results.json per submission, and JUnit XML. Everything here is computed from the plain
data the tasks sent back (reference.grade.task).

Every name, id, diagnosis and note in summary.md is escaped for Markdown (``md_escape``) and in
index.html for HTML: a file named like a table row, or a diagnosis quoting a student's exception,
is text, never a row, a link or a tag."""

from __future__ import annotations

import html
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pandas as pd

from reference.impl.protocol import CLASSES, REQUIRED
from reference.report.tables import readable, write_atomic

VERDICTS = ("PASS", "weak", "FAIL", "TIMEOUT", "ERROR", "UNSUPPORTED", "MISSING")
# NOTE: how a verdict scores: a layer proven right earns its points; "weak" (everything judged passed
# but its kink was never met: a pool never judged on a tie) earns half, because its convention at the
# kink is unproven; a declared limit (UNSUPPORTED) or an absent class (MISSING) earns nothing, like a
# failure, because nothing of the layer was shown right.
CREDIT = {"PASS": 1.0, "weak": 0.5}
TIMEOUT_SCORES = ("zero", "judged-only")
# NOTE: TIMEOUT (nothing shown wrong, some cases cut by a time limit: not judged) scores as the
# teacher chooses: "zero" (the default: what was not judged is not proven), or "judged-only" (the
# layer is scored on the cases that were judged: full points when some passed and none failed).


def credit(verdict: str, passing_rows: int, timeout_scores: str = "zero") -> float:
    """The share of a layer's points its verdict earns."""
    if verdict == "TIMEOUT" and timeout_scores == "judged-only":
        return 1.0 if passing_rows > 0 else 0.0
    return CREDIT.get(verdict, 0.0)


def passing_rows(result: dict[str, Any]) -> dict[str, int]:
    """{layer: its passing rows} from the judge's verdicts.csv (0 where there is none)."""
    raw = result.get("files", {}).get("verdicts.csv")
    if not raw:
        return {}
    table = pd.read_csv(io.BytesIO(raw))
    if "rows_pass" not in table:
        return {}
    return {str(r.layer): int(r.rows_pass) for r in table.itertuples()}


def parse_points(text: str | None, layers: tuple[str, ...] = REQUIRED) -> dict[str, float]:
    """``Conv2D=3,MaxPool2D=2`` -> points per graded layer (``layers``); every other one 1. A course
    layer (``BatchNorm2D=2``: one of the protocol's optional classes) named here is graded too."""
    points = dict.fromkeys(layers, 1.0)
    if not text:
        return points
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name not in (*points, *(c for c in CLASSES if c not in REQUIRED)):
            raise ValueError(
                f"--points: {part.strip()!r} is not LAYER=POINTS with a graded layer ({', '.join(layers)}) or a "
                f"course layer ({', '.join(c for c in CLASSES if c not in REQUIRED)})"
            )
        try:
            points[name] = float(value)
        except ValueError:
            raise ValueError(f"--points: {value!r} is not a number (in {part.strip()!r})") from None
        if points[name] < 0:
            raise ValueError(f"--points: {part.strip()!r} is negative")
    return points


def present_kinds(results: Any) -> list[str]:
    """The course layers (the protocol's optional classes) some judged submission has: a verdict other
    than MISSING in its verdicts.csv, in the protocol's order."""
    found: set[str] = set()
    for result in results:
        raw = result.get("files", {}).get("verdicts.csv")
        if raw:
            table = pd.read_csv(io.BytesIO(raw))
            found |= {str(r.layer) for r in table.itertuples() if str(r.verdict) != "MISSING"}
    return [c for c in CLASSES if c not in REQUIRED and c in found]


def layer_verdicts(result: dict[str, Any], layers: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """{layer: (verdict, why)} of one judged submission; every layer ERROR when the judge produced no
    verdicts (it timed out, or the module did not import)."""
    raw = result.get("files", {}).get("verdicts.csv")
    if not raw:
        why = first_line(result.get("output", "")) or "the judge wrote no verdicts"
        return dict.fromkeys(layers, ("ERROR", why))
    table = pd.read_csv(io.BytesIO(raw))
    found = {str(r.layer): (str(r.verdict), str(r.why)) for r in table.itertuples() if str(r.layer) in layers}
    return {layer: found.get(layer, ("MISSING", "not judged")) for layer in layers}


def first_line(text: str) -> str:
    """The judge's ``error:`` line (why it could not run), else its first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("error:"):
            return line[len("error:") :].strip()
    return lines[0] if lines else ""


def diagnoses(result: dict[str, Any]) -> dict[str, str]:
    """{layer: the diagnosis most of its failing rows share} from the submission's own CSVs (an
    explained one before ``unexplained``; the note of its first error row when no row has one)."""
    from reference.core.verdicts import OWN_JUDGES
    from reference.judges.catalogue import leading_diagnosis

    frames = []
    for name in OWN_JUDGES:
        raw = result.get("files", {}).get(f"{name}.csv")
        if raw:
            frames.append(pd.read_csv(io.BytesIO(raw)))
    if not frames:
        return {}
    rows = pd.concat(frames, ignore_index=True)
    out = {}
    for layer, group in rows[rows["status"].isin(["fail", "error"])].groupby("layer"):
        records = group.to_dict("records")
        found = leading_diagnosis(records)
        if not found:
            first = next((r for r in records if isinstance(r.get("note"), str) and r["note"]), None)
            found = f"{first['status']}: {first['note']}" if first else ""
        if found and str(layer) in CLASSES:
            out[str(layer)] = found
    return out


def gradebook_row(
    sub: Any, result: dict[str, Any], points: dict[str, float], timeout_scores: str = "zero"
) -> dict[str, Any]:
    """One submission's row: its verdict per graded layer (the keys of ``points``), score, its first
    diagnosis and all of them (``Layer: diagnosis | ...``; ``not judged: why`` when no layer was)."""
    layers = tuple(points)
    verdicts = layer_verdicts(result, layers) if not sub.problem else dict.fromkeys(layers, ("ERROR", sub.problem))
    diag = {k: v for k, v in diagnoses(result).items() if k in points} if not sub.problem else {}
    passed = passing_rows(result) if not sub.problem else {}
    shares = {layer: credit(v, passed.get(layer, 0), timeout_scores) for layer, (v, _) in verdicts.items()}
    score = sum(points[layer] * shares[layer] for layer in layers)
    unjudged = not sub.problem and not result.get("files", {}).get("verdicts.csv")
    if sub.problem or unjudged:  # NOTE: no layer was judged: the reason is the submission's, not a layer's
        found = [f"not judged: {sub.problem or next(iter(verdicts.values()))[1]}"]
    else:
        found = [*(f"{layer}: {diag[layer]}" for layer in layers if layer in diag),
                 *(f"{layer}: {why}" for layer, (v, why) in verdicts.items() if v == "ERROR" and layer not in diag)]  # fmt: skip
    first, every = (found[0] if found else ""), " | ".join(found)
    row = {"id": sub.id, "name": getattr(sub, "name", sub.id), "sha256": sub.sha256 if sub.files else "",
           "score": score, "max_score": sum(points.values()), **{layer: v for layer, (v, _) in verdicts.items()},
           "first_diagnosis": first, "diagnoses": every, "exit_code": result.get("exit_code"), "seconds": result.get("seconds"),
           "sandbox": result.get("sandbox", ""), "stamp": result.get("stamp", ""),
           "secret_seed": bool(result.get("secret_seed", False)), "judge_version": result.get("judge_version", ""),
           "dropped_notebook_lines": len(sub.dropped)}  # fmt: skip
    row["_diagnoses"] = diag
    row["_why"] = {layer: why for layer, (_, why) in verdicts.items()}
    row["_credit"] = shares
    return row


def class_counts(book: pd.DataFrame, layers: tuple[str, ...]) -> pd.DataFrame:
    """Per layer: how many submissions got each verdict."""
    rows = []
    for layer in layers:
        counts = book[layer].value_counts() if layer in book else pd.Series(dtype=int)
        rows.append({"layer": layer, **{v: int(counts.get(v, 0)) for v in VERDICTS}})
    return pd.DataFrame(rows)


def common_diagnoses(rows: list[dict[str, Any]], top: int = 15) -> pd.DataFrame:
    """The most common diagnoses with their count and who has them: "38 of 300: ..."."""
    counter: Counter[tuple[str, str]] = Counter()
    who: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        for layer, text in r["_diagnoses"].items():
            key = (layer, text)
            counter[key] += 1
            who.setdefault(key, []).append(r["id"])
    n = len(rows)
    out = [{"count": f"{c} of {n}", "layer": layer, "diagnosis": text, "submissions": ", ".join(sorted(who[(layer, text)]))}
           for (layer, text), c in counter.most_common(top)]  # fmt: skip
    return pd.DataFrame(out, columns=["count", "layer", "diagnosis", "submissions"])


def public(book_rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in book_rows])


def histogram(book: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    top = float(book["max_score"].max()) if len(book) else 1.0
    ax.hist(book["score"], bins=min(20, max(int(top * 2) + 1, 2)), range=(0, top), color="#4a7", edgecolor="white")
    ax.set(xlabel="score", ylabel="submissions", title=f"scores of {len(book)} submissions (of {top:g})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def gradescope(row: dict[str, Any], points: dict[str, float], rerun: str,
               tests: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """Gradescope's autograder results.json: the score and one test per layer with its output (``tests``:
    reference.grade.feedback's, public and hidden cases apart; else from the row alone)."""
    tests = list(tests) if tests is not None else []
    for layer in points if not tests else ():
        verdict = row[layer]
        lines = [f"verdict: {verdict} ({row['_why'].get(layer, '')})"]
        if layer in row["_diagnoses"]:
            lines.append(f"diagnosis: {row['_diagnoses'][layer]}")
        if verdict not in ("PASS",):
            lines.append(f"rerun: {rerun} --layers {layer}")
        tests.append({"name": layer, "score": points[layer] * row["_credit"][layer], "max_score": points[layer],
                      "status": "passed" if verdict == "PASS" else "failed", "output": "\n".join(lines),
                      "visibility": "visible"})  # fmt: skip
    return {"score": row["score"], "execution_time": row.get("seconds") or 0, "tests": tests,
            "output": f"scratch-cnn judge {row['judge_version']}: {row['score']:g} of {row['max_score']:g}"}  # fmt: skip


def junit_xml(suites: list[tuple[str, list[tuple[str, str, str]]]]) -> str:
    """JUnit XML as pytest writes it: one testsuite per (name, [(case, verdict, message)])."""
    parts = ['<?xml version="1.0" encoding="utf-8"?>', "<testsuites>"]
    for name, cases in suites:
        failures = sum(v in ("FAIL", "ERROR") for _, v, _ in cases)
        skipped = sum(v in ("UNSUPPORTED", "MISSING") for _, v, _ in cases)
        parts.append(f"<testsuite name={quoteattr(name)} tests=\"{len(cases)}\" failures=\"{failures}\" "
                     f"errors=\"0\" skipped=\"{skipped}\">")  # fmt: skip
        for case, verdict, message in cases:
            parts.append(f"<testcase classname={quoteattr(name)} name={quoteattr(case)}>")
            if verdict in ("FAIL", "ERROR"):
                parts.append(
                    f"<failure message={quoteattr(verdict + ': ' + message[:500])}>{escape(message)}</failure>"
                )
            elif verdict in ("UNSUPPORTED", "MISSING"):
                parts.append(f"<skipped message={quoteattr(verdict + ': ' + message[:500])}/>")
            elif verdict == "weak":
                parts.append(f"<system-out>{escape('weak: ' + message)}</system-out>")
            parts.append("</testcase>")
        parts.append("</testsuite>")
    parts.append("</testsuites>")
    return "\n".join(parts) + "\n"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0 1.5em; width: 100%; table-layout: auto; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; overflow-wrap: break-word; }
th { background: #eee; overflow-wrap: anywhere; }
td.text { min-width: 24em; }
td.PASS, td.weak, td.FAIL, td.ERROR, td.UNSUPPORTED, td.MISSING { white-space: nowrap; }
td.PASS { background: #dfd; } td.weak { background: #ffd; } td.FAIL, td.ERROR { background: #fdd; font-weight: bold; }
td.UNSUPPORTED, td.MISSING { background: #eee; color: #666; }
img { max-width: 100%; }
.big { font-size: 1.3em; }
"""


def md_escape(text: str) -> str:
    """``text`` as one Markdown table cell that renders as itself: one line, ``|`` `` ` `` ``[`` ``]``
    and ``\\`` backslashed, ``<`` ``>`` ``&`` as entities (no tag, no link, no quote), a leading ``#``,
    ``-``, ``+``, ``*`` or ``=`` backslashed (no heading, no list)."""
    text = " ".join(str(text).split())  # NOTE: a newline in a file name would end the row
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = re.sub(r"([\\|`\[\]])", r"\\\1", text)
    return "\\" + text if text[:1] in ("#", "-", "+", "*", "=") else text


def md_table(df: pd.DataFrame) -> str:
    """A Markdown table with every text cell escaped (md_escape) and taken as text (an id ``007`` stays
    ``007``, never the number 7); numbers right-aligned as the other reports have them."""
    if not len(df):
        return "_(no rows)_"
    shown = readable(df).rename(columns=lambda c: md_escape(str(c)))
    text_columns = []
    for i, col in enumerate(shown.columns):
        if not pd.api.types.is_numeric_dtype(shown[col]):  # object, or pandas' own string dtype
            shown[col] = pd.Series(
                [md_escape(v) if isinstance(v, str) else v for v in shown[col]], index=shown.index, dtype=object
            )
            text_columns.append(i)
    return shown.to_markdown(index=False, floatfmt=".3g", disable_numparse=text_columns or False)


def lms_tables(rows: list[dict[str, Any]], title: str = "scratch-cnn") -> dict[str, pd.DataFrame]:
    """The gradebook as the LMSs import it: Canvas's gradebook CSV (Student, ID, SIS User ID, SIS Login
    ID, Section, then a column per assignment, ``title (points)``) and Moodle's grade import (an
    identifier column, the grade, the feedback). The submission's id stands for the student's login:
    match it to your roster on import."""
    top = max((float(r["max_score"]) for r in rows), default=0.0)
    column = f"{title} ({top:g} points)"
    canvas = pd.DataFrame([{"Student": r["name"], "ID": "", "SIS User ID": "", "SIS Login ID": r["id"], "Section": "",
                            column: r["score"]} for r in rows],
                          columns=["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column])  # fmt: skip
    moodle = pd.DataFrame([{"username": r["id"], "grade": r["score"], "max_grade": r["max_score"],
                            "feedback": r.get("diagnoses", "") or "every graded layer passes"} for r in rows],
                          columns=["username", "grade", "max_grade", "feedback"])  # fmt: skip
    return {"canvas.csv": canvas, "moodle.csv": moodle}


def html_table(df: pd.DataFrame, links: dict[str, str] | None = None) -> str:
    """``df`` as an HTML table, every cell escaped; ``links`` ({id: href}) makes the ``id`` cells links
    (a student's report)."""
    from urllib.parse import quote

    links = links or {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for _, row in df.iterrows():
        cells = []
        for c in df.columns:
            v = row[c]
            text = (
                ""
                if v is None or (isinstance(v, float) and pd.isna(v))
                else (f"{v:.4g}" if isinstance(v, float) else str(v))
            )
            cls = f' class="{html.escape(text)}"' if text in VERDICTS else ' class="text"' if len(text) > 60 else ""
            shown = html.escape(text)
            if c == "id" and text in links:
                shown = f'<a href="{html.escape(quote(links[text]))}">{shown}</a>'
            cells.append(f"<td{cls}>{shown}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def report_links(out: Path, ids: list[str]) -> dict[str, str]:
    """{id: its report's page, relative to ``out``} for every submission whose report is there."""
    return {i: f"{i}/index.html" for i in ids if (out / i / "index.html").is_file()}


SHARED_TITLE = "Submissions with the same wrong numbers (bit for bit)"
SHARED_WORDS = ("Each row: submissions whose failing tensor on the same case is identical to the last bit, and how "
                "many such tensors they share. A shared misconception written the same way, or shared code: "
                "evidence to look at, not a finding about anyone.")  # fmt: skip


def _shared_md(shared: pd.DataFrame | None) -> list[str]:
    if shared is None:
        return []
    return [f"## {SHARED_TITLE}", "", SHARED_WORDS, "", md_table(shared) if len(shared) else "_none_", ""]


def _shared_html(shared: pd.DataFrame | None, links: dict[str, str]) -> list[str]:
    if shared is None:
        return []
    return [f"<h2>{SHARED_TITLE}</h2><p>{html.escape(SHARED_WORDS)}</p>",
            html_table(shared, links) if len(shared) else "<p>None.</p>"]  # fmt: skip


def _pages_md(pages: dict[str, str] | None) -> list[str]:
    if not pages:
        return []
    return ["## The class's mistakes per layer (to show in class: no student named)", "",
            *(f"- [{md_escape(layer)}]({page.replace('.html', '.md')})" for layer, page in pages.items()), ""]  # fmt: skip


def _pages_html(pages: dict[str, str] | None) -> list[str]:
    if not pages:
        return []
    items = "".join(f"<li><a href='{html.escape(page)}'>{html.escape(layer)}</a></li>" for layer, page in pages.items())
    return [f"<h2>The class's mistakes per layer (to show in class: no student named)</h2><ul>{items}</ul>"]


def write_class_reports(out: Path, rows: list[dict[str, Any]], headline: str, layers: tuple[str, ...],
                        slowest: int = 10, changed: pd.DataFrame | None = None, shared: pd.DataFrame | None = None,
                        pages: dict[str, str] | None = None) -> pd.DataFrame:  # fmt: skip
    """gradebook.csv, canvas.csv and moodle.csv, summary.md, index.html (each id a link to that
    submission's report) and scores.png in ``out``; ``changed``: the regrade table (--compare), shown
    first; ``shared``: submissions with the same wrong numbers (reference.grade.patterns); ``pages``:
    {layer: its page of common mistakes}. Returns the gradebook."""
    book = public(rows)
    write_atomic(out / "gradebook.csv", book.to_csv(index=False))
    for name, table in lms_tables(rows).items():
        write_atomic(out / name, table.to_csv(index=False))
    links = report_links(out, [str(r["id"]) for r in rows])
    counts, common = class_counts(book, layers), common_diagnoses(rows)
    slow = book.sort_values("seconds", ascending=False).head(slowest)[["id", "name", "seconds", "exit_code", "score"]]
    if len(book):
        histogram(book, out / "scores.png")
    regraded_md = (["## Changed since the previous run (--compare)", "", md_table(changed) if len(changed) else
                    "_no score or verdict changed_", ""] if changed is not None else [])  # fmt: skip
    regraded_html = (["<h2>Changed since the previous run (--compare)</h2>",
                      html_table(changed, links) if len(changed) else "<p>No score or verdict changed.</p>"]
                     if changed is not None else [])  # fmt: skip
    md = [f"# Class summary: {len(book)} submissions", "", md_escape(headline), "", *regraded_md,
          "## Verdicts per layer (submissions)", "", md_table(counts), "",
          "## The most common diagnoses", "", md_table(common) if len(common) else "_no failing layer_", "",
          *_shared_md(shared), *_pages_md(pages),
          "## Gradebook", "", md_table(book.drop(columns=["sha256", "judge_version"], errors="ignore")), "",
          "## The slowest submissions (seconds)", "", md_table(slow), "", "![scores](scores.png)", ""]  # fmt: skip
    write_atomic(out / "summary.md", "\n".join(md))
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>Class summary</title><style>{STYLE}</style>",
            f"</head><body><h1>Class summary: {len(book)} submissions</h1><p class='big'>{html.escape(headline)}</p>",
            *regraded_html,
            "<h2>Verdicts per layer</h2>", html_table(counts), "<h2>The most common diagnoses</h2>",
            html_table(common) if len(common) else "<p>No failing layer.</p>", *_shared_html(shared, links),
            *_pages_html(pages), "<h2>Gradebook</h2>",
            html_table(book.drop(columns=["sha256", "judge_version", "secret_seed", "dropped_notebook_lines"], errors="ignore"),
                       links),
            "<h2>The slowest submissions</h2>", html_table(slow, links)]  # fmt: skip
    if (out / "scores.png").is_file():
        import base64

        data = base64.b64encode((out / "scores.png").read_bytes()).decode()
        page.append(f"<h2>Scores</h2><img alt='score histogram' src='data:image/png;base64,{data}'>")
    page.append("</body></html>")
    write_atomic(out / "index.html", "\n".join(page))
    return book


def stored(path: Path) -> dict[str, Any] | None:
    """A stored result (``<id>/grade.json``), or None when absent or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
