"""`python -m reference {judge, autograd, finite-diff, lifecycle, curves, verify, gate}`: the judges
from the command line. Every command but gate is a loop over judges (reference.judges.base)."""

from __future__ import annotations

import argparse
import difflib
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from reference.impl.protocol import DEFAULT_IMPL, ImplError, load_impl
from reference.threads import pin_threads

DEFAULT_EPOCHS = 3  # the float32 lenet curves: the pair trains in about 7 minutes on 2 cores (under 10)


def progress_bar(desc: str) -> Callable[[int, int], None]:
    """A (done, total) callback over scratch_cnn's Progress: a tqdm bar on a terminal, elsewhere a line
    every few seconds (done/total, elapsed, ETA), so a CI log shows that long work is moving."""
    from scratch_cnn.train import Progress

    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        bar = state.setdefault("bar", Progress(total, desc))
        bar.update(done - bar.done)
        if done >= total:
            bar.__exit__()

    return update


def progress_sink() -> Callable[[str, int, int], None]:
    bars: dict[str, Callable[[int, int], None]] = {}
    return lambda desc, done, total: bars.setdefault(desc, progress_bar(desc))(done, total)


def rerun_command(impl: str, case: str) -> str:
    """The one command that reruns a case alone."""
    return f"python -m reference judge --impl {shlex.quote(impl)} --case {shlex.quote(case)}"


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
    if case:
        nets = {arch: n for arch, n in NETWORKS.items() if case.startswith(f"{arch} network")}
        chosen = [c for c in everything if c.id == case]
        if not chosen and not nets:
            close = difflib.get_close_matches(case, [c.id for c in everything], n=3, cutoff=0.5)
            hint = f"; did you mean: {' | '.join(close)}" if close else "; the case ids are in the CSVs' 'case' column"
            raise ValueError(f"--case: no case {case!r}{hint}")
        cases, networks = chosen, nets
    return cases, networks


# --- running judges -------------------------------------------------------------------------------


def run_judges(judges: list[Any], ctx: Any, out: Path, impl_name: str) -> dict[str, Any]:
    """Run each judge, write its files into ``out``, print its lines. {name: Result}. The protocol
    judge's broken rules were printed at load (load_or_fail), so it prints nothing more here."""
    results = {}
    for judge in judges:
        result = judge.run(ctx)
        judge.write(result, out, impl_name)
        results[judge.name] = result
        if judge.name != "protocol":
            print(f"{judge.title}:")
            print("\n".join("  " + line for line in judge.lines(result)) or "  (no rows)")
    return results


def load_or_fail(name: str) -> Any:
    impl = load_impl(name)
    from reference.judges.rules import check_protocol, protocol_lines

    lines = protocol_lines(check_protocol(impl))
    for line in lines:
        print(line)
    return impl


def print_rerun(rows: pd.DataFrame, impl_name: str, limit: int = 20) -> None:
    from reference.report.tables import failed

    bad = failed(rows)
    bad = bad[(bad["case"] != "*") & (bad["judge"] != "curves")].drop_duplicates("case")
    for _, r in bad.head(limit).iterrows():
        print(f"  rerun: {rerun_command(impl_name, r['case'])}")
    if len(bad) > limit:
        print(f"  ... {len(bad) - limit} more failing cases in the CSVs")


def cmd_single(judge_name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from reference.judges.autograd import AutogradJudge
        from reference.judges.base import Context
        from reference.judges.finite_diff import FiniteDiffJudge
        from reference.judges.lifecycle import LifecycleJudge
        from reference.report.coverage import exit_code

        judge = {"autograd": AutogradJudge, "finite_diff": FiniteDiffJudge, "lifecycle": LifecycleJudge}[judge_name]()
        impl = load_or_fail(args.impl)
        cases, networks = select_cases(args.quick, args.layers, None)
        ctx = Context(impl, args.impl, cases, quick=args.quick, progress=progress_sink(), networks=networks)
        result = run_judges([judge], ctx, args.out, args.impl)[judge.name]
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
    impl = load_or_fail(args.impl)
    ctx = Context(impl, args.impl, [], quick=args.quick, progress=progress_sink(), data=mnist_loader(args.data_dir),
                  epochs=args.epochs, steps=args.steps)  # fmt: skip
    result = run_judges([CurvesJudge(args.out)], ctx, args.out, args.impl)["curves"]
    print(
        f"wrote {args.out / 'curves.md'}, lockstep.csv, curve_checks.csv"
        + (", curves.csv" if not args.quick else "")
        + " and plots"
    )
    return 0 if result.ok else 1


def mnist_loader(data_dir: str | None) -> Callable[[], dict[str, Any]]:
    """MNIST on first use (DataError propagates: the caller turns it into exit 2)."""
    cache: dict[str, Any] = {}

    def load() -> dict[str, Any]:
        if "data" not in cache:
            from scratch_cnn.data import load_mnist

            cache["data"] = load_mnist(data_dir)
        return cache["data"]

    return load


def cmd_judge(args: argparse.Namespace) -> int:
    """Every judge on one implementation, its own report directory and exit code; no baseline."""
    from reference.judges.autograd import AutogradJudge
    from reference.judges.base import Context
    from reference.judges.curves import CurvesJudge
    from reference.judges.finite_diff import FiniteDiffJudge
    from reference.judges.lifecycle import LifecycleJudge
    from reference.judges.rules import ProtocolJudge
    from reference.report.coverage import exit_code, layer_verdicts
    from reference.report.summary import write_summary
    from reference.report.tables import write_atomic

    impl = load_or_fail(args.impl)
    cases, networks = select_cases(args.quick, args.layers, args.case)
    ctx = Context(impl, args.impl, cases, quick=args.quick, progress=progress_sink(), networks=networks,
                  data=mnist_loader(args.data_dir), full_curves=args.full_curves, epochs=args.epochs)  # fmt: skip
    # the gradcheck cross-check proves the finite-difference judge itself (verify and finite-diff run it)
    judges: list[Any] = [ProtocolJudge(), AutogradJudge(), FiniteDiffJudge(crosscheck=False), LifecycleJudge()]
    curves = args.curves and not args.layers and not args.case and callable(getattr(impl, "SGD", None))
    if curves:
        judges.append(CurvesJudge(args.out))
    args.out.mkdir(parents=True, exist_ok=True)
    results = run_judges(judges, ctx, args.out, args.impl)
    rows = pd.concat([r.rows for r in results.values()], ignore_index=True)
    verdicts = layer_verdicts(rows[rows["judge"] != "curves"])
    write_atomic(args.out / "verdicts.csv", verdicts.to_csv(index=False))
    code = exit_code(rows, args.strict)
    print("Verdict per layer:")
    for v in verdicts.itertuples():
        print(f"  {v.layer}: {v.verdict} ({v.why})")
    if not curves:
        print("  training: not judged (" + ("the module has no SGD" if not callable(getattr(impl, "SGD", None)) else
              "--no-curves, or a --layers/--case filter") + ")")  # fmt: skip
    else:
        for _, r in results["curves"].rows.iterrows():
            print(f"  training: {r['status'].upper()} {r['case']} {r['note']}")
    print_rerun(rows, args.impl)
    verdict = "PASS" if code == 0 else "FAIL"
    strict = " (strict: unsupported and missing fail)" if args.strict else ""
    write_summary(args.out, f"{verdict}{strict}", f"Judged: {args.impl}", impl_name=args.impl)
    print(f"{verdict}{strict}: reports in {args.out}/ (summary.md first, index.html, CSV files)")
    return code


def cmd_verify(args: argparse.Namespace) -> int:
    from reference.verify import run

    if args.epochs < 1:
        print("error: --epochs must be >= 1", file=sys.stderr)
        return 2
    return run(args)


def cmd_gate(args: argparse.Namespace) -> int:
    from reference.report.gate import run_gate

    if not args.latest.is_dir():
        print(f"error: no run at {args.latest}; run 'nox -s verify' first", file=sys.stderr)
        return 2
    table, code, message = run_gate(args.latest, args.baseline)
    if table is not None:
        print(table.to_markdown(index=False, floatfmt=".3g"))
    print(message, file=sys.stderr if code == 2 else sys.stdout)
    return code


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "judge": cmd_judge,
    "verify": cmd_verify,
    "gate": cmd_gate,
    "autograd": cmd_single("autograd"),
    "finite-diff": cmd_single("finite_diff"),
    "lifecycle": cmd_single("lifecycle"),
    "curves": cmd_curves,
}

IMPL_HELP = "the implementation: a module name (pkg.module) or a file (path/to/layers.py) following the layer protocol"


def _common(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("--impl", default=DEFAULT_IMPL, help=IMPL_HELP)
    p.add_argument("--out", type=Path, default=Path(default_out), help="directory for the CSV and Markdown reports")
    p.add_argument(
        "--quick", action="store_true", help="a fixed sample of the grid that keeps every layer, value kind and family"
    )


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layers", help="judge only these layers, comma-separated (e.g. Conv2D,ReLU)")
    p.add_argument("--strict", action="store_true", help="unsupported and missing rows fail too (exit 1)")


def parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    ap = argparse.ArgumentParser(prog="python -m reference", description=__doc__, formatter_class=fmt)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("judge", formatter_class=fmt,
                       help="is my implementation right? every judge, its own reports and exit code (no baseline)")  # fmt: skip
    _common(p, "reports/judge")
    _filters(p)
    p.add_argument("--case", help="rerun one case alone, by its id (the 'case' column of the CSVs)")
    p.add_argument("--no-curves", dest="curves", action="store_false",
                   help="skip the lockstep training check (it runs when the module has SGD; needs MNIST)")  # fmt: skip
    p.add_argument(
        "--full-curves", action="store_true", help="also train lenet in float32 on full MNIST beside the twin"
    )
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="epochs of the --full-curves run")
    p.add_argument("--data-dir", help="directory holding the MNIST IDX files (else the cache, else download)")
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
    from scratch_cnn.data import DataError

    args = parser().parse_args(argv)
    try:
        if args.command != "gate":
            pin_threads()  # the one thread setting of every judge (reference/threads.py says why)
        return COMMANDS[args.command](args)
    except (ImplError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        if str(err).startswith("--"):  # a bad filter option, named
            print(f"error: {err}", file=sys.stderr)
            return 2
        raise
