"""The one judging pipeline: ``judge``, ``verify``, the single-judge commands (``autograd``,
``finite-diff``, ``lifecycle``, ``curves``) and, through ``judge``, every submission ``grade`` judges.

``run(options)`` chooses the cases, opens the judgement (reference.judging: the implementation runs
only in sandboxed workers), runs the chosen judges, collects the workers' incidents and, only once
every worker is gone, writes every report: into a fresh staging folder that is stamped (run.json,
signed when a key is given) and swapped into ``out`` in one rename, or for a single judge beside
what ``out`` already holds. Its options are one frozen dataclass (``Options``) of plain values:
argparse stops at reference/cli.py.

The judges are named once, in ``REGISTRY``: the order they run and write in, which of them judge
layers, which run first under ``--fail-fast``, and what ``verify`` says of each as it runs it.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from reference.impl.protocol import DEFAULT_IMPL
from reference.judging import Judgement, SandboxOptions, judgement, mnist_loader, write_logs
from reference.report.console import progress_sink, rerun_command, smallest_lines
from reference.report.publish import check_out

DEFAULT_EPOCHS = 3  # the float32 lenet curves: the pair trains in about 7 minutes on 2 cores (under 10)


# --- the judges, named once -------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One judge: its class (``module:Class``, imported when first made), its rank under ``--fail-fast``
    (the cheaper judges first), whether its rows make the verdicts per layer, and what ``verify`` says
    of it as it runs it (``{cases}``: the number of cases; ``{training}``: what the training run holds)."""

    cls: str
    rank: int
    per_layer: bool
    what: str


REGISTRY: dict[str, Entry] = {  # the order judges run in (but --fail-fast's) and write their reports in
    "protocol": Entry("reference.judges.rules:ProtocolJudge", 0, True, "the protocol's rules, one line each"),
    "autograd": Entry("reference.judges.autograd:AutogradJudge", 1, True,
                      "{cases} cases x float64/float32 against the PyTorch twins"),
    "optimizer": Entry("reference.judges.optimizers:OptimizerJudge", 2, True,
                       "optimisers step by step against torch.optim (where the implementation has them)"),
    "finite_diff": Entry("reference.judges.finite_diff:FiniteDiffJudge", 4, True,
                         "central differences (float64), adjoints, networks, gradcheck cross-check"),
    "lifecycle": Entry("reference.judges.lifecycle:LifecycleJudge", 3, True,
                       "two rounds on one instance against a fresh instance"),
    "faults": Entry("reference.judges.catalogue:CatalogueJudge", 6, False,
                    "the fault catalogue through the judges (each must be caught)"),
    "curves": Entry("reference.judges.curves:CurvesJudge", 5, False, "training beside the twin: {training}"),
}  # fmt: skip
LAYER_JUDGES = tuple(name for name, entry in REGISTRY.items() if entry.per_layer)  # what `judge --judges` picks from
SINGLE = {"autograd": "autograd", "finite-diff": "finite_diff", "lifecycle": "lifecycle", "curves": "curves"}
COMMANDS = ("judge", "verify", *SINGLE)  # the commands that judge, each one way of showing and writing a run


def make_judges(names: tuple[str, ...] | list[str], crosscheck: bool = True) -> list[Any]:
    """The judges ``names`` names, in the registry's order (``crosscheck``: the finite-difference judge
    beside torch.autograd.gradcheck, which proves that judge itself)."""
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown judge(s) {', '.join(unknown)}; choose from {', '.join(REGISTRY)}")
    judges = []
    for name, entry in REGISTRY.items():
        if name in names:
            module, attr = entry.cls.split(":")
            cls = getattr(importlib.import_module(module), attr)
            judges.append(cls(crosscheck=crosscheck) if name == "finite_diff" else cls())
    return judges


# --- the options and the result -----------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """One run of the pipeline: what a command's options say, as plain values."""

    command: str = "judge"  # one of COMMANDS: how the run is shown, its exit code, and how its reports are written
    impl: str = DEFAULT_IMPL  # a module name or a file following the layer protocol
    out: Path = Path("reports/judge")  # the report folder (verify: reports/latest)
    judges: tuple[str, ...] = (*LAYER_JUDGES, "curves")  # REGISTRY names (judge: curves where the module has SGD)
    quick: bool = False  # a fixed sample of the grid (training: the lockstep only)
    layers: str | None = None  # only these layers, comma-separated
    case: str | None = None  # only this case, by its id
    strict: bool = False  # unsupported and missing rows fail too
    fail_fast: bool = False  # each judge stops each layer at its first failure; cheaper judges first, none after one
    explain: bool = True  # draw and shrink each failing layer's worst case (False: the exit code is all that is wanted)
    search: bool = True  # look inside what a layer takes when it refuses most cases (reference.judges.reach)
    crosscheck: bool = False  # the finite-difference judge beside torch.autograd.gradcheck
    full_curves: bool = False  # the float32 MNIST curves beside the lockstep
    epochs: int = DEFAULT_EPOCHS  # of the float32 lenet run
    steps: int = 200  # lockstep steps
    data_dir: str | None = None  # the MNIST IDX files (else the cache, else a download)
    junit: str | None = None  # also JUnit XML here: one test case per layer
    stamp_key: bytes | None = None  # run.json is signed with it (HMAC-SHA256): a grader's, through a pipe
    secret_seed: int | None = None  # also the cases drawn from this seed
    shown_as: str | None = None  # the name reports and rerun commands use (a grader's copy: the teacher's path)
    sandbox: SandboxOptions = field(default_factory=SandboxOptions)
    baseline: Path | None = None  # verify: the gate's accepted figures (reports/baseline)


@dataclass
class Outcome:
    """What a run found and wrote: plain data for the command to print from."""

    results: dict[str, Any]  # {judge name: Result}, in the order they ran
    rows: pd.DataFrame  # the judges' rows (verify: the layer judges')
    code: int  # the command's exit code (verify: the gate's, before --update-baseline)
    passed: bool  # every judge passed (verify: strictly, the cross-check, every fault caught, training, no incident)
    info: dict[str, Any]  # reference.judging.Judgement.run_info: run id, judged files' SHA-256, sandbox, limits
    verdicts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["layer", "verdict", "why"]))  # judge
    word: str = ""  # judge: the run in one word (PASS, FAIL, TIMEOUT, UNSUPPORTED), as run.json records it
    summary: str = ""  # the line summary.md opens with (judge: the word, and whether it was strict)
    secret_cases: int = 0  # cases drawn from the secret seed
    gate: tuple[Any, int, str] | None = None  # verify: (gate table, gate exit code, gate message)


# --- the pipeline ------------------------------------------------------------------------------------------


def run(options: Options) -> Outcome:
    """Judge ``options.impl`` as ``options.command`` does, write its reports (see the module's text)."""
    from reference.judges.base import Context

    if options.command not in COMMANDS:
        raise ValueError(f"no command {options.command!r}; choose from {', '.join(COMMANDS)}")
    if options.command == "verify" and options.baseline is None:
        raise ValueError("verify gates its run against a baseline: Options.baseline is required")
    check_out(options.out)
    stages = Stages() if options.command == "verify" else None
    cases, networks = choose_cases(options)
    load = mnist_loader(options.data_dir)
    if stages is not None:
        with stages.stage("data", "MNIST (cached after the first fetch, SHA-256 verified)"):
            load()
    with judgement(options.impl, options.sandbox, training="curves" in options.judges) as j:
        header = {"judge": "judging", "verify": "[verify] judging"}.get(options.command)
        if header:
            print(f"{header} {options.impl} in sandboxed workers ({j.session.sandbox}; run {j.session.run_id})")
        ctx = Context(j.impl, options.impl, cases, quick=options.quick, progress=progress_sink(), networks=networks,
                      data=load, full_curves=options.full_curves, epochs=options.epochs, steps=options.steps,
                      search=options.search, fail_fast=options.fail_fast,
                      explain=options.explain)  # fmt: skip
        judges, untrained = chosen_judges(options, j.impl)
        if {"autograd", "finite_diff"} <= {judge.name for judge in judges}:
            from reference.judges.runs import Handoffs

            ctx.handoffs = Handoffs()  # the autograd judge's float64 runs, the finite-difference judge's start
        words = stage_words(options, len(cases)) if stages is not None else None
        results = run_judges(judges, ctx, stages, words, ledger=(j.session, j.costs))
        print_incidents(j)
    outcome = conclude(options, j, results, cases, untrained)
    if options.command in SINGLE:
        write_in_place(options, j, judges, outcome)
    else:
        write_staged(options, j, judges, outcome, stages)
    if options.junit:
        write_junit(options.junit, options.impl, outcome.verdicts)
    return outcome


def chosen_judges(options: Options, impl: Any) -> tuple[list[Any], str]:
    """(the judges to run, why training is not judged: '' when it is or the command never judges it).
    ``judge`` judges training only where the module has SGD and no --layers or --case filter is given."""
    names = list(options.judges)
    untrained = ""
    if options.command == "judge":
        has_sgd = callable(getattr(impl, "SGD", None))
        if "curves" not in names or options.layers or options.case or not has_sgd:
            names = [n for n in names if n != "curves"]
            untrained = "the module has no SGD" if not has_sgd else "--no-curves, or a --layers/--case filter"
    return make_judges(names, crosscheck=options.crosscheck), untrained


def stage_words(options: Options, n_cases: int) -> dict[str, str]:
    """What ``verify`` says of each judge as it starts it."""
    training = "lockstep only (quick)" if options.quick else f"lockstep + lenet {options.epochs} epochs + seed 1 epoch"
    return {name: entry.what.format(cases=n_cases, training=training) for name, entry in REGISTRY.items()}


# --- choosing cases -----------------------------------------------------------------------------------------


def select_cases(quick: bool, layers: str | None, case: str | None) -> tuple[list[Any], dict[str, int] | None]:
    """(cases, networks) after --quick, --layers and --case; ImplError-free ValueError on a bad filter."""
    from reference.cases.grid import QUICK, grid, sample
    from reference.impl.protocol import CLASSES, REQUIRED
    from reference.judges.finite_diff import NETWORKS

    everything = grid()
    cases = sample(everything, QUICK) if quick else everything
    networks: dict[str, int] | None = None
    if layers:
        wanted = [s.strip() for s in layers.split(",") if s.strip()]
        unknown = [w for w in wanted if w not in CLASSES]
        if unknown:
            raise ValueError(f"--layers: unknown layer(s) {', '.join(unknown)}; choose from {', '.join(CLASSES)}")
        cases = [c for c in cases if c.layer in wanted]
        networks = {} if set(wanted) != set(REQUIRED) else None  # the networks need every kind
    from reference.judges.shrink import PREFIX, parse_id

    if case and case.startswith(PREFIX):  # a shrunk case: its id carries its numbers
        return [parse_id(case)], {}
    if case:
        nets = {arch: n for arch, n in NETWORKS.items() if case.startswith(f"{arch} network")}
        from reference.judges.reach import searchable

        chosen = [c for c in [*everything, *searchable(everything)] if c.id == case][:1]  # a searched case reruns too
        if not chosen and not nets:
            close = difflib.get_close_matches(case, [c.id for c in everything], n=3, cutoff=0.5)
            hint = f"; did you mean: {' | '.join(close)}" if close else "; the case ids are in the CSVs' 'case' column"
            raise ValueError(f"--case: no case {case!r}{hint}")
        cases, networks = chosen, nets
    return cases, networks


def choose_cases(options: Options) -> tuple[list[Any], dict[str, int] | None]:
    """``select_cases`` plus the cases drawn from the secret seed (those of the chosen layers; the one
    named by ``case`` when it is one of them); none when training is all that is judged."""
    from reference.cases.grid import secret_grid

    if all(name == "curves" for name in options.judges):
        return [], None
    drawn = secret_grid(options.secret_seed) if options.secret_seed is not None else []
    if options.case and any(c.id == options.case for c in drawn):
        return [c for c in drawn if c.id == options.case][:1], {}
    cases, networks = select_cases(options.quick, options.layers, options.case)
    if options.case:
        return cases, networks
    wanted = {s.strip() for s in options.layers.split(",")} if options.layers else None
    return [*cases, *(c for c in drawn if wanted is None or c.layer in wanted)], networks


# --- running judges -----------------------------------------------------------------------------------------


class Stages:
    """Times each stage and prints what it is doing (verify)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def stage(self, name: str, what: str) -> Iterator[None]:
        print(f"[verify] {name}: {what}", flush=True)
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.rows.append({"stage": name, "seconds": round(seconds, 1)})
        print(f"[verify] {name}: done in {seconds:.1f}s", flush=True)


def run_judges(judges: list[Any], ctx: Any, stages: Stages | None = None,
               words: dict[str, str] | None = None, ledger: tuple[Any, list[dict[str, Any]]] | None = None,
               ) -> dict[str, Any]:  # fmt: skip
    """Run each judge and print its lines (the protocol judge: its broken rules; as ``verify`` shows
    them when ``stages`` times each). {name: Result}. Nothing is written here: reports are written
    after the session is closed. With ``ledger`` (session, rows), each judge's costs are appended to
    rows (reference/costs.py)."""
    from reference import costs
    from reference.core.compare import FAILING

    if ledger:  # the judge process's CPU before any judge: interpreter, imports, the session's start
        ledger[1].append({"judge": STARTUP_ROW, "judge_cpu_s": costs.process_cpu(),
                          "judge_own_cpu_s": costs.process_cpu()})  # fmt: skip
    before = costs.snapshot(ledger[0]) if ledger else {}
    found = search(judges, ctx)
    if ledger and found is not None:  # the reach search (which layers refuse what): a row of its own
        ledger[1].append({"judge": "reach search", "cases": len(found.added),
                          **costs.difference(before, costs.snapshot(ledger[0]))})  # fmt: skip
    results: dict[str, Any] = {}
    if ctx.fail_fast:  # the cheaper judges first, and none after the first that fails
        judges = sorted(judges, key=lambda j: REGISTRY[j.name].rank if j.name in REGISTRY else 99)
    for judge in judges:
        if ctx.fail_fast and any(r.rows["status"].isin(FAILING).any() for r in results.values() if len(r.rows)):
            print(f"{judge.title}: not run (--fail-fast: an earlier judge failed)")
            continue
        timed = stages.stage(judge.name, (words or {}).get(judge.name, "")) if stages else contextlib.nullcontext()
        before = costs.snapshot(ledger[0]) if ledger else {}
        with timed:
            result = judge.run(ctx)
            if ledger:
                n_cases = result.rows["case"].nunique() if "case" in result.rows else 0
                ledger[1].append({"judge": judge.name, "cases": n_cases,
                                  **costs.difference(before, costs.snapshot(ledger[0]))})  # fmt: skip
            if found is not None and judge.name in ("autograd", "finite_diff"):
                from reference.judges.reach import tried_rows

                if extra := tried_rows(found, judge.name):
                    result.rows = pd.concat([result.rows, pd.DataFrame(extra)], ignore_index=True)
            results[judge.name] = result
            show(judge, result, titled=stages is None)
    return results


def search(judges: list[Any], ctx: Any) -> Any:
    """Where ``ctx.search`` asks: the supported cases found for layers that refuse most of the run's
    (added to ``ctx.cases``), its notes printed; None when there was no search."""
    if not ctx.search or not any(j.name != "protocol" for j in judges):
        return None
    from reference.judges.reach import reach

    found = reach(ctx)
    ctx.cases = [*ctx.cases, *found.added]
    for note in found.notes.values():
        print(f"search: {note}")
    return found


def show(judge: Any, result: Any, titled: bool) -> None:
    """A judge's lines: the protocol judge's broken rules, any other's title and verdict lines (as
    ``verify`` shows them, untitled: every judge's verdict lines)."""
    if not titled:
        print("\n".join("  " + line for line in judge.lines(result)))
        return
    if judge.name == "protocol":
        from reference.judges.rules import protocol_lines

        for line in protocol_lines(result.rows):
            print(line)
        return
    print(f"{judge.title}:")
    print("\n".join("  " + line for line in judge.lines(result)) or "  (no rows)")


def print_incidents(j: Judgement) -> None:
    for e in j.session.events:
        print(f"  worker for {e['scope']}: {e['message']}")


# --- the run's verdict ----------------------------------------------------------------------------------------


def conclude(options: Options, j: Judgement, results: dict[str, Any], cases: list[Any], untrained: str) -> Outcome:
    """The run's rows, verdicts and exit code, as ``options.command`` reads them; ``judge`` prints its
    verdict per layer, its smallest failing inputs and the commands that rerun each failing case."""
    from reference.core.verdicts import exit_code, layer_verdicts

    if options.command == "verify":
        return verify_outcome(j, results)
    rows = pd.concat([r.rows for r in results.values()], ignore_index=True)
    code = exit_code(rows, options.strict)
    if options.command == "curves":
        code = 0 if results["curves"].ok else 1
    elif options.command in SINGLE:  # a failing extra table (the gradcheck cross-check, say) fails it too
        extra_bad = sum(int((t["status"] == "fail").sum()) for r in results.values() for _, t in r.extra.values()
                        if "status" in t)  # fmt: skip
        code = code or (1 if extra_bad else 0)
    outcome = Outcome(results, rows, code, code == 0, j.run_info(), secret_cases=sum(c.tag == "secret" for c in cases))
    if options.command == "judge":
        verdicts = layer_verdicts(rows[rows["judge"] != "curves"])
        outcome.verdicts = verdicts.assign(run_id=outcome.info["run_id"], impl_sha256=outcome.info["impl_sha256"])
        outcome.word = run_word(rows, code)
        outcome.summary = outcome.word + (" (strict: unsupported and missing fail)" if options.strict else "")
        print_verdicts(options, outcome.verdicts, results, untrained)
        print_rerun(rows, shown(options))
    return outcome


def verify_outcome(j: Judgement, results: dict[str, Any]) -> Outcome:
    """verify's reading: every layer judge passes strictly (scratch_cnn claims every option, so an
    unsupported or missing row fails), the gradcheck cross-check agrees, every fault is caught, training
    passes, and no worker had an incident. Its exit code waits for the gate (``write_gate``)."""
    from reference.core.verdicts import exit_code

    layer_rows = pd.concat([results[n].rows for n in LAYER_JUDGES], ignore_index=True)
    cross = results["finite_diff"].extra["gradcheck"][1]
    passed = exit_code(layer_rows, strict=True) == 0 and (cross["status"] != "fail").all() \
        and bool(results["faults"].ok) and bool(results["curves"].ok) and not j.session.events  # fmt: skip
    summary = "all judges pass" if passed else "a judge FAILED"
    return Outcome(results, layer_rows, 0 if passed else 1, bool(passed), j.run_info(), summary=summary)


def print_verdicts(options: Options, verdicts: pd.DataFrame, results: dict[str, Any], untrained: str) -> None:
    """``judge``'s verdict per layer, training's, and each failing layer's smallest failing input."""
    print("Verdict per layer:")
    for v in verdicts.itertuples():
        print(f"  {v.layer}: {v.verdict} ({v.why})")
    if untrained:
        print(f"  training: not judged ({untrained})")
    elif "curves" in results:
        for _, r in results["curves"].rows.iterrows():
            print(f"  training: {r['status'].upper()} {r['case']} {r['note']}")
    if "autograd" in results and "shrunk" in results["autograd"].extra:  # each failing layer's worst case, shrunk
        print("\n".join(smallest_lines(results["autograd"].extra["shrunk"][1], shown(options))))


def print_rerun(rows: pd.DataFrame, impl_name: str, limit: int = 12) -> None:
    """Under the verdicts, per failing layer and diagnosis, the one command that reruns its worst case
    alone (a grid, lifecycle, searched or network case: ``judge --case ID``; training: the lockstep,
    ``curves --quick``): one line per bug, not one per case that shows it."""
    from reference.report.console import rerun_training_command
    from reference.report.summary import worst_failures
    from reference.report.tables import failed

    bad = failed(rows)
    if bad["judge"].eq("curves").any():
        print(f"  rerun: {rerun_training_command(impl_name)}")
    bad = bad[(bad["case"] != "*") & (bad["judge"] != "curves") & (bad["judge"] != "protocol")]
    if not len(bad):
        return
    said = bad["diagnosis"] if "diagnosis" in bad else pd.Series("", index=bad.index)
    said = said.where(said.notna() & (said != ""), bad["note"]).fillna("").astype(str)
    firsts = [worst_failures(group).iloc[0] for _, group in bad.assign(diagnosis=said).groupby(["layer", "diagnosis"])]
    for r in firsts[:limit]:
        print(f"  {r['layer']}: {_clip(str(r['diagnosis']), 110)}\n    rerun: {rerun_command(impl_name, r['case'])}")
    if len(firsts) > limit:
        print(f"  ... {len(firsts) - limit} more (layer, diagnosis) pairs; every failing case is in the CSVs")


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def run_word(rows: pd.DataFrame, code: int) -> str:
    """The run's verdict in one word: PASS; FAIL (a row shown wrong); TIMEOUT (cut by time limits,
    nothing shown wrong); UNSUPPORTED (nothing judged)."""
    from reference.core.compare import WRONG

    if code == 0:
        return "PASS"
    statuses = set(rows["status"]) if len(rows) else set()
    if statuses & set(WRONG):
        return "FAIL"
    if "timeout" in statuses:
        return "TIMEOUT"
    return "UNSUPPORTED" if "pass" not in statuses else "FAIL"


# --- writing the reports ----------------------------------------------------------------------------------------


def write_in_place(options: Options, j: Judgement, judges: list[Any], outcome: Outcome) -> None:
    """A single judge's files written into ``out`` beside what it holds (verify's reports, say)."""
    for judge in judges:
        judge.write(outcome.results[judge.name], options.out, options.impl)
    write_logs(j, options.out)


def write_staged(options: Options, j: Judgement, judges: list[Any], outcome: Outcome, stages: Stages | None) -> None:
    """Every report written whole into a fresh staging folder, after every worker is gone: the judges'
    files, the verdicts and incidents (judge), the worker logs, the gate's and the stages' tables
    (verify), summary.md and index.html, run.json last (signed with ``options.stamp_key`` when given),
    then swapped into ``out`` in one rename."""
    from reference.report.publish import new_staging, stamp, swap_into_place
    from reference.report.summary import write_summary
    from reference.report.tables import write_atomic

    staging = new_staging(options.out)
    try:
        for judge in judges:
            if judge.name in outcome.results:  # --fail-fast leaves the judges after a failing one unrun
                judge.write(outcome.results[judge.name], staging, shown(options))
        if options.command == "judge":
            write_atomic(staging / "verdicts.csv", outcome.verdicts.to_csv(index=False))
            write_atomic(staging / "costs.csv", costs_table(j.costs).to_csv(index=False))
            if j.session.events:
                write_atomic(staging / "incidents.csv", j.incidents().to_csv(index=False))
        write_logs(j, staging)
        if options.command == "verify":
            write_gate(options, outcome, staging, stages)
        title = verify_title(options) if options.command == "verify" else f"Judged: {shown(options)}"
        write_summary(staging, outcome.summary, title, impl_name=shown(options), stamp=j.stamp_lines())
        stamp(staging, stamped(options, outcome), key=options.stamp_key)
        swap_into_place(staging, options.out, carry=("junit*.xml",) if options.command == "verify" else ())
    finally:
        shutil.rmtree(staging, ignore_errors=True)


STARTUP_ROW = "(start-up)"  # costs.csv: the judge process's CPU before the first judge (not in the total)


def costs_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """costs.csv: a row per judge run (reference/costs.py), and their total."""
    from reference.costs import COLUMNS

    table = pd.DataFrame(rows, columns=COLUMNS)
    judged = table[table["judge"] != STARTUP_ROW]
    if len(judged):
        total = judged.drop(columns="judge").sum(numeric_only=True)
        table = pd.concat([table, pd.DataFrame([{"judge": "total", **total.to_dict()}])], ignore_index=True)
    return table.round(4)


def shown(options: Options) -> str:
    """What the reports call the implementation (``--shown-as``, else ``--impl``)."""
    return options.shown_as or options.impl


def verify_title(options: Options) -> str:
    return f"scratch-cnn verification: {options.impl}" + (" (quick)" if options.quick else "")


def stamped(options: Options, outcome: Outcome) -> dict[str, Any]:
    """What run.json records beside the run's info and the reports' SHA-256."""
    if options.command == "verify":
        return {**outcome.info, "quick": options.quick, "epochs": options.epochs, "command": "verify"}
    return {**outcome.info, "verdict": outcome.word, "exit_code": outcome.code, "command": "judge",
            "secret_cases": outcome.secret_cases}  # fmt: skip


def write_gate(options: Options, outcome: Outcome, staging: Path, stages: Stages | None) -> None:
    """verify: the gate against ``options.baseline`` on the staged figures (gate.csv), the stages'
    times (stages.csv); the gate's message joins the run's verdict and sets its exit code."""
    import json

    from reference.report.gate import run_gate
    from reference.report.tables import write_atomic

    assert options.baseline is not None  # run() refuses verify without one
    # the gate reads whether the run was quick from run.json: a plain one here, replaced by the stamp
    run_json = {"impl": options.impl, "quick": options.quick, "epochs": options.epochs}
    write_atomic(staging / "run.json", json.dumps(run_json))
    table, code, message = run_gate(staging, options.baseline)
    if table is not None:
        write_atomic(staging / "gate.csv", table.to_csv(index=False))
    if stages is not None:
        stages.rows.append({"stage": "total", "seconds": round(sum(r["seconds"] for r in stages.rows), 1)})
        write_atomic(staging / "stages.csv", pd.DataFrame(stages.rows).to_csv(index=False))
    outcome.gate = (table, code, message)
    outcome.summary = f"{outcome.summary}; {message}"
    outcome.code = code if outcome.passed or code else 1


def write_junit(path: str, impl: str, verdicts: pd.DataFrame) -> None:
    """JUnit XML, one test case per layer (as pytest writes it), for CI systems."""
    from reference.grade.gradebook import junit_xml
    from reference.report.tables import write_atomic

    cases = [(str(v.layer), str(v.verdict), str(v.why)) for v in verdicts.itertuples()]
    write_atomic(Path(path), junit_xml([(impl, cases)]))
