"""``grade ... --compare PREVIOUS_OUT``: after a judge or a test changed, whose grade moved.

Each submission of this run is set beside its row in the previous run's gradebook.csv: listed when
its score or a layer's verdict changed (or it is new, or gone), with both runs' judge versions and the
first row of its reports that differs (the same judge, layer, case, dtype and tensor with another
status, or a row only one run has), read from both runs' ``<id>/*.csv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

ROW_FILES = ("protocol.csv", "autograd.csv", "optimizer.csv", "finite_diff.csv", "lifecycle.csv")
KEY = ["judge", "layer", "case", "dtype", "tensor"]
COLUMNS = ["id", "score_before", "score_after", "verdicts_changed", "judge_before", "judge_after", "first_difference"]


def check_previous(previous: Path, out: Path) -> None:
    """Refuse a --compare folder that holds no gradebook, or is this run's own --out (overwritten as it runs)."""
    if not (previous / "gradebook.csv").is_file():
        raise ValueError(f"--compare {previous}: no gradebook.csv there (give a previous grade's --out)")
    if previous.resolve() == out.resolve():
        raise ValueError(f"--compare {previous}: is this run's --out, which this run overwrites; copy it first "
                         f"(cp -r {out} {out}-before) and compare with the copy")  # fmt: skip


def _rows(folder: Path) -> pd.DataFrame:
    frames = []
    for name in ROW_FILES:
        path = folder / name
        if path.is_file() and not path.is_symlink():
            frames.append(pd.read_csv(path))
    if not frames:
        return pd.DataFrame(columns=[*KEY, "status"])
    rows = pd.concat(frames, ignore_index=True)
    for column in KEY:
        if column not in rows:
            rows[column] = ""
    rows[KEY] = rows[KEY].fillna("").astype(str)
    return rows


def first_difference(before: Path, after: Path) -> str:
    """The first row (in the later run's order: failures first) whose status differs between the two
    reports of one submission, or that only one of them has; '' when every row agrees."""
    old, new = _rows(before), _rows(after)
    old_status = {tuple(r[KEY]): r["status"] for _, r in old.iterrows()}
    seen = set()
    for _, r in new.iterrows():
        key = tuple(r[KEY])
        seen.add(key)
        was = old_status.get(key)
        if was != r["status"]:
            what = " ".join(k for k in key if k)
            return f"{what}: {was or 'no such row'} -> {r['status']}" + (
                f" ({r['note']})" if isinstance(r.get("note"), str) else ""
            )
    gone = [k for k in old_status if k not in seen]
    if gone:
        return f"{' '.join(k for k in gone[0] if k)}: {old_status[gone[0]]} -> no such row"
    return ""


def regrade(previous: Path, out: Path, rows: list[dict[str, Any]], layers: tuple[str, ...]) -> pd.DataFrame:
    """The table of every submission whose score or a layer's verdict changed since ``previous``."""
    before = pd.read_csv(previous / "gradebook.csv", dtype={"id": str}).set_index("id")
    found = []
    current = {str(r["id"]): r for r in rows}
    for sid, r in current.items():
        if sid not in before.index:
            found.append({"id": sid, "score_before": None, "score_after": r["score"], "verdicts_changed": "new submission",
                          "judge_before": "", "judge_after": r.get("judge_version", ""), "first_difference": ""})  # fmt: skip
            continue
        b = before.loc[sid]
        changed = [f"{layer}: {b.get(layer, 'absent')} -> {r.get(layer)}" for layer in layers
                   if str(b.get(layer, "absent")) != str(r.get(layer))]  # fmt: skip
        if not changed and float(b["score"]) == float(r["score"]):
            continue
        found.append({"id": sid, "score_before": float(b["score"]), "score_after": r["score"],
                      "verdicts_changed": "; ".join(changed) or "score only", "judge_before": str(b.get("judge_version", "")),
                      "judge_after": r.get("judge_version", ""),
                      "first_difference": first_difference(previous / sid, out / sid)})  # fmt: skip
    for sid in before.index.difference(list(current)):
        found.append({"id": sid, "score_before": float(before.loc[sid, "score"]), "score_after": None,
                      "verdicts_changed": "no longer in the class", "judge_before": str(before.loc[sid].get("judge_version", "")),
                      "judge_after": "", "first_difference": ""})  # fmt: skip
    return pd.DataFrame(found, columns=COLUMNS)
