"""What a run covered, and the verdict per layer that says so.

A case's status is the worst of its rows (error > fail/vacuous > unsupported > missing > pass). Per
layer and configuration family the coverage table counts the cases judged (they ran: pass or fail),
unsupported and errored, and among the judged ones those whose input held what the layer's kink
rules are about: exact ties and near-ties inside pooling windows, exact zeros at ReLU inputs.

A layer verdict is ``FAIL`` (a failing or erroring case), ``MISSING`` (no such class),
``UNSUPPORTED`` (it declared every case beyond it: nothing judged), ``weak`` (everything judged
passed, but a max pool never met an exact tie or a near-tie, or a ReLU never an exact zero: its
convention at the kink is unproven), or ``PASS``.
"""

from __future__ import annotations

import pandas as pd

from .compare import DECLARED, FAILING

SEVERITY = {"error": 0, "fail": 1, "vacuous": 1, "unsupported": 2, "missing": 3, "pass": 4}
CASE_JUDGES = ("autograd", "finite_diff", "lifecycle")
KINK_NEEDS = {"MaxPool2D": ("ties", "near_ties"), "ReLU": ("zeros",)}


def severity(df: pd.DataFrame, by: list[str]) -> pd.Series:
    """Each row's severity for its case's status. A declared row (``unsupported``, ``missing``) of a
    case that has judged rows too (float64 judged where float32 is declared beyond the layer, a
    forward judged where its backward is declared) counts as a pass: the case was judged."""
    sev = df["status"].map(SEVERITY).fillna(0)
    judged = df["status"].isin(["pass", *FAILING]).groupby([df[c] for c in by], dropna=False).transform("any")
    return sev.where(~(df["status"].isin(DECLARED) & judged), SEVERITY["pass"])


def case_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (judge-independent) case: layer, family, case, status, ties, near_ties, zeros."""
    df = rows[rows["judge"].isin(CASE_JUDGES) & (rows["case"] != "*") & (rows.get("kind", "element") != "network")]
    if df.empty:
        return pd.DataFrame(columns=["layer", "family", "case", "status", "ties", "near_ties", "zeros"])
    df = df.assign(_sev=severity(df, ["layer", "family", "case"]))
    for col in ("ties", "near_ties", "zeros"):
        df[col] = df[col].fillna(0) if col in df.columns else 0
    g = df.groupby(["layer", "family", "case"], sort=True)
    out = g.agg(_sev=("_sev", "min"), ties=("ties", "max"), near_ties=("near_ties", "max"), zeros=("zeros", "max"))
    inverse = {v: k for k, v in reversed(list(SEVERITY.items()))}
    out["status"] = out["_sev"].map(inverse)
    return out.drop(columns="_sev").reset_index()


def coverage(rows: pd.DataFrame) -> pd.DataFrame:
    """Per layer and family: cases, judged, unsupported, errored/failed, and the kink-bearing judged cases."""
    cases = case_table(rows)
    if cases.empty:
        return pd.DataFrame()
    judged = cases["status"].isin(["pass", *FAILING])
    cases = cases.assign(
        judged=judged,
        tie_cases=judged & (cases["ties"] > 0),
        near_tie_cases=judged & (cases["near_ties"] > 0),
        zero_cases=judged & (cases["zeros"] > 0),
        unsupported=cases["status"] == "unsupported",
        failed=cases["status"].isin(FAILING),
    )
    g = cases.groupby(["layer", "family"], sort=True)
    table = g.agg(cases=("case", "size"), judged=("judged", "sum"), failed=("failed", "sum"),
                  unsupported=("unsupported", "sum"), tie_cases=("tie_cases", "sum"),
                  near_tie_cases=("near_tie_cases", "sum"), zero_cases=("zero_cases", "sum"))  # fmt: skip
    return table.reset_index()


def layer_verdicts(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per layer: verdict, why, and the counts behind it (from every judge's rows)."""
    if rows.empty:
        return pd.DataFrame(columns=["layer", "verdict", "why"])
    cov = coverage(rows)
    out = []
    for layer, lrows in rows.groupby("layer", sort=True):
        statuses = set(lrows["status"])
        c = cov[cov["layer"] == layer] if len(cov) else cov
        judged = int(c["judged"].sum()) if len(c) else 0
        unsupported = int(c["unsupported"].sum()) if len(c) else 0
        bad = lrows[lrows["status"].isin(FAILING)]
        counts = {s: int(n) for s, n in lrows["status"].value_counts().items()}
        if len(bad):
            verdict = "FAIL"
            skipped = bad["note"].fillna("").str.startswith("not run:")  # after a time-out: never run, not failed
            ran = bad[~skipped]
            why = f"{ran['case'].nunique()} case(s) failing or erroring, in {', '.join(sorted(set(ran['judge'])))}"
            if skipped.any():
                why += f"; {bad.loc[skipped, 'case'].nunique()} case(s) not run after a time-out"
        elif statuses <= {"missing"}:
            network = "family" in lrows and lrows["family"].eq("whole network").all()
            verdict = "MISSING"
            why = (f"network not judged: {'; '.join(lrows['note'].dropna().unique())}" if network
                   else "the implementation has no such class")  # fmt: skip
        elif judged == 0 and unsupported:
            verdict, why = "UNSUPPORTED", "every case was declared unsupported: nothing was judged"
        elif judged == 0 and layer in {*KINK_NEEDS, "Conv2D", "AvgPool2D", "Flatten", "Dense", "SoftmaxCrossEntropy"}:
            verdict, why = "weak", "no case of this layer was judged (only the protocol rules ran)"
        else:
            lacking = [need for need in KINK_NEEDS.get(layer, ()) if int(c[_col(need)].sum()) == 0]
            if lacking:
                verdict = "weak"
                why = f"passed, but no judged case had {' or '.join(n.replace('_', '-') for n in lacking)}: its convention there is unproven"
            else:
                verdict, why = "PASS", f"{judged} cases judged" if judged else f"{len(lrows)} rows pass"
        if unsupported and verdict in ("PASS", "weak"):
            why += f"; {unsupported} case(s) declared unsupported"
        partly = int((lrows["status"].isin(DECLARED) & (severity(lrows, ["case"]) == SEVERITY["pass"])).sum())
        if partly and verdict in ("PASS", "weak", "FAIL"):  # a dtype or a backward declared beyond the layer
            note = lrows.loc[lrows["status"] == "unsupported", "note"].dropna()
            why += f"; {partly} row(s) of judged cases declared unsupported" + (
                f" ({_clip(note.iloc[0])})" if len(note) else ""
            )
        declared = lrows["convention"].dropna().unique() if "convention" in lrows else []
        if len(declared):  # never silently: a declared convention at the kinks is named in the verdict
            why += f"; judged against its {'; '.join(map(str, declared))}"
        out.append({"layer": layer, "verdict": verdict, "why": why, "cases_judged": judged,
                    "unsupported": unsupported, **{f"rows_{s}": n for s, n in sorted(counts.items())}})  # fmt: skip
    return pd.DataFrame(out).fillna(0)


def _clip(text: str, n: int = 80) -> str:
    """``text`` cut at a word boundary near ``n`` characters, with an ellipsis when cut."""
    return text if len(text) <= n else text[:n].rsplit(" ", 1)[0] + " ..."


def _col(need: str) -> str:
    return {"ties": "tie_cases", "near_ties": "near_tie_cases", "zeros": "zero_cases"}[need]


def exit_code(rows: pd.DataFrame, strict: bool) -> int:
    """1 when any row fails or errors, or (strict) when any is unsupported or missing; else 0."""
    if rows.empty:
        return 1  # nothing was compared: never a pass
    if rows["status"].isin(FAILING).any():
        return 1
    if strict and rows["status"].isin(DECLARED).any():
        return 1
    return 0
