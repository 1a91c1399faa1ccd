"""Feedback a teacher can hand back (``grade --feedback DIR``): per student ``DIR/<id>/feedback.html``
(self-contained: the heat maps inline) and ``feedback.md`` (the heat maps beside it), read from the
submission's own report.

What a student sees of a case depends on where it comes from. A public case (the fixed grid, which
the student can run): its diagnosis, the smallest failing input, the heat maps and the command that
reruns it. A case drawn from the teacher's secret seed: only that a hidden case failed and the class
of its diagnosis (its words without its numbers), never its inputs, its id, its shrunk input or its
picture: a student who saw them could tune the code to them. Gradescope's results.json makes the
same split with its visibility levels (``gradescope_tests``).
"""

from __future__ import annotations

import base64
import html
import io
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from reference.layers.case import KEPT_FAMILIES
from reference.report.tables import write_atomic

SECRET_FAMILY = KEPT_FAMILIES["secret"]  # the ``family`` of every row of a case drawn from the secret seed
ROW_FILES = ("protocol.csv", "autograd.csv", "optimizer.csv", "finite_diff.csv", "lifecycle.csv")


@dataclass
class LayerFeedback:
    """What one layer's student may read: public evidence in full, hidden cases only counted and classed."""

    layer: str
    verdict: str
    why: str
    earned: float
    points: float
    diagnosis: str = ""  # the worst public failing row's
    tensor: str = ""
    case: str = ""  # its id (a public case: the student can rerun it)
    smallest: str = ""  # its smallest failing input in words (shrunk from a public case)
    pictures: list[str] = field(default_factory=list)  # files in the submission's report folder
    hidden_failed: int = 0  # hidden cases failing
    hidden_classes: list[str] = field(default_factory=list)  # their diagnoses' classes
    hidden_diagnoses: list[str] = field(
        default_factory=list
    )  # their full diagnoses (for the teacher, after publishing)


def diagnosis_class(text: str) -> str:
    """A diagnosis without what would reveal its case: no parenthesised details, no numbers, no indices."""
    text = re.sub(r"\([^()]*\)", "", str(text))
    text = re.sub(r"\[[^\[\]]*\]", "", text)
    text = re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "#", text)
    return " ".join(text.split()).replace(" :", ":").replace(" ,", ",")


def _table(files: dict[str, bytes], name: str) -> pd.DataFrame:
    raw = files.get(name)
    return pd.read_csv(io.BytesIO(raw)) if raw else pd.DataFrame()


def rows_of(files: dict[str, bytes]) -> pd.DataFrame:
    """Every judge's rows of one submission's report, with ``hidden`` (a secret case's row)."""
    frames = [t for t in (_table(files, n) for n in ROW_FILES) if len(t)]
    if not frames:
        return pd.DataFrame(columns=["judge", "layer", "case", "status", "hidden"])
    rows = pd.concat(frames, ignore_index=True)
    family = rows["family"] if "family" in rows else pd.Series("", index=rows.index)
    return rows.assign(hidden=family.eq(SECRET_FAMILY))


def layer_feedback(row: dict[str, Any], files: dict[str, bytes], points: dict[str, float],
                   pictures: pd.DataFrame) -> list[LayerFeedback]:  # fmt: skip
    """Per graded layer (``points``), what its student may read (a gradebook row, the report's files and
    its heatmaps.csv)."""
    from reference.judges.catalogue import leading_diagnosis
    from reference.report.summary import worst_failures

    rows = rows_of(files)
    bad = rows[rows["status"].isin(["fail", "error"])] if len(rows) else rows
    shrunk = _table(files, "autograd_shrunk.csv")
    secret_ids = set(rows.loc[rows["hidden"], "case"]) if len(rows) else set()
    out = []
    for layer in points:
        fb = LayerFeedback(layer, str(row.get(layer, "")), str(row["_why"].get(layer, "")),
                           points[layer] * row["_credit"].get(layer, 0.0), points[layer])  # fmt: skip
        mine = bad[bad["layer"] == layer] if len(bad) else bad
        public, hidden = (mine[~mine["hidden"]], mine[mine["hidden"]]) if len(mine) else (mine, mine)
        if len(public):
            # the diagnosis most of the public failing rows share (an explained one first), shown on its worst row
            lead = leading_diagnosis(public.to_dict("records"))
            pool = public[public["diagnosis"] == lead] if lead and "diagnosis" in public else public
            worst = worst_failures(pool)
            if len(worst):
                w = worst.iloc[0]
                fb.diagnosis, fb.tensor, fb.case = str(w["diagnosis"]), str(w["tensor"]), str(w["case"])
                if fb.case == "*" or w["judge"] == "protocol":
                    fb.case = ""
        if len(shrunk):
            mine_s = shrunk[(shrunk["layer"] == layer) & ~shrunk["from_case"].isin(secret_ids)]
            if len(mine_s):
                fb.smallest = str(mine_s.iloc[0]["description"])
        if len(pictures):
            shown = pictures[(pictures["layer"] == layer) & ~pictures["case"].isin(secret_ids)]
            if len(shrunk) and shrunk["from_case"].isin(secret_ids).any():  # a picture of a secret case's shrinking
                from_secret = shrunk.loc[shrunk["from_case"].isin(secret_ids), "layer"]
                shown = shown[~((shown["kind"] == "smallest") & shown["layer"].isin(from_secret))]
            fb.pictures = [str(f) for f in shown["file"]]
        if len(hidden):
            fb.hidden_failed = int(hidden["case"].nunique())
            texts = [str(d) for d in hidden.get("diagnosis", pd.Series(dtype=object)).dropna() if str(d)]
            lead = leading_diagnosis(hidden.to_dict("records")) or (texts[0] if texts else "")
            fb.hidden_diagnoses = list(dict.fromkeys(texts))[:5]
            fb.hidden_classes = list(dict.fromkeys([diagnosis_class(lead), *map(diagnosis_class, texts)]))[:3]
        out.append(fb)
    return out


def rerun_line(entry: str, case: str) -> str:
    """The command a student runs on their own file to rerun a public case."""
    return f"python -m reference judge --impl {shlex.quote(entry)} --case {shlex.quote(case)}"


def feedback_markdown(sub_id: str, entry: str, row: dict[str, Any], layers: list[LayerFeedback],
                      unjudged: str = "") -> str:  # fmt: skip
    """The student's feedback in Markdown (the pictures are files beside it)."""
    lines = [f"# Feedback: {sub_id}", "", f"Score: **{row['score']:g} of {row['max_score']:g}** "
             f"(judge {row.get('judge_version', '')})", ""]  # fmt: skip
    if unjudged:
        return "\n".join([*lines, "Your submission could not be judged:", "", f"    {unjudged}", ""])
    lines += ["| layer | verdict | points | why |", "|---|---|---|---|"]
    lines += [f"| {f.layer} | {f.verdict} | {f.earned:g} of {f.points:g} | {_md(f.why)} |" for f in layers]
    for f in (f for f in layers if f.diagnosis or f.hidden_failed or f.smallest):
        lines += ["", f"## {f.layer}", ""]
        for label, text, code in layer_items(f, entry):
            said = " ".join(
                [*([_md(text)] if text else []), *([f"(`{code}`)" if text else f"`{code}`"] if code else [])]
            )
            lines.append(f"- {label}: {said}")
        lines += [f"![{f.layer}]({Path(p).name})" for p in f.pictures]
    return "\n".join(lines) + "\n"


def layer_items(f: LayerFeedback, entry: str) -> list[tuple[str, str, str]]:
    """What the feedback says of a failing layer, as (label, text, code) for either format: its diagnosis
    (and tensor), its smallest failing input, the command that reruns its public case, its hidden cases."""
    items = []
    if f.diagnosis:
        items.append(("what is wrong", f.diagnosis, f.tensor))
    if f.smallest:
        items.append(("the smallest input where it goes wrong", f.smallest, ""))
    if f.case:
        items.append(("rerun that case", "", rerun_line(entry, f.case)))
    if f.hidden_failed:
        items.append((f"{f.hidden_failed} hidden case(s) failed (drawn by your teacher; their inputs are not shown)",
                      "; ".join(f.hidden_classes), ""))  # fmt: skip
    return items


def _md(text: str) -> str:
    from reference.grade.gradebook import md_escape

    return md_escape(text)


def feedback_html(sub_id: str, entry: str, row: dict[str, Any], layers: list[LayerFeedback], report: Path,
                  unjudged: str = "") -> str:  # fmt: skip
    """The student's feedback as one self-contained HTML page (every picture inline)."""
    from reference.grade.gradebook import STYLE

    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Feedback: {e(sub_id)}</title>"
             f"<style>{STYLE}</style></head><body><h1>Feedback: {e(sub_id)}</h1>",
             f"<p class='big'>Score: <b>{row['score']:g} of {row['max_score']:g}</b></p>"]  # fmt: skip
    if unjudged:
        parts.append(f"<p>Your submission could not be judged:</p><pre>{e(unjudged)}</pre></body></html>")
        return "\n".join(parts)
    parts.append("<table><tr><th>layer</th><th>verdict</th><th>points</th><th>why</th></tr>")
    parts += [f"<tr><td>{e(f.layer)}</td><td class='{e(f.verdict)}'>{e(f.verdict)}</td>"
              f"<td>{f.earned:g} of {f.points:g}</td><td>{e(f.why)}</td></tr>" for f in layers]  # fmt: skip
    parts.append("</table>")
    for f in (f for f in layers if f.diagnosis or f.hidden_failed or f.smallest):
        parts.append(f"<h2>{e(f.layer)}</h2><ul>")
        for label, text, code in layer_items(f, entry):
            said = " ".join([*([e(text)] if text else []),
                             *([f"(<code>{e(code)}</code>)" if text else f"<code>{e(code)}</code>"] if code else [])])  # fmt: skip
            parts.append(f"<li>{e(label)}: {said}</li>")
        parts.append("</ul>")
        for p in f.pictures:
            path = report / p
            if path.is_file() and not path.is_symlink():
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                parts.append(f"<img alt='{e(f.layer)}: heat map' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_feedback(folder: Path, sub: Any, row: dict[str, Any], result: dict[str, Any], points: dict[str, float],
                   report: Path) -> Path:  # fmt: skip
    """``folder/<id>/feedback.html`` and ``feedback.md`` (with its pictures) for one submission; the folder."""
    from reference.grade.gradebook import first_line
    from reference.report.heatmap import load_index

    files = result.get("files", {})
    target = folder / sub.id
    target.mkdir(parents=True, exist_ok=True)
    unjudged = ""
    if sub.problem:
        unjudged = sub.problem
    elif not files.get("verdicts.csv"):
        unjudged = first_line(result.get("output", "")) or "the judge wrote no verdicts"
    pictures = load_index(report) if report.is_dir() else pd.DataFrame()
    layers = [] if unjudged else layer_feedback(row, files, points, pictures)
    entry = Path(sub.entry).name if sub.entry else f"{sub.id}.py"
    for f in layers:
        for p in f.pictures:
            if (report / p).is_file() and not (report / p).is_symlink():
                write_bytes_atomic(target / Path(p).name, (report / p).read_bytes())
    write_atomic(target / "feedback.md", feedback_markdown(sub.id, entry, row, layers, unjudged))
    write_atomic(target / "feedback.html", feedback_html(sub.id, entry, row, layers, report, unjudged))
    return target


def write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def gradescope_tests(row: dict[str, Any], layers: list[LayerFeedback], rerun: str) -> list[dict[str, Any]]:
    """Gradescope's tests for one submission: a visible test per layer (its score, the public evidence,
    the hidden cases counted and classed) and, for a layer with hidden cases failing, a test of its
    hidden diagnoses in full that students see only once the teacher publishes the grades."""
    tests = []
    for f in layers:
        lines = [f"verdict: {f.verdict} ({f.why})"]
        if f.diagnosis:
            lines.append(f"diagnosis: {f.diagnosis}")
        if f.smallest:
            lines.append(f"smallest failing input: {f.smallest}")
        if f.case:
            lines.append(f"rerun: {rerun} --case {shlex.quote(f.case)}")
        elif f.verdict != "PASS":
            lines.append(f"rerun: {rerun} --layers {f.layer}")
        if f.hidden_failed:
            lines.append(f"{f.hidden_failed} hidden case(s) failed: {'; '.join(f.hidden_classes)}")
        tests.append({"name": f.layer, "score": f.earned, "max_score": f.points,
                      "status": "passed" if f.verdict == "PASS" else "failed", "output": "\n".join(lines),
                      "visibility": "visible"})  # fmt: skip
        if f.hidden_failed:
            tests.append({"name": f"{f.layer}: hidden cases", "score": 0, "max_score": 0, "status": "failed",
                          "output": "\n".join(f.hidden_diagnoses or f.hidden_classes),
                          "visibility": "after_published"})  # fmt: skip
    return tests
