"""The judges of scratch-cnn (and of any implementation of the layer protocol). ARCHITECTURE.md draws
how one judgement flows through these rooms, and where new things go.

| package | role |
|---|---|
| `reference.layers` | what the judges know of each layer kind: one declaration per kind (`LayerKind`), what a case is, the one layout conversion |
| `reference.cases` | what it is judged on: the grid put together from the declarations, the torch twins |
| `reference.impl` | what is judged: the layer protocol and its loader, the adapters for other layouts and styles, the fault catalogue |
| `reference.sandbox` | the trust boundary: the judged code runs only in sandboxed workers; `requests` is all a judge may ask of it |
| `reference.core` | what decides a verdict: the comparison, the tolerances, the diagnoses, coverage and the verdicts |
| `reference.judges` | the judges: protocol rules, autograd, finite differences, lifecycle, curves, the fault catalogue run |
| `reference.report` | what renders it: tables, summaries, heat maps, the gate, publishing (staging, swap, stamp) |
| `reference.pipeline` | one judgement from options to stamped reports, for `judge`, `verify` and the single-judge commands |
| `reference.grade` | a class graded at once on Dask |
| `reference.api`, `reference.notebook` | the judges from Python: `judge(path)` and, in a notebook, `check(Conv2D, ...)` |
"""

from typing import Any

__all__ = ["check", "judge"]


def __getattr__(name: str) -> Any:
    """``reference.judge`` and ``reference.check``, imported on first use (``import reference`` stays light)."""
    if name == "judge":
        from reference.api import judge

        return judge
    if name == "check":
        from reference.notebook import check

        return check
    raise AttributeError(f"module 'reference' has no attribute {name!r}")
