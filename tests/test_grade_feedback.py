"""What a teacher hands back and reads after grading: feedback per student that shows public cases in
full and hidden ones only as a class of diagnosis, Gradescope's visibility split, a regrade that says
whose grade moved when the judgement changed, the class's shared wrong numbers, a page per layer that
names no student, LMS CSVs, links from the class page, and reports rerunnable from the teacher's copy."""

import json
import re
import shlex
import shutil
import subprocess
import textwrap

import pandas as pd
import pytest

from reference.cli import main
from reference.grade.feedback import diagnosis_class
from reference.grade.run import Ticker
from tests.impls.hostile import DOUBLED_DW

# A student's Dense that walks the batch in chunks of 32 to save memory and forgets the last, partial
# chunk: right on every batch of the public grid (1-4 rows, 64, 128), wrong on a batch of 43 or 56.
CHUNKED_TAIL = """
import numpy as np
from scratch_cnn import ReLU  # noqa: F401


class Dense:
    def __init__(self, n_in, n_out, bias=True, *, rng, dtype=np.float64):
        self.params = {"W": (rng.standard_normal((n_in, n_out)) * 0.1).astype(dtype)}
        if bias:
            self.params["b"] = np.zeros(n_out, dtype)
        self.grads = {}

    def forward(self, x):
        self.x = x
        out = x @ self.params["W"]
        return out + self.params["b"] if "b" in self.params else out

    def backward(self, dout):
        m = self.x.shape[0]
        step = 32 if m > 32 else m
        dW = np.zeros_like(self.params["W"])
        for i in range(0, m - m % step, step):  # the tail of m % 32 rows is never added
            dW += self.x[i : i + step].T @ dout[i : i + step]
        self.grads["W"] = dW
        if "b" in self.params:
            self.grads["b"] = dout.sum(axis=0)
        return dout @ self.params["W"].T
"""
SECRET = 7  # draws Dense batches of 14, 43 and 56 rows


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The same class graded twice: first on the public cases, then with the teacher's secret seed added
    (the judgement changed), compared with the first run, with feedback and Gradescope's results."""
    root = tmp_path_factory.mktemp("feedback")
    klass = root / "class"
    klass.mkdir()
    (klass / "alice.py").write_text("from scratch_cnn import *  # noqa\n")
    (klass / "bob.py").write_text(textwrap.dedent(DOUBLED_DW))
    (klass / "bobby.py").write_text(textwrap.dedent(DOUBLED_DW) + "\n# the same code, handed in twice\n")
    (klass / "chunky.py").write_text(CHUNKED_TAIL)
    first, second, feedback = root / "first", root / "second", root / "feedback"
    common = ["grade", str(klass), "--layers", "Dense", "--workers", "2"]
    assert main([*common, "--out", str(first)]) == 0
    assert main([*common, "--out", str(second), "--secret-seed", str(SECRET), "--feedback", str(feedback),
                 "--format", "gradescope", "--compare", str(first)]) == 0  # fmt: skip
    return {"first": first, "second": second, "feedback": feedback, "klass": klass}


def secret_ids(report):
    rows = pd.concat([pd.read_csv(p) for p in report.glob("*.csv") if "family" in pd.read_csv(p, nrows=0).columns])
    return set(rows.loc[rows["family"] == "drawn from the secret seed", "case"])


def test_a_regrade_lists_whose_grade_moved_with_each_runs_judge_and_the_first_row_that_differs(graded):
    changed = pd.read_csv(graded["second"] / "regrade.csv").set_index("id")
    assert list(changed.index) == ["chunky"]  # the others' scores and verdicts did not move
    row = changed.loc["chunky"]
    assert (row["score_before"], row["score_after"]) == (1.0, 0.0) and row["verdicts_changed"] == "Dense: PASS -> FAIL"
    assert row["judge_before"] and row["judge_after"]
    assert "no such row -> fail" in row["first_difference"] and "Dense[" in row["first_difference"]
    assert "Changed since the previous run" in (graded["second"] / "summary.md").read_text()


def test_feedback_shows_public_cases_in_full_and_hidden_ones_only_as_a_diagnosis_class(graded):
    fb = graded["feedback"]
    assert sorted(p.name for p in fb.iterdir()) == ["alice", "bob", "bobby", "chunky"]
    bob_md, bob_html = (fb / "bob" / "feedback.md").read_text(), (fb / "bob" / "feedback.html").read_text()
    assert (
        "twice the gradient" in bob_md and "rerun that case: `python -m reference judge --impl bob.py --case" in bob_md
    )
    assert "data:image/png;base64," in bob_html and "<script" not in bob_html  # self-contained, inert
    chunky = (fb / "chunky" / "feedback.md").read_text() + (fb / "chunky" / "feedback.html").read_text()
    assert "hidden case(s) failed" in chunky and "0 of 1" in chunky
    hidden = secret_ids(graded["second"] / "chunky")
    assert hidden and not any(case in chunky for case in hidden)  # never a hidden case's id
    assert not re.search(r"x(14|43|56)x", chunky) and "--case" not in chunky  # nor its shape, nor a way to rerun it
    assert (
        "every graded layer" not in (fb / "alice" / "feedback.md").read_text()
        and "PASS" in (fb / "alice" / "feedback.md").read_text()
    )


def test_gradescope_shows_hidden_cases_only_after_publishing(graded):
    results = json.loads((graded["second"] / "chunky" / "results.json").read_text())
    by_name = {t["name"]: t for t in results["tests"]}
    assert by_name["Dense"]["visibility"] == "visible" and by_name["Dense"]["score"] == 0
    assert by_name["Dense: hidden cases"]["visibility"] == "after_published"
    assert not any(case in by_name["Dense"]["output"] for case in secret_ids(graded["second"] / "chunky"))


def test_the_class_page_links_reports_and_shows_shared_wrong_numbers_and_pages_per_layer(graded):
    out = graded["second"]
    page = (out / "index.html").read_text()
    assert '<a href="alice/index.html">alice</a>' in page and '<a href="chunky/index.html">chunky</a>' in page
    summary = (out / "summary.md").read_text()
    shared = summary.split("Submissions with the same wrong numbers")[1].split("\n## ")[0]
    assert "bob, bobby" in shared and "chunky" not in shared  # the copy, bit for bit; not the other bug
    layer_page = (out / "layers" / "Dense.html").read_text()
    assert "twice the gradient" in layer_page and "2 of 4" in layer_page
    assert not any(name in layer_page for name in ("alice", "bob", "chunky"))  # shown in class: no student named
    book = pd.read_csv(out / "gradebook.csv").set_index("id")
    assert "Dense: " in book.loc["chunky", "diagnoses"]
    canvas = pd.read_csv(out / "canvas.csv").set_index("SIS Login ID")
    moodle = pd.read_csv(out / "moodle.csv").set_index("username")
    assert (
        canvas.filter(like="scratch-cnn").iloc[:, 0].to_dict() == book["score"].to_dict() == moodle["grade"].to_dict()
    )


def test_a_students_report_is_titled_by_its_copy_and_its_rerun_commands_run_from_the_teachers_folder(graded, tmp_path):
    report = graded["second"] / "bob"
    summary = (report / "summary.md").read_text()
    judged = report / "judged" / "bob.py"
    assert summary.startswith(f"# Judged: {judged}") and judged.read_text() == (graded["klass"] / "bob.py").read_text()
    command = re.search(r"Rerun: `([^`]+)`", summary).group(1)
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "reference"] and argv[argv.index("--impl") + 1] == str(judged)
    assert main([*argv[3:], "--out", str(tmp_path / "rerun")]) == 1  # the failure reproduces from the copy


@pytest.mark.skipif(not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
                    reason="no Chromium on this machine")  # fmt: skip
def test_the_feedback_page_opens_in_a_headless_browser(graded):
    browser = next(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b))
    page = graded["feedback"] / "bob" / "feedback.html"
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "Feedback: bob" in done.stdout and "twice the gradient" in done.stdout


def test_a_diagnosis_class_keeps_the_words_and_drops_the_numbers():
    said = "ours = 1/m x ref (c = 0.25; m = 4) on every element: divided by the batch size twice (an extra 1/m)"
    assert diagnosis_class(said) == "ours = #/m x ref on every element: divided by the batch size twice"
    assert diagnosis_class("dx[0, 1, 0, 0] = -2 where torch gives 0") == "dx = # where torch gives #"


def test_grade_prints_a_line_before_the_first_submission_finishes(monkeypatch, capsys):
    import reference.grade.run as run

    monkeypatch.setattr(run, "PROGRESS_EVERY", 0.0)
    ticker = Ticker(3, terminal=False)
    ticker.heartbeat()
    assert "0/3 judged" in capsys.readouterr().out
