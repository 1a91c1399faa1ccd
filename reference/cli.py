"""`python -m reference {autograd, finite-diff, curves, verify, gate}`: the judges from the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reference.impl.protocol import DEFAULT_IMPL, ImplError, load_impl
from reference.report.tables import failed, verdict_lines, write_table

DEFAULT_EPOCHS = 3  # the float32 lenet curves: the pair trains in about 7 minutes on 2 cores (under 10)


def progress_bar(desc: str) -> Callable[[int, int], None]:
    """A tqdm bar driven by (done, total) callbacks; silent when stderr is not a terminal."""
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=desc, disable=not sys.stderr.isatty(), leave=False)
        bar["bar"].update(done - bar["bar"].n)
        if done >= total:
            bar["bar"].close()

    return update


def _common(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("--impl", default=DEFAULT_IMPL, help="module that follows the layer protocol (default %(default)s)")
    p.add_argument(
        "--out", type=Path, default=Path(default_out), help="directory for the CSV and Markdown (default %(default)s)"
    )
    p.add_argument("--quick", action="store_true", help="a reduced run (a sample of the grid; lockstep only)")


def cmd_autograd(args: argparse.Namespace) -> int:
    from reference.cases.grid import grid, sample
    from reference.judges.autograd import run_autograd

    impl = load_impl(args.impl)
    cases = sample(grid(), 0.25) if args.quick else grid()
    df = run_autograd(impl, cases, progress=progress_bar("autograd judge"))
    csv_path, md_path = write_table(df, args.out, "autograd", f"Autograd judge: {args.impl} vs PyTorch")
    return report(df, csv_path, md_path)


def cmd_finite_diff(args: argparse.Namespace) -> int:
    from reference.cases.grid import grid, sample
    from reference.judges.finite_diff import gradcheck_cases, gradcheck_crosscheck, run_finite_diff

    impl = load_impl(args.impl)
    cases = sample(grid(), 0.25) if args.quick else grid()
    df = run_finite_diff(impl, cases, progress=progress_bar("finite-difference judge"))
    cross = gradcheck_crosscheck(impl, gradcheck_cases(cases), df)
    csv_path, md_path = write_table(df, args.out, "finite_diff", f"Finite-difference judge: {args.impl}",
                                    extra={"gradcheck": ("gradcheck cross-check (torch.autograd.gradcheck beside ours)", cross)})  # fmt: skip
    code = report(df, csv_path, md_path)
    bad = cross[cross["status"] != "pass"]
    print(f"gradcheck cross-check: {len(cross) - len(bad)} of {len(cross)} cases agree as expected")
    return code or (1 if len(bad) else 0)


def cmd_curves(args: argparse.Namespace) -> int:
    from reference.judges.curves import curve_judge
    from scratch_cnn.data import DataError, load_mnist

    impl = load_impl(args.impl)
    if args.epochs < 1 or args.steps < 1:
        print("error: --epochs and --steps must be >= 1", file=sys.stderr)
        return 2
    try:
        data = load_mnist(args.data_dir)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    bars: dict[str, Callable[[int, int], None]] = {}

    def progress(desc: str, done: int, total: int) -> None:
        bars.setdefault(desc, progress_bar(desc))(done, total)

    args.out.mkdir(parents=True, exist_ok=True)
    result = curve_judge(
        impl, data, args.out, epochs=args.epochs, steps=args.steps, quick=args.quick, progress=progress
    )
    for _, row in result["checks"].iterrows():
        print(f"{row['status'].upper():4} {row['check']}: {row['value']:.6g} (bound {row['bound']}) {row['note']}")
    print(
        f"wrote {args.out / 'curves.md'}, lockstep.csv, curve_checks.csv"
        + (", curves.csv" if not args.quick else "")
        + " and plots"
    )
    return 0 if result["ok"] else 1


def report(df: Any, csv_path: Path, md_path: Path) -> int:
    for line in verdict_lines(df):
        print(line)
    bad = failed(df)
    print(f"{len(df) - len(bad)} of {len(df)} rows pass; wrote {csv_path} and {md_path}")
    return 1 if len(bad) else 0


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
    "verify": cmd_verify,
    "gate": cmd_gate,
    "autograd": cmd_autograd,
    "finite-diff": cmd_finite_diff,
    "curves": cmd_curves,
}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m reference", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    _common(sub.add_parser("autograd", help="every layer against its PyTorch twin"), "reports/latest")
    _common(
        sub.add_parser("finite-diff", help="every gradient against central differences (float64)"), "reports/latest"
    )
    p = sub.add_parser("curves", help="training beside the twin: lockstep (float64) and MNIST curves (float32)")
    _common(p, "reports/latest")
    p.add_argument(
        "--epochs", type=int, default=DEFAULT_EPOCHS, help="epochs of the float32 lenet run (default %(default)s)"
    )
    p.add_argument("--steps", type=int, default=200, help="lockstep steps (default %(default)s)")
    p.add_argument("--data-dir", help="directory holding the MNIST IDX files (else the cache, else download)")
    p = sub.add_parser("verify", help="the whole proof: every judge, the fault catalogue, the reports, the gate")
    p.add_argument("--impl", default=DEFAULT_IMPL, help="module that follows the layer protocol (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="a sample of the grid, lockstep only, a few thousand images")
    p.add_argument(
        "--epochs", type=int, default=DEFAULT_EPOCHS, help="epochs of the float32 lenet run (default %(default)s)"
    )
    p.add_argument("--update-baseline", action="store_true", help="accept this run's figures as reports/baseline")
    p.add_argument("--reports", type=Path, default=Path("reports"), help="reports directory (default %(default)s)")
    p.add_argument("--data-dir", help="directory holding the MNIST IDX files (else the cache, else download)")
    p = sub.add_parser(
        "gate", help="compare a run's reports with the baseline (exit 0 pass, 1 regression, 2 no baseline)"
    )
    p.add_argument("--latest", type=Path, default=Path("reports/latest"))
    p.add_argument("--baseline", type=Path, default=Path("reports/baseline"))
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ImplError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
