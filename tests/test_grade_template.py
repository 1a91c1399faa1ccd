"""A judge forked from the grading task's template (reference.grade.template) is the judge a fresh
process would be: the same verdicts, the report stamped with the task's key (which only the child
read), a hang cut at the task's time limit with nothing of it left running, and a fresh process
where the template cannot serve. A class of one on one layer, so each takes seconds."""

import pandas as pd
import pytest

from reference.grade import task, template
from reference.grade.submissions import load_submission
from reference.sandbox.reaper import Sweep

DENSE = ["--no-curves", "--parallel", "1", "--quick", "--layers", "Dense"]
REEXPORT = "from scratch_cnn import *  # noqa\n"


def judged(tmp_path, name, source, timeout=300, options=DENSE):
    path = tmp_path / name
    path.write_text(source)
    keep = tmp_path / f"{name}.report"
    real = task.read_report

    def read(out):  # the report as the task read it, kept for the test
        files, why = real(out)
        keep.mkdir(exist_ok=True)
        for rel, data in files.items():
            (keep / rel).parent.mkdir(parents=True, exist_ok=True)
            (keep / rel).write_bytes(data)
        return files, why

    mp = pytest.MonkeyPatch()
    mp.setattr(task, "read_report", read)
    try:
        return task.judge_submission(load_submission(path).spec(), options, timeout), keep
    finally:
        mp.undo()


def forks(monkeypatch):
    """Count the judgements the template serves."""
    served = []
    real = template.Template.judge

    def judge(self, *args):
        served.append(args)
        return real(self, *args)

    monkeypatch.setattr(template.Template, "judge", judge)
    return served


def verdicts(report):
    return pd.read_csv(report / "verdicts.csv").drop(
        columns=["run_id", "impl_sha256"], errors="ignore"
    )  # the run and the file name


def test_a_judge_forked_from_the_template_is_a_fresh_judge(tmp_path, monkeypatch):
    served = forks(monkeypatch)
    forked, forked_report = judged(tmp_path, "alice.py", REEXPORT)
    assert len(served) == 1, "the template did not serve the judgement"
    monkeypatch.setenv("SCRATCH_CNN_NO_TEMPLATE", "1")
    fresh, fresh_report = judged(tmp_path, "bob.py", REEXPORT)
    assert len(served) == 1  # bob: a fresh process
    for result in (forked, fresh):
        assert result["stamp"] == "verified" and result["exit_code"] == 0, result["output"]
    pd.testing.assert_frame_equal(verdicts(forked_report), verdicts(fresh_report))


def test_a_wrong_gradient_fails_in_a_forked_judge_as_in_a_fresh_one(tmp_path, monkeypatch):
    wrong = REEXPORT + (
        "class Dense(Dense):\n"
        "    def backward(self, dout):\n"
        "        dx = super().backward(dout)\n"
        "        self.grads['W'] *= 2\n"
        "        return dx\n"
    )
    served = forks(monkeypatch)
    forked, report = judged(tmp_path, "mallory.py", wrong)
    assert len(served) == 1
    assert forked["exit_code"] == 1 and forked["stamp"] == "verified"
    assert verdicts(report).set_index("layer").loc["Dense", "verdict"] == "FAIL"


def test_a_hanging_judge_is_killed_at_the_tasks_limit_with_everything_it_started(tmp_path, monkeypatch):
    served = forks(monkeypatch)
    assert template.template() is not None  # started before the sweep: the test's own process
    sweep = Sweep()
    result, _ = judged(tmp_path, "sleeper.py", "import time\ntime.sleep(600)\n" + REEXPORT, timeout=8)
    assert len(served) == 1
    assert result["exit_code"] == -1 and "did not finish within 8 s" in result["output"]
    assert result["stamp"] != "verified" and not result["files"]
    assert not sweep.strays(), "a process of the killed judge outlived it"
    held = template.template()
    assert held is not None and held.proc.poll() is None  # the template itself serves the next one


def test_where_the_template_cannot_start_a_fresh_judge_runs(tmp_path, monkeypatch):
    def refuse():
        raise template.TemplateLost("no template here")

    monkeypatch.setattr(template, "Template", refuse)
    monkeypatch.setattr(template, "_local", type(template._local)())
    result, _ = judged(tmp_path, "carol.py", REEXPORT)
    assert result["stamp"] == "verified" and result["exit_code"] == 0


def test_an_unsandboxed_judge_is_never_forked_from_the_template(tmp_path, monkeypatch):
    # what an unsandboxed submission can reach, it could leave for every judge forked after it
    served = forks(monkeypatch)
    result, _ = judged(tmp_path, "dave.py", REEXPORT, options=[*DENSE, "--sandbox", "process"])
    assert result["stamp"] == "verified" and result["exit_code"] == 0 and result["sandbox"] == "process"
    assert not served
