"""Every fault a user can cause, one line each: the exit code, a one-line message without a traceback,
and what is left on disk (nothing partial; the last good checkpoint intact)."""

import errno
import json

import numpy as np
import pytest

import scratch_cnn.model as model_mod
import scratch_cnn.train as train_mod
from scratch_cnn.cli import main
from scratch_cnn.model import Sequential
from tests.test_train import fake_mnist

DATA = fake_mnist(n_train=96, n_test=40)
REAL_STEP, REAL_SAVEZ = train_mod.train_step, np.savez
TINY = ["--arch", "tiny", "--batch-size", "32", "--log-every", "1"]


@pytest.fixture(autouse=True)
def fake_data(monkeypatch):
    monkeypatch.setattr("scratch_cnn.cli.load_mnist", lambda *_: DATA)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err.strip()


def one_line(err):
    assert err.count("\n") == 0, err
    return err


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else None


def train(tmp_path, capsys, *extra, out="run"):
    return run(capsys, "train", *TINY, "--out", str(tmp_path / out), *extra)


def interrupt_at_step(monkeypatch, n):
    real, calls = train_mod.train_step, []

    def step(*args):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(train_mod, "train_step", step)


def fail_write_of_checkpoint(monkeypatch, nth, exc):
    """The nth checkpoint write raises ``exc`` half-way (after the temp file is open)."""
    real, calls = np.savez, []

    def savez(f, **arrays):
        if "__meta__" in arrays:
            calls.append(1)
            if len(calls) == nth:
                f.write(b"PK\x03\x04 half")
                raise exc
        return real(f, **arrays)

    monkeypatch.setattr(model_mod.np, "savez", savez)


# --- interruptions ----------------------------------------------------------------------------------


def test_ctrl_c_in_epoch_1_says_there_is_nothing_to_resume_and_the_same_command_then_works(
    tmp_path, capsys, monkeypatch
):
    interrupt_at_step(monkeypatch, 2)
    code, _, err = train(tmp_path, capsys, "--epochs", "2")
    assert code == 130 and "nothing was checkpointed, so there is nothing to resume" in one_line(err)
    assert leftovers(tmp_path / "run") is None  # nothing half-written left
    monkeypatch.setattr(train_mod, "train_step", REAL_STEP)
    assert train(tmp_path, capsys, "--epochs", "2")[0] == 0


def test_ctrl_c_mid_epoch_2_keeps_epoch_1_and_resume_gives_the_uninterrupted_model(tmp_path, capsys, monkeypatch):
    assert train(tmp_path, capsys, "--epochs", "2", out="whole")[0] == 0
    interrupt_at_step(monkeypatch, 5)  # 3 steps per epoch: step 5 is in epoch 2
    code, _, err = train(tmp_path, capsys, "--epochs", "2")
    assert code == 130 and "the checkpoint of epoch 1 is in" in one_line(err) and "--resume" in err
    monkeypatch.setattr(train_mod, "train_step", REAL_STEP)
    assert run(capsys, "train", "--resume", str(tmp_path / "run"))[0] == 0
    assert (tmp_path / "run/model.npz").read_bytes() == (tmp_path / "whole/model.npz").read_bytes()


def test_ctrl_c_while_loading_mnist_leaves_nothing(tmp_path, capsys, monkeypatch):
    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr("scratch_cnn.cli.load_mnist", interrupted)
    code, _, err = train(tmp_path, capsys)
    assert code == 130 and "interrupted during train: nothing was written" in one_line(err)
    assert leftovers(tmp_path / "run") is None


def test_ctrl_c_during_a_checkpoint_write_keeps_the_previous_one_intact(tmp_path, capsys, monkeypatch):
    fail_write_of_checkpoint(monkeypatch, 2, KeyboardInterrupt())
    code, _, err = train(tmp_path, capsys, "--epochs", "3")
    assert code == 130 and "the checkpoint of epoch 1 is in" in one_line(err)
    assert leftovers(tmp_path / "run") == ["checkpoint.npz", "history.csv", "model.npz"]  # no temp file
    monkeypatch.setattr(model_mod.np, "savez", REAL_SAVEZ)
    assert run(capsys, "train", "--resume", str(tmp_path / "run"))[0] == 0


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_the_last_checkpoint_survives(
    tmp_path, capsys, monkeypatch
):
    fail_write_of_checkpoint(monkeypatch, 2, OSError(errno.ENOSPC, "No space left on device"))
    code, _, err = train(tmp_path, capsys, "--epochs", "3")
    assert code == 2 and "No space left on device; the checkpoint of epoch 1 is intact" in one_line(err)
    assert leftovers(tmp_path / "run") == ["checkpoint.npz", "history.csv", "model.npz"]
    assert json.loads(str(np.load(tmp_path / "run/checkpoint.npz")["__meta__"]))["epochs_done"] == 1


# --- bad output places --------------------------------------------------------------------------------


def test_an_out_that_is_a_file_is_refused_before_anything_runs(tmp_path, capsys):
    (tmp_path / "taken").write_text("mine")
    code, _, err = train(tmp_path, capsys, out="taken")
    assert code == 2 and "--out" in one_line(err) and "is a file, not a directory" in err
    assert (tmp_path / "taken").read_text() == "mine"


def test_a_read_only_out_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    (tmp_path / "ro").mkdir()
    monkeypatch.setattr("scratch_cnn.cli.os.access", lambda path, mode: False)  # tests run as root: simulate it
    code, _, err = run(capsys, "train", *TINY, "--out", str(tmp_path / "ro" / "run"))
    assert code == 2 and "is not writable" in one_line(err)
    assert leftovers(tmp_path / "ro") == []


def test_an_out_that_stops_being_writable_mid_run_is_one_line(tmp_path, capsys, monkeypatch):
    fail_write_of_checkpoint(monkeypatch, 1, PermissionError(errno.EACCES, "Permission denied"))
    code, _, err = train(tmp_path, capsys, "--epochs", "2")
    assert code == 2 and "Permission denied; no checkpoint was written yet" in one_line(err)
    assert leftovers(tmp_path / "run") is None  # a run that never checkpointed leaves nothing


# --- resume --------------------------------------------------------------------------------------------


def test_resume_extends_a_finished_run_to_the_same_model_as_training_that_long_at_once(tmp_path, capsys):
    assert train(tmp_path, capsys, "--epochs", "3", out="three")[0] == 0
    assert train(tmp_path, capsys, "--epochs", "1")[0] == 0
    assert run(capsys, "train", "--resume", str(tmp_path / "run"), "--epochs", "3")[0] == 0
    assert (tmp_path / "run/model.npz").read_bytes() == (tmp_path / "three/model.npz").read_bytes()
    assert sum(line.startswith("epoch,") for line in (tmp_path / "run/history.csv").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda d: (d / "checkpoint.npz").write_bytes((d / "checkpoint.npz").read_bytes()[:300]), "is damaged"),
        (lambda d: (d / "checkpoint.npz").write_bytes(b""), "is damaged"),
        (lambda d: (d / "checkpoint.npz").unlink(), "no checkpoint.npz there, so no epoch finished"),
    ],
    ids=["truncated", "empty", "absent"],
)
def test_resume_from_a_damaged_or_absent_checkpoint_is_one_line(tmp_path, capsys, damage, words):
    assert train(tmp_path, capsys, "--epochs", "1")[0] == 0
    damage(tmp_path / "run")
    code, _, err = run(capsys, "train", "--resume", str(tmp_path / "run"))
    assert code == 2 and words in one_line(err)


def test_resume_with_a_model_from_another_architecture_says_so(tmp_path, capsys):
    assert train(tmp_path, capsys, "--epochs", "1")[0] == 0
    assert (
        run(capsys, "train", "--arch", "seed", "--limit", "32", "--batch-size", "32", "--out", str(tmp_path / "s"))[0]
        == 0
    )
    (tmp_path / "run/model.npz").write_bytes((tmp_path / "s/model.npz").read_bytes())
    code, _, err = run(capsys, "train", "--resume", str(tmp_path / "run"), "--epochs", "2")
    assert code == 2 and "come from different runs" in one_line(err)


def test_resume_refuses_options_that_would_change_the_run(tmp_path, capsys):
    assert train(tmp_path, capsys, "--epochs", "1")[0] == 0
    code, _, err = run(capsys, "train", "--resume", str(tmp_path / "run"), "--lr", "0.1")
    assert code == 2 and "not --lr" in one_line(err)


def test_a_negative_seed_names_the_option_and_leaves_no_directory(tmp_path, capsys):
    code, _, err = train(tmp_path, capsys, "--seed", "-1")
    assert code == 2 and "--seed must be an integer >= 0, got -1" in one_line(err)
    assert leftovers(tmp_path / "run") is None


# --- files that are not what they claim -----------------------------------------------------------------


def test_model_files_that_are_random_bytes_a_checkpoint_or_hold_nan_are_named(tmp_path, capsys):
    assert train(tmp_path, capsys, "--epochs", "1")[0] == 0
    (tmp_path / "random.npz").write_bytes(np.random.default_rng(0).bytes(500))
    code, _, err = run(capsys, "evaluate", str(tmp_path / "random.npz"))
    assert code == 2 and "is not an .npz archive" in one_line(err) and "allow_pickle" not in err
    code, _, err = run(capsys, "evaluate", str(tmp_path / "run/checkpoint.npz"))
    assert code == 2 and "is a training checkpoint, not a model" in one_line(err)
    model = Sequential.load(tmp_path / "run/model.npz")
    model.params["0.W"][0, 0, 0, 0] = np.nan
    model.save(tmp_path / "nan.npz")
    code, _, err = run(capsys, "evaluate", str(tmp_path / "nan.npz"))
    assert code == 2 and "parameter 0.W holds 1 NaN/Inf value(s)" in one_line(err)


def test_a_named_data_dir_without_mnist_is_an_error_not_the_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.undo()  # the real loader
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "fetch-data", "--data-dir", str(tmp_path / "empty"))
    assert code == 2 and "does not hold verified MNIST" in err and "not there" in err


# --- what a log shows, and help --------------------------------------------------------------------------


def test_history_is_lf_and_training_prints_progress_lines_when_not_on_a_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train_mod, "PROGRESS_EVERY", 0.0)
    code, _, err = train(tmp_path, capsys, "--epochs", "1")
    assert code == 0 and "[epoch 1/1] 1/3" in err and "ETA" in err
    assert b"\r\n" not in (tmp_path / "run/history.csv").read_bytes()


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "(default: 5)" in text and "(default: lenet)" in text and "--eval-limit" in text


def test_eval_limit_evaluates_on_part_of_the_test_set(tmp_path, capsys):
    assert train(tmp_path, capsys, "--epochs", "1", "--eval-limit", "10")[0] == 0
    accuracy = float((tmp_path / "run/history.csv").read_text().splitlines()[-1].split(",")[6])
    assert round(accuracy * 10) == accuracy * 10  # a multiple of 1/10: ten images were evaluated


# --- the judges' --impl ---------------------------------------------------------------------------------


def test_impl_as_a_file_path_works_and_a_module_outside_sys_path_is_one_clear_error(tmp_path, capsys):
    from reference.cli import main as reference_main

    (tmp_path / "mine.py").write_text("from scratch_cnn import ReLU\n")
    assert (
        reference_main(["autograd", "--impl", str(tmp_path / "mine.py"), "--quick", "--out", str(tmp_path / "r")]) == 0
    )
    capsys.readouterr()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere/theirs.py").write_text("from scratch_cnn import ReLU\n")  # not on sys.path
    assert reference_main(["autograd", "--impl", "theirs", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot import implementation 'theirs': ModuleNotFoundError" in one_line(err)
