"""`python -m reference {judge, autograd, finite-diff, lifecycle, curves, verify, gate}`: the judges
from the command line. Every command but gate is a loop over judges (reference.judges.base)."""

from __future__ import annotations

import argparse
import difflib
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from reference.grade.submissions import SubmissionError
from reference.impl.protocol import DEFAULT_IMPL, ImplError
from reference.judging import judgement, mnist_loader, write_logs
from reference.report.console import progress_sink, rerun_command, smallest_lines
from reference.report.publish import OutError, check_out
from reference.sandbox.client import SANDBOXES, ImportFailed, JudgeWorkerFailed, Limits
from reference.sandbox.target import TargetError
from reference.threads import pin_threads

DEFAULT_EPOCHS = 3  # the float32 lenet curves: the pair trains in about 7 minutes on 2 cores (under 10)


# --- choosing cases -------------------------------------------------------------------------------


def select_cases(quick: bool, layers: str | None, case: str | None) -> tuple[list[Any], dict[str, int] | None]:
    """(cases, networks) after --quick, --layers and --case; ImplError-free ValueError on a bad filter."""
    from reference.cases.grid import grid, sample
    from reference.impl.protocol import LAYERS, REQUIRED
    from reference.judges.finite_diff import NETWORKS

    everything = grid()
    cases = sample(everything, 0.25) if quick else everything
    networks: dict[str, int] | None = None
    if layers:
        wanted = [s.strip() for s in layers.split(",") if s.strip()]
        unknown = [w for w in wanted if w not in REQUIRED]
        if unknown:
            raise ValueError(f"--layers: unknown layer(s) {', '.join(unknown)}; choose from {', '.join(REQUIRED)}")
        cases = [c for c in cases if c.layer in wanted]
        networks = {} if set(wanted) != set(LAYERS) | {"SoftmaxCrossEntropy"} else None
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


# --- running judges -------------------------------------------------------------------------------


FAIL_FAST_ORDER = ("protocol", "autograd", "lifecycle", "finite_diff", "curves")


def run_judges(judges: list[Any], ctx: Any) -> dict[str, Any]:
    """Run each judge and print its lines (the protocol judge: its broken rules). {name: Result}.
    Nothing is written here: reports are written after the session is closed."""
    from reference.core.compare import FAILING
    from reference.judges.rules import protocol_lines

    found = None
    if ctx.search and any(j.name != "protocol" for j in judges):
        from reference.judges.reach import reach, tried_rows

        found = reach(ctx)
        ctx.cases = [*ctx.cases, *found.added]
        for note in found.notes.values():
            print(f"search: {note}")
    results = {}
    if ctx.fail_fast:  # the cheaper judges first, and none after the first that fails
        judges = sorted(judges, key=lambda j: FAIL_FAST_ORDER.index(j.name) if j.name in FAIL_FAST_ORDER else 99)
    for judge in judges:
        if ctx.fail_fast and any(r.rows["status"].isin(FAILING).any() for r in results.values() if len(r.rows)):
            print(f"{judge.title}: not run (--fail-fast: an earlier judge failed)")
            continue
        result = judge.run(ctx)
        if found is not None and judge.name in ("autograd", "finite_diff") and (extra := tried_rows(found, judge.name)):
            result.rows = pd.concat([result.rows, pd.DataFrame(extra)], ignore_index=True)
        results[judge.name] = result
        if judge.name == "protocol":
            for line in protocol_lines(result.rows):
                print(line)
        else:
            print(f"{judge.title}:")
            print("\n".join("  " + line for line in judge.lines(result)) or "  (no rows)")
    return results


def print_incidents(j: Any) -> None:
    for e in j.session.events:
        print(f"  worker for {e['scope']}: {e['message']}")


def print_rerun(rows: pd.DataFrame, impl_name: str, limit: int = 20) -> None:
    """Under the verdicts, the one command that reruns each failing case alone (a grid, lifecycle,
    searched or network case: ``judge --case ID``; training: the lockstep, ``curves --quick``)."""
    from reference.report.console import rerun_training_command
    from reference.report.tables import failed

    bad = failed(rows)
    if bad["judge"].eq("curves").any():
        print(f"  rerun: {rerun_training_command(impl_name)}")
    bad = bad[(bad["case"] != "*") & (bad["judge"] != "curves") & (bad["judge"] != "protocol")].drop_duplicates("case")
    for _, r in bad.head(limit).iterrows():
        print(f"  rerun: {rerun_command(impl_name, r['case'])}")
    if len(bad) > limit:
        print(f"  ... {len(bad) - limit} more failing cases in the CSVs")


def cmd_single(judge_name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from reference.core.verdicts import exit_code
        from reference.judges.autograd import AutogradJudge
        from reference.judges.base import Context
        from reference.judges.finite_diff import FiniteDiffJudge
        from reference.judges.lifecycle import LifecycleJudge

        judge = {"autograd": AutogradJudge, "finite_diff": FiniteDiffJudge, "lifecycle": LifecycleJudge}[judge_name]()
        check_out(args.out)
        cases, networks = select_cases(args.quick, args.layers, None)
        with judgement(args) as j:
            ctx = Context(j.impl, args.impl, cases, quick=args.quick, progress=progress_sink(), networks=networks,
                          search=True, fail_fast=args.fail_fast)  # fmt: skip
            result = run_judges([judge], ctx)[judge.name]
            print_incidents(j)
        judge.write(result, args.out, args.impl)
        write_logs(j, args.out)
        rows = result.rows
        extra_bad = sum(int((t["status"] == "fail").sum()) for _, t in result.extra.values() if "status" in t)
        print(
            f"{int((rows['status'] == 'pass').sum())} of {len(rows)} rows pass; wrote {args.out / (judge.name + '.csv')}"
        )
        print_rerun(rows, args.impl)
        return exit_code(rows, args.strict) or (1 if extra_bad else 0)

    return run


def cmd_curves(args: argparse.Namespace) -> int:
    from reference.judges.base import Context
    from reference.judges.curves import CurvesJudge

    if args.epochs < 1 or args.steps < 1:
        print("error: --epochs and --steps must be >= 1", file=sys.stderr)
        return 2
    check_out(args.out)
    judge = CurvesJudge()
    with judgement(args) as j:
        ctx = Context(j.impl, args.impl, [], quick=args.quick, progress=progress_sink(), data=mnist_loader(args.data_dir),
                      epochs=args.epochs, steps=args.steps)  # fmt: skip
        result = run_judges([judge], ctx)["curves"]
        print_incidents(j)
    judge.write(result, args.out, args.impl)
    write_logs(j, args.out)
    print(
        f"wrote {args.out / 'curves.md'}, lockstep.csv, curve_checks.csv"
        + (", curves.csv" if not args.quick else "")
        + " and plots"
    )
    return 0 if result.ok else 1


def cmd_judge(args: argparse.Namespace) -> int:
    """Every judge on one implementation (run in sandboxed workers), its own report directory, written
    whole and swapped into place after every worker is gone, and its own exit code; no baseline."""
    from reference.core.verdicts import exit_code, layer_verdicts
    from reference.judges.autograd import AutogradJudge
    from reference.judges.base import Context
    from reference.judges.curves import CurvesJudge
    from reference.judges.finite_diff import FiniteDiffJudge
    from reference.judges.lifecycle import LifecycleJudge
    from reference.judges.rules import ProtocolJudge
    from reference.report.publish import new_staging, stamp, swap_into_place
    from reference.report.summary import write_summary
    from reference.report.tables import write_atomic

    check_out(args.out)
    secrets = read_secrets(args.secrets_fd) if getattr(args, "secrets_fd", None) is not None else {}
    key = secrets.get("stamp_key")
    secret = secret_seed(args, secrets)
    cases, networks = with_secret_cases(args, secret)
    with judgement(args) as j:
        print(f"judging {args.impl} in sandboxed workers ({j.session.sandbox}; run {j.session.run_id})")
        ctx = Context(j.impl, args.impl, cases, quick=args.quick, progress=progress_sink(), networks=networks,
                      data=mnist_loader(args.data_dir), full_curves=args.full_curves, epochs=args.epochs,
                      search=not args.case, fail_fast=args.fail_fast)  # fmt: skip
        # the gradcheck cross-check proves the finite-difference judge itself (verify and finite-diff run it)
        judges: list[Any] = [ProtocolJudge(), AutogradJudge(), FiniteDiffJudge(crosscheck=False), LifecycleJudge()]
        if args.judges:
            judges = [judge for judge in judges if judge.name in args.judges]
        has_sgd = callable(getattr(j.impl, "SGD", None))
        curves = getattr(args, "curves", True) and not args.layers and not args.case and has_sgd
        if curves:
            judges.append(CurvesJudge())
        results = run_judges(judges, ctx)
        print_incidents(j)
    rows = pd.concat([r.rows for r in results.values()], ignore_index=True)
    verdicts = layer_verdicts(rows[rows["judge"] != "curves"])
    info = j.run_info()
    verdicts = verdicts.assign(run_id=info["run_id"], impl_sha256=info["impl_sha256"])
    code = exit_code(rows, args.strict)
    print("Verdict per layer:")
    for v in verdicts.itertuples():
        print(f"  {v.layer}: {v.verdict} ({v.why})")
    if not curves:
        print("  training: not judged (" + ("the module has no SGD" if not has_sgd else
              "--no-curves, or a --layers/--case filter") + ")")  # fmt: skip
    elif "curves" in results:
        for _, r in results["curves"].rows.iterrows():
            print(f"  training: {r['status'].upper()} {r['case']} {r['note']}")
    if "autograd" in results and "shrunk" in results["autograd"].extra:  # each failing layer's worst case, shrunk
        print("\n".join(smallest_lines(results["autograd"].extra["shrunk"][1], args.impl)))
    print_rerun(rows, args.impl)
    verdict = run_word(rows, code)
    strict = " (strict: unsupported and missing fail)" if args.strict else ""
    staging = new_staging(args.out)
    try:
        for judge in judges:
            if judge.name in results:  # --fail-fast leaves the judges after a failing one unrun
                judge.write(results[judge.name], staging, args.impl)
        write_atomic(staging / "verdicts.csv", verdicts.to_csv(index=False))
        if j.session.events:
            write_atomic(staging / "incidents.csv", j.incidents().to_csv(index=False))
        write_logs(j, staging)
        write_summary(staging, f"{verdict}{strict}", f"Judged: {args.impl}", impl_name=args.impl, stamp=j.stamp_lines())
        stamp(staging, {**info, "verdict": verdict, "exit_code": code, "command": "judge",
                        "secret_cases": sum(c.tag == "secret" for c in cases)}, key=key)  # fmt: skip
        swap_into_place(staging, args.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if args.junit:
        write_junit(args.junit, args.impl, verdicts)
    print(f"{verdict}{strict}: reports in {args.out}/ (summary.md first, index.html, CSV files; run {info['run_id']})")
    return code


def secret_seed(args: argparse.Namespace, secrets: dict[str, Any]) -> int | None:
    """The teacher's secret seed: from the grader's pipe, ``--secret-seed-file`` or ``--secret-seed``."""
    if secrets.get("secret_seed") is not None:
        return int(secrets["secret_seed"])
    path = getattr(args, "secret_seed_file", None)
    if path:
        try:
            return int(Path(path).read_text().strip())
        except (OSError, ValueError) as err:
            raise ValueError(f"--secret-seed-file {path}: not a file holding one integer ({err})") from None
    return getattr(args, "secret_seed", None)


def with_secret_cases(args: argparse.Namespace, secret: int | None) -> tuple[list[Any], dict[str, int] | None]:
    """``select_cases`` plus the cases drawn from the secret seed (those of the chosen layers; the one
    named by ``--case`` when it is one of them)."""
    from reference.cases.grid import secret_grid

    drawn = secret_grid(secret) if secret is not None else []
    if args.case and any(c.id == args.case for c in drawn):
        return [c for c in drawn if c.id == args.case][:1], {}
    cases, networks = select_cases(args.quick, args.layers, args.case)
    if args.case:
        return cases, networks
    wanted = {s.strip() for s in args.layers.split(",")} if args.layers else None
    return [*cases, *(c for c in drawn if wanted is None or c.layer in wanted)], networks


def read_secrets(fd: int) -> dict[str, Any]:
    """What a grader hands its judge through an inherited pipe (never a file, an argument or the
    environment, which a worker could read): a JSON object with ``stamp_key`` (hex, at least 16
    bytes: run.json is signed with it) and optionally ``secret_seed`` (an integer: see
    ``--secret-seed``). Read whole, the pipe closed."""
    import json
    import os

    try:
        with os.fdopen(fd, "rb", closefd=True) as f:
            raw = json.loads(f.read(1 << 16))
        key = bytes.fromhex(str(raw["stamp_key"]))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"--secrets-fd {fd}: not a JSON object with a hex 'stamp_key' ({type(err).__name__}: {err})"
        ) from None
    if len(key) < 16:
        raise ValueError(f"--secrets-fd {fd}: a stamp key of {len(key)} bytes (at least 16)")
    seed = raw.get("secret_seed")
    if seed is not None and type(seed) is not int:
        raise ValueError(f"--secrets-fd {fd}: secret_seed must be an integer")
    return {"stamp_key": key, "secret_seed": seed}


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


def cmd_grade(args: argparse.Namespace) -> int:
    from reference.grade.run import run

    return run(args)


def write_junit(path: str, impl: str, verdicts: pd.DataFrame) -> None:
    """JUnit XML, one test case per layer (as pytest writes it), for CI systems."""
    from reference.grade.gradebook import junit_xml
    from reference.report.tables import write_atomic

    cases = [(str(v.layer), str(v.verdict), str(v.why)) for v in verdicts.itertuples()]
    write_atomic(Path(path), junit_xml([(impl, cases)]))


def cmd_verify(args: argparse.Namespace) -> int:
    from reference.verify import run

    if args.epochs < 1:
        print("error: --epochs must be >= 1", file=sys.stderr)
        return 2
    return run(args)


def cmd_gate(args: argparse.Namespace) -> int:
    from reference.report.gate import run_gate
    from reference.report.tables import markdown

    if not args.latest.is_dir():
        print(f"error: no run at {args.latest}; run 'nox -s verify' first", file=sys.stderr)
        return 2
    table, code, message = run_gate(args.latest, args.baseline)
    if table is not None:
        print(markdown(table))
    print(message, file=sys.stderr if code == 2 else sys.stdout)
    return code


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "judge": cmd_judge,
    "grade": cmd_grade,
    "verify": cmd_verify,
    "gate": cmd_gate,
    "autograd": cmd_single("autograd"),
    "finite-diff": cmd_single("finite_diff"),
    "lifecycle": cmd_single("lifecycle"),
    "curves": cmd_curves,
}

IMPL_HELP = "the implementation: a module name (pkg.module) or a file (path/to/layers.py) following the layer protocol"


def _sandbox(p: argparse.ArgumentParser, require: bool = True) -> None:
    """The trust boundary's options (README: "Judging code you do not trust")."""
    d = Limits()
    g = p.add_argument_group(
        "sandbox", "the implementation runs only in sandboxed worker processes, under these limits"
    )
    g.add_argument("--sandbox", choices=SANDBOXES, default="auto",
                   help="bwrap: bubblewrap (read-only file system, no network, own PIDs) with Landlock inside; landlock: "
                        "Landlock alone (Linux >= 5.13: reads what it needs, writes only its own folder, no TCP, no "
                        "signals out); process: no sandbox, limits only; auto: the strongest that works here")  # fmt: skip
    if require:  # grade refuses on its own (its --unsandboxed) and passes this to each judge
        g.add_argument(
            "--require-sandbox",
            action="store_true",
            help="exit 2 instead of judging where no sandbox tier works (grade passes it unless --unsandboxed)",
        )
    g.add_argument("--case-timeout", type=float, default=d.case_seconds,
                   help="seconds per case; the worker is killed, the row is an error, and the layer's remaining cases are not run")  # fmt: skip
    g.add_argument(
        "--time-budget",
        type=float,
        default=d.run_seconds,
        help="seconds for the whole run; cases left then are not run",
    )
    g.add_argument(
        "--train-timeout", type=float, default=d.train_seconds, help="seconds for the training judge (one case)"
    )
    g.add_argument("--memory-mb", type=int, default=d.memory_mb, help="address space per worker in MB (0: no limit)")
    g.add_argument(
        "--log-bytes", type=int, default=d.log_bytes, help="bytes of each worker's stdout/stderr kept in worker-logs/"
    )
    g.add_argument("--parallel", type=int, default=None,
                   help="layers judged at once, each in its own worker (default: one per core)")  # fmt: skip


def _common(p: argparse.ArgumentParser, default_out: str) -> None:
    _sandbox(p)
    p.add_argument("--impl", default=DEFAULT_IMPL, help=IMPL_HELP)
    p.add_argument("--out", type=Path, default=Path(default_out), help="directory for the CSV and Markdown reports")
    p.add_argument(
        "--quick", action="store_true", help="a fixed sample of the grid that keeps every layer, value kind and family"
    )


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layers", help="judge only these layers, comma-separated (e.g. Conv2D,ReLU)")
    p.add_argument("--strict", action="store_true", help="unsupported and missing rows fail too (exit 1)")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop each judge at its first failing case (the rest: 'not run' rows) and draw no heat maps; "
                   "for an exit code, as the mutation run wants it")  # fmt: skip


def judge_names(text: str) -> list[str]:
    names = [n.strip().replace("-", "_") for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ("protocol", "autograd", "finite_diff", "lifecycle")]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown judge(s) {', '.join(unknown) or '(none given)'}; choose from "
                                         "protocol, autograd, finite_diff, lifecycle")  # fmt: skip
    return names


def parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    ap = argparse.ArgumentParser(prog="python -m reference", description=__doc__, formatter_class=fmt)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("judge", formatter_class=fmt,
                       help="is my implementation right? every judge, its own reports and exit code (no baseline)")  # fmt: skip
    _common(p, "reports/judge")
    _filters(p)
    p.add_argument("--case", help="rerun one case alone, by its id (the 'case' column of the CSVs)")
    p.add_argument("--no-curves", dest="curves", action="store_false", default=argparse.SUPPRESS,
                   help="skip the lockstep training check (by default it runs when the module has SGD; needs MNIST)")  # fmt: skip
    p.add_argument(
        "--full-curves", action="store_true", help="also train lenet in float32 on full MNIST beside the twin"
    )
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="epochs of the --full-curves run")
    p.add_argument("--data-dir", help="directory holding the MNIST IDX files (else the cache, else download)")
    p.add_argument("--junit", help="also write JUnit XML here: one test case per layer (for CI systems)")
    p.add_argument("--secret-seed", type=int, default=None,
                   help="also judge cases drawn from this seed (a teacher's: cases a submission cannot know in "
                   "advance; prefer --secret-seed-file, as a command line can be read by other processes)")  # fmt: skip
    p.add_argument("--secret-seed-file", help="a file holding the secret seed (an integer)")
    p.add_argument("--secrets-fd", type=int, default=None,
                   help="for graders: read a JSON object {stamp_key: hex, secret_seed: int} from this inherited file "
                   "descriptor; run.json is signed with the key (HMAC-SHA256), so a result is only what this judge stamped")  # fmt: skip
    p.add_argument("--judges", type=judge_names, help="only these judges, comma-separated (protocol, autograd, "
                   "finite_diff, lifecycle; the lockstep is --no-curves's)")  # fmt: skip
    p = sub.add_parser("grade", formatter_class=fmt,
                       help="grade a class: every submission in a folder judged on Dask; gradebook, class summary, reports")  # fmt: skip
    p.add_argument("submissions", help="a folder: each .py file, folder or .ipynb notebook in it is one submission")
    p.add_argument(
        "--out", type=Path, default=Path("reports/grade"), help="gradebook, class summary, DIR/<id>/ reports"
    )
    p.add_argument("--entry", help="a folder submission's entry module (default: its only .py file, or layers.py)")
    p.add_argument("--adapter", help="the course's wrapper: a module that imports the student's code as `submission`")
    p.add_argument(
        "--workers", type=int, default=None, help="processes of the embedded Dask LocalCluster (default: one per core)"
    )
    p.add_argument("--scheduler", help="an existing Dask scheduler (tcp://HOST:PORT) instead of the embedded cluster")
    p.add_argument("--points", help="points per layer, e.g. Conv2D=3,MaxPool2D=2 (default 1 each; PASS earns them, "
                   "weak half, FAIL/ERROR/UNSUPPORTED/MISSING nothing)")  # fmt: skip
    p.add_argument("--format", choices=("default", "gradescope"), default="default",
                   help="gradescope: also DIR/<id>/results.json in Gradescope's autograder format")  # fmt: skip
    p.add_argument("--junit", help="also write the gradebook as JUnit XML (a test suite per submission)")
    p.add_argument("--only", help="rejudge only these submissions (comma-separated ids)")
    p.add_argument("--layers", help="judge only these layers, comma-separated")
    p.add_argument("--full", action="store_true", help="the full case grid (default: the quick sample)")
    p.add_argument("--retries", type=int, default=2, help="times Dask reruns a task whose worker was lost")
    p.add_argument("--submission-timeout", type=float, default=None,
                   help="seconds one submission's judge may take in all (default: --time-budget + 120)")  # fmt: skip
    _sandbox(p, require=False)
    from reference.grade.run import add_arguments

    add_arguments(p)
    for name, title in (("autograd", "every layer against its PyTorch twin"),
                        ("finite-diff", "every gradient against central differences (float64)"),
                        ("lifecycle", "two forward/backward rounds on one instance against a fresh instance")):  # fmt: skip
        p = sub.add_parser(name, help=title, formatter_class=fmt)
        _common(p, "reports/latest")
        _filters(p)
    p = sub.add_parser("curves", help="training beside the twin: lockstep (float64) and MNIST curves (float32)",
                       formatter_class=fmt)  # fmt: skip
    _common(p, "reports/latest")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="epochs of the float32 lenet run")
    p.add_argument("--steps", type=int, default=200, help="lockstep steps")
    p.add_argument("--data-dir", help="directory holding the MNIST IDX files (else the cache, else download)")
    p = sub.add_parser("verify", help="the whole proof: every judge, the fault catalogue, the reports, the gate",
                       formatter_class=fmt)  # fmt: skip
    p.add_argument("--impl", default=DEFAULT_IMPL, help=IMPL_HELP)
    _sandbox(p)
    p.add_argument("--quick", action="store_true", help="a sample of the grid, lockstep only (no MNIST curves)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="epochs of the float32 lenet run")
    p.add_argument("--update-baseline", action="store_true", help="accept this run's figures as reports/baseline")
    p.add_argument("--reports", type=Path, default=Path("reports"), help="reports directory")
    p.add_argument("--data-dir", help="directory holding the MNIST IDX files (else the cache, else download)")
    p = sub.add_parser("gate", formatter_class=fmt,
                       help="compare a run's reports with the baseline (exit 0 pass, 1 regression, 2 no baseline)")  # fmt: skip
    p.add_argument("--latest", type=Path, default=Path("reports/latest"), help="the run to judge")
    p.add_argument("--baseline", type=Path, default=Path("reports/baseline"), help="the accepted figures")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 every judged row passed, 1 a fail or error row (or a regression), 2 the judge
    could not run (a bad option, an unusable --out, an implementation that cannot be imported, the
    judge's own failure). Never another code, never a traceback: the judged code runs in workers."""
    from scratch_cnn.data import DataError

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["mutants"]:  # its own parser: python -m reference mutants --help
        from reference.mutants.run import main as mutants

        return mutants(argv[1:])
    args = parser().parse_args(argv)
    try:
        if args.command != "gate":
            pin_threads()  # the one thread setting of every judge (reference/threads.py says why)
        code = COMMANDS[args.command](args)
        return code if code in (0, 1, 2) else 2
    except (ImplError, DataError, TargetError, ImportFailed, OutError, SubmissionError, JudgeWorkerFailed) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        if str(err).startswith("--"):  # a bad option, named
            print(f"error: {err}", file=sys.stderr)
            return 2
        return internal_error(err)
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C); no report was written for this run", file=sys.stderr)
        return 2
    except Exception as err:
        return internal_error(err)


def internal_error(err: BaseException) -> int:
    """The judge's own failure: one line, the traceback in a file, exit 2."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="scratch-cnn-judge-error-", suffix=".txt")
    with open(fd, "w") as f:
        f.write("".join(traceback.format_exception(err)))
    print(f"error: the judge itself failed ({type(err).__name__}: {err}); traceback in {path}", file=sys.stderr)
    return 2
