"""The mutation run: first-order mutants of scratch_cnn, each judged by the judges, not the unit tests.

Every mutant is a copy of the package under another name (``scnn_mutant``, so the installed
scratch_cnn never shadows it) with one change, judged in its own folder by the same commands a
user types, cheapest first, stopping at the first that fails (kills) it:

1. ``reference autograd --quick --strict`` on the layers the mutated file holds, then the same on
   the whole grid (what ``verify`` runs),
2. ``reference judge --judges protocol,finite_diff,lifecycle --quick --no-curves --strict`` (the
   protocol rules, finite differences with the network probes, two rounds on one instance) on the
   same layers,
3. for the optimiser, the model and the layer base class, ``reference curves --quick``: the float64
   lockstep beside the torch twin.

The judging stages run with ``--fail-fast``: a kill needs one failing case, so each judge stops at
its first and draws no heat maps (the mutant's reports are not read, only its exit code).

A mutant that passes every stage survived, unless ``equivalent.csv`` lists it (its key, a class and
a one-line reason): ``equivalent`` (no observable change) or ``outside the protocol`` (it changes
only what the protocol leaves to the implementation: what happens on invalid input, which invalid
argument raises, an error's message, the initial weights). Neither counts in the kill rate; both
are listed in the report.

Scope: the modules the judges claim (layers, losses, model, optimiser, validation, workspace). Data
loading, the CLI, image reading, the training loop's bookkeeping, saving and loading a model and
printing a layer have unit tests and no judge; the named architectures are the judges' own (their
networks are built from the judge's scratch_cnn, never the judged module's). Defaults of arguments
are choices, not computations, and are not mutated.
"""

from __future__ import annotations

import argparse
import inspect
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

import scratch_cnn
from reference.layers import KINDS
from reference.mutants.operators import Mutant, find_mutants

PACKAGE = Path(scratch_cnn.__file__).parent
MUTANT_NAME = "scnn_mutant"
EQUIVALENT = Path(__file__).with_name("equivalent.csv")
ALL_LAYERS = None  # the whole module: every layer, the network probes
# the files every layer goes through (judged whole)
SHARED_FILES = ("_validate.py", "layer.py", "model.py", "optim.py", "workspace.py")


def layer_files() -> dict[str, list[str]]:
    """scratch_cnn's file -> the layer kinds whose classes it defines (each kind's scratch_cnn class,
    found where it is written), in the kinds' order."""
    files: dict[str, list[str]] = {}
    for name in KINDS:
        file = Path(inspect.getfile(getattr(scratch_cnn, name))).relative_to(PACKAGE).as_posix()
        files.setdefault(file, []).append(name)
    return files


# file -> the layers it holds (judged with --layers), or ALL_LAYERS; by file name
# NOTE: a shared file wins over the kinds it defines (optim.py holds Adam and RMSprop, and SGD: every layer)
SCOPE: dict[str, list[str] | None] = dict(sorted({**layer_files(), **dict.fromkeys(SHARED_FILES, ALL_LAYERS)}.items()))
# saving, loading and printing a model have unit tests (tests/test_model.py); no judge claims them
NOT_JUDGED = {"Sequential.predict_proba", "Sequential.spec", "Sequential.save", "Sequential.from_spec",
              "Sequential.load", "read_npz", "atomic_savez"}  # fmt: skip
LOCKSTEP_FILES = {"optim.py", "model.py", "layer.py"}  # what training uses beyond the layers' own maths
STAGE_TIMEOUT_S = 600.0  # a stage's whole command; its cases have the judge's own --case-timeout


@dataclass
class Outcome:
    """What the judges made of one mutant."""

    status: str  # killed | survived | equivalent | timed out | judge error
    killed_by: str = ""  # the stage (and for `judge` the judges) that failed it
    seconds: float = 0.0
    detail: str = ""


def every_mutant() -> list[Mutant]:
    """Every in-scope mutant of the package, file by file in source order."""
    out = []
    for file in SCOPE:
        source = (PACKAGE / file).read_text()
        out += [
            m
            for m in find_mutants(file, source)
            if m.function not in NOT_JUDGED and m.function.rsplit(".", 1)[-1] not in ("__repr__", "config")
        ]
    return out


def sample(mutants: list[Mutant], n: int, seed: int) -> list[Mutant]:
    """``n`` mutants spread over the files: each file gets a share proportional to its mutants and at
    least min(3, its count); drawn with ``seed`` so a sample is the same run after run."""
    if n >= len(mutants):
        return mutants
    rng = random.Random(seed)
    by_file: dict[str, list[Mutant]] = {}
    for m in mutants:
        by_file.setdefault(m.file, []).append(m)
    quota = {f: min(len(ms), max(3, round(n * len(ms) / len(mutants)))) for f, ms in by_file.items()}
    while sum(quota.values()) > n:  # trim the largest shares first
        biggest = max(quota, key=lambda f: quota[f])
        quota[biggest] -= 1
    while sum(quota.values()) < n:  # rounding left some over: to the files with the most left
        roomiest = max(quota, key=lambda f: len(by_file[f]) - quota[f])
        quota[roomiest] += 1
    chosen = [m for f, ms in by_file.items() for m in rng.sample(ms, quota[f])]
    return sorted(chosen, key=lambda m: (list(SCOPE).index(m.file), m.line, m.col))


CLASSES = ("equivalent", "outside the protocol")


def load_equivalent(path: Path = EQUIVALENT) -> dict[str, tuple[str, str]]:
    """{mutant key: (class, reason)} from the committed list."""
    if not path.is_file():
        return {}
    table = pd.read_csv(path, dtype=str).fillna("")
    bad = table[table["reason"].str.strip() == ""]
    if len(bad):
        raise ValueError(f"{path}: every equivalent mutant needs a reason; missing for {', '.join(bad['key'])}")
    wrong = table[~table["class"].isin(CLASSES)]
    if len(wrong):
        raise ValueError(f"{path}: class must be one of {', '.join(CLASSES)}; got {', '.join(set(wrong['class']))}")
    return {k: (c, r) for k, c, r in zip(table["key"], table["class"], table["reason"], strict=True)}


def stages(layers: list[str] | None, out: Path, case_timeout: float, lockstep: bool) -> list[tuple[str, list[str]]]:
    """(stage name, command) in order, cheapest first."""
    py, common = [sys.executable, "-m", "reference"], ["--impl", MUTANT_NAME, "--parallel", "1",
                                                       "--case-timeout", str(case_timeout)]  # fmt: skip
    # a kill needs one failing case: each judge stops at its first (--fail-fast), and draws no pictures
    only = ["--layers", ",".join(layers), "--fail-fast"] if layers else ["--fail-fast"]
    rest = ["--judges", "protocol,finite_diff,lifecycle,optimizer", "--no-curves"]
    return [
        ("autograd", [*py, "autograd", *common, "--quick", "--strict", *only, "--out", str(out / "autograd")]),
        ("autograd, full grid", [*py, "autograd", *common, "--strict", *only, "--out", str(out / "autograd-full")]),
        ("judge", [*py, "judge", *common, "--quick", "--strict", *rest, *only, "--out", str(out / "judge")]),
        *([("lockstep", [*py, "curves", *common, "--quick", "--out", str(out / "lockstep")])] if lockstep else []),
    ]


def failing_judges(folder: Path) -> str:
    """Which judges' CSVs hold a fail or error row (for the `judge` stage's kill)."""
    names = []
    for csv in sorted(folder.glob("*.csv")):
        try:
            table = pd.read_csv(csv)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            continue
        if "status" in table and table["status"].isin(["fail", "error"]).any():
            names.append(csv.stem)
    return ",".join(names)


def judge_package(package: Path, layers: list[str] | None, case_timeout: float, lockstep: bool) -> Outcome:
    """Run the stages on ``package`` (a folder holding ``scnn_mutant/``); the first failing one kills."""
    start = time.perf_counter()
    out = package / "reports"
    for name, command in stages(layers, out, case_timeout, lockstep):
        try:
            done = subprocess.run(command, cwd=package, capture_output=True, text=True, timeout=STAGE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return Outcome("timed out", name, time.perf_counter() - start, f"{name} ran past {STAGE_TIMEOUT_S:.0f} s")
        if done.returncode == 1:
            by = name if name != "judge" else f"judge ({failing_judges(out / 'judge') or 'summary'})"
            return Outcome("killed", by, time.perf_counter() - start, _last_lines(done.stdout))
        if done.returncode == 2 and "the judge itself failed" not in done.stderr:  # it does not import, say
            return Outcome("killed", f"{name} (exit 2)", time.perf_counter() - start, _last_lines(done.stderr))
        if done.returncode != 0:  # the judge crashed: a defect of the judge, never a kill
            return Outcome("judge error", name, time.perf_counter() - start, _last_lines(done.stderr or done.stdout))
    return Outcome("survived", "", time.perf_counter() - start)


def _last_lines(text: str, n: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-n:])


def mutant_folder(mutant: Mutant | None) -> Path:
    """A temporary folder with the package copied as ``scnn_mutant`` and ``mutant`` applied."""
    root = Path(tempfile.mkdtemp(prefix="scnn-mutant-"))
    shutil.copytree(PACKAGE, root / MUTANT_NAME, ignore=shutil.ignore_patterns("__pycache__"))
    if mutant is not None:
        target = root / MUTANT_NAME / mutant.file
        target.write_text(mutant.apply(target.read_text()))
    return root


def judge_mutant(mutant: Mutant | None, case_timeout: float) -> Outcome:
    folder = mutant_folder(mutant)
    try:
        layers = SCOPE[mutant.file] if mutant else ALL_LAYERS
        return judge_package(folder, layers, case_timeout, lockstep=mutant is None or mutant.file in LOCKSTEP_FILES)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_mutants(mutants: list[Mutant], workers: int, case_timeout: float,
                progress: Any = print) -> list[tuple[Mutant, Outcome]]:  # fmt: skip
    """Judge every mutant, ``workers`` at once; progress lines as each finishes."""
    done: list[tuple[Mutant, Outcome]] = []
    lock, start = threading.Lock(), time.perf_counter()

    def one(m: Mutant) -> None:
        outcome = judge_mutant(m, case_timeout)
        with lock:
            done.append((m, outcome))
            eta = (time.perf_counter() - start) / len(done) * (len(mutants) - len(done))
            progress(f"[{len(done)}/{len(mutants)}] {outcome.status:<9} {m.file}:{m.line} {m.operator}: "
                     f"{m.before!r} -> {m.after!r}" + (f" ({outcome.killed_by})" if outcome.killed_by else "")
                     + f"  {outcome.seconds:.0f} s; ETA {eta / 60:.0f} min")  # fmt: skip

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, mutants))
    order = {m.key: i for i, m in enumerate(mutants)}
    return sorted(done, key=lambda mo: order[mo[0].key])


def table(results: list[tuple[Mutant, Outcome]], equivalent: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """One row per mutant; a survivor listed in equivalent.csv takes its class there, with its reason."""
    rows = []
    for m, o in results:
        listed = o.status == "survived" and m.key in equivalent
        status = equivalent[m.key][0] if listed else o.status
        sources = (PACKAGE / m.file).read_text()
        rows.append({"id": m.id, "file": m.file, "function": m.function, "line": m.line, "operator": m.operator,
                     "before": m.before, "after": m.after, "status": status, "killed_by": o.killed_by,
                     "seconds": round(o.seconds, 1), "reason": equivalent[m.key][1] if listed else "",
                     "detail": o.detail, "key": m.key, "diff": m.diff(sources)})  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    """The mutation run from the command line: choose the mutants, check the unmutated code passes every
    stage, judge them, write the reports; exit 0 when none survived, 1 when some did, 2 on a usage error."""
    from reference.mutants.report import write_reports

    args = _parser().parse_args(argv)
    if args.sample < 1 or args.workers < 1:
        print("error: --sample and --workers must be >= 1", file=sys.stderr)
        return 2
    mutants = _chosen_mutants(args)
    if mutants is None:
        return 2
    if args.list:
        for m in mutants:
            print(f"{m.id}  {m.key}")
        return 0
    try:
        equivalent = load_equivalent()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    print(f"mutation run: {len(mutants)} mutants of {PACKAGE.name} over {len({m.file for m in mutants})} files, "
          f"{args.workers} at once; first the unmutated code must pass every stage")  # fmt: skip
    clean = judge_mutant(None, args.case_timeout)
    if clean.status != "survived":
        print(f"error: the unmutated code does not pass the stage {clean.killed_by!r} ({clean.detail}); "
              "a mutant killed there would prove nothing", file=sys.stderr)  # fmt: skip
        return 2
    results = run_mutants(mutants, args.workers, args.case_timeout)
    rows = table(results, equivalent)
    seconds = time.perf_counter() - start
    write_reports(rows, args.out, seconds=seconds, workers=args.workers, equivalent=equivalent,
                  sampled=not (args.all or args.only), seed=args.seed)  # fmt: skip
    return _print_outcome(rows, seconds, args.out)


def _parser() -> argparse.ArgumentParser:
    """The command line of ``python -m reference mutants``."""
    ap = argparse.ArgumentParser(prog="python -m reference mutants", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--sample", type=int, default=200, help="mutants judged, spread over the files (default 200)")
    ap.add_argument("--all", action="store_true", help="every in-scope mutant (about 500; over an hour on 2 cores)")
    ap.add_argument("--seed", type=int, default=2026, help="the sample's seed (default 2026)")
    ap.add_argument("--only", help="judge only these mutant ids (comma-separated; the id column of mutants.csv)")
    ap.add_argument("--files", help="only mutants of these files (comma-separated, e.g. pooling.py,conv.py)")
    ap.add_argument("--workers", type=int, default=2, help="mutants judged at once (default 2)")
    ap.add_argument("--case-timeout", type=float, default=30.0, help="seconds per judge case (default 30)")
    ap.add_argument("--out", type=Path, default=Path("reports/latest/mutants"), help="the report folder")
    ap.add_argument("--list", action="store_true", help="print the chosen mutants' ids and keys, judge nothing")
    return ap


def _chosen_mutants(args: argparse.Namespace) -> list[Mutant] | None:
    """The mutants the arguments choose (--files, then --only, else a sample unless --all); None, the
    error printed, where --files or --only names something unknown."""
    mutants = every_mutant()
    if args.files:
        wanted = {f.strip() for f in args.files.split(",")}
        unknown = wanted - set(SCOPE)
        if unknown:
            print(f"error: --files: {', '.join(sorted(unknown))} not in scope ({', '.join(SCOPE)})", file=sys.stderr)
            return None
        mutants = [m for m in mutants if m.file in wanted]
    if args.only:
        ids = {i.strip() for i in args.only.split(",") if i.strip()}
        unknown = ids - {m.id for m in mutants}
        if unknown:
            print(f"error: --only: no mutant {', '.join(sorted(unknown))}", file=sys.stderr)
            return None
        mutants = [m for m in mutants if m.id in ids]
    elif not args.all:
        mutants = sample(mutants, args.sample, args.seed)
    return mutants


def _print_outcome(rows: pd.DataFrame, seconds: float, out: Path) -> int:
    """The run's counts and every survivor (or mutant that broke the judge) on stdout; the exit code."""
    live = rows[rows["status"].isin(["survived", "judge error"])]
    print(f"{(rows['status'] == 'killed').sum()} killed, {(rows['status'] == 'timed out').sum()} timed out, "
          f"{(rows['status'] == 'equivalent').sum()} equivalent, {(rows['status'] == 'outside the protocol').sum()} "
          f"outside the protocol, {len(live)} survived or broke the judge, "
          f"in {seconds / 60:.1f} min; reports in {out}/ (summary.md first)")  # fmt: skip
    for r in live.itertuples():
        print(f"  {r.status}: {r.id} {r.file}:{r.line} {r.function} {r.operator}: {r.before!r} -> {r.after!r}")
    return 1 if len(live) else 0


if __name__ == "__main__":
    raise SystemExit(main())
