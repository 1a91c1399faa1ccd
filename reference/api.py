"""The judges from Python: ``reference.judge(path_or_module, ...)`` runs the one pipeline (the
implementation only in sandboxed workers, as every command does) and returns a ``JudgeResult``
whose tables are pandas DataFrames, for scripts, CI and notebooks (reference.notebook's ``check``).

    result = reference.judge("my_layers.py", layers=["Conv2D", "ReLU"])
    result.passed, result.exit_code     # True/False, 0/1 as `judge` exits
    result.verdicts                     # a row per layer: layer, verdict, why
    result.rows                         # every judge's rows (the discrepancy schema of the CSVs)
    result.failing                      # per failing layer its worst row: judge, tensor, diagnosis, rerun
    result.smallest                     # per failing layer its smallest failing input, in words
    result                              # in Jupyter: the verdicts, diagnoses and heat maps as HTML
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from reference.judging import SandboxOptions, limits_from
from reference.pipeline import LAYER_JUDGES, Options
from reference.pipeline import run as run_pipeline


@dataclass
class JudgeResult:
    """One judgement's findings, read back from its reports (``out``)."""

    impl: str  # what was judged: a file or module name
    title: str  # what the result calls it (check(): the classes passed; else the file or module)
    out: Path  # the report folder: summary.md, index.html, the CSVs, the heat maps
    word: str  # PASS, FAIL, TIMEOUT or UNSUPPORTED, as `judge` prints it
    exit_code: int  # 0 when every judged layer passes (as `judge` exits)
    verdicts: pd.DataFrame  # layer, verdict, why (a row per judged layer)
    rows: pd.DataFrame  # every judge's rows
    failing: pd.DataFrame  # layer, judge, case, tensor, diagnosis, rerun: each failing layer's worst row
    smallest: pd.DataFrame  # layer, dtype, description, case, rerun: each failing layer's smallest failing input
    pictures: pd.DataFrame  # heatmaps.csv: file (in out), layer, kind (worst or smallest), tensor, case
    info: dict[str, Any]  # the run's id, the judged files' SHA-256, the sandbox tier and limits
    rerun_call: str = ""  # how to rerun one case from Python: {case} is filled in (check(...) or judge(...))
    log: str = ""  # what the pipeline printed (captured when quiet)
    seconds: float = 0.0  # wall time of the judgement
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def rerun(self, case: str) -> str:
        """The Python call that reruns ``case`` alone."""
        return self.rerun_call.format(case=repr(case))

    def __str__(self) -> str:
        from reference.report.inline import result_text

        return result_text(self)

    def __repr__(self) -> str:
        return f"<JudgeResult {self.word} {self.impl}: {len(self.verdicts)} layer(s), reports in {self.out}>"

    def _repr_html_(self) -> str:
        from reference.report.inline import result_html

        return result_html(self)


def _layers(layers: str | list[str] | tuple[str, ...] | None) -> str | None:
    if layers is None or isinstance(layers, str):
        return layers or None
    return ",".join(layers) or None


def judge(impl: str | Path, *, layers: str | list[str] | tuple[str, ...] | None = None, case: str | None = None,
          quick: bool = True, fail_fast: bool = False, curves: bool = False, strict: bool = False,
          out: str | Path | None = None, sandbox: str = "auto", require_sandbox: bool = False,
          case_timeout: float | None = None, quiet: bool = True, rerun_call: str = "",
          title: str = "") -> JudgeResult:  # fmt: skip
    """Judge ``impl`` (a .py file, a folder holding one, or a module name following the layer protocol)
    as ``python -m reference judge`` does, and return what it found.

    ``quick`` (the default here): a fixed quarter of the grid; ``fail_fast``: each judge stops at its
    first failing case (the worst case is still drawn and shrunk); ``curves``: also training beside the
    twin (minutes); ``out``: the report folder (default: a fresh temporary one, kept); ``quiet``: the
    pipeline's lines go to ``result.log`` instead of the screen. Raises what ``judge`` reports as exit 2:
    TargetError/ImportFailed (cannot be judged), ValueError (an option), SandboxUnavailable."""
    import time

    out_path = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="scratch-cnn-judge-")) / "report"
    limits = limits_from(case_timeout=case_timeout) if case_timeout is not None else limits_from()
    judges = (*LAYER_JUDGES, *(("curves",) if curves else ()))
    options = Options(command="judge", impl=str(impl), out=out_path, judges=judges, quick=quick,
                      layers=_layers(layers), case=case, strict=strict, fail_fast=fail_fast, explain=True,
                      search=not case, sandbox=SandboxOptions(tier=sandbox, require=require_sandbox, limits=limits))  # fmt: skip
    buffer = io.StringIO()
    quiet_streams = (contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer)) if quiet else ()
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        for stream in quiet_streams:
            stack.enter_context(stream)
        outcome = run_pipeline(options)
    seconds = time.perf_counter() - start
    call = rerun_call or f"reference.judge({str(impl)!r}, case={{case}})"
    result = read_result(str(impl), out_path, outcome, call, buffer.getvalue(), seconds, options)
    result.title = title or str(impl)
    return result


def read_result(impl: str, out: Path, outcome: Any, rerun_call: str, log: str, seconds: float,
                options: Options) -> JudgeResult:  # fmt: skip
    """A JudgeResult from the pipeline's Outcome and the files it wrote into ``out``."""
    from reference.core.verdicts import attribute
    from reference.report.console import rerun_command
    from reference.report.heatmap import load_index
    from reference.report.summary import worst_failures

    rows = outcome.rows
    layer_rows = rows[rows["judge"] != "curves"] if len(rows) else rows
    worst = worst_failures(attribute(layer_rows)) if len(layer_rows) else pd.DataFrame()
    failing = pd.DataFrame(columns=["layer", "judge", "case", "tensor", "diagnosis", "rerun"])
    if len(worst):
        failing = worst[["layer", "judge", "case", "tensor", "diagnosis"]].assign(
            rerun=[
                rerun_call.format(case=repr(c)) if c != "*" and j != "protocol" else ""
                for c, j in zip(worst["case"], worst["judge"], strict=True)
            ]
        )
    shrunk_path = out / "autograd_shrunk.csv"
    smallest = pd.DataFrame(columns=["layer", "dtype", "tensor", "description", "case", "rerun", "command"])
    if shrunk_path.is_file():
        s = pd.read_csv(shrunk_path)
        has = ["" if pd.isna(c) else str(c) for c in s["case"]]
        smallest = s[["layer", "dtype", "tensor", "description", "case"]].assign(
            rerun=[rerun_call.format(case=repr(c)) if c else "" for c in has],
            command=[rerun_command(impl, c) if c else "" for c in has],
        )
    options_seen = {"quick": options.quick, "fail_fast": options.fail_fast, "layers": options.layers,
                    "case": options.case, "strict": options.strict}  # fmt: skip
    return JudgeResult(impl=impl, title=impl, out=out, word=outcome.word, exit_code=outcome.code, verdicts=outcome.verdicts,
                       rows=rows, failing=failing.reset_index(drop=True), smallest=smallest.reset_index(drop=True),
                       pictures=load_index(out), info=outcome.info, rerun_call=rerun_call, log=log, seconds=seconds,
                       options=options_seen)  # fmt: skip
