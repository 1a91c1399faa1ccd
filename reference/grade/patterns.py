"""The class's patterns, for the teacher: submissions that computed the same wrong numbers, and a page
per layer to show in class.

Shared wrong numbers: two submissions whose failing row of one case (same layer, case, dtype and
tensor) holds the same tensor bit for bit (``ours_digest``: SHA-256 of its dtype, shape and bytes,
reference.core.compare). Different code rarely agrees to the last bit on a wrong answer; a shared
misconception written the same way, or shared code, does. It is stated as evidence (the case, the
tensor, how many identical tensors), never as a verdict about anyone.

The page per layer (``layers/<Layer>.html``) names no student: each of the layer's most common
diagnoses, how many submissions have it, and a minimal example (a smallest failing input of a
submission with that diagnosis, shrunk from a public case).
"""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Any

import pandas as pd

from reference.report.tables import write_atomic

# NOTE: the rows whose ``ours`` is the implementation's own tensor set beside the reference's. Not the
# finite-difference judge's: its adjoint rows compare two scalars of the implementation's, one of them
# from its forward alone, which every right forward computes alike (two different bugs would "agree").
ROW_FILES = ("autograd.csv", "lifecycle.csv", "optimizer.csv")
GROUP = ["layer", "case", "dtype", "tensor", "ours_digest"]
COLUMNS = ["submissions", "count", "layer", "identical_failing_tensors", "example_case", "tensor", "diagnosis"]


def _failing(files: dict[str, bytes]) -> pd.DataFrame:
    frames = []
    for name in ROW_FILES:
        raw = files.get(name)
        if raw:
            t = pd.read_csv(io.BytesIO(raw))
            if "ours_digest" in t:
                frames.append(t[t["status"].eq("fail") & t["ours_digest"].notna()])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*GROUP, "diagnosis"])


def shared_failures(results: dict[str, dict[str, Any]], top: int = 20) -> pd.DataFrame:
    """Groups of two or more submissions whose failing tensors are bit-for-bit equal on the same case:
    per group of submissions, how many identical failing tensors they share and one of them."""
    rows = []
    for sid, result in results.items():
        failing = _failing(result.get("files", {}))
        if len(failing):
            rows.append(failing[[*GROUP, *(c for c in ("diagnosis",) if c in failing)]].assign(id=sid))
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    every = pd.concat(rows, ignore_index=True).drop_duplicates([*GROUP, "id"])
    groups = every.groupby(GROUP, sort=False)["id"].agg(lambda ids: tuple(sorted(set(ids))))
    shared = groups[groups.map(len) >= 2]
    if not len(shared):
        return pd.DataFrame(columns=COLUMNS)
    out = []
    n = len(results)
    for ids, keys in shared.groupby(shared, sort=False).groups.items():
        mine = every.set_index(GROUP).loc[list(keys)].reset_index()
        said = mine["diagnosis"].fillna("").astype(str) if "diagnosis" in mine else pd.Series("", index=mine.index)
        explained = mine[(said != "") & (said != "unexplained")]  # an example whose diagnosis says something
        example = (explained if len(explained) else mine).iloc[0]
        first = tuple(example[GROUP])
        diagnosis = example.get("diagnosis", "")
        out.append({"submissions": ", ".join(ids), "count": f"{len(ids)} of {n}", "layer": first[0],
                    "identical_failing_tensors": len(keys), "example_case": first[1], "tensor": f"{first[3]} ({first[2]})",
                    "diagnosis": "" if pd.isna(diagnosis) else str(diagnosis)})  # fmt: skip
    table = pd.DataFrame(out, columns=COLUMNS)
    table["_n"] = [len(s.split(", ")) for s in table["submissions"]]
    table = table.sort_values(["_n", "identical_failing_tensors"], ascending=False, kind="stable").drop(columns="_n")
    return table.head(top).reset_index(drop=True)


def examples_per_diagnosis(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]], layer: str) -> pd.DataFrame:
    """The layer's diagnoses across the class, most common first, each with a minimal example (a
    smallest failing input of one submission with it, shrunk from a public case) and no student named."""
    from reference.grade.feedback import SECRET_FAMILY

    counts: dict[str, int] = {}
    example: dict[str, str] = {}
    for r in rows:
        text = r["_diagnoses"].get(layer)
        if not text:
            continue
        counts[text] = counts.get(text, 0) + 1
        if text in example:
            continue
        files = results.get(str(r["id"]), {}).get("files", {})
        raw = files.get("autograd_shrunk.csv")
        if not raw:
            continue
        shrunk = pd.read_csv(io.BytesIO(raw))
        secret = set()
        if files.get("autograd.csv"):
            a = pd.read_csv(io.BytesIO(files["autograd.csv"]))
            secret = set(a.loc[a.get("family", pd.Series(dtype=object)).eq(SECRET_FAMILY), "case"])
        mine = shrunk[(shrunk["layer"] == layer) & ~shrunk["from_case"].isin(secret)]
        if len(mine):
            example[text] = str(mine.iloc[0]["description"])
    n = len(rows)
    out = [{"submissions": f"{c} of {n}", "diagnosis": d, "a minimal example": example.get(d, "")}
           for d, c in sorted(counts.items(), key=lambda kv: -kv[1])]  # fmt: skip
    return pd.DataFrame(out, columns=["submissions", "diagnosis", "a minimal example"])


def write_layer_pages(out: Path, rows: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                      layers: tuple[str, ...]) -> dict[str, str]:  # fmt: skip
    """``out/layers/<Layer>.html`` and ``.md`` for each layer some submission fails; {layer: page, relative to out}."""
    from reference.grade.gradebook import STYLE, html_table, md_table

    pages = {}
    for layer in layers:
        table = examples_per_diagnosis(rows, results, layer)
        if not len(table):
            continue
        folder = out / "layers"
        folder.mkdir(parents=True, exist_ok=True)
        title = f"{layer}: the class's most common mistakes"
        intro = (f"{len(rows)} submissions. Each row: a diagnosis the judges gave, how many submissions have it, "
                 "and the smallest input on which one of them goes wrong (no student is named).")  # fmt: skip
        write_atomic(folder / f"{layer}.md", f"# {title}\n\n{intro}\n\n{md_table(table)}\n")
        write_atomic(folder / f"{layer}.html",
                     f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                     f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>"
                     f"{html_table(table)}</body></html>")  # fmt: skip
        pages[layer] = f"layers/{layer}.html"
    return pages
