"""The sandbox holds in every tier this machine offers (bubblewrap, Landlock alone, none): hostile
submissions (tests/impls/hostile_tiers.py) against the judge's sources, site-packages, the baseline,
another student's files, the report, the judge's process and the network. For each: the exit code,
the verdict, the world unchanged, no process of the run left, and the report the judge's own."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy
import numpy as np
import pandas as pd
import pytest

import reference
from reference.cases.grid import grid
from reference.cli import main
from reference.report.publish import verify_stamp
from reference.sandbox import tiers
from reference.sandbox.reaper import Sweep
from tests.impls import hostile_tiers as H

REPO = Path(__file__).resolve().parents[1]
DENSE = next(c.id for c in grid() if c.layer == "Dense" and not c.lifecycle and c.config["bias"])
SANDBOXED = [t for t in ("bwrap", "landlock") if (tiers.bwrap_works() if t == "bwrap" else tiers.landlock_works())]
TIERS = [*SANDBOXED, "process"]


def digest(*roots: Path) -> dict[str, str]:
    """SHA-256 of every file under ``roots`` (caches aside): what must not change."""
    out = {}
    for root in roots:
        files = (
            [root]
            if root.is_file()
            else sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        )
        out.update({str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files})
    return out


PROTECTED = (Path(reference.__file__).parent, REPO / "reports" / "baseline", Path(numpy.__file__))


class World:
    """What a submission must leave alone, and the processes it must not leave behind."""

    def __init__(self, tmp_path: Path) -> None:
        self.other = tmp_path / "class" / "bob" / "layers.py"
        self.other.parent.mkdir(parents=True)
        self.other.write_text("# bob's layers\n")
        self.site = sorted(os.listdir(Path(numpy.__file__).parents[1]))
        self.before = digest(*PROTECTED, self.other)
        self.sweep = Sweep()

    def assert_unchanged(self) -> None:
        assert digest(*PROTECTED, self.other) == self.before
        assert sorted(os.listdir(Path(numpy.__file__).parents[1])) == self.site
        assert not self.sweep.strays(), "a process of the run outlived it"


def judge(tmp_path: Path, source: str, *options: str, name: str = "layers.py") -> tuple[int, Path]:
    sub = tmp_path / "class" / "alice"
    sub.mkdir(parents=True, exist_ok=True)
    (sub / name).write_text(textwrap.dedent(source))
    out = tmp_path / "out"
    return main(["judge", "--impl", str(sub / name), "--out", str(out), "--no-curves", *options]), out


def verdict(out: Path, layer: str = "Dense") -> str:
    return pd.read_csv(out / "verdicts.csv").set_index("layer").loc[layer, "verdict"]


def stamped(out: Path) -> dict:
    """run.json, after checking that every report file is the one the judge hashed into it."""
    run = json.loads((out / "run.json").read_text())
    files = {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()
    }
    assert {k: v for k, v in files.items() if k != "run.json"} == run["reports"]
    return run


class Listener:
    """A TCP server on 127.0.0.1 that counts who connects (a grader's scheduler, say)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port, self.accepted, self.stop = self.sock.getsockname()[1], 0, False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()
            except OSError:
                continue

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.sock.close()


@pytest.mark.parametrize("tier", TIERS)
def test_every_probe_is_held_in_a_sandboxed_tier_and_the_process_tier_says_it_holds_nothing(tmp_path, tier, capsys):
    world, listener = World(tmp_path), Listener()
    out = tmp_path / "out"
    targets = {"baseline": str(REPO / "reports" / "baseline" / "baseline.json"), "other": str(world.other),
               "out_parent": str(tmp_path), "judge_pid": os.getpid(), "port": listener.port}  # fmt: skip
    try:
        code, out = judge(
            tmp_path, H.PROBES.format(targets=targets) + H.WRONG_DENSE, "--case", DENSE, "--sandbox", tier
        )
    finally:
        listener.close()
    log = "\n".join(p.read_text() for p in (out / "worker-logs").glob("*.log"))
    breaches = sorted({line[len("BREACH ") :] for line in log.splitlines() if line.startswith("BREACH ")})
    held = {line[len("HELD ") :] for line in log.splitlines() if line.startswith("HELD ")}
    assert len(held) + len(breaches) >= 12, log[:2000]  # every probe ran and reported
    run = stamped(out)
    assert run["sandbox"] == tier
    if tier == "process":  # no sandbox: the judge says so first, the report too, and the probes show why
        assert "no sandbox here" in capsys.readouterr().err.splitlines()[0]
        assert "no sandbox here" in (out / "summary.md").read_text()
        assert breaches  # as root without capabilities or as a user: the files of that uid are open to it
        return
    assert breaches == [], f"{tier}: {breaches}"
    assert code == 1 and verdict(out) == "FAIL"
    assert listener.accepted == 0
    world.assert_unchanged()


@pytest.mark.parametrize("tier", TIERS)
def test_a_double_forked_daemon_with_a_fresh_environment_is_killed_before_the_report_is_written(tmp_path, tier):
    world = World(tmp_path)
    out = tmp_path / "out"
    code, out = judge(tmp_path, H.DAEMON.format(out=str(out)) + H.WRONG_DENSE, "--case", DENSE, "--sandbox", tier)
    written = digest(out)
    time.sleep(2.5)  # the daemon would rewrite the report a second after the judge exits
    assert code == 1 and verdict(out) == "FAIL" and digest(out) == written
    assert stamped(out)["exit_code"] == 1
    world.assert_unchanged()


@pytest.mark.parametrize("tier", TIERS)
def test_a_forged_report_and_a_file_in_the_way_of_the_swap_never_survive(tmp_path, tier):
    out = tmp_path / "out"
    (tmp_path / ".out.old").write_text("planted before the run")
    code, out = judge(tmp_path, H.BLOCKED_SWAP.format(out=str(out)) + H.WRONG_DENSE, "--case", DENSE, "--sandbox", tier)
    assert code == 1 and verdict(out) == "FAIL" and "forged" not in (out / "verdicts.csv").read_text()
    assert stamped(out)["exit_code"] == 1


@pytest.mark.parametrize("tier", SANDBOXED)
def test_forked_workers_reach_neither_their_server_nor_each_other_and_draw_their_own_random_numbers(tmp_path, tier):
    world = World(tmp_path)
    code, out = judge(tmp_path, H.SIBLINGS + H.WRONG_DENSE, "--case", DENSE, "--sandbox", tier)
    run = stamped(out)
    assert run["sandbox_detail"]["workers"].startswith("forked from a server"), run["sandbox_detail"]
    log = "\n".join(p.read_text() for p in (out / "worker-logs").glob("*.log"))
    lines = log.splitlines()
    draws = [line for line in lines if line.startswith("DRAW ")]
    assert len(draws) >= 2 and len(set(draws)) == len(draws), draws  # siblings, each with its own random state
    assert [line for line in lines if line.startswith("BREACH ")] == [], log[:2000]
    assert sum(line.startswith("HELD ") for line in lines) == 5 * len(draws)
    assert code == 1 and verdict(out) == "FAIL"
    world.assert_unchanged()


@pytest.mark.parametrize("switch", ["process tier", "switched off"])
def test_workers_are_fresh_interpreters_in_the_process_tier_and_when_switched_off(tmp_path, monkeypatch, switch):
    if switch == "switched off":
        monkeypatch.setenv(tiers.FORKSERVER_OFF_ENV, "1")
    tier = "process" if switch == "process tier" or not SANDBOXED else SANDBOXED[0]
    code, out = judge(tmp_path, H.WRONG_DENSE, "--case", DENSE, "--sandbox", tier)
    workers = stamped(out)["sandbox_detail"]["workers"]
    assert workers.startswith("fresh interpreters: ") and (tiers.FORKSERVER_OFF_ENV in workers) == (
        switch != "process tier"
    )
    assert code == 1 and verdict(out) == "FAIL"


def test_a_signed_report_verifies_and_any_change_to_it_is_no_result(tmp_path):
    key = os.urandom(32)
    r, w = os.pipe()
    os.write(w, json.dumps({"stamp_key": key.hex(), "secret_seed": None}).encode())
    os.close(w)
    code, out = judge(tmp_path, H.WRONG_DENSE, "--case", DENSE, "--secrets-fd", str(r))
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    run, why = verify_stamp(files, key, code)
    assert code == 1 and why == "" and run["exit_code"] == 1
    assert verify_stamp(files, os.urandom(32), code)[1]  # another key
    assert verify_stamp(files, key, 0)[1]  # another exit code
    forged = {**files, "verdicts.csv": b"layer,verdict,why\nDense,PASS,forged\n"}
    assert "differs" in verify_stamp(forged, key, code)[1]
    assert "extra" in verify_stamp({**files, "extra.csv": b""}, key, code)[1]


def peak_rss_kb(pid: int) -> int:
    """The high-water mark of a running process's resident memory (VmHWM), 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")), 0)


def test_a_frame_that_announces_half_a_gigabyte_and_sends_nothing_costs_the_judge_nothing(tmp_path):
    sub = tmp_path / "layers.py"
    sub.write_text(textwrap.dedent(H.FRAME_BOMB))
    proc = subprocess.Popen([sys.executable, "-m", "reference", "judge", "--impl", str(sub), "--case", DENSE,
                             "--no-curves", "--case-timeout", "5", "--out", str(tmp_path / "out")], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    peak = 0
    while proc.poll() is None:  # the judge's own peak (its workers are other processes)
        peak = max(peak, peak_rss_kb(proc.pid))
        time.sleep(0.02)
    assert proc.returncode == 1
    assert 0 < peak < 700_000, (
        f"the judge's peak RSS: {peak} kB"
    )  # the judge with torch: ~0.4 GB; + 0.5 GB if allocated
    rows = pd.read_csv(tmp_path / "out" / "autograd.csv")  # the body never comes: the case's time limit ends it
    assert (
        rows["note"].str.contains(r"exceeded the time limit of [\d.]+ s per call \(--case-timeout 5 s", na=False).any()
    )


def test_a_worker_lost_on_its_second_call_is_an_error_row_not_a_crashed_judge(tmp_path):
    code, out = judge(tmp_path, H.LOST_ON_SECOND_CALL, "--layers", "Dense", "--quick")
    assert code == 1 and verdict(out) in ("FAIL", "ERROR")
    protocol = pd.read_csv(out / "protocol.csv")
    assert (protocol["status"] == "error").any() and stamped(out)["exit_code"] == 1


def test_arrays_of_odd_dtypes_are_failing_rows_in_every_judge_not_a_crash(tmp_path):
    code, out = judge(tmp_path, H.ODD_DTYPES, "--layers", "Dense", "--quick")
    assert code == 1 and verdict(out) == "FAIL"
    assert stamped(out)["exit_code"] == 1


def test_the_log_keeps_what_the_module_printed_though_a_child_holds_the_pipe_open(tmp_path):
    world = World(tmp_path)
    code, out = judge(tmp_path, H.HOLDS_THE_LOG_PIPE, "--case", DENSE)
    logs = "".join(p.read_text() for p in (out / "worker-logs").glob("*.log"))
    assert code == 0 and "HELLO FROM THE MODULE" in logs
    world.assert_unchanged()


@pytest.mark.parametrize("source", [H.RIGHT_ONLY_WHEN_MARKED, H.WRONG_ON_LARGE_BATCHES], ids=["marker", "batch > 32"])
def test_code_that_behaves_only_when_it_thinks_it_is_judged_fails(tmp_path, source):
    code, out = judge(tmp_path, source, "--layers", "Dense", "--quick", "--judges", "autograd")
    assert code == 1 and verdict(out) == "FAIL"


def test_code_tuned_to_the_public_grid_passes_it_and_fails_the_teachers_secret_cases(tmp_path):
    code, out = judge(tmp_path, H.TUNED_TO_THE_PUBLIC_GRID, "--layers", "Dense", "--quick", "--judges", "autograd")
    assert code == 0 and verdict(out) == "PASS"  # the public grid alone can be learned
    (tmp_path / "seed").write_text("20261203\n")
    code, out = judge(tmp_path, H.TUNED_TO_THE_PUBLIC_GRID, "--layers", "Dense", "--quick", "--judges", "autograd",
                      "--secret-seed-file", str(tmp_path / "seed"))  # fmt: skip
    rows = pd.read_csv(out / "autograd.csv")
    assert code == 1 and verdict(out) == "FAIL"
    assert set(rows[rows["status"] == "fail"]["family"]) == {"drawn from the secret seed"}
    assert stamped(out)["secret_cases"] == 3 and "20261203" not in (out / "run.json").read_text()


def test_a_judge_asked_to_require_a_sandbox_refuses_where_there_is_none(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("reference.judging.resolve_sandbox", lambda choice: "process")
    code, out = judge(tmp_path, H.WRONG_DENSE, "--case", DENSE, "--require-sandbox")
    assert code == 2 and "--require-sandbox" in capsys.readouterr().err and not out.exists()


def test_a_judge_whose_own_workers_cannot_start_says_so_and_how_to_fix_it_never_blaming_the_code(
    tmp_path, monkeypatch, capsys
):
    bare = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    if (
        not bare.is_file()
        or subprocess.run([str(bare), "-I", "-c", "import reference"], capture_output=True).returncode == 0
    ):
        pytest.skip("no interpreter here that lacks the judges")
    (
        tiers.resolve_sandbox("auto"),
        tiers.worker_identity(),
    )  # probed with the right interpreter; the workers get the bare one
    monkeypatch.setattr(sys, "executable", str(bare))
    code, out = judge(tmp_path, "from scratch_cnn import *  # noqa\n", "--case", DENSE)
    err = capsys.readouterr().err
    assert code == 2 and "the judges' own worker process could not start" in err and "pip install -e" in err
    assert "cannot import implementation" not in err and not out.exists()


def _unprivileged_judge(tmp_path: Path, source: str, tier: str) -> tuple[int, Path, str]:
    """Run the judge as root in a private mount namespace where /root can be passed through (it is
    0700 on machines whose interpreter lives under it), so the workers run under an unprivileged uid."""
    if os.geteuid() != 0 or not Path("/usr/bin/unshare").exists():
        pytest.skip("needs root and unshare(1)")
    sub = Path(tempfile.mkdtemp(prefix="scratch-cnn-uid-test-"))
    try:
        sub.chmod(0o755)
        (sub / "layers.py").write_text(textwrap.dedent(source))
        (sub / "layers.py").chmod(0o644)
        out = tmp_path / "out"
        script = (f"set -e; hidden=$(mktemp -d); mount --bind /root $hidden; mount -t tmpfs -o mode=0755 tmpfs /root; "
                  f"for d in $(ls -A $hidden); do [ -d $hidden/$d ] && mkdir /root/$d && mount --bind $hidden/$d /root/$d; done; "
                  f"cd {REPO}; exec {sys.executable} -m reference judge --impl {sub}/layers.py --case '{DENSE}' --no-curves "
                  f"--sandbox {tier} --out {out}")  # fmt: skip
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        return done.returncode, out, done.stdout + done.stderr
    finally:
        shutil.rmtree(sub, ignore_errors=True)


def test_under_an_unprivileged_uid_the_process_limits_bind_and_what_it_leaves_is_removed(tmp_path):
    before = set(os.listdir("/tmp")) | set(os.listdir("/dev/shm"))
    code, out, printed = _unprivileged_judge(
        tmp_path, H.FORK_BOMB_AND_LEFTOVERS + H.WRONG_DENSE.replace("* 2", "* 1"), "process"
    )
    assert code == 0, printed
    run = stamped(out)
    uid = int(run["sandbox_detail"]["identity"].split()[-1])
    assert run["sandbox_detail"]["rlimits"]["nproc"] == 64
    logs = "".join(p.read_text() for p in (out / "worker-logs").glob("*.log"))
    assert 0 < int(logs.split("FORKED ")[1].split()[0]) < 64  # RLIMIT_NPROC stopped the bomb
    left = (set(os.listdir("/tmp")) | set(os.listdir("/dev/shm"))) - before
    assert not [n for n in left if n.startswith("zz-leftover")], left
    assert not [p for p in Path("/proc").glob("[0-9]*/status") if f"\nUid:\t{uid}\t" in _read(p)]


@pytest.mark.parametrize("tier", SANDBOXED)
def test_the_probes_are_held_under_an_unprivileged_uid_too(tmp_path, tier):
    other = tmp_path / "bob.py"
    other.write_text("# bob\n")
    targets = {"baseline": str(REPO / "reports" / "baseline" / "baseline.json"), "other": str(other),
               "out_parent": str(tmp_path), "judge_pid": 1, "port": 9}  # fmt: skip
    code, out, printed = _unprivileged_judge(tmp_path, H.PROBES.format(targets=targets) + H.WRONG_DENSE, tier)
    logs = "".join(p.read_text() for p in (out / "worker-logs").glob("*.log"))
    assert code == 1 and "BREACH" not in logs and logs.count("HELD ") >= 12, printed + logs
    assert stamped(out)["sandbox_detail"]["identity"].startswith("uid ")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_what_a_killed_judge_left_is_removed_by_the_next_run(tmp_path):
    base = Path(tempfile.gettempdir()) / f"scratch-cnn-runs-{os.geteuid()}"
    base.mkdir(mode=0o711, exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = base / f"{dead.pid}-abcdef012345" / "w-left"
    stale.mkdir(parents=True)
    (stale / "big.bin").write_bytes(b"x" * 1000)
    code, _ = judge(tmp_path, "from scratch_cnn import *  # noqa\n", "--case", DENSE)
    assert code == 0 and not stale.parent.exists()
    assert not [p for p in base.iterdir() if p.name.startswith(f"{os.getpid()}-")]  # and this run's own are gone


@pytest.mark.skipif(not SANDBOXED or tiers.forking_problem(tiers.confinement(SANDBOXED[0], tiers.worker_identity(), [], 0)) != "",
                    reason="no tier here forks its workers")  # fmt: skip
def test_a_lost_worker_server_costs_the_workers_it_held_and_the_next_ones_start_fresh():
    from reference.sandbox.client import WorkerLost, open_session
    from reference.sandbox.target import find_target

    session = open_session(find_target("scratch_cnn"), ["ReLU", "Dense"], sandbox=SANDBOXED[0])
    try:
        with session.case("ReLU"):
            relu = session.impl.ReLU()
            assert np.array_equal(relu.forward(np.array([-1.0, 2.0])), [0.0, 2.0])
        assert session.describe()["workers"].startswith("forked")
        session.server.proc.kill()  # the server and, with it, every worker it forked
        session.server.proc.wait(timeout=10)
        with session.case("ReLU"), pytest.raises(WorkerLost, match="killed by signal SIGKILL"):
            relu.forward(np.array([1.0]))
        with session.case("Dense"):  # a fresh interpreter takes the next scope
            dense = session.impl.Dense(2, 1, bias=False, rng=np.random.default_rng(0), dtype=np.float64)
            assert dense.forward(np.ones((1, 2))).shape == (1, 1)
        assert session.describe()["workers"].startswith("fresh interpreters: the worker server was lost")
    finally:
        session.close()
