"""The judge never trusts the code it judges. Each module here is what a real person might submit: a
correct scratch_cnn layer with one hostile or careless twist. For each we assert the exit code, the
row that names what happened, that the report is this run's, and that nothing outside changed."""

import hashlib
import json
import os
import shutil
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from reference.cases.grid import grid
from reference.cli import main
from reference.sandbox import tiers
from reference.sandbox.reaper import Sweep
from reference.sandbox.target import find_target
from tests.impls.hostile import DOUBLED_DW

DENSE = next(c.id for c in grid() if c.layer == "Dense" and not c.lifecycle and c.config["bias"])
RELU = next(c.id for c in grid() if c.layer == "ReLU" and not c.lifecycle)
SANDBOXES = ["process", *(["landlock"] if tiers.landlock_works() else []), *(["bwrap"] if tiers.bwrap_works() else [])]
REPO = Path(__file__).resolve().parents[1]

CORRECT = "from scratch_cnn import *  # noqa\n"


def judge(tmp_path, source, *options, case=DENSE, name="layers.py", siblings=None):
    """(exit code, out dir, rows of every judge, stdout) for ``source`` judged on one case."""
    sub = tmp_path / "submission"
    sub.mkdir(exist_ok=True)
    (sub / name).write_text(textwrap.dedent(source))
    for sibling, text in (siblings or {}).items():
        (sub / sibling).write_text(text)
    out = tmp_path / "out"
    code = main(["judge", "--impl", str(sub / name), "--case", case, "--out", str(out), *options])
    return code, out, rows_of(out)


def rows_of(out):
    frames = [pd.read_csv(out / f"{j}.csv") for j in ("protocol", "autograd", "finite_diff", "lifecycle")
              if (out / f"{j}.csv").is_file()]  # fmt: skip
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def notes(rows):
    return " | ".join(rows["note"].dropna().astype(str))


def tree_digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".pytest_cache" not in p.parts}  # fmt: skip


def assert_this_runs_report(out, code):
    run = json.loads((out / "run.json").read_text())
    assert run["exit_code"] == code and run["impl_sha256"] and run["run_id"]
    assert run["run_id"] in (out / "summary.md").read_text()
    assert set(run["reports"]) | {"run.json"} == {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}


def no_strays(sweep):
    """No process born during the run (a worker or anything it started) is left."""
    assert not sweep.strays(), "a process of the run outlived it"


# --- the verdict cannot be bent ---------------------------------------------------------------------


def test_a_correct_module_passes_through_the_boundary(tmp_path):
    code, out, rows = judge(tmp_path, CORRECT)
    assert code == 0 and set(rows["status"]) == {"pass"} and len(rows) > 5
    assert_this_runs_report(out, code)


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_wrong_dense_that_patches_the_judges_comparison_still_fails(tmp_path, sandbox):
    patch = DOUBLED_DW + textwrap.dedent("""
        import sys
        try:
            import reference.core.compare as c
            orig = c.compare
            def always_pass(*a, **k):
                row = orig(*a, **k)
                row["status"] = "pass"
                return row
            c.compare = always_pass
            c.compare.__code__ = always_pass.__code__
            for m in list(sys.modules.values()):
                if getattr(m, "compare", None) is orig:
                    m.compare = always_pass
        except Exception:
            pass
        """)
    code, out, rows = judge(tmp_path, patch, "--sandbox", sandbox)
    assert code == 1
    assert (rows[rows["tensor"] == "dW"]["status"] == "fail").any()
    assert json.loads((out / "run.json").read_text())["sandbox"] == sandbox


def test_a_layer_that_walks_the_callers_frames_for_the_twins_answer_finds_none(tmp_path):
    source = DOUBLED_DW + textwrap.dedent("""
        import sys
        class Dense(Dense):
            def backward(self, dout):
                dx = super().backward(dout)
                f = sys._getframe(1)
                while f is not None:  # in-process this found the judge's 'ref' dict of torch's tensors
                    ref = f.f_locals.get("ref")
                    if isinstance(ref, dict) and "dW" in ref:
                        self.grads["W"] = ref["dW"]
                        return ref["dx"]
                    f = f.f_back
                return dx
        """)
    code, _, rows = judge(tmp_path, source)
    assert code == 1 and (rows[rows["tensor"] == "dW"]["status"] == "fail").any()


@pytest.mark.parametrize("twist, expect", [
    ("os._exit(0)", "ended its process with status 0 during Dense.backward"),
    ("raise SystemExit(0)", "SystemExit"),
    ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    ("sys.exit(3)", "SystemExit: 3"),
    ("os.kill(os.getpid(), signal.SIGSEGV)", "killed by signal SIGSEGV during Dense.backward"),
    ("print('PASS: reports in reports/judge/ (summary.md first)', flush=True); os._exit(0)", "status 0"),
])  # fmt: skip
def test_a_backward_that_ends_or_interrupts_its_process_is_an_error_row_and_exit_1(tmp_path, capsys, twist, expect):
    source = f"""
        import os, signal, sys
        from scratch_cnn import *  # noqa
        from scratch_cnn import Dense as _Dense
        class Dense(_Dense):
            def backward(self, dout):
                {twist}
        """
    sweep = Sweep()
    code, out, rows = judge(tmp_path, source)
    printed = capsys.readouterr().out
    assert code == 1, printed
    assert expect in notes(rows[rows["status"] == "error"])
    assert "FAIL" in (out / "summary.md").read_text() and "PASS: reports in reports/judge" not in printed
    assert_this_runs_report(out, code)
    no_strays(sweep)


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_worker_lost_in_some_cases_is_replaced_and_every_other_case_is_judged(tmp_path, sandbox):
    source = """
        import os
        from scratch_cnn import *  # noqa
        from scratch_cnn import ReLU as _ReLU
        class ReLU(_ReLU):
            def forward(self, x):
                if x.ndim == 3:  # a crash on one input rank only
                    os._exit(0)
                return super().forward(x)
        """
    sub = tmp_path / "submission"
    sub.mkdir()
    (sub / "layers.py").write_text(textwrap.dedent(source))
    out = tmp_path / "out"
    code = main(["judge", "--impl", str(sub / "layers.py"), "--layers", "ReLU", "--quick", "--no-curves",
                 "--sandbox", sandbox, "--out", str(out)])  # fmt: skip
    rows = rows_of(out)
    rank = rows["case"].str.extract(r"\] ((?:x\d+)+)")[0].str.count("x")
    errors = rows[rows["status"] == "error"]
    assert code == 1 and len(errors) and (rank[errors.index] == 3).all(), errors[["case", "note"]]
    assert errors["note"].str.contains("ended its process with status 0").all()
    for judge in ("autograd", "finite_diff", "lifecycle"):  # fresh workers took every other case, in every judge
        assert (rows[(rows["judge"] == judge) & (rank != 3)]["status"] == "pass").all()


def test_an_infinite_loop_costs_one_time_limit_and_the_layers_other_cases_are_not_run(tmp_path):
    source = """
        from scratch_cnn import *  # noqa
        from scratch_cnn import ReLU as _ReLU
        class ReLU(_ReLU):
            def forward(self, x):
                while True:
                    pass
        """
    start = time.monotonic()
    sub = tmp_path / "submission"
    sub.mkdir()
    (sub / "layers.py").write_text(textwrap.dedent(source))
    out = tmp_path / "out"
    code = main(["judge", "--impl", str(sub / "layers.py"), "--layers", "ReLU", "--quick", "--no-curves",
                 "--case-timeout", "2", "--out", str(out)])  # fmt: skip
    elapsed = time.monotonic() - start
    rows = rows_of(out)
    assert code == 1
    skipped = rows["note"].str.startswith("not run: an earlier case of ReLU timed out", na=False)
    timed_out = (
        rows["note"].str.contains(r"exceeded the time limit of [\d.]+ s per call \(--case-timeout 2 s", na=False)
        & ~skipped
    )
    assert timed_out.sum() == 1, notes(rows)
    assert skipped.sum() > 10
    assert elapsed < 30, f"an infinite loop cost {elapsed:.0f} s"  # one limit, not one per case
    assert "ReLU" in pd.read_csv(out / "incidents.csv")["scope"].tolist()


def test_an_allocation_over_the_memory_limit_is_an_error_row(tmp_path):
    source = """
        import numpy as np
        from scratch_cnn import *  # noqa
        from scratch_cnn import Dense as _Dense
        class Dense(_Dense):
            def forward(self, x):
                self.scratch = np.ones((1 << 31,))  # 16 GB
                return super().forward(x)
        """
    code, _, rows = judge(tmp_path, source, "--memory-mb", "1024")
    assert code == 1 and "MemoryError" in notes(rows[rows["status"] == "error"])


# --- state, files and output stay in the worker --------------------------------------------------


def test_numpy_error_modes_set_in_one_layer_do_not_reach_another(tmp_path):
    source = """
        import numpy as np
        from scratch_cnn import *  # noqa
        from scratch_cnn import ReLU as _ReLU
        class ReLU(_ReLU):
            def forward(self, x):
                np.seterr(all="raise")
                return super().forward(x)
        """
    sub = tmp_path / "submission"
    sub.mkdir()
    (sub / "layers.py").write_text(textwrap.dedent(source))
    out = tmp_path / "out"
    code = main(["judge", "--impl", str(sub / "layers.py"), "--layers", "ReLU,SoftmaxCrossEntropy", "--quick",
                 "--no-curves", "--out", str(out)])  # fmt: skip
    rows = rows_of(out)
    assert code == 0, rows[rows.status != "pass"].head()
    assert (rows[rows["layer"] == "SoftmaxCrossEntropy"]["status"] == "pass").all()


def test_torch_grad_mode_turned_off_in_a_layer_leaves_the_judges_twin_alone(tmp_path):
    source = """
        import torch
        from scratch_cnn import *  # noqa
        from scratch_cnn import Dense as _Dense
        class Dense(_Dense):
            def forward(self, x):
                torch.set_grad_enabled(False)
                return super().forward(x)
        """
    code, _, rows = judge(tmp_path, source)
    assert code == 0 and set(rows["status"]) == {"pass"}


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_chdir_planted_reports_and_deleted_files_never_reach_the_report(tmp_path, sandbox):
    victim = tmp_path / "baseline"
    victim.mkdir()
    (victim / "baseline.json").write_text("{}")
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.md").write_text("# PASS (a previous submission's report)")
    source = DOUBLED_DW + textwrap.dedent(f"""
        import os, shutil, pathlib
        for p in pathlib.Path({str(victim)!r}).glob("*"):
            try:
                p.unlink()
            except OSError:
                pass
        try:
            for p in pathlib.Path({str(out)!r}).iterdir():
                p.unlink()
            pathlib.Path({str(out)!r}, "verdicts.csv").write_text("layer,verdict\\nDense,PASS\\n")
        except OSError:
            pass
        for p in pathlib.Path({str(tmp_path)!r}).glob(".out-*"):  # the judge's staging directory, if it can find one
            try:
                (p / "summary.md").write_text("PASS")
            except OSError:
                pass
        os.chdir("/tmp")
        """)
    before = tree_digest(REPO / "reports" / "baseline")
    code, out, rows = judge(tmp_path, source, "--sandbox", sandbox)
    assert code == 1 and "FAIL" in (out / "summary.md").read_text()
    verdicts = pd.read_csv(out / "verdicts.csv")
    assert verdicts.set_index("layer").loc["Dense", "verdict"] == "FAIL"
    assert_this_runs_report(out, code)
    assert tree_digest(REPO / "reports" / "baseline") == before
    if sandbox == "bwrap":  # the file system is read-only but for the worker's own directory
        assert (victim / "baseline.json").is_file()


def test_output_printed_by_the_module_is_capped_in_a_log_and_never_mixed_into_the_judges(tmp_path, capsys):
    source = CORRECT + "import sys\nsys.stdout.write('x' * (100 << 20))\nprint('ALL LAYERS PASS', file=sys.stderr)\n"
    code, out, rows = judge(tmp_path, source, "--log-bytes", "100000")
    printed = capsys.readouterr()
    assert code == 0 and len(printed.out) < 20000 and "ALL LAYERS PASS" not in printed.out + printed.err
    logs = list((out / "worker-logs").glob("*.log"))
    assert logs and all(p.stat().st_size < 101000 for p in logs)
    assert "more bytes of output cut" in logs[0].read_text()


@pytest.mark.parametrize("sibling", ["tabulate.py", "fractions.py", "numpy.py", "json.py"])
def test_a_file_beside_the_module_named_like_a_library_shadows_nothing(tmp_path, sibling):
    code, _, rows = judge(tmp_path, CORRECT, siblings={sibling: "raise RuntimeError('shadowed!')\n"})
    assert code == 0 and set(rows["status"]) == {"pass"}


def test_processes_and_threads_left_running_and_garbage_on_the_judges_pipe(tmp_path):
    source = """
        import os, threading, time
        from scratch_cnn import *  # noqa
        from scratch_cnn import Dense as _Dense
        class Dense(_Dense):
            def forward(self, x):
                if os.fork() == 0:  # a child that detaches and lives on
                    os.setsid()
                    time.sleep(600)
                    os._exit(0)
                threading.Thread(target=time.sleep, args=(600,), daemon=False).start()
                for fd in range(3, 64):  # whatever the judge's pipe is, garbage goes into it
                    try:
                        os.write(fd, b"PASS" * 16)
                    except OSError:
                        pass
                return super().forward(x)
        """
    sweep = Sweep()
    code, out, rows = judge(tmp_path, source, "--sandbox", "process")
    assert code == 1
    assert "malformed" in notes(rows) or "out of turn" in notes(rows) or "ended" in notes(rows)
    assert_this_runs_report(out, code)
    no_strays(sweep)


def test_misbehaving_atexit_and_del_hooks_cannot_stall_the_judge_or_write_a_report(tmp_path):
    out = tmp_path / "out"
    source = CORRECT + textwrap.dedent(f"""
        import atexit, time, pathlib
        def planted():
            pathlib.Path({str(out)!r}).mkdir(exist_ok=True)
            pathlib.Path({str(out)!r}, "summary.md").write_text("PASS")
            time.sleep(600)
        atexit.register(planted)
        class Sticky:
            def __del__(self):
                time.sleep(600)
        STICKY = Sticky()
        """)
    start = time.monotonic()
    code, out, _ = judge(tmp_path, source)
    assert code == 0 and time.monotonic() - start < 60
    assert "PASS" in (out / "summary.md").read_text() and "run" in (out / "summary.md").read_text()
    assert_this_runs_report(out, code)


@pytest.mark.parametrize("returned", [
    "[[0.0] * 1] * len(x)",  # a list: judged like an array
    "np.array([[object()]] * len(x), dtype=object)",  # cannot cross: an error row
    "'not an array'",
    "np.ones(x.shape[0]).view(np.complex64)",
])  # fmt: skip
def test_arrays_of_the_wrong_kind_are_rows_not_crashes(tmp_path, returned):
    source = f"""
        import numpy as np
        from scratch_cnn import *  # noqa
        from scratch_cnn import Dense as _Dense
        class Dense(_Dense):
            def forward(self, x):
                super().forward(x)
                return {returned}
        """
    code, out, rows = judge(tmp_path, source)
    assert code == 1 and set(rows["status"]) & {"fail", "error"}
    assert_this_runs_report(out, code)


# --- the judge's own exit codes -------------------------------------------------------------------


@pytest.mark.parametrize("source, expect", [
    ("raise ImportError('no module named cupy')", "ImportError: no module named cupy"),
    ("import sys\nsys.exit(0)", "SystemExit: 0"),
    ("import os\nos._exit(0)", "ended its process with status 0 during import"),
    ("x = 1", "defines none of the protocol"),
])  # fmt: skip
def test_a_module_that_does_not_import_is_exit_2_with_its_reason(tmp_path, capsys, source, expect):
    code, out, _ = judge(tmp_path, source)
    assert code == 2 and expect in capsys.readouterr().err
    assert not out.exists()


def test_an_out_that_names_a_file_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "report.txt").write_text("mine")
    code = main(["judge", "--impl", "scratch_cnn", "--out", str(tmp_path / "report.txt")])
    assert code == 2 and "not a directory" in capsys.readouterr().err
    assert (tmp_path / "report.txt").read_text() == "mine"


def test_the_judge_process_never_imports_the_judged_module(tmp_path):
    sub = tmp_path / "pkg_under_judgement"
    sub.mkdir()
    (sub / "__init__.py").write_text("raise SystemExit('imported in the judge!')\n")
    target = find_target(str(sub / "__init__.py"))
    assert target.kind == "file" and target.digest()["sha256"]
    os.chdir(tmp_path)
    try:
        module_target = find_target("pkg_under_judgement")  # located without running its __init__
    finally:
        os.chdir(REPO)
    assert module_target.files == [sub / "__init__.py"]


@pytest.fixture(autouse=True)
def _cleanup_cwd():
    yield
    os.chdir(REPO)
    shutil.rmtree(REPO / "reports" / "judge-test", ignore_errors=True)


def test_a_module_that_hangs_at_import_costs_the_startup_limit_and_says_so(tmp_path):
    from reference.sandbox.client import ImportFailed, Limits, open_session

    (tmp_path / "hangs.py").write_text("while True:\n    pass\n")
    start = time.monotonic()
    with pytest.raises(ImportFailed, match="did not finish importing within 2 s"):
        open_session(
            find_target(str(tmp_path / "hangs.py")), ["Dense"], limits=Limits(startup_seconds=2), sandbox="process"
        )
    assert time.monotonic() - start < 15
