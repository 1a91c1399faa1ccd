"""``python -m reference grade SUBMISSIONS --out DIR``: a class judged at once on Dask.

One task per submission (reference.grade.task), on an embedded LocalCluster (``--workers N``, one
process per core by default) or an existing cluster (``--scheduler ADDRESS``). Each finished
submission's report is written as soon as it arrives (``DIR/<id>/``, swapped into place whole, with
``grade.json`` last), so Ctrl-C keeps every finished result and the same command goes on where it
stopped: a submission whose files' SHA-256 and the judge's version match its stored result is not
judged again (``--only ID,...`` rejudges chosen ones). The client writes every file.

What it trusts: only a report the submission's own judge stamped with its task's key
(reference.grade.task); a scheduler reached over TLS only (the embedded cluster's certificates are
made for this run and never leave this process and its workers; an external ``tcp://`` scheduler
needs ``--insecure-scheduler``); its own clock for ``--submission-timeout`` (GraderClock), which a
stopped judge or Dask worker cannot stop. Where the machine offers no sandbox tier it refuses to run
submissions at all unless told ``--unsandboxed``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reference.grade.gradebook import (
    TIMEOUT_SCORES,
    gradebook_row,
    gradescope,
    junit_xml,
    parse_points,
    present_kinds,
    stored,
    write_class_reports,
)
from reference.grade.submissions import Submission, SubmissionError, discover
from reference.grade.task import judge_submission, judge_version
from reference.impl.protocol import CLASSES, REQUIRED
from reference.judging import SandboxOptions
from reference.report.publish import check_out, new_staging, swap_into_place
from reference.report.tables import write_atomic

PROGRESS_EVERY = 10.0  # seconds between progress lines
POLL_SECONDS = 0.5  # how often the grader looks at its tasks (finished ones, overdue ones)
NO_SANDBOX = ("--unsandboxed not given: this machine offers no sandbox tier for the judges' workers "
              "(no usable bubblewrap, no Landlock), and grade does not run untrusted submissions as plain "
              "processes of your user (they could read and change every file you can, other students' "
              "included). Install bubblewrap (apt-get install bubblewrap), or use a Linux kernel >= 5.13 "
              "with Landlock, or pass --unsandboxed to run them anyway (only for code you trust).")  # fmt: skip
INSECURE = ("--scheduler {address}: a scheduler without TLS runs code from any process that can reach it, "
            "in this grader (a submission's worker included: it could give itself full marks). Start the "
            "scheduler and workers with --tls-ca-file, --tls-cert and --tls-key and give the same here with "
            "a tls:// address, or pass --insecure-scheduler (only on a network no submission can reach).")  # fmt: skip


@dataclass(frozen=True)
class GradeOptions:
    """``grade``'s options as values (reference/cli.py builds them from the command line; ``add_arguments``
    defines the options of trust there)."""

    submissions: Path  # a folder: each .py file, folder or .ipynb notebook in it is one submission
    out: Path = Path("reports/grade")  # gradebook, class summary, <id>/ reports
    entry: str | None = None  # a folder submission's entry module
    adapter: str | None = None  # the course's wrapper, importing the student's code as `submission`
    workers: int | None = None  # processes of the embedded LocalCluster (default: one per core)
    scheduler: str | None = None  # an existing Dask scheduler instead
    points: str | None = None  # points per layer, e.g. Conv2D=3,MaxPool2D=2
    format: str = "default"  # gradescope: also <id>/results.json
    junit: str | None = None  # also the gradebook as JUnit XML
    only: str | None = None  # rejudge only these submissions (comma-separated ids)
    layers: str | None = None  # judge only these layers (comma-separated)
    full: bool = False  # the full case grid (default: the quick sample)
    retries: int = 2  # times Dask reruns a task whose worker was lost
    submission_timeout: float | None = None  # seconds one submission's judge may take (default: time budget + 120)
    sandbox: SandboxOptions = field(default_factory=SandboxOptions)  # each judge's tier and limits
    unsandboxed: bool = False  # judge even where no sandbox tier works (code you trust only)
    secret_seed: int | None = None
    secret_seed_file: Path | None = None
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure_scheduler: bool = False  # allow a plain tcp:// scheduler
    timeout_scores: str = "zero"  # how a TIMEOUT layer scores: zero or judged-only
    timeout_grace: float = 60.0  # seconds past --submission-timeout before the grader stops a task itself
    feedback: Path | None = None  # also DIR/<id>/feedback.html and .md to hand back
    compare: Path | None = None  # a previous grade's out: what changed since (regrade.csv)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``grade``'s options of trust (reference/cli.py's grade parser calls this); their defaults are
    GradeOptions'."""
    g = p.add_argument_group("trust", "what grade trusts, and what it refuses")
    g.add_argument("--unsandboxed", action="store_true",
                   help="judge submissions even where this machine offers no sandbox tier (bubblewrap or "
                   "Landlock): they run as plain processes of your user; only for code you trust")  # fmt: skip
    seed = g.add_mutually_exclusive_group()
    seed.add_argument("--secret-seed", type=int, default=None,
                      help="draw extra cases from this seed, which no submission can know in advance (it reaches "
                      "each judge through a pipe, never a command line; the gradebook says only that one was used)")  # fmt: skip
    seed.add_argument("--secret-seed-file", type=Path, default=None,
                      help="the same, read from a file holding one integer (so it is not in your shell's history)")  # fmt: skip
    g.add_argument(
        "--tls-ca-file", default=None, help="--scheduler tls://...: the CA certificate (as dask's CLI names it)"
    )
    g.add_argument("--tls-cert", default=None, help="--scheduler tls://...: this client's certificate")
    g.add_argument("--tls-key", default=None, help="--scheduler tls://...: this client's private key")
    g.add_argument("--insecure-scheduler", action="store_true",
                   help="allow a plain tcp:// --scheduler (any process that can reach it runs code in the grader)")  # fmt: skip
    g.add_argument("--timeout-scores", choices=TIMEOUT_SCORES, default=GradeOptions.timeout_scores,
                   help="how a layer scores whose cases were cut by a time limit and none shown wrong (TIMEOUT): "
                   "zero, or judged-only (on the cases that were judged: full points when some passed)")  # fmt: skip
    g.add_argument("--timeout-grace", type=float, default=GradeOptions.timeout_grace,
                   help="seconds past --submission-timeout after which the grader itself stops a submission's "
                   "task and restarts its Dask worker (a stopped judge or worker cannot stop this clock)")  # fmt: skip


def read_secret_seed(options: GradeOptions) -> int | None:
    """``--secret-seed N`` or the integer in ``--secret-seed-file F``; None when neither."""
    seed = options.secret_seed
    if options.secret_seed_file is not None:
        path = Path(options.secret_seed_file)
        try:
            seed = int(path.read_text().strip())
        except OSError as err:
            raise ValueError(f"--secret-seed-file {path}: cannot read it ({err.strerror or err})") from None
        except ValueError:
            raise ValueError(f"--secret-seed-file {path}: does not hold one integer") from None
    if seed is not None and seed < 0:
        raise ValueError(f"--secret-seed must be >= 0 (got {seed})")
    return seed


def check_sandbox(options: GradeOptions) -> str:
    """The sandbox tier the embedded cluster's judges get here; refuses (ValueError) where there is none,
    or ``--sandbox process`` asks for none, and the teacher did not say ``--unsandboxed``. With
    ``--scheduler`` each judge checks its own machine (``--require-sandbox``): 'per worker'."""
    from reference.sandbox.client import resolve_sandbox

    if options.sandbox.tier == "process" and not options.unsandboxed:
        raise ValueError("--sandbox process runs submissions with no sandbox, as plain processes of your user; "
                         "add --unsandboxed to say you trust them, or choose another tier")  # fmt: skip
    if options.scheduler:
        return "per worker"
    tier = resolve_sandbox(options.sandbox.tier)
    if tier == "process" and not options.unsandboxed:
        raise ValueError(NO_SANDBOX)
    return tier


def scheduler_security(options: GradeOptions) -> Any:
    """Dask's Security for the cluster: certificates made for this run for the embedded one; for
    ``--scheduler tls://``, the teacher's files; None only for ``tcp://`` with ``--insecure-scheduler``."""
    from distributed.security import Security

    if not options.scheduler:
        return Security.temporary()  # NOTE: needs the cryptography package (the reference extra has it)
    address = options.scheduler
    scheme = address.split("://", 1)[0] if "://" in address else "tcp"
    if scheme == "tls":
        files = {"--tls-ca-file": options.tls_ca_file, "--tls-cert": options.tls_cert, "--tls-key": options.tls_key}
        missing = [name for name, value in files.items() if not value]
        if missing:
            raise ValueError(f"--scheduler {address}: needs {', '.join(missing)} (the files `dask scheduler` and "
                             "`dask worker` were started with)")  # fmt: skip
        for name, value in files.items():
            if not Path(value).is_file():
                raise ValueError(f"{name} {value}: no such file")
        return Security(tls_ca_file=options.tls_ca_file, tls_client_cert=options.tls_cert, tls_client_key=options.tls_key,
                        require_encryption=True)  # fmt: skip
    if scheme == "tcp" and options.insecure_scheduler:
        return None
    if scheme != "tcp":
        raise ValueError(f"--scheduler {address}: only tls:// (or tcp:// with --insecure-scheduler) is supported")
    raise ValueError(INSECURE.format(address=address))


def judge_options(options: GradeOptions) -> list[str]:
    """The options every submission's ``reference judge`` runs with (never a secret: see task.py)."""
    opts = ["--no-curves", "--parallel", "1"]  # one core per task: the cluster spreads the class
    if not options.full:
        opts.append("--quick")
    if options.layers:
        opts += ["--layers", options.layers]
    limits = options.sandbox.limits
    opts += ["--sandbox", options.sandbox.tier, "--case-timeout", str(limits.case_seconds), "--time-budget",
             str(limits.run_seconds), "--memory-mb", str(limits.memory_mb), "--log-bytes", str(limits.log_bytes)]  # fmt: skip
    # NOTE: each judge refuses (exit 2) where its machine offers no sandbox tier, unless the teacher
    # said --unsandboxed: on a cluster, grade cannot check the workers' machines itself.
    if not options.unsandboxed:
        opts.append("--require-sandbox")
    return opts


@contextmanager
def dask_client(scheduler: str | None, workers: int, security: Any = None) -> Iterator[Any]:
    """A client of ``scheduler``, or of an embedded LocalCluster of ``workers`` single-threaded
    processes on 127.0.0.1, over ``security`` (TLS: tls:// addresses, certificates both ways)."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler, timeout="30s", security=security)
        try:
            yield client
        finally:
            client.close()
        return
    import dask

    tls = {"security": security, "protocol": "tls://"} if security is not None else {}
    # NOTE: Dask's HTTP servers (the scheduler's on :8787, each worker's) speak plain HTTP with no
    # authentication, whatever the TLS of the cluster itself: they serve no page here.
    with dask.config.set({"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               host="127.0.0.1", silence_logs=logging.ERROR, **tls)  # fmt: skip
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


JUDGED = "judged"  # out/<id>/judged/: the submission's files as its judge saw them (a notebook as its module)


def judged_copy(out: Path, sub: Submission) -> Path:
    """The entry of the teacher's copy of what was judged (``out/<id>/judged/<entry>``): the name each
    report and rerun command of the submission uses, so every case reruns from the grade's folder."""
    return out / sub.id / JUDGED / sub.entry


def write_submission(out: Path, sub: Submission, result: dict[str, Any]) -> None:
    """``out/<id>/``: the judge's report files, the files judged (``judged/``), the notebook lines dropped,
    and grade.json (the stored result), in a staging folder swapped into place: never half a
    submission's report."""
    target = out / sub.id
    staging = new_staging(target)
    try:
        from reference.grade.task import safe_path

        for name, data in result.get("files", {}).items():
            path = safe_path(staging, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        for name, data in sub.files.items():  # the files judged, as judged: every rerun command names them
            path = safe_path(staging / JUDGED, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if sub.dropped:
            write_atomic(staging / "dropped_notebook_lines.txt", "\n".join(sub.dropped) + "\n")
        if "summary.md" not in result.get("files", {}):  # no report from the judge: say why, where its report would be
            write_unjudged_report(staging, sub, str(result.get("output", "")))
        meta = {k: v for k, v in result.items() if k != "files"}
        meta.update(name=sub.name, source=sub.source, entry=sub.entry, dropped=sub.dropped,
                    files=sorted(result.get("files", {})))  # fmt: skip
        write_atomic(staging / "grade.json", json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n")
        swap_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_unjudged_report(folder: Path, sub: Submission, output: str) -> None:
    """summary.md and index.html for a submission its judge wrote no report for (it did not import, it
    ran out of time, its report was no result): why, first, and the judge's output, escaped."""
    import html

    from reference.grade.gradebook import first_line, md_escape

    why = first_line(output) or "the judge wrote no report"
    title = f"{sub.id}: not judged"
    block = "".join(f"    {line}\n" for line in output.splitlines())  # indented: no fence for the output to close
    write_atomic(folder / "summary.md", f"# {md_escape(title)}\n\n{md_escape(why)}\n\n## The judge's output\n\n{block}")
    write_atomic(folder / "index.html", f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
                 f"</title></head><body><h1>{html.escape(title)}</h1><p>{html.escape(why)}</p>"
                 f"<h2>The judge's output</h2><pre>{html.escape(output)}</pre></body></html>")  # fmt: skip


def load_stored(out: Path, sub: Submission, version: str, secret_seed: bool = False) -> dict[str, Any] | None:
    """The stored result of ``sub`` when its files, the judge and whether a secret seed was used are
    unchanged, with its report's CSVs; None (judge it again) when a CSV is not what run.json lists."""
    meta = stored(out / sub.id / "grade.json")
    if not meta or meta.get("sha256") != sub.sha256 or meta.get("judge_version") != version:
        return None
    if bool(meta.get("secret_seed", False)) != secret_seed:
        return None
    names = [n for n in meta.get("files", []) if isinstance(n, str)]
    if not names:
        return {**meta, "files": {}}
    try:
        listed = json.loads((out / sub.id / "run.json").read_bytes()).get("reports", {})
    except (OSError, ValueError, AttributeError):
        return None
    files = {}
    for name in names:
        path = out / sub.id / name
        if path.suffix != ".csv":
            continue
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        if not isinstance(listed, dict) or listed.get(name) != hashlib.sha256(data).hexdigest():
            return None  # changed since it was judged: judge it again
        files[name] = data
    return {**meta, "files": files}


class Ticker:
    """Progress: a bar on a terminal (tqdm, with the failures so far); elsewhere a line every
    PROGRESS_EVERY seconds: done/total, failing so far, ETA."""

    def __init__(self, total: int, terminal: bool | None = None) -> None:
        self.total, self.done, self.failing = total, 0, 0
        self.start = self.last = time.monotonic()
        self.bar: Any = None
        if sys.stdout.isatty() if terminal is None else terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="grade", unit="submission", file=sys.stdout)

    def tick(self, failed: bool, force: bool = False) -> None:
        self.done += 1
        self.failing += failed
        if self.bar is not None:
            self.bar.set_postfix(failing=self.failing, refresh=False)
            self.bar.update(1)
            return
        now = time.monotonic()
        if force or now - self.last >= PROGRESS_EVERY or self.done == self.total:
            self.last = now
            rate = (now - self.start) / max(self.done, 1)
            eta = rate * (self.total - self.done)
            print(f"[grade] {self.done}/{self.total} judged, {self.failing} with a failing layer so far, "
                  f"{now - self.start:.0f}s elapsed, ETA {eta:.0f}s", flush=True)  # fmt: skip

    def heartbeat(self) -> None:
        """A line when PROGRESS_EVERY seconds passed with none (the first submissions take longer than
        that: the promise of a line every few seconds holds from the start, not from the first result)."""
        now = time.monotonic()
        if self.bar is not None or now - self.last < PROGRESS_EVERY:
            return
        self.last = now
        eta = (
            f"ETA {(now - self.start) / self.done * (self.total - self.done):.0f}s"
            if self.done
            else "ETA after the first"
        )
        print(f"[grade] {self.done}/{self.total} judged, {self.failing} with a failing layer so far, "
              f"{now - self.start:.0f}s elapsed, {eta}", flush=True)  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(options: GradeOptions) -> int:
    """Grade the class: 0 when every submission was judged or reused, 2 when interrupted (every finished
    result kept: the same command goes on)."""
    graded = tuple(x.strip() for x in options.layers.split(",") if x.strip()) if options.layers else REQUIRED
    unknown_layers = [x for x in graded if x not in CLASSES]
    if unknown_layers:
        raise ValueError(f"--layers: unknown layer(s) {', '.join(unknown_layers)}; choose from {', '.join(CLASSES)}")
    points = parse_points(options.points, graded)
    graded = tuple(points)  # a course layer given points (--points BatchNorm2D=2) is graded too
    if options.workers is not None and options.workers < 1:
        raise ValueError(f"--workers must be >= 1 (got {options.workers})")
    if not options.timeout_grace >= 0:
        raise ValueError(f"--timeout-grace must be >= 0 seconds (got {options.timeout_grace:g})")
    seed = read_secret_seed(options)
    tier = check_sandbox(options)
    security = scheduler_security(options)
    check_out(options.out)
    if options.compare is not None:
        from reference.grade.regrade import check_previous

        check_previous(options.compare, options.out)
    subs, only = find_submissions(options)
    options.out.mkdir(parents=True, exist_ok=True)
    version = judge_version()
    results, todo = stored_or_todo(options.out, subs, only, version, seed is not None)
    problems = sum(1 for s in subs if s.problem)
    print(f"[grade] {len(subs)} submissions in {Path(options.submissions)}: {len(todo)} to judge, "
          f"{len(subs) - len(todo) - problems} unchanged since their stored result, {problems} that cannot be "
          f"judged (judge {version}; sandbox {tier}{'; a secret seed' if seed is not None else ''})", flush=True)  # fmt: skip
    if options.unsandboxed and tier == "process":
        print("[grade] warning: --unsandboxed: submissions run as plain processes of your user", file=sys.stderr)
    interrupted = judge_all(options, todo, results, security, seed) if todo else False
    for sub in todo:  # what an interrupt left unjudged: a row that says so, judged by the next run
        results.setdefault(sub.id, {"exit_code": None, "files": {},
                                    "output": "error: not judged yet (interrupted); run the same command again"})  # fmt: skip
    write_gradebook(options, subs, results, points, graded, version, seed is not None)
    if interrupted:
        print("[grade] interrupted: every finished submission is kept; run the same command again to go on",
              file=sys.stderr)  # fmt: skip
        return 2
    return 0


def find_submissions(options: GradeOptions) -> tuple[list[Submission], set[str] | None]:
    """(the submissions in ``options.submissions``, the ids ``--only`` names or None)."""
    folder = Path(options.submissions)
    adapter = Path(options.adapter) if options.adapter else None
    if adapter is not None and not adapter.is_file():
        raise SubmissionError(f"--adapter {adapter}: no such file")
    subs = discover(folder, options.entry, adapter)
    if not subs:
        raise SubmissionError(f"SUBMISSIONS {folder}: no submission in it (.py files, folders or notebooks)")
    only = {s.strip() for s in options.only.split(",") if s.strip()} if options.only else None
    unknown = sorted(only - {s.id for s in subs}) if only else []
    if unknown:
        raise SubmissionError(f"--only: no submission {', '.join(unknown)}")
    return subs, only


def stored_or_todo(out: Path, subs: list[Submission], only: set[str] | None, version: str,
                   secret_seed: bool) -> tuple[dict[str, dict[str, Any]], list[Submission]]:  # fmt: skip
    """({id: result} of the submissions not judged now: stored, unjudgeable or left out by ``--only``,
    the submissions to judge)."""
    results: dict[str, dict[str, Any]] = {}
    todo: list[Submission] = []
    for sub in subs:
        fresh = sub.problem or (only and sub.id in only)
        prior = None if fresh else load_stored(out, sub, version, secret_seed)
        if sub.problem:
            results[sub.id] = {"exit_code": 2, "output": f"error: {sub.problem}", "files": {}, "seconds": 0}
        elif prior is not None:
            results[sub.id] = prior
        elif only is None or sub.id in only:
            todo.append(sub)
        else:
            results[sub.id] = {"exit_code": None, "output": "error: not graded yet (run without --only)", "files": {}}
    return results, todo


def write_gradebook(options: GradeOptions, subs: list[Submission], results: dict[str, dict[str, Any]],
                    points: dict[str, float], graded: tuple[str, ...], version: str, secret_seed: bool) -> None:  # fmt: skip
    """The gradebook, the class summary, Gradescope's results.json (``--format gradescope``) and the
    JUnit XML (``--junit``), and the headline printed."""
    # NOTE: a course layer some submission has but nobody asked to grade gets a column and no points: an
    # extra Sigmoid never costs the students who did not write one a point
    points = {**points, **{k: 0.0 for k in present_kinds(results.values()) if k not in points}}
    rows = [gradebook_row(s, results[s.id], points, options.timeout_scores) for s in subs]
    judged = sum(1 for s in subs if s.id in results and results[s.id].get("exit_code") is not None)
    headline = (f"{judged} of {len(subs)} submissions judged; mean score "
                f"{sum(r['score'] for r in rows) / len(rows):.2f} of {sum(points.values()):g}; judge {version}; "
                f"{sandboxes(rows)}{'; a secret seed' if secret_seed else ''}")  # fmt: skip
    changed = regrade_table(options, subs, rows, results) if options.compare is not None else None
    from reference.grade.patterns import shared_failures, write_layer_pages

    shared = shared_failures({s.id: results.get(s.id, {}) for s in subs})
    pages = write_layer_pages(options.out, rows, results, tuple(points))
    write_class_reports(options.out, rows, headline, tuple(points), changed=changed, shared=shared, pages=pages)
    if options.feedback is not None:
        from reference.grade.feedback import write_feedback

        for sub, row in zip(subs, rows, strict=True):
            write_feedback(options.feedback, sub, row, results.get(sub.id, {}), points, options.out / sub.id)
        print(f"[grade] feedback to hand back: {options.feedback}/<id>/feedback.html and feedback.md")
    if options.format == "gradescope":
        from reference.grade.feedback import gradescope_tests, layer_feedback
        from reference.report.heatmap import load_index

        for sub, row in zip(subs, rows, strict=True):
            if (options.out / sub.id).is_dir():
                rerun = f"python -m reference judge --impl {shlex.quote(Path(sub.entry).name)}"
                files = results.get(sub.id, {}).get("files", {})
                tests = gradescope_tests(row, layer_feedback(row, files, points, load_index(options.out / sub.id)),
                                         rerun) if files.get("verdicts.csv") else None  # fmt: skip
                write_atomic(options.out / sub.id / "results.json",
                             json.dumps(gradescope(row, points, rerun, tests), indent=1) + "\n")  # fmt: skip
    if options.junit:
        suites = [(r["id"], [(layer, r[layer], r["_why"].get(layer, "")) for layer in graded]) for r in rows]
        write_atomic(Path(options.junit), junit_xml(suites))
    print(f"[grade] {headline}")
    print(
        f"[grade] gradebook: {options.out / 'gradebook.csv'}; class summary: {options.out / 'summary.md'}, index.html"
    )


def regrade_table(options: GradeOptions, subs: list[Submission], rows: list[dict[str, Any]],
                  results: dict[str, dict[str, Any]]) -> Any:  # fmt: skip
    """``--compare``: regrade.csv (whose score or verdicts changed since the previous run), printed in short."""
    from reference.grade.regrade import regrade

    assert options.compare is not None
    layers = tuple(k for k in rows[0] if k in CLASSES) if rows else ()
    table = regrade(options.compare, options.out, rows, layers)
    write_atomic(options.out / "regrade.csv", table.to_csv(index=False))
    print(f"[grade] --compare {options.compare}: {len(table)} submission(s) changed (regrade.csv)")
    for r in table.head(10).itertuples():
        print(f"[grade]   {r.id}: {r.score_before} -> {r.score_after}; {r.verdicts_changed}")
    return table


def sandboxes(rows: list[dict[str, Any]]) -> str:
    """The sandbox tiers the class was judged in, with counts: 'sandbox: bwrap 28, none 2'."""
    from collections import Counter

    counts = Counter(r.get("sandbox") or "none" for r in rows)
    return "sandbox: " + ", ".join(f"{tier} {n}" for tier, n in sorted(counts.items()))


class GraderClock:
    """The grader's own clock for ``--submission-timeout``: each task announces its start (a Dask event,
    task.announce_start) and the grader stops one that runs past the limit. The task's own timeout
    lives in the Dask worker, which a submission may have stopped (SIGSTOP): this one cannot be.

    # NOTE: ``client.processing()`` is not "running": the scheduler hands a worker several tasks at
    # once (its queue), so a task's clock starts at its own start event, never at its assignment. It
    # does say where a task is: one no longer on the worker it started on (that worker was lost, the
    # task waits to run again) is not overdue; its clock starts again at its next start.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.started: dict[str, tuple[float, str]] = {}  # key -> (monotonic start, worker address)

    def on_event(self, event: tuple[float, Any]) -> None:
        """A start event (it runs on the client's event loop: a plain dict write)."""
        msg = event[1] if isinstance(event, tuple) and len(event) == 2 else None
        if isinstance(msg, dict) and isinstance(msg.get("key"), str):
            self.started[msg["key"]] = (time.monotonic(), str(msg.get("worker", "")))

    def overdue(self, keys: Any, processing: Any) -> list[tuple[str, str, float]]:
        """(key, worker, seconds running) of every key in ``keys`` running past the limit on the worker
        it started on; ``processing()`` ({worker: keys}, Dask's) is asked only when one is late."""
        now = time.monotonic()
        late = [(key, *self.started[key]) for key in keys if key in self.started]
        late = [(key, worker, now - began) for key, began, worker in late if now - began > self.limit]
        if not late:
            return []
        where = {str(key): worker for worker, held in processing().items() for key in held}
        for key, worker, _ in late:
            if where.get(key) != worker:
                del self.started[key]  # moved, or waiting to run again: its next start restarts its clock
        return [item for item in late if where.get(item[0]) == item[1]]


def overdue_result(sub: Submission, seconds: float, limit: float, secret_seed: bool) -> dict[str, Any]:
    """The result of a submission the grader stopped: an error stored like any verdict (it would hang again)."""
    return {"id": sub.id, "sha256": sub.sha256, "exit_code": -1, "files": {}, "seconds": round(seconds, 2),
            "output": f"error: the grader stopped this submission after {seconds:.0f} s (its judge did not end within "
                      f"--submission-timeout + --timeout-grace = {limit:g} s; its Dask worker was restarted)",
            "stamp": "no report: stopped by the grader", "secret_seed": secret_seed,
            "judge_version": judge_version()}  # fmt: skip


def restart_worker(client: Any, worker: str) -> None:
    """Restart the Dask worker a stopped submission holds (its nanny kills it, stopped or not)."""
    try:
        status = client.restart_workers([worker], timeout=120, raise_for_error=False)
        problem = "" if not isinstance(status, dict) or status.get(worker, "OK") == "OK" else status[worker]
    except Exception as err:  # a worker without a nanny cannot be restarted from here
        problem = f"{type(err).__name__}: {err}"
    if problem:
        print(f"[grade] warning: could not restart worker {worker} ({problem}); restart it by hand if it "
              "stays busy", file=sys.stderr)  # fmt: skip


def judge_all(options: GradeOptions, todo: list[Submission], results: dict[str, dict[str, Any]],
              security: Any = None, secret_seed: int | None = None) -> bool:  # fmt: skip
    """Submit one task per submission and write each result as it comes; True when interrupted."""
    from reference.grade.task import START_TOPIC

    argv = judge_options(options)
    timeout = options.submission_timeout or options.sandbox.limits.run_seconds + 120
    clock = GraderClock(timeout + options.timeout_grace)
    workers = options.workers or max(1, len(os.sched_getaffinity(0)))
    ticker = Ticker(len(todo))
    with dask_client(options.scheduler, workers, security) as client:
        client.subscribe_topic(START_TOPIC, clock.on_event)
        pending: dict[str, tuple[Any, Submission]] = {}
        for sub in todo:
            key = f"judge-{sub.id}-{sub.sha256[:12]}-{time.monotonic_ns()}"
            spec = {**sub.spec(), "shown_as": str(judged_copy(options.out, sub))}
            future = client.submit(judge_submission, spec, argv, timeout, secret_seed, key=key, pure=False,
                                   retries=options.retries)  # fmt: skip
            pending[key] = (future, sub)
        try:
            while pending:
                done = [key for key, (future, _) in pending.items() if future.done()]
                for key in done:
                    future, sub = pending.pop(key)
                    record(options.out, sub, collect(future, sub, secret_seed), results, ticker)
                for key, worker, seconds in clock.overdue(list(pending), client.processing):
                    future, sub = pending.pop(key)
                    print(f"[grade] {sub.id}: stopped after {seconds:.0f} s by the grader's clock; restarting "
                          f"worker {worker}", flush=True)  # fmt: skip
                    record(options.out, sub, overdue_result(sub, seconds, clock.limit, secret_seed is not None),
                           results, ticker)  # fmt: skip
                    future.cancel()
                    restart_worker(client, worker)
                if not done:
                    ticker.heartbeat()
                    time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            for future, _ in pending.values():
                future.cancel()
            return True
        finally:
            ticker.close()
    return False


def collect(future: Any, sub: Submission, secret_seed: int | None) -> dict[str, Any]:
    """A finished task's result, or an error result when the task itself failed."""
    try:
        return future.result()
    except Exception as err:  # the task itself failed (its worker was lost past the retries, say)
        return {"id": sub.id, "sha256": sub.sha256, "exit_code": None, "files": {},
                "output": f"error: the grading task failed: {type(err).__name__}: {err}",
                "secret_seed": secret_seed is not None, "judge_version": judge_version()}  # fmt: skip


def record(out: Path, sub: Submission, result: dict[str, Any], results: dict[str, dict[str, Any]],
           ticker: Ticker) -> None:  # fmt: skip
    """Keep one submission's result: written to ``out/<id>/`` when judged, counted on the ticker."""
    if result.get("exit_code") is not None:
        write_submission(out, sub, result)
    results[sub.id] = result
    ticker.tick(result.get("exit_code") != 0 or result.get("stamp", "verified") != "verified")
