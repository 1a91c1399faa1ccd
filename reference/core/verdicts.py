"""What a run covered, and the verdict per layer that says so.

A case's status is the worst of its rows (error > fail/vacuous > unsupported > missing > pass). Per
layer and configuration family the coverage table counts the cases judged (they ran: pass or fail),
unsupported and errored, and among the judged ones those whose input held what the layer's kink
rules are about: exact ties and near-ties inside pooling windows, exact zeros at ReLU inputs.

A layer verdict is ``FAIL`` (a failing or erroring case), ``TIMEOUT`` (no case wrong, but some cut
by a time limit: not judged, which ``grade --timeout-scores`` scores as the teacher chooses),
``MISSING`` (no such class),
``UNSUPPORTED`` (it declared every case beyond it: nothing judged), ``weak`` (everything judged
passed, but a max pool never met an exact tie or a near-tie, or a ReLU never an exact zero: its
convention at the kink is unproven), or ``PASS``. A verdict says what was judged: ``PASS`` only with
passing rows, and a layer or network with no judged row (``pass``, ``fail``, ``vacuous``, ``error``)
is ``UNSUPPORTED`` with the implementation's reason (``MISSING`` when every row is ``missing``).

A failing network or training run is laid at the first layer of the network whose own judgement
fails (``blame``): the whole-network checks and the lockstep only see that something upstream of a
parameter is wrong, the layers' own rows say which.
"""

from __future__ import annotations

import functools

import pandas as pd

from reference.layers import KINDS, NETWORK_LOSS

from .compare import DECLARED, FAILING, WRONG

SEVERITY = {"error": 0, "fail": 1, "vacuous": 1, "timeout": 2, "unsupported": 3, "missing": 4, "pass": 5}
CASE_JUDGES = ("autograd", "optimizer", "finite_diff", "lifecycle")
JUDGED = ("pass", *WRONG)  # a row that compared something (or broke a rule): what a verdict may rest on


def unjudged_verdict(statuses: set[str] | pd.Series) -> str:
    """The verdict of rows none of which was judged: ``MISSING`` when every one is ``missing`` (no such
    class), else ``UNSUPPORTED`` (declared limits; anything else that judged nothing reads so too)."""
    return "MISSING" if set(statuses) == {"missing"} else "UNSUPPORTED"


def unjudged_why(lrows: pd.DataFrame) -> str:
    """Why nothing of a layer or network was judged, in the implementation's words (its notes)."""
    network = "family" in lrows and lrows["family"].eq("whole network").all()
    notes = [str(n) for n in lrows["note"].dropna().unique() if str(n)] if "note" in lrows else []
    if network:
        return "network not judged: " + ("; ".join(_clip(n, 240) for n in notes[:3]) or "no row was judged")
    if set(lrows["status"]) == {"missing"}:
        return "the implementation has no such class"
    said = "every case was declared unsupported: nothing was judged"
    return said + (f" ({_clip(notes[0])})" if notes else "")


def severity(df: pd.DataFrame, by: list[str]) -> pd.Series:
    """Each row's severity for its case's status. A declared row (``unsupported``, ``missing``) of a
    case that has judged rows too (float64 judged where float32 is declared beyond the layer, a
    forward judged where its backward is declared) counts as a pass: the case was judged."""
    sev = df["status"].map(SEVERITY).fillna(0)
    judged = df["status"].isin(JUDGED).groupby([df[c] for c in by], dropna=False).transform("any")
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
    judged = cases["status"].isin(JUDGED)
    cases = cases.assign(
        judged=judged,
        tie_cases=judged & (cases["ties"] > 0),
        near_tie_cases=judged & (cases["near_ties"] > 0),
        zero_cases=judged & (cases["zeros"] > 0),
        unsupported=cases["status"] == "unsupported",
        failed=cases["status"].isin(WRONG),
        timed_out=cases["status"] == "timeout",
    )
    g = cases.groupby(["layer", "family"], sort=True)
    table = g.agg(cases=("case", "size"), judged=("judged", "sum"), failed=("failed", "sum"),
                  unsupported=("unsupported", "sum"), timed_out=("timed_out", "sum"), tie_cases=("tie_cases", "sum"),
                  near_tie_cases=("near_tie_cases", "sum"), zero_cases=("zero_cases", "sum"))  # fmt: skip
    return table.reset_index()


def layer_verdicts(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per layer: verdict, why, and the counts behind it (from every judge's rows)."""
    if rows.empty:
        return pd.DataFrame(columns=["layer", "verdict", "why"])
    cov = coverage(rows)
    rows = rows.assign(_blame=attribute(rows)["blame"].to_numpy())
    out = []
    for layer, lrows in rows.groupby("layer", sort=True):
        statuses = set(lrows["status"])
        c = cov[cov["layer"] == layer] if len(cov) else cov
        judged = int(c["judged"].sum()) if len(c) else 0
        unsupported = int(c["unsupported"].sum()) if len(c) else 0
        bad = lrows[lrows["status"].isin(WRONG)]
        cut = lrows[lrows["status"] == "timeout"]
        counts = {s: int(n) for s, n in lrows["status"].value_counts().items()}
        passing = int(counts.get("pass", 0))
        if len(bad):
            verdict = "FAIL"
            why = f"{bad['case'].nunique()} case(s) failing or erroring, in {', '.join(sorted(set(bad['judge'])))}"
            if len(cut):
                why += f"; {cut['case'].nunique()} case(s) not judged: cut by a time limit"
            if kinds := [k for k in dict.fromkeys(lrows["_blame"]) if k]:  # a network's, laid at a layer
                why += f"; attributed to {', '.join(kinds)}, the first layer of the network whose own judgement fails"
        elif len(cut):  # NOTE: a time limit is no finding about correctness: its own verdict, never FAIL
            verdict = "TIMEOUT"
            first = cut["note"].dropna()
            why = (f"{cut['case'].nunique()} case(s) cut by a time limit, {judged} judged and passing"
                   + (f" ({_clip(str(first.iloc[0]), 160)})" if len(first) else ""))  # fmt: skip
        elif not passing:  # NOTE: nothing judged is never a pass, whatever the case counts say
            verdict, why = unjudged_verdict(statuses), unjudged_why(lrows)
        elif judged == 0 and unsupported:
            verdict, why = "UNSUPPORTED", "every case was declared unsupported: nothing was judged"
        elif judged == 0 and layer in KINDS:
            verdict, why = "weak", "no case of this layer was judged (only the protocol rules ran)"
        else:
            needs = KINDS[layer].kink_needs if layer in KINDS else ()
            lacking = [need for need in needs if int(c[_col(need)].sum()) == 0]
            if lacking:
                verdict = "weak"
                why = f"passed, but no judged case had {' or '.join(n.replace('_', '-') for n in lacking)}: its convention there is unproven"
            else:
                verdict, why = "PASS", f"{judged} cases judged" if judged else f"{passing} rows pass"
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
    """1 when any row fails or errors, or (strict) when any is unsupported or missing, or when no row
    was judged at all (every one declared unsupported or missing); else 0."""
    if rows.empty or not rows["status"].isin(JUDGED).any():
        return 1  # nothing was compared: never a pass
    if rows["status"].isin(FAILING).any():
        return 1
    if strict and rows["status"].isin(DECLARED).any():
        return 1
    return 0


# --- blame: a network or training failure laid at a layer -------------------------------------------

OWN_JUDGES = (
    "protocol",
    "autograd",
    "optimizer",
    "finite_diff",
    "lifecycle",
)  # the judges whose rows are per layer (the pipeline's REGISTRY marks the same)
LOSS = NETWORK_LOSS


@functools.lru_cache(maxsize=8)
def network_types(arch: str) -> list[str]:
    """The layer kinds of a built-in network, in order (``seed``: Conv2D, ReLU, Conv2D, MaxPool2D, ...);
    [] for a name that is no built-in network."""
    import numpy as np

    import scratch_cnn

    try:
        return [str(e["type"]) for e in scratch_cnn.build(arch, np.random.default_rng(0)).spec()["layers"]]
    except Exception:  # not one of ours: nothing to lay the failure at
        return []


def own_failures(rows: pd.DataFrame) -> dict[str, pd.Series]:
    """Per layer kind, the worst of its own failing rows (its own cases and rules: not a network's or
    training's rows): an error first, else the row that used the most of its tolerance (as summary.md
    picks a failing layer's worst case)."""
    if rows.empty or "status" not in rows:
        return {}
    family = rows["family"] if "family" in rows else pd.Series("", index=rows.index)
    own = rows[rows["judge"].isin(OWN_JUDGES) & (family != "whole network") & rows["status"].isin(FAILING)]
    budget = pd.to_numeric(own["budget"], errors="coerce").fillna(0) if "budget" in own else 0
    own = own.assign(_e=(own["status"] != "error").astype(int), _b=-budget).sort_values(["_e", "_b"], kind="stable")
    return {str(layer): group.iloc[0] for layer, group in own.groupby("layer", sort=False)}


def blame(arch: str, start: int, failures: dict[str, pd.Series]) -> tuple[str, str]:
    """The sentence that lays a failure of network ``arch``, first seen at layer ``start`` (the layer of
    the first parameter out), at the first layer at or after it whose own judgement fails (a gradient
    reaches layer ``start`` through every layer after it, and the loss); else the loss; else the first
    such layer before it (a forward feeds every layer after it). (layer kind, sentence), or ('', '') when
    no layer of it fails its own judgement."""
    types = network_types(arch)
    order = [*range(start, len(types)), len(types), *range(0, min(start, len(types)))]
    kinds = [*types, LOSS]
    for i in order:
        kind = kinds[i] if i < len(kinds) else ""
        if kind in failures:
            r = failures[kind]
            why = next((str(t) for t in (r.get("diagnosis"), r.get("note")) if isinstance(t, str) and t), "")
            where = "the loss" if i == len(types) else f"layer {i} of {arch}"
            rel = "at or after" if i >= start else "before"
            said = f"{r['judge']}, {r['case']}, {r['tensor']}" + (f": {_clip(why, 160)}" if why else "")
            return kind, f"attributed to {kind} ({where}), the first layer {rel} layer {start} whose own judgement fails ({said})"  # fmt: skip
    return "", ""


def _start(row: pd.Series) -> int | None:
    """The network layer where a failing network or training row was first seen: a network row's
    parameter ``"{i}.{key}"``, a lockstep row's ``broken_layer``; None when it says none."""
    import re

    if row.get("family") == "whole network":
        m = re.match(r"(\d+)\.", str(row.get("tensor", "")))
        return int(m.group(1)) if m else 0
    value = row.get("broken_layer")
    return None if value is None or pd.isna(value) else int(value)


def attribute(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with a ``blame`` column: for each failing row of a whole network (finite differences)
    or of training (the lockstep), the first layer of that network whose own judgement fails, and that
    sentence put first in its diagnosis. The index is ``rows``' own."""
    out = rows.copy()
    blamed, diagnoses = [""] * len(out), list(out["diagnosis"]) if "diagnosis" in out else [""] * len(out)
    failures = own_failures(rows)
    family = out["family"] if "family" in out else pd.Series("", index=out.index)
    fails = out["status"].eq("fail") if "status" in out else pd.Series(False, index=out.index)
    fails = fails & family.isin(["whole network", "training"])
    for pos in range(len(out)) if failures else []:  # NOTE: by position: a concatenation may repeat an index
        if not fails.iloc[pos]:
            continue
        row = out.iloc[pos]
        start = _start(row)
        arch = str(row.get("network")) if row.get("family") == "training" else str(row["layer"])
        kind, said = blame(arch, start, failures) if start is not None else ("", "")
        if kind:
            old = diagnoses[pos]
            blamed[pos] = kind
            diagnoses[pos] = said + (f"; {old}" if isinstance(old, str) and old else "")
    return out.assign(blame=blamed, diagnosis=diagnoses)
