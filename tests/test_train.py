"""Training loop determinism, interruption and resume, and the CLI's errors (small synthetic data)."""

import numpy as np
import pytest

import scratch_cnn.train as train_mod
from scratch_cnn.cli import main
from scratch_cnn.imageio import read_digit, write_png
from scratch_cnn.model import Sequential
from scratch_cnn.train import TrainConfig, run_training


def fake_mnist(n_train=300, n_test=100, seed=0):
    """uint8 images whose label is which quarter of the image is bright, so a net can learn it."""
    rng = np.random.default_rng(seed)

    def split(n):
        labels = rng.integers(0, 4, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28, 1)).astype(np.uint8)
        for q in range(4):
            r, c = divmod(q, 2)
            images[labels == q, 14 * r : 14 * r + 14, 14 * c : 14 * c + 14] += 150
        return images, labels

    return {"train": split(n_train), "test": split(n_test)}


CONFIG = TrainConfig(arch="tiny", epochs=3, batch_size=32, lr=0.05, log_every=4, seed=7)


def test_training_learns_and_writes_history_checkpoint_and_model(tmp_path):
    result = run_training(CONFIG, fake_mnist(), tmp_path, echo=lambda *_: None)
    assert result["test_acc"] > 0.9
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert history[0].startswith("kind,epoch,step")
    assert sum(line.startswith("epoch,") for line in history) == 3
    assert sum(line.startswith("step,") for line in history) == 30 // 4  # 10 steps/epoch, a row every 4
    assert Sequential.load(tmp_path / "model.npz").params.keys() == {"0.W", "0.b", "4.W", "4.b"}


def test_the_same_seed_gives_the_same_weights_bit_for_bit(tmp_path):
    data = fake_mnist()
    run_training(CONFIG, data, tmp_path / "a", echo=lambda *_: None)
    run_training(CONFIG, data, tmp_path / "b", echo=lambda *_: None)
    a, b = Sequential.load(tmp_path / "a/model.npz"), Sequential.load(tmp_path / "b/model.npz")
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert (tmp_path / "a/history.csv").read_text().count("\n") == (tmp_path / "b/history.csv").read_text().count("\n")


def test_an_interrupted_and_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch):
    data = fake_mnist()
    run_training(CONFIG, data, tmp_path / "whole", echo=lambda *_: None)

    real_step, calls = train_mod.train_step, []

    def interrupting_step(*args):
        calls.append(1)
        if len(calls) == 15:  # in the middle of epoch 2
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(train_mod, "train_step", interrupting_step)
    with pytest.raises(KeyboardInterrupt):
        run_training(CONFIG, data, tmp_path / "cut", echo=lambda *_: None)
    monkeypatch.setattr(train_mod, "train_step", real_step)
    assert not list((tmp_path / "cut").glob(".*"))  # no temp file left behind
    run_training(CONFIG, data, tmp_path / "cut", resume=True, echo=lambda *_: None)
    whole, cut = Sequential.load(tmp_path / "whole/model.npz"), Sequential.load(tmp_path / "cut/model.npz")
    for name in whole.params:
        assert np.array_equal(whole.params[name], cut.params[name]), name
    whole_rows = [r.split(",")[:3] for r in (tmp_path / "whole/history.csv").read_text().splitlines()]
    cut_rows = [r.split(",")[:3] for r in (tmp_path / "cut/history.csv").read_text().splitlines()]
    assert whole_rows == cut_rows


def test_a_second_run_into_a_checkpointed_directory_is_refused(tmp_path):
    run_training(TrainConfig(arch="tiny", epochs=1, limit=64), fake_mnist(), tmp_path, echo=lambda *_: None)
    with pytest.raises(ValueError, match="already holds a checkpoint; pass --resume"):
        run_training(TrainConfig(arch="tiny", epochs=1), fake_mnist(), tmp_path, echo=lambda *_: None)


def cli_error(capsys, *argv):
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    return err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "-1"], "--epochs must be an integer >= 1, got -1"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
        (["--arch", "resnet"], "unknown architecture 'resnet'"),
        (["--lr", "0"], "--lr must be > 0"),
        (["--dtype", "float16"], "--dtype must be float32 or float64"),
        (["--limit", "0"], "--limit must be an integer >= 1"),
    ],
)
def test_bad_training_options_fail_in_one_line_and_leave_nothing_behind(tmp_path, capsys, argv, message):
    err = cli_error(capsys, "train", "--out", str(tmp_path / "run"), *argv)
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_resume_of_a_directory_without_a_checkpoint_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("scratch_cnn.cli.load_mnist", lambda *_: fake_mnist())
    assert "no checkpoint.npz there" in cli_error(capsys, "train", "--resume", str(tmp_path))


def test_evaluate_and_predict_refuse_files_that_are_not_models_or_digits(tmp_path, capsys):
    (tmp_path / "x.npz").write_bytes(b"nope")
    assert "is not an .npz archive" in cli_error(capsys, "evaluate", str(tmp_path / "x.npz"))
    run_model(tmp_path)
    np.save(tmp_path / "big.npy", np.zeros((2, 28, 28), np.uint8))  # a stack of images (a 32x32 one is resized)
    assert "got shape (2, 28, 28)" in cli_error(
        capsys, "predict", str(tmp_path / "m/model.npz"), str(tmp_path / "big.npy")
    )
    (tmp_path / "fake.png").write_bytes(b"GIF89a")
    assert "is not a PNG file" in cli_error(
        capsys, "predict", str(tmp_path / "m/model.npz"), str(tmp_path / "fake.png")
    )


def run_model(tmp_path):
    run_training(TrainConfig(arch="tiny", epochs=1, limit=64), fake_mnist(), tmp_path / "m", echo=lambda *_: None)
    return tmp_path / "m/model.npz"


def test_predict_prints_the_digit_and_its_probabilities_for_png_and_npy(tmp_path, capsys):
    model_path = run_model(tmp_path)
    image = fake_mnist()["test"][0][0, :, :, 0]
    write_png(tmp_path / "d.png", image)
    np.save(tmp_path / "d.npy", image)
    assert np.array_equal(read_digit(tmp_path / "d.png"), read_digit(tmp_path / "d.npy"))
    for path in ("d.png", "d.npy"):
        assert main(["predict", str(model_path), str(tmp_path / path)]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith("digit ") and len(out) == 11
        assert abs(sum(float(line.split(":")[1]) for line in out[1:]) - 1) < 1e-3
