"""The training loop: deterministic batches, SGD, per-epoch evaluation, CSV history, checkpoints."""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .architectures import ARCHITECTURES, build
from .data import to_float
from .losses import SoftmaxCrossEntropy, log_softmax
from .model import SPEC_KEY, Sequential, atomic_savez
from .optim import SGD

CHECKPOINT = "checkpoint.npz"
MODEL = "model.npz"
HISTORY = "history.csv"
HISTORY_COLUMNS = ["kind", "epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"]


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "lenet"
    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_decay: float = 0.6  # the learning rate of epoch e (0-based) is lr * lr_decay**e
    seed: int = 0
    dtype: str = "float32"
    limit: int | None = None
    log_every: int = 100

    def validate(self) -> None:
        """Raise ValueError naming the first bad option."""
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}; expected one of {sorted(ARCHITECTURES)}")
        for name in ("epochs", "batch_size", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"--lr-decay must be in (0, 1], got {self.lr_decay}")
        if not self.weight_decay >= 0:
            raise ValueError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"--dtype must be float32 or float64, got {self.dtype!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled example order of ``epoch`` (0-based), derived from (seed, epoch) alone.

    Deriving each epoch's generator from the pair makes the order independent of how many epochs ran
    before in this process, so a resumed run sees exactly the batches an uninterrupted one would.
    """
    return np.random.default_rng([seed, 1, epoch]).permutation(n)


def batches(n: int, batch_size: int, seed: int, epoch: int) -> Iterator[np.ndarray]:
    """Index arrays of one epoch's minibatches, in order; the last may be smaller."""
    order = epoch_order(n, seed, epoch)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def epoch_lr(config: TrainConfig, epoch: int) -> float:
    """The step size of ``epoch`` (0-based): ``lr * lr_decay**epoch``."""
    return config.lr * config.lr_decay**epoch


def init_rng(seed: int) -> np.random.Generator:
    """The generator that draws a run's initial weights."""
    return np.random.default_rng([seed, 0])


def train_step(
    model: Sequential, loss_fn: SoftmaxCrossEntropy, opt: SGD, x: np.ndarray, y: np.ndarray
) -> tuple[float, int]:
    """One SGD step on a batch: x (m, H, W, C) float, y (m,) int -> (mean loss, number correct)."""
    logits = model.forward(x)
    loss, _ = loss_fn.forward(logits, y)
    model.backward(loss_fn.backward())
    opt.step(model.grads)
    return loss, int((logits.argmax(axis=1) == y).sum())


def evaluate(model: Sequential, images: np.ndarray, labels: np.ndarray, batch_size: int = 250) -> dict[str, Any]:
    """Mean loss, accuracy and predictions of ``model`` on uint8 images (n, 28, 28, 1)."""
    dtype = model.dtype
    total, preds = 0.0, []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size], dtype)
        y = labels[start : start + batch_size].astype(np.intp)
        logp = log_softmax(model.forward(x))
        total += float(-logp[np.arange(len(y)), y].sum())
        preds.append(logp.argmax(axis=1))
    pred = np.concatenate(preds)
    return {"loss": total / len(images), "accuracy": float((pred == labels).mean()), "pred": pred}


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """(n_classes, n_classes) int64 counts; row = true label, column = prediction."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.intp), pred.astype(np.intp)), 1)
    return matrix


def _meta(config: TrainConfig, epoch: int, step: int) -> np.ndarray:
    return np.array(json.dumps({"config": asdict(config), "epochs_done": epoch, "step": step}))


def save_checkpoint(out: Path, model: Sequential, opt: SGD, config: TrainConfig, epoch: int, step: int) -> None:
    """Model + optimiser state + run state (config, epochs done, step; the RNG state is (seed, epoch))."""
    arrays = {SPEC_KEY: np.array(json.dumps(model.spec())), "__meta__": _meta(config, epoch, step)}
    arrays.update({f"param:{k}": v for k, v in model.params.items()})
    arrays.update(opt.state_dict())
    atomic_savez(out / CHECKPOINT, arrays)
    model.save(out / MODEL)


def load_checkpoint(out: Path) -> tuple[Sequential, SGD, TrainConfig, int, int]:
    path = out / CHECKPOINT
    if not path.is_file():
        raise ValueError(f"--resume {out}: no {CHECKPOINT} there (nothing to resume)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("__meta__")))
        known = {f.name for f in fields(TrainConfig)}
        config = TrainConfig(**{k: v for k, v in meta["config"].items() if k in known})
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise ValueError(f"--resume {out}: {CHECKPOINT} is not a readable scratch-cnn checkpoint ({err})") from err
    model = Sequential.load(out / MODEL)
    for k, v in arrays.items():
        if k.startswith("param:"):
            model.params[k.removeprefix("param:")][...] = v
    opt = SGD(model.params, config.lr, config.momentum, config.weight_decay)
    opt.load_state_dict({k: v for k, v in arrays.items() if k.startswith("velocity:")})
    return model, opt, config, int(meta["epochs_done"]), int(meta["step"])


class History:
    """history.csv, appended row by row (flushed), so it grows while the run does."""

    def __init__(self, path: Path, keep_until_step: int | None = None) -> None:
        self.path = path
        rows = []
        if keep_until_step is not None and path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until_step]
        fd, tmp = tempfile.mkstemp(prefix=".history.", dir=path.parent)
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, HISTORY_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)

    def add(self, **row: Any) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, HISTORY_COLUMNS).writerow({k: row.get(k, "") for k in HISTORY_COLUMNS})


def _progress(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", disable=not sys.stderr.isatty(), leave=False)


def run_training(
    config: TrainConfig,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    out: Path,
    *,
    resume: bool = False,
    echo: Any = print,
) -> dict[str, Any]:
    """Train (or resume) in ``out``; returns the last epoch's figures. Checkpoints after each epoch."""
    if resume:
        model, opt, config, epochs_done, step = load_checkpoint(out)
    else:
        config.validate()
        if (out / CHECKPOINT).exists():
            raise ValueError(f"{out} already holds a checkpoint; pass --resume {out} or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        model = build(config.arch, init_rng(config.seed), np.dtype(config.dtype))
        opt = SGD(model.params, config.lr, config.momentum, config.weight_decay)
        epochs_done, step = 0, 0
    x_train, y_train = data["train"]
    if config.limit is not None:
        x_train, y_train = x_train[: config.limit], y_train[: config.limit]
    x_test, y_test = data["test"]
    history = History(out / HISTORY, keep_until_step=step if resume else None)
    loss_fn, dtype = SoftmaxCrossEntropy(), np.dtype(config.dtype)
    result: dict[str, Any] = {}
    for epoch in range(epochs_done, config.epochs):
        opt.lr = epoch_lr(config, epoch)
        start, seen, loss_sum, correct, window = time.perf_counter(), 0, 0.0, 0, []
        n_batches = -(-len(x_train) // config.batch_size)
        with _progress(n_batches, f"epoch {epoch + 1}/{config.epochs}") as bar:
            for idx in batches(len(x_train), config.batch_size, config.seed, epoch):
                y = y_train[idx].astype(np.intp)
                loss, hits = train_step(model, loss_fn, opt, to_float(x_train[idx], dtype), y)
                step += 1
                seen += len(idx)
                loss_sum += loss * len(idx)
                correct += hits
                window.append((loss, hits, len(idx)))
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
                if step % config.log_every == 0:
                    w_n = sum(n for _, _, n in window)
                    history.add(kind="step", epoch=epoch + 1, step=step,
                                train_loss=sum(lo * n for lo, _, n in window) / w_n,
                                train_acc=sum(h for _, h, _ in window) / w_n)  # fmt: skip
                    window = []
        test = evaluate(model, x_test, y_test)
        seconds = time.perf_counter() - start
        result = {"epoch": epoch + 1, "step": step, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                  "test_loss": test["loss"], "test_acc": test["accuracy"], "seconds": seconds}  # fmt: skip
        history.add(kind="epoch", **result)
        save_checkpoint(out, model, opt, config, epoch + 1, step)
        echo(
            f"epoch {epoch + 1}/{config.epochs}: train loss {result['train_loss']:.4f} acc {result['train_acc']:.4f}"
            f" | test loss {test['loss']:.4f} acc {test['accuracy']:.4f} | {seconds:.1f}s"
        )
    return result
