"""summary.md (what a person reads first) and index.html (the same tables, failures highlighted,
plots embedded) from the CSV files of a run."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from reference.core.verdicts import OWN_JUDGES
from reference.report.tables import PASSING, layer_summary, markdown, write_atomic

ROWS_PER_LAYER = 20  # failing rows shown per judge and layer (every row is in the CSV)


@dataclass(frozen=True)
class Figure:
    """A section body that is a picture of the run's folder: ``file`` (a PNG beside summary.md) and its caption."""

    file: str
    caption: str


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
             "gate": "gate.csv", "shrunk": "autograd_shrunk.csv"}  # fmt: skip
    return {k: pd.read_csv(run_dir / v) for k, v in names.items() if (run_dir / v).is_file()}


def sections(run_dir: Path, verdict: str, impl_name: str = "scratch_cnn", stamp: str = "") -> list[tuple[str, Any]]:
    """(title, DataFrame or text) in reading order."""
    from .heatmap import load_index

    t = load_tables(run_dir)
    pictures = load_index(run_dir)
    layer_judges = [t[j] for j in OWN_JUDGES if j in t]
    rows = pd.concat(layer_judges, ignore_index=True) if layer_judges else pd.DataFrame()
    out = _failing_layers(t, rows, pictures, impl_name)
    if "shrunk" in t and len(t["shrunk"]):
        out.append(("Smallest failing inputs: each failing layer's worst case, shrunk while it fails the same way",
                    smallest_lines(t["shrunk"], pictures, impl_name)))  # fmt: skip
    out += _verdict_sections(run_dir, t, rows, verdict, stamp)
    for judge in ("autograd", "finite_diff", "lifecycle"):
        if judge in t:
            out += _judge_sections(judge, t[judge], pictures)
    if len(rows):  # NOTE: after the failing rows: a long table a reader scrolls past to reach them otherwise
        from reference.core.verdicts import coverage

        out.append(("Coverage per layer and configuration family", coverage(rows)))
    out += _check_and_training_sections(t)
    return out


def _failing_layers(t: dict[str, pd.DataFrame], rows: pd.DataFrame, pictures: pd.DataFrame,
                    impl_name: str) -> list[tuple[str, Any]]:  # fmt: skip
    """The section naming each failing layer's worst case, why it fails and the command that reruns it
    (none where nothing fails)."""
    from reference.core.verdicts import attribute
    from reference.report.console import rerun_command, rerun_training_command

    # a failing network or training run is laid at the first layer whose own judgement fails
    training = training_rows(t["curve_checks"]) if "curve_checks" in t else pd.DataFrame()
    worst = worst_failures(attribute(pd.concat([rows, training], ignore_index=True)) if len(rows) else training)
    if not len(worst):
        return []
    worst_pictures = pictures[pictures["kind"] != "smallest"] if len(pictures) else pictures
    drawn = dict(zip(worst_pictures["layer"], worst_pictures["file"], strict=True)) if len(pictures) else {}
    lines = [(f"- **{r.layer}**: protocol rule broken: {r.case}: {r.note}" if r.judge == "protocol" else
              f"- **{r.layer}**: {r.diagnosis} ({r.case}). Rerun: `{rerun_training_command(impl_name)}`"
              if r.judge == "curves" else
              f"- **{r.layer}**: {r.diagnosis} ({r.judge}, {r.tensor}). Rerun: `{rerun_command(impl_name, r.case)}`")
             + (f" [Picture]({drawn[r.layer]})" if r.layer in drawn else "")
             for r in worst.itertuples()]  # fmt: skip
    return [("Failing layers: why, and the command that reruns the worst case alone", "\n".join(lines))]


def _verdict_sections(run_dir: Path, t: dict[str, pd.DataFrame], rows: pd.DataFrame, verdict: str,
                      stamp: str) -> list[tuple[str, Any]]:  # fmt: skip
    """The verdict, the run's stamp, the workers lost, the verdict per layer, the gate, the protocol
    rules, each where the run has it."""
    from reference.core.verdicts import layer_verdicts

    out: list[tuple[str, Any]] = [("Verdict", verdict)]
    if stamp:
        out.append(("This run", stamp))
    if (run_dir / "incidents.csv").is_file():
        out.append(("Workers lost (the implementation ended, was killed, hung or sent garbage)",
                    pd.read_csv(run_dir / "incidents.csv")))  # fmt: skip
    if len(rows):
        out.append(("Verdict per layer (PASS, weak: passed without meeting its kinks, FAIL, TIMEOUT: cut by a time limit, UNSUPPORTED, MISSING)",
                    layer_verdicts(rows)))  # fmt: skip
    if "gate" in t:  # only the checks that did not pass (every check: gate.csv)
        from reference.report.tables import gate_failures

        bad, line = gate_failures(t["gate"])
        out.append(("Gate", bad if len(bad) else f"{line} (every check: gate.csv)"))
    if "protocol" in t:
        broken = t["protocol"][t["protocol"]["status"] != "pass"]
        out.append(
            ("Protocol rules", broken[["layer", "case", "status", "note"]] if len(broken) else "every rule holds")
        )
    return out


def _judge_sections(judge: str, df: pd.DataFrame, pictures: pd.DataFrame) -> list[tuple[str, Any]]:
    """One judge's tables: rows per status and layer, its worst discrepancies, then per failing layer
    the rows that did not pass and its pictures."""
    out: list[tuple[str, Any]] = []
    counts = layer_summary(df)
    out.append((f"{judge}: rows passed / failed / unsupported / missing per layer", counts))
    if "max_abs_err" in df.columns and df["max_abs_err"].notna().any():
        out.append((f"{judge}: worst discrepancy per layer and tensor", worst_per_tensor(df)))
    bad = df[~df["status"].isin(PASSING)]
    mine = pictures[pictures["judge"] == judge] if len(pictures) else pictures
    for layer, layer_bad in bad.groupby("layer", sort=True):
        # the heading names the judge and layer; columns empty in every shown row say nothing
        shown = layer_bad.drop(columns=[c for c in ("judge", "layer") if c in layer_bad.columns])
        shown = shown.head(ROWS_PER_LAYER).dropna(axis=1, how="all")
        more = f" (the first {ROWS_PER_LAYER} of {len(layer_bad)})" if len(layer_bad) > ROWS_PER_LAYER else ""
        out.append((f"{judge}: {layer}: rows that did not pass{more}", shown))
        for pic in mine[mine["layer"] == layer].itertuples():
            what = "the smallest failing input" if pic.kind == "smallest" else "the worst failing case"
            out.append((f"{judge}: {layer}: {what}, drawn", Figure(pic.file, caption(pic))))
    return out


def _check_and_training_sections(t: dict[str, pd.DataFrame]) -> list[tuple[str, Any]]:
    """The gradcheck cross-check, the fault catalogue, the curves' bounds and epochs, the time per stage,
    each where the run has it."""
    out: list[tuple[str, Any]] = []
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


def smallest_lines(shrunk: pd.DataFrame, pictures: pd.DataFrame, impl_name: str) -> str:
    """One item per shrunk layer (autograd_shrunk.csv): its smallest failing input in words, the
    command that reruns exactly it, its picture."""
    from reference.report.console import rerun_command

    mine = pictures[(pictures["kind"] == "smallest") & (pictures["judge"] == "autograd")] if len(pictures) else pictures
    drawn = dict(zip(mine["layer"], mine["file"], strict=True)) if len(mine) else {}
    lines = []
    for r in shrunk.itertuples():
        has_case = isinstance(r.case, str) and bool(r.case)
        rerun = f" Rerun: `{rerun_command(impl_name, r.case)}`" if has_case else ""
        shrank = f" Shrunk from `{r.from_case}` in {int(r.calls)} calls." if has_case else ""
        picture = f" [Picture]({drawn[r.layer]})" if r.layer in drawn else ""
        lines.append(f"- **{r.layer}**: {r.description} ({r.dtype}).{shrank}{rerun}{picture}")
    return "\n".join(lines)


def _pooled(layer: str) -> bool:
    from reference.layers import KINDS

    return layer in KINDS and KINDS[layer].windows is not None


def caption(pic: Any) -> str:
    """What a heat map shows, in words (a row of heatmaps.csv)."""
    marked = [f"{int(n)} {what}" for n, what in ((pic.ties, "exact ties"), (pic.near_ties, "near-ties"),
                                                 (pic.zeros, "ReLU zeros")) if n and not pd.isna(n)]  # fmt: skip
    windows = " Dashed lines: the pooling windows." if _pooled(pic.layer) and pic.tensor == "dx" else ""
    if getattr(pic, "kind", "worst") == "smallest":
        layout = ("The smallest failing input: its input x on top where x has the tensor's shape, then ours - ref "
                  "(red where ours is above the reference, blue below), ours and the reference; small panels carry "
                  "each cell's number.")  # fmt: skip
    else:
        layout = ("Top: ours - ref, red where ours is above the reference, blue below; under it ours and the "
                  "reference, on one scale.")  # fmt: skip
    return (f"ours - ref of `{pic.tensor}` ({pic.dtype}) in case `{pic.case}` ({pic.panels}): max |ours - ref| "
            f"{pic.max_abs_err:.3g}. {layout}" + (f" Marked: {', '.join(marked)}." if marked else "") + windows)  # fmt: skip


def training_rows(checks: pd.DataFrame) -> pd.DataFrame:
    """curve_checks.csv as rows of the discrepancy schema: layer ``training``, one case per bound."""
    rows = checks.rename(columns={"check": "case"}).assign(judge="curves", layer="training", tensor="-",
                                                           family="training")  # fmt: skip
    if "network" not in rows:
        # NOTE: the lockstep's network (run_lockstep's default) where the CSV predates the column
        rows["network"] = "seed"
    return rows


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
    # NOTE: a case --fail-fast left out is an ``error`` row saying "not run": never a layer's worst
    unrun = bad["note"].astype(str).str.startswith("not run") if "note" in bad else pd.Series(False, index=bad.index)
    bad = bad.assign(_u=unrun.astype(int), _e=(bad["status"] != "error").astype(int),
                     _b=-pd.to_numeric(bad.get("budget", pd.Series(0, index=bad.index)), errors="coerce").fillna(0))  # fmt: skip
    diag = bad["diagnosis"] if "diagnosis" in bad.columns else pd.Series("", index=bad.index)
    bad = bad.assign(diagnosis=diag.where(diag.notna() & (diag != ""), bad["note"]))
    bad = bad.sort_values(["layer", "_u", "_e", "_b"], kind="stable").groupby("layer", sort=True).head(1)
    return bad[["layer", "judge", "case", "tensor", "note", "diagnosis"]].reset_index(drop=True)


def write_summary(run_dir: Path, verdict: str, title: str, impl_name: str = "scratch_cnn", stamp: str = "") -> None:
    """summary.md and index.html; ``stamp``: the run's id, time, judged files' SHA-256 and sandbox."""
    parts = [f"# {title}", ""]
    shown = sections(run_dir, verdict, impl_name, stamp)  # once, for both pages
    for name, body in shown:
        if isinstance(body, Figure):
            parts += [f"## {name}", "", f"![{body.file}]({body.file})", "", body.caption, ""]
            continue
        parts += [f"## {name}", "", body if isinstance(body, str) else markdown(body), ""]
    plots = plain_plots(run_dir)
    if plots:
        parts += ["## Plots", "", *(f"![{p.stem}]({p.name})" for p in plots), ""]
    write_atomic(run_dir / "summary.md", "\n".join(parts))
    write_atomic(run_dir / "index.html", html_page(run_dir, title, shown))


def plain_plots(run_dir: Path) -> list[Path]:
    """The run's PNGs that are not shown in a section of their own (the heat maps are, under their layer)."""
    from .heatmap import load_index

    drawn = set(load_index(run_dir)["file"])
    return [p for p in sorted(run_dir.glob("*.png")) if p.name not in drawn]


STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; padding: 0 1em; max-width: 1400px; line-height: 1.4; }
h1, h2 { overflow-wrap: anywhere; }
h1 { font-size: 1.6em; }
h2 { font-size: 1.2em; margin-top: 1.6em; }
.table-wrap { max-width: 100%; overflow-x: auto; margin-bottom: 1.5em; }
table { border-collapse: collapse; font-size: 11px; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 1px 4px; text-align: left; vertical-align: top; overflow-wrap: break-word; }
td.long { overflow-wrap: anywhere; word-break: break-word; }
td.num { text-align: right; white-space: nowrap; }
th { background: #eee; }
tr.bad td { background: #fdd; }
tr.skip td { background: #ffd; }
code { font-size: 0.92em; background: #f3f3f3; padding: 0 0.2em; overflow-wrap: anywhere; }
li { margin: 0.35em 0; }
.verdict { font-size: 1.3em; font-weight: bold; }
figure { margin: 0.5em 0 1.5em; }
figcaption { font-size: 0.9em; color: #333; max-width: 60em; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; margin: 0.5em 0; }
"""

# the Markdown that summary.md's text uses: `code`, **bold**, [label](url), _emphasis_; everything else is text
_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]+)\]\(([^)\s]+)\)|(?<!\w)_(\S(?:.*?\S)?)_(?!\w)")


def inline_html(text: str) -> str:
    """One line of summary.md's Markdown as HTML, every character of the text escaped."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        code, bold, label, url, em = m.groups()
        out.append(html.escape(text[pos : m.start()]))
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{inline_html(bold)}</strong>")
        elif label is not None:
            out.append(f'<a href="{html.escape(_safe_url(url))}">{inline_html(label)}</a>')
        else:
            out.append(f"<em>{inline_html(em)}</em>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _safe_url(url: str) -> str:
    """A relative path or an http(s) address; any other scheme (javascript:, data:) becomes '#'."""
    scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*):", url)
    return url if scheme is None or scheme.group(1).lower() in ("http", "https") else "#"


def markdown_html(text: str, cls: str = "") -> str:
    """summary.md's text blocks as HTML: ``- `` items become a list, other lines paragraphs (blank lines
    separate them), inline Markdown through ``inline_html``."""
    attr = f' class="{cls}"' if cls else ""
    blocks: list[str] = []
    items: list[str] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            blocks.append(f"<p{attr}>{inline_html(' '.join(para))}</p>")
            para.clear()
        if items:
            blocks.append("<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("- ", "* ")):
            if para:
                flush()
            items.append(stripped[2:])
        elif not stripped:
            flush()
        elif items and line.startswith((" ", "\t")):  # a list item's continuation line
            items[-1] += " " + stripped
        else:
            if items:
                flush()
            para.append(stripped)
    flush()
    return "\n".join(blocks)


def html_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    head = "".join(f"<th>{html.escape(str(c)).replace('_', '_<wbr>')}</th>" for c in cols)
    body = []
    for _, row in df.iterrows():
        status = str(row.get("status", "pass"))
        verdict = str(row.get("verdict", ""))
        bad = status in ("fail", "error", "vacuous") or verdict == "FAIL"
        cut = status == "timeout" or verdict == "TIMEOUT"
        cls = (
            "bad"
            if bad
            else ("skip" if cut or status in ("skip", "unsupported", "missing") or verdict == "weak" else "")
        )
        cells = "".join(_cell(row[c]) for c in cols)
        body.append(f'<tr class="{cls}">{cells}</tr>')
    return f"<div class='table-wrap'><table><tr>{head}</tr>{''.join(body)}</table></div>"


def _cell(v: Any) -> str:
    """A cell: numbers right-aligned on one line; a text with a word too long for a narrow column
    (a case id, a path) may break anywhere, other text only between words."""
    text = _fmt(v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        cls = " class='num'"
    else:
        cls = " class='long'" if any(len(word) > 24 for word in text.split()) else ""
    return f"<td{cls}>{html.escape(text)}</td>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if pd.isna(v) else f"{v:.3g}"
    return str(v)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<img alt='{html.escape(alt, quote=True)}' src='data:image/png;base64,{data}'>"


def html_page(run_dir: Path, title: str, shown: list[tuple[str, Any]]) -> str:
    """index.html: ``shown`` (``sections``' titles and bodies) as one page, the PNGs inlined."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]  # fmt: skip
    for name, body in shown:
        parts.append(f"<h2>{html.escape(name)}</h2>")
        if isinstance(body, Figure):
            if (run_dir / body.file).is_file():
                stem = html.escape(Path(body.file).stem, quote=True)
                parts.append(f"<figure id='{stem}'>{_img(run_dir / body.file, body.file)}"
                             f"<figcaption>{inline_html(body.caption)}</figcaption></figure>")  # fmt: skip
        elif isinstance(body, str):
            parts.append(markdown_html(body, "verdict" if name == "Verdict" else ""))
        else:
            parts.append(html_table(body))
    for png in plain_plots(run_dir):
        parts.append(f"<h2>{html.escape(png.stem)}</h2>{_img(png, png.stem)}")
    parts.append("</body></html>")
    return "\n".join(parts)
