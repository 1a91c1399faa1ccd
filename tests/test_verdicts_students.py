"""Verdicts you can stake a grade on, on the files students write: nothing judged never reads as a
pass; a diagnosis checks its premise on the implementation's own numbers; a network or training
failure is laid at the layer whose own judgement fails; a broken protocol rule says what satisfies
it; and every rerun command the judge prints reruns its case alone (a grid, a lifecycle, a searched
and a network case, and training), failing for the buggy file and passing for scratch_cnn.

Each judge run is limited (--quick, --layers, --judges, --case) to keep this file short."""

import re
import shlex
import textwrap

import numpy as np
import pandas as pd

from reference.cases.grid import grid
from reference.cli import main
from reference.judges.reach import searchable
from reference.report.console import rerun_command

BATCH_MAX = "tests.impls.verdicts_batch_max_softmax"
OVER_K = "tests.impls.verdicts_loss_over_k"
EVERY_TIE = "tests.impls.verdicts_maxpool_every_tie"
SQUARE = "tests.impls.verdicts_square_only"
FAULTS = "tests.impls.several_faults"
CASE_JUDGES = ("autograd", "finite_diff", "lifecycle")


def judged(out, *judges):
    """The rows a run wrote, of the case judges (or those named)."""
    files = [out / f"{j}.csv" for j in (judges or CASE_JUDGES) if (out / f"{j}.csv").is_file()]
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def failing_lines(out):
    """summary.md's 'Failing layers' list: {layer: its line}."""
    text = (out / "summary.md").read_text().split("## Failing layers", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^- \*\*([^*]+)\*\*: (.*)$", text, flags=re.M))


# --- diagnoses that check their premise on the implementation's own numbers --------------------------


def test_a_softmax_shifted_by_the_batch_maximum_is_named_nan_in_ours_and_never_a_clip_an_underflow_or_an_overflow(
    tmp_path,
):
    out = tmp_path / "r"
    assert main(["judge", "--impl", BATCH_MAX, "--quick", "--no-curves", "--layers", "SoftmaxCrossEntropy",
                 "--judges", "autograd,lifecycle", "--out", str(out)]) == 1  # fmt: skip
    rows = judged(out)
    nan = rows[rows["note"].eq("non-finite value in ours")]
    assert len(nan) >= 4
    for said in nan["diagnosis"]:  # the false causes the issue saw, premises taken from torch's softmax
        assert "clip" not in said and "exp overflows" not in said and "label's probability is 0" not in said, said
        assert "state kept" not in said, said
    probs = nan[(nan["judge"] == "autograd") & (nan["tensor"] == "probs") & (nan["dtype"] == "float32")].iloc[0]
    assert probs["case"] == "SoftmaxCrossEntropy[] x8x10 large s5"
    said = probs["diagnosis"]
    assert said.startswith("probs is non-finite where the reference is finite: NaN at 40 of 80 elements, "
                           "first probs[1, 0] = nan"), said  # fmt: skip
    assert "row 1's logits span [-941, 762], label 6, its maximum 202 below the batch's maximum 964" in said
    assert "exactly the entries a softmax shifted by the whole batch's maximum makes 0/0" in said
    loss = nan[(nan["judge"] == "autograd") & (nan["tensor"] == "loss") & (nan["case"] == probs["case"])
               & (nan["dtype"] == "float32")].iloc[0]  # fmt: skip
    assert "loss is non-finite where the reference is finite" in loss["diagnosis"]
    assert "it first appears in its own probs: probs[1, 0] = nan" in loss["diagnosis"]
    # where its probabilities are finite and the NaN is the sum's 0 * log 0, that is what is said
    single = nan[(nan["tensor"] == "loss") & (nan["case"] == "SoftmaxCrossEntropy[] x1x10 large s2")]
    assert len(single) == 2 and single["diagnosis"].str.contains("0 \\* log\\(0\\) = 0 \\* -inf = NaN").all()
    # round 2 against a fresh instance that is NaN itself: no state claimed
    life = rows[(rows["judge"] == "lifecycle") & rows["status"].eq("fail")]
    assert len(life) and life["diagnosis"].str.startswith("a fresh instance's").all(), life["diagnosis"].tolist()
    assert not life["note"].str.contains("state kept").any()


def test_a_loss_divided_by_the_number_of_classes_is_named_ours_ref_x_m_over_k(tmp_path):
    out = tmp_path / "r"
    assert main(["judge", "--impl", OVER_K, "--quick", "--no-curves", "--layers", "SoftmaxCrossEntropy",
                 "--judges", "autograd", "--out", str(out)]) == 1  # fmt: skip
    bad = judged(out, "autograd")
    bad = bad[bad["status"] == "fail"]
    assert set(bad["tensor"]) == {"loss", "dlogits"}
    assert bad["diagnosis"].str.startswith("ours = ref x m / K (c = ").all(), bad["diagnosis"].tolist()
    assert not bad["diagnosis"].str.contains("clamp").any()  # the 'a clamp / different function'
    eight = bad[bad["case"].str.contains("x8x10")]["diagnosis"]
    assert eight.str.contains("c = 0.8; m = 8, K = 10").all()
    assert "ours = ref x m / K" in failing_lines(out)["SoftmaxCrossEntropy"]


# --- blame where the bug is ----------------------------------------------------------------------


def mnist_like(n, seed):
    """MNIST's look where it matters here: black backgrounds (exact zeros, so pooling windows tie) and a
    bright 8x8 block somewhere. The labels are random: the loss stays near log(10) over a short run.

    # NOTE: with labels a network learns in a few steps (which quarter is bright) the loss falls towards
    # 0, where the lockstep's relative bound on it no longer measures rounding: scratch_cnn itself broke
    # it at step 5 on such data."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = np.zeros((n, 28, 28, 1), np.uint8)
    for i in range(n):
        r, c = rng.integers(2, 18, 2)
        images[i, r : r + 8, c : c + 8] = rng.integers(100, 255, (8, 8, 1))
    return images, labels


DATA = {"train": mnist_like(1400, 0), "test": mnist_like(100, 1)}


def test_a_max_pool_that_routes_ties_to_every_maximum_takes_the_blame_for_the_training_failure(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("reference.pipeline.mnist_loader", lambda _dir: lambda: DATA)
    out = tmp_path / "r"
    assert main(["judge", "--impl", EVERY_TIE, "--quick", "--judges", "protocol,autograd", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    verdicts = pd.read_csv(out / "verdicts.csv").set_index("layer")["verdict"]
    assert verdicts["MaxPool2D"] == "FAIL" and verdicts["Conv2D"] == "PASS"  # the pool, and only the pool
    checks = pd.read_csv(out / "curve_checks.csv")
    assert checks["status"].eq("fail").any()  # the lockstep broke: seen first at a Conv2D's parameter
    lines = failing_lines(out)
    assert set(lines) == {"MaxPool2D", "training"} and "Conv2D" not in lines, lines
    assert lines["training"].startswith("attributed to MaxPool2D (layer 3 of seed), the first layer at or after "
                                        "layer 2 whose own judgement fails (autograd, MaxPool2D["), lines["training"]  # fmt: skip
    assert "every tied maximum" in lines["training"]
    # its rerun command is printed, and reruns training (scratch_cnn's lockstep: tests/test_curves.py)
    command = f"python -m reference curves --impl {EVERY_TIE} --quick"
    assert f"rerun: {command}" in printed and f"Rerun: `{command}`" in lines["training"]
    assert main([*shlex.split(command)[3:], "--out", str(tmp_path / "again")]) == 1


# --- nothing judged is never a pass ----------------------------------------------------------------


def test_a_network_nothing_of_which_was_judged_is_unsupported_with_why_never_a_pass(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["judge", "--impl", SQUARE, "--case", "seed network, 3 images 28x28", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    why = "network not judged: NotImplementedError: one square image at a time (m == 1, H == W)"
    assert f"  seed: UNSUPPORTED ({why}" in printed and "seed: PASS" not in printed, printed
    verdict = pd.read_csv(out / "verdicts.csv").set_index("layer").loc["seed"]
    assert verdict["verdict"] == "UNSUPPORTED" and verdict["why"].startswith(why)
    assert "none of 3 other networks ran either" in verdict["why"]  # what was tried beside it, said
    assert "| seed    | UNSUPPORTED |" in (out / "summary.md").read_text()


# --- a broken protocol rule says what would satisfy it ----------------------------------------------


def test_a_correct_loss_that_scores_label_minus_one_is_told_to_raise_value_error(tmp_path):
    path = tmp_path / "log_softmax_loss.py"
    path.write_text(textwrap.dedent('''
        import numpy as np


        class SoftmaxCrossEntropy:
            """Right in every number: log-softmax, the batch mean. It never looks at the labels, and
            numpy reads labels[i] = -1 as the last class."""

            params, grads = {}, {}

            def forward(self, logits, labels):
                z = logits - logits.max(axis=1, keepdims=True)
                logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
                self.p, self.y = np.exp(logp), labels
                return -logp[np.arange(len(labels)), labels].mean(), self.p

            def backward(self):
                d = self.p.copy()
                d[np.arange(len(self.y)), self.y] -= 1
                return d / len(self.y)
    '''))  # fmt: skip
    out = tmp_path / "r"
    assert main(["judge", "--impl", str(path), "--quick", "--no-curves", "--layers", "SoftmaxCrossEntropy",
                 "--judges", "protocol", "--out", str(out)]) == 1  # fmt: skip
    rules = pd.read_csv(out / "protocol.csv").set_index("case")
    assert (rules["status"] == "fail").sum() == 1
    note = rules.loc["labels outside [0, K) refused", "note"]
    assert note.startswith("label -1 of K=5 classes was scored") and "raise ValueError" in note, note
    assert "raise ValueError for any outside [0, K)" in failing_lines(out)["SoftmaxCrossEntropy"]


# --- every printed rerun command reruns its case ------------------------------------------------------


def kind_of(case: str, searched: set[str]) -> str:
    if case.startswith("shrunk: "):  # a failing case made smaller (reference.judges.shrink): not one of these kinds
        return "shrunk"
    if " network, " in case:
        return "network"
    return "searched" if case in searched else "lifecycle" if " then " in case else "grid"


def test_every_kind_of_printed_rerun_reruns_its_case_alone_failing_for_the_bug_and_passing_for_scratch_cnn(
    tmp_path, capsys
):
    assert main(["judge", "--impl", FAULTS, "--quick", "--no-curves", "--layers", "Conv2D,ReLU",
                 "--judges", "autograd,lifecycle", "--out", str(tmp_path / "faults")]) == 1  # fmt: skip
    assert main(["judge", "--impl", EVERY_TIE, "--case", "tiny network, 4 images 28x28",
                 "--out", str(tmp_path / "net")]) == 1  # fmt: skip
    printed = re.findall(r"rerun: (.+)", capsys.readouterr().out)
    # the console prints one rerun per failing layer and diagnosis (its worst case); the failing cases
    # of every other kind are in the CSVs, and rerun_command is what printed each line
    failing = judged(tmp_path / "faults")
    failing = failing.loc[failing["status"] != "pass", "case"].drop_duplicates()
    searched = {c.id for c in searchable(grid())}
    first: dict[str, str] = {}
    for command in [*printed, *(rerun_command(FAULTS, c) for c in failing)]:
        argv = shlex.split(command)
        first.setdefault(kind_of(argv[argv.index("--case") + 1], searched), command)
    first.pop("shrunk", None)
    assert set(first) == {"grid", "lifecycle", "searched", "network"}, printed
    for i, (kind, command) in enumerate(sorted(first.items())):
        argv = shlex.split(command)
        assert argv[:3] == ["python", "-m", "reference"], command
        case = argv[argv.index("--case") + 1]
        assert main([*argv[3:], "--out", str(tmp_path / f"bug{i}")]) == 1, command  # the failure reproduces
        rows = judged(tmp_path / f"bug{i}")
        assert set(rows.loc[rows["status"] != "pass", "case"]) == {case}, (kind, command)  # and only it
        impl = argv.index("--impl") + 1
        ours = [*argv[3:impl], "scratch_cnn", *argv[impl + 1 :], "--out", str(tmp_path / f"ours{i}")]
        assert main(ours) == 0, (kind, ours)  # the same case, passed by a right implementation
        assert judged(tmp_path / f"ours{i}")["status"].eq("pass").all()
