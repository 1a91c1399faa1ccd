"""The training loop: deterministic batches, SGD, per-epoch evaluation, CSV history, checkpoints."""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from .architectures import ARCHITECTURES, build
from .data import to_float
from .dropout import Dropout
from .losses import SoftmaxCrossEntropy, log_softmax
from .model import SPEC_KEY, Sequential, atomic_savez, fill_arrays, read_npz
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
    eval_limit: int | None = None  # evaluate each epoch on the first N test images only (None: all 10,000)

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
        for name in ("limit", "eval_limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"--seed must be an integer >= 0, got {self.seed!r}")


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


def seed_dropout(model: Sequential, seed: int, epoch: int) -> None:
    """Give each Dropout layer (index i) the generator of (seed, epoch, i) for ``epoch`` (0-based).

    # NOTE: like the batch order, the masks of an epoch derive from (seed, epoch) alone, so a run
    # resumed from an epoch's checkpoint draws exactly the masks an uninterrupted one would.
    """
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Dropout):
            layer.rng = np.random.default_rng([seed, 2, epoch, i])


def train_step(
    model: Sequential, loss_fn: SoftmaxCrossEntropy, opt: SGD, x: np.ndarray, y: np.ndarray
) -> tuple[float, int]:
    """One SGD step on a batch: x (m, H, W, C) float, y (m,) int -> (mean loss, number correct)."""
    logits = model.forward(x)
    loss, _ = loss_fn.forward(logits, y)
    model.backward(loss_fn.backward(), input_grad=False)
    opt.step(model.grads)
    return loss, int((logits.argmax(axis=1) == y).sum())


def evaluate(model: Sequential, images: np.ndarray, labels: np.ndarray, batch_size: int = 250) -> dict[str, Any]:
    """Mean loss, accuracy and predictions of ``model`` on uint8 images (n, 28, 28, 1), in eval mode
    (BatchNorm on its running statistics, no dropout; each layer's mode is restored afterwards)."""
    dtype = model.dtype
    total, preds = 0.0, []
    with _progress(-(-len(images) // batch_size), "evaluate") as bar, model.evaluating():
        for start in range(0, len(images), batch_size):
            x = to_float(images[start : start + batch_size], dtype)
            y = labels[start : start + batch_size].astype(np.intp)
            logp = log_softmax(model.forward(x))
            total += float(-logp[np.arange(len(y)), y].sum())
            preds.append(logp.argmax(axis=1))
            bar.update(1)
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
    """Model (params and buffers) + optimiser state + run state (config, epochs done, step; the RNG
    state is (seed, epoch): batch order and dropout masks derive from it)."""
    arrays = {SPEC_KEY: np.array(json.dumps(model.spec())), "__meta__": _meta(config, epoch, step)}
    arrays.update(model.arrays())
    arrays.update(opt.state_dict())
    atomic_savez(out / CHECKPOINT, arrays)
    model.save(out / MODEL)


def load_checkpoint(out: Path) -> tuple[Sequential, SGD, TrainConfig, int, int]:
    """The run state of ``out/checkpoint.npz``; ValueError naming what is wrong (missing, damaged, not
    matching the model beside it) and what to do."""
    path = out / CHECKPOINT
    if not out.is_dir():
        raise ValueError(f"--resume {out}: no such directory")
    if not path.is_file():
        raise ValueError(f"--resume {out}: no {CHECKPOINT} there, so no epoch finished in that run: nothing to "
                         f"resume; start it again without --resume (it begins from epoch 1)")  # fmt: skip
    try:
        arrays = read_npz(path, "checkpoint")
        meta = json.loads(str(arrays.pop("__meta__")))
        spec = json.loads(str(arrays.pop(SPEC_KEY)))
        known = {f.name for f in fields(TrainConfig)}
        config = TrainConfig(**{k: v for k, v in meta["config"].items() if k in known})
        model = Sequential.from_spec(spec, dtype=np.dtype(config.dtype))
        params = {k.removeprefix("param:"): v for k, v in arrays.items() if k.startswith("param:")}
        if set(params) != set(model.params) or any(model.params[k].shape != v.shape for k, v in params.items()):
            raise ValueError("its parameters do not match its own architecture")
        for k, v in params.items():
            model.params[k][...] = v
        buffers = {k.removeprefix("buffer:"): v for k, v in arrays.items() if k.startswith("buffer:")}
        fill_arrays("its model", "buffer", model.buffers, buffers)
        opt = SGD(model.params, config.lr, config.momentum, config.weight_decay)
        opt.load_state_dict({k: v for k, v in arrays.items() if k.startswith("velocity:")})
        epochs_done, step = int(meta["epochs_done"]), int(meta["step"])
    except Exception as err:  # truncated, foreign, or hand-edited: say so, never a traceback
        raise ValueError(
            f"--resume {out}: {CHECKPOINT} is damaged or not a scratch-cnn checkpoint ({err}); "
            "nothing can be resumed from it: start the run again (or restore the file)"
        ) from err
    if (out / MODEL).is_file():
        try:
            other = Sequential.load(out / MODEL).spec()
        except ValueError:
            other = None  # a damaged model.npz is rewritten from the checkpoint at the next epoch
        if other is not None and other["layers"] != spec["layers"]:
            raise ValueError(f"--resume {out}: {CHECKPOINT} ({_describe(spec)}) and {MODEL} ({_describe(other)}) "
                             "come from different runs; resume the directory the checkpoint was written in, or "
                             f"remove the stray {MODEL}")  # fmt: skip
    return model, opt, config, epochs_done, step


def _describe(spec: dict[str, Any]) -> str:
    return " ".join(e["type"] for e in spec["layers"][:4]) + (" ..." if len(spec["layers"]) > 4 else "")


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
            writer = csv.DictWriter(f, HISTORY_COLUMNS, lineterminator="\n")  # LF, as every CSV here
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)

    def add(self, **row: Any) -> None:
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, HISTORY_COLUMNS, lineterminator="\n")
            writer.writerow({k: row.get(k, "") for k in HISTORY_COLUMNS})


PROGRESS_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal (CI logs)


class Progress:
    """A tqdm bar on a terminal; elsewhere a plain line every PROGRESS_EVERY seconds with done/total,
    elapsed time, ETA and the running figures, so a log shows that long work moves."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.done = total, desc, 0
        self.start = self.last = time.monotonic()
        self.bar: Any = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="batch", leave=False)

    def update(self, n: int = 1, **figures: str) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(**figures)
            return
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY:
            self.last = now
            elapsed = now - self.start
            eta = elapsed / self.done * (self.total - self.done)
            extra = "".join(f", {k} {v}" for k, v in figures.items())
            print(f"[{self.desc}] {self.done}/{self.total}, {elapsed:.0f}s elapsed, ETA {eta:.0f}s{extra}",
                  file=sys.stderr, flush=True)  # fmt: skip

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress(total: int, desc: str) -> Progress:
    return Progress(total, desc)


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
        model, opt, saved, epochs_done, step = load_checkpoint(out)
        # NOTE: a resumed run keeps its own settings; only the epoch count (to extend a run: the same
        # result as training that many epochs at once, since each epoch's batch order and lr depend on
        # the epoch alone) and the evaluation subset may be given.
        config = replace(saved, epochs=config.epochs or saved.epochs, eval_limit=config.eval_limit)
        config.validate()
        if config.epochs < epochs_done:
            raise ValueError(f"--epochs {config.epochs}: {out} has already trained {epochs_done} epochs")
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
    if config.eval_limit is not None:
        x_test, y_test = x_test[: config.eval_limit], y_test[: config.eval_limit]
    try:
        history = History(out / HISTORY, keep_until_step=step if resume else None)
    except OSError as err:
        raise ValueError(f"cannot write {out / HISTORY}: {err.strerror or err}") from err
    loss_fn, dtype = SoftmaxCrossEntropy(), np.dtype(config.dtype)
    result: dict[str, Any] = {}
    for epoch in range(epochs_done, config.epochs):
        opt.lr = epoch_lr(config, epoch)
        model.train()
        seed_dropout(model, config.seed, epoch)
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
                bar.update(1, loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
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
        try:
            history.add(kind="epoch", **result)
            save_checkpoint(out, model, opt, config, epoch + 1, step)
        except OSError as err:  # a full disk, a directory made read-only mid-run: the last good files stay
            last = f"the checkpoint of epoch {epoch} is intact" if epoch else "no checkpoint was written yet"
            raise ValueError(
                f"cannot write the epoch {epoch + 1} checkpoint in {out}: {err.strerror or err}; "
                f"{last} (each write goes through a temp file and a rename)"
            ) from err
        echo(
            f"epoch {epoch + 1}/{config.epochs}: train loss {result['train_loss']:.4f} acc {result['train_acc']:.4f}"
            f" | test loss {test['loss']:.4f} acc {test['accuracy']:.4f} | {seconds:.1f}s"
        )
    return result
