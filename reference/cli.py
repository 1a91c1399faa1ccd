"""`python -m reference {judge, autograd, finite-diff, lifecycle, curves, verify, gate}`: the judges
from the command line. Every command but gate is a loop over judges (reference.judges.base)."""

# NOTE: the docstring above is `--help`'s description. Argparse stops in this file: each command builds
# its options as a dataclass (reference.pipeline.Options; grade: reference.grade.run.GradeOptions), and
# every command but gate and grade runs the one pipeline (reference.pipeline.run).

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from reference.grade.submissions import SubmissionError
from reference.impl.protocol import DEFAULT_IMPL, ImplError
from reference.judging import SandboxOptions, limits_from
from reference.pipeline import DEFAULT_EPOCHS, LAYER_JUDGES, REGISTRY, SINGLE, Options, print_rerun
from reference.pipeline import run as run_pipeline
from reference.report.publish import OutError, check_out
from reference.sandbox.client import SANDBOXES, ImportFailed, JudgeWorkerFailed, Limits
from reference.sandbox.target import TargetError
from reference.threads import pin_threads

# --- from options to the pipeline ----------------------------------------------------------------------


def sandbox_options(args: argparse.Namespace) -> SandboxOptions:
    """The trust boundary's options (``_sandbox``) as values."""
    limits = limits_from(case_timeout=args.case_timeout, time_budget=args.time_budget, train_timeout=args.train_timeout,
                         memory_mb=args.memory_mb, log_bytes=args.log_bytes)  # fmt: skip
    require = getattr(args, "require_sandbox", False)  # grade has none: its own --unsandboxed decides
    return SandboxOptions(tier=args.sandbox, require=require, limits=limits, parallel=args.parallel)


def cmd_single(command: str) -> Callable[[argparse.Namespace], int]:
    """``autograd``, ``finite-diff`` or ``lifecycle``: one judge, its files written into ``--out`` beside
    what it holds."""

    def run(args: argparse.Namespace) -> int:
        options = Options(command=command, impl=args.impl, out=args.out, judges=(SINGLE[command],), quick=args.quick,
                          layers=args.layers, strict=args.strict, fail_fast=args.fail_fast,
                          explain=not args.fail_fast, crosscheck=True,
                          search=True, sandbox=sandbox_options(args))  # fmt: skip
        outcome = run_pipeline(options)
        rows = outcome.rows
        print(f"{int((rows['status'] == 'pass').sum())} of {len(rows)} rows pass; wrote "
              f"{args.out / (SINGLE[command] + '.csv')}")  # fmt: skip
        print_rerun(rows, args.impl)
        return outcome.code

    return run


def cmd_curves(args: argparse.Namespace) -> int:
    if args.epochs < 1 or args.steps < 1:
        print("error: --epochs and --steps must be >= 1", file=sys.stderr)
        return 2
    options = Options(command="curves", impl=args.impl, out=args.out, judges=("curves",), quick=args.quick,
                      search=False, full_curves=True, epochs=args.epochs, steps=args.steps, data_dir=args.data_dir,
                      sandbox=sandbox_options(args))  # fmt: skip
    outcome = run_pipeline(options)
    print(
        f"wrote {args.out / 'curves.md'}, lockstep.csv, curve_checks.csv"
        + (", curves.csv" if not args.quick else "")
        + " and plots"
    )
    return outcome.code


def cmd_judge(args: argparse.Namespace) -> int:
    """Every judge on one implementation (run in sandboxed workers), its own report directory, written
    whole and swapped into place after every worker is gone, and its own exit code; no baseline."""
    check_out(args.out)  # named before the grader's pipe is read
    secrets = read_secrets(args.secrets_fd) if args.secrets_fd is not None else {}
    judges = (*(args.judges or LAYER_JUDGES), *(("curves",) if getattr(args, "curves", True) else ()))
    options = Options(command="judge", impl=args.impl, out=args.out, judges=judges, quick=args.quick,
                      layers=args.layers, case=args.case, strict=args.strict, fail_fast=args.fail_fast,
                      explain=not args.fail_fast,
                      search=not args.case, full_curves=args.full_curves, epochs=args.epochs, data_dir=args.data_dir,
                      junit=args.junit, stamp_key=secrets.get("stamp_key"), secret_seed=secret_seed(args, secrets),
                      shown_as=args.shown_as,
                      sandbox=sandbox_options(args))  # fmt: skip
    outcome = run_pipeline(options)
    print(f"{outcome.summary}: reports in {args.out}/ (summary.md first, index.html, CSV files; "
          f"run {outcome.info['run_id']})")  # fmt: skip
    return outcome.code


def secret_seed(args: argparse.Namespace, secrets: dict[str, Any]) -> int | None:
    """The teacher's secret seed: from the grader's pipe, ``--secret-seed-file`` or ``--secret-seed``."""
    if secrets.get("secret_seed") is not None:
        return int(secrets["secret_seed"])
    path = args.secret_seed_file
    if path:
        try:
            return int(Path(path).read_text().strip())
        except (OSError, ValueError) as err:
            raise ValueError(f"--secret-seed-file {path}: not a file holding one integer ({err})") from None
    return args.secret_seed


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


def cmd_grade(args: argparse.Namespace) -> int:
    from reference.grade.run import GradeOptions, run

    return run(GradeOptions(
        submissions=Path(args.submissions), out=args.out, entry=args.entry, adapter=args.adapter,
        workers=args.workers, scheduler=args.scheduler, points=args.points, format=args.format, junit=args.junit,
        only=args.only, layers=args.layers, full=args.full, retries=args.retries,
        submission_timeout=args.submission_timeout, sandbox=sandbox_options(args), unsandboxed=args.unsandboxed,
        secret_seed=args.secret_seed, secret_seed_file=args.secret_seed_file, tls_ca_file=args.tls_ca_file,
        tls_cert=args.tls_cert, tls_key=args.tls_key, insecure_scheduler=args.insecure_scheduler,
        timeout_scores=args.timeout_scores, timeout_grace=args.timeout_grace, feedback=args.feedback,
        compare=args.compare,
    ))  # fmt: skip


def cmd_verify(args: argparse.Namespace) -> int:
    from reference.verify import run

    if args.epochs < 1:
        print("error: --epochs must be >= 1", file=sys.stderr)
        return 2
    options = Options(command="verify", impl=args.impl, out=args.reports / "latest", judges=tuple(REGISTRY),
                      quick=args.quick, strict=True, search=False, crosscheck=True, full_curves=True,
                      epochs=args.epochs, data_dir=args.data_dir, sandbox=sandbox_options(args),
                      baseline=args.reports / "baseline")  # fmt: skip
    return run(options, new_baseline=args.update_baseline)


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
    "finite-diff": cmd_single("finite-diff"),
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
                   help="stop each judge at each layer's first failing case (the rest of that layer: 'not run' rows) "
                   "and draw no heat maps; "
                   "for an exit code, as the mutation run wants it")  # fmt: skip


def judge_names(text: str) -> list[str]:
    names = [n.strip().replace("-", "_") for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in LAYER_JUDGES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown judge(s) {', '.join(unknown) or '(none given)'}; choose from "
                                         f"{', '.join(LAYER_JUDGES)}")  # fmt: skip
    return names


def parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    ap = argparse.ArgumentParser(prog="python -m reference", description=__doc__, formatter_class=fmt)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("judge", formatter_class=fmt,
                       help="is my implementation right? every judge, its own reports and exit code (no baseline)")  # fmt: skip
    _judge_options(p)
    p = sub.add_parser("grade", formatter_class=fmt,
                       help="grade a class: every submission in a folder judged on Dask; gradebook, class summary, reports")  # fmt: skip
    _grade_options(p)
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


def _judge_options(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--shown-as", default=None,
                   help="the name reports give the implementation (their title and every rerun command): a grader's "
                   "path to the submission where the judged file is a private copy")  # fmt: skip
    p.add_argument("--judges", type=judge_names, help=f"only these judges, comma-separated ({', '.join(LAYER_JUDGES)}; "
                   "the lockstep is --no-curves's)")  # fmt: skip


def _grade_options(p: argparse.ArgumentParser) -> None:
    from reference.grade.run import GradeOptions, add_arguments

    p.add_argument("submissions", help="a folder: each .py file, folder or .ipynb notebook in it is one submission")
    p.add_argument("--out", type=Path, default=GradeOptions.out, help="gradebook, class summary, DIR/<id>/ reports")
    p.add_argument("--entry", help="a folder submission's entry module (default: its only .py file, or layers.py)")
    p.add_argument("--adapter", help="the course's wrapper: a module that imports the student's code as `submission`")
    p.add_argument(
        "--workers", type=int, default=None, help="processes of the embedded Dask LocalCluster (default: one per core)"
    )
    p.add_argument("--scheduler", help="an existing Dask scheduler (tcp://HOST:PORT) instead of the embedded cluster")
    p.add_argument("--points", help="points per layer, e.g. Conv2D=3,MaxPool2D=2 (default 1 each; PASS earns them, "
                   "weak half, FAIL/ERROR/UNSUPPORTED/MISSING nothing)")  # fmt: skip
    p.add_argument("--format", choices=("default", "gradescope"), default=GradeOptions.format,
                   help="gradescope: also DIR/<id>/results.json in Gradescope's autograder format")  # fmt: skip
    p.add_argument("--junit", help="also write the gradebook as JUnit XML (a test suite per submission)")
    p.add_argument("--feedback", type=Path, default=None,
                   help="also write feedback to hand back: DIR/<id>/feedback.html (self-contained) and feedback.md; "
                   "cases drawn from --secret-seed appear only as 'a hidden case failed' and its diagnosis's class")  # fmt: skip
    p.add_argument("--compare", type=Path, default=None,
                   help="a previous grade's --out: list every submission whose score or a layer's verdict changed "
                   "since (regrade.csv, and in the class summary), with each run's judge version and the first row "
                   "that differs")  # fmt: skip
    p.add_argument("--only", help="rejudge only these submissions (comma-separated ids)")
    p.add_argument("--layers", help="judge only these layers, comma-separated")
    p.add_argument("--full", action="store_true", help="the full case grid (default: the quick sample)")
    p.add_argument(
        "--retries", type=int, default=GradeOptions.retries, help="times Dask reruns a task whose worker was lost"
    )
    p.add_argument("--submission-timeout", type=float, default=None,
                   help="seconds one submission's judge may take in all (default: --time-budget + 120)")  # fmt: skip
    _sandbox(p, require=False)
    add_arguments(p)


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


def exit_promptly(code: int) -> NoReturn:
    """End this process with ``code`` once what it says is out: stdout and stderr flushed, the atexit
    hooks run, then ``os._exit``: no teardown of the interpreter's modules and objects, which for torch's
    and pandas' costs ~0.5 s of CPU (measured here: a twentieth of a quick judgement). Only after
    ``judge``: its reports are written whole and swapped into place and its workers are gone before
    ``main`` returns, so nothing is left to finish (a file it writes is closed where it is written)."""
    import atexit
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # NOTE: a reader that went away (| head): nothing more to say to it
            pass
    atexit._run_exitfuncs()
    os._exit(code)


def module_main() -> NoReturn:
    """``python -m reference ...``: ``main``'s exit code; after ``judge``, promptly (exit_promptly)."""
    code = main()
    if sys.argv[1:2] == ["judge"]:
        exit_promptly(code)
    raise SystemExit(code)


def judge_main() -> NoReturn:
    """The ``scratch-cnn-judge`` console script: ``python -m reference judge`` under a name on PATH."""
    exit_promptly(main(["judge", *sys.argv[1:]]))


def grade_main() -> int:
    """The ``scratch-cnn-grade`` console script: ``python -m reference grade``."""
    return main(["grade", *sys.argv[1:]])
