"""A judgement shown where it was asked for: as HTML inside a Jupyter cell (``JudgeResult._repr_html_``)
and as text in a plain ``python`` session (``str(result)``). Both say, per layer, its verdict; per
failing layer, the diagnosis of its worst tensor, its smallest failing input and the call that reruns
that case alone; the HTML carries the heat maps inline (base64 PNG), so it needs no file beside it.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

COLOURS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "TIMEOUT": "#9a6700", "UNSUPPORTED": "#6e7781",
           "MISSING": "#6e7781"}  # fmt: skip


def _colour(verdict: str) -> str:
    return COLOURS.get(str(verdict).split(" ")[0].upper(), "#24292f")


def _png(path: Path, alt: str) -> str:
    """An <img> holding the PNG itself (nothing to fetch: a notebook or a mail keeps it)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<img alt="{html.escape(alt)}" style="max-width:100%;border:1px solid #d0d7de" '
            f'src="data:image/png;base64,{data}">')  # fmt: skip


def _pictures_of(result: Any, layer: str) -> list[tuple[str, Path]]:
    """(caption, file) of ``layer``'s heat maps: its smallest failing input first, then its worst case."""
    pics = result.pictures
    if not len(pics):
        return []
    mine = pics[pics["layer"] == layer].sort_values("kind", key=lambda k: k.ne("smallest"), kind="stable")
    shown = []
    for p in mine.itertuples():
        what = "smallest failing input" if p.kind == "smallest" else "worst failing case"
        shown.append((f"{layer}: {what}, ours - ref of {p.tensor} ({p.dtype})", result.out / p.file))
    return [(c, f) for c, f in shown if f.is_file()]


def result_html(result: Any) -> str:
    """The whole judgement as one self-contained HTML fragment."""
    e = html.escape
    word = result.word or ("PASS" if result.passed else "FAIL")
    info = result.info or {}
    parts = ['<div class="scratch-cnn-result" style="font-family:sans-serif;max-width:60em">',
             f'<p><b style="color:{_colour(word)};font-size:1.2em">{e(word)}</b> '
             f"<code>{e(result.title)}</code>: {len(result.verdicts)} layer(s) judged in {result.seconds:.1f} s "
             f"(sandbox: {e(str(info.get('sandbox', '?')))}{'; quick sample' if result.options.get('quick') else ''})"
             "</p>"]  # fmt: skip
    if info.get("sandbox") == "process":
        parts.append("<p><b>Warning:</b> no sandbox tier works on this machine: the judged code ran as you.</p>")
    parts.append('<table style="border-collapse:collapse"><tr><th align="left">layer</th>'
                 '<th align="left">verdict</th><th align="left">why</th></tr>')  # fmt: skip
    for v in result.verdicts.itertuples():
        parts.append(f'<tr><td style="padding:2px 8px">{e(str(v.layer))}</td>'
                     f'<td style="padding:2px 8px;color:{_colour(str(v.verdict))}"><b>{e(str(v.verdict))}</b></td>'
                     f'<td style="padding:2px 8px">{e(str(v.why))}</td></tr>')  # fmt: skip
    parts.append("</table>")
    smallest = {r.layer: r for r in result.smallest.itertuples()}
    for f in result.failing.itertuples():
        parts.append(f'<h4 style="margin-bottom:0.2em">{e(str(f.layer))}: why it fails</h4><ul>')
        parts.append(f"<li>{e(str(f.diagnosis))} <small>({e(str(f.judge))}, <code>{e(str(f.tensor))}</code>, "
                     f"case <code>{e(str(f.case))}</code>)</small></li>")  # fmt: skip
        s = smallest.get(f.layer)
        if s is not None:
            parts.append(f"<li>smallest failing input ({e(str(s.dtype))}): {e(str(s.description))}</li>")
        rerun = s.rerun if s is not None and s.rerun else f.rerun
        if rerun:
            parts.append(f"<li>rerun this case alone: <code>{e(str(rerun))}</code></li>")
        parts.append("</ul>")
        for caption, path in _pictures_of(result, str(f.layer)):
            parts.append(f"<figure style='margin:0.5em 0'>{_png(path, caption)}"
                         f"<figcaption><small>{e(caption)}</small></figcaption></figure>")  # fmt: skip
    parts.append(f"<p><small>Every table and picture: <code>{e(str(result.out))}</code> (index.html, summary.md, "
                 f"the CSVs); run <code>{e(str(info.get('run_id', '')))}</code>.</small></p></div>")  # fmt: skip
    return "\n".join(parts)


def result_text(result: Any) -> str:
    """The judgement in lines, for a terminal or a plain ``python`` session."""
    word = result.word or ("PASS" if result.passed else "FAIL")
    lines = [f"{word}: {result.title}, {len(result.verdicts)} layer(s) judged in {result.seconds:.1f} s "
             f"(sandbox: {(result.info or {}).get('sandbox', '?')})"]  # fmt: skip
    lines += [f"  {v.layer}: {v.verdict} ({v.why})" for v in result.verdicts.itertuples()]
    smallest = {r.layer: r for r in result.smallest.itertuples()}
    for f in result.failing.itertuples():
        lines.append(f"{f.layer}: {f.diagnosis} ({f.judge}, {f.tensor})")
        s = smallest.get(f.layer)
        if s is not None:
            lines.append(f"  smallest failing input: {s.description}")
        rerun = s.rerun if s is not None and s.rerun else f.rerun
        if rerun:
            lines.append(f"  rerun: {rerun}")
    lines.append(f"reports: {result.out} (index.html, summary.md, the CSVs)")
    return "\n".join(lines)
