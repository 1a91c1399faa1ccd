"""Judge 3: the whole training loop, the implementation beside its PyTorch twin.

Layer checks can all pass while training is still wrong (an optimiser, a batch order, a weight-decay
term, a flatten order). Two runs:

- **Lockstep (float64).** Both networks start from the same weights, see the same batches in the same
  order with the same SGD (momentum, weight decay on weights only, the same learning rate). Per step we
  record both losses and the largest scale-relative parameter difference after the step. Expected:
  rounding error (~1e-16) growing slowly; a relative difference reaching LOCKSTEP_BOUND (1e-6) is a
  failure, reported with the first step and the parameter that broke it.
- **Full MNIST (float32).** Both train ``lenet`` on all 60,000 images for a few epochs from the same
  weights and batch order, evaluated on the 10,000 test images after each epoch. The gate holds the
  final test accuracy, its gap to the twin's, and the largest test-loss gap. The ``seed`` network
  (the blog's) runs beside it, reported beside the blog's 88.2% after one epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

import scratch_cnn
from reference.cases import twins
from reference.core.tolerances import (
    LOCKSTEP_BOUND,
    MAX_ACCURACY_GAP,
    MAX_ACCURACY_GAP_BN,
    MAX_TEST_LOSS_GAP,
    MIN_TEST_ACCURACY,
    MIN_TEST_ACCURACY_BN,
)
from reference.impl.protocol import ProtocolViolation, construct
from reference.judges.base import Context, Judge, Result
from reference.layers import kind, layout
from scratch_cnn.data import to_float
from scratch_cnn.train import TrainConfig, batches, epoch_lr, init_rng

BLOG_SEED_ACCURACY = 0.882  # the blog's dev accuracy of its network after one epoch
SEED_SETTINGS = TrainConfig(arch="seed", epochs=1, batch_size=32, lr=0.01, momentum=0.0, weight_decay=0.0, lr_decay=1.0)


class ProtocolNet(scratch_cnn.Sequential):
    """A network of any implementation's protocol layers, parameters named ``"{index}.{key}"``.

    The container (forward, backward, params/grads by name) is scratch_cnn's Sequential, which
    touches layers only through the protocol; the layers, the loss and the optimiser are the
    implementation's.
    """

    def __init__(self, impl: Any, spec: list[dict[str, Any]], rng: np.random.Generator, dtype: Any) -> None:
        super().__init__([construct(impl, e["type"], e["config"], rng=rng, dtype=np.dtype(dtype)) for e in spec])
        self.layer_spec = spec
        self.loss = impl.SoftmaxCrossEntropy()

    def train_step(self, opt: Any, x: np.ndarray, y: np.ndarray) -> float:
        batched = sandboxed_step(self, opt, x, y)
        if batched is not None:
            return batched
        loss, _ = self.loss.forward(self.forward(x), y)
        self.backward(self.loss.backward(), input_grad=False)
        opt.step(self.grads)
        return float(loss)


def sandboxed_step(net: ProtocolNet, opt: Any, x: np.ndarray, y: np.ndarray) -> float | None:
    """The same step as ``train_step`` (the same calls on the same objects, in the same order) as one
    batch for a network whose layers, loss and optimiser live in one sandboxed worker: one exchange
    per step, not ~27. None when they do not (a network of this process's objects).

    # NOTE: the gradients handed to ``opt.step`` are named by the layers' ``params`` keys (read once,
    # when the pair was built), where the in-process ``Sequential.grads`` reads each layer's ``grads``
    # keys at every step; the protocol makes the two the same, and a layer whose grads lack a key of
    # its params fails either way (a KeyError in the optimiser, or the protocol rule).
    """
    from reference.sandbox import requests

    if not requests.same_worker(*net.layers, net.loss, opt):
        return None
    keys = getattr(net, "param_keys", None)
    if keys is None:
        keys = net.param_keys = [list(layer.params) for layer in net.layers]
    items: list[Any] = []
    flow: Any = x
    for layer in net.layers:
        items.append(requests.Call(layer, "forward", (flow,)))
        flow = requests.Result(len(items) - 1)
    items.append(requests.Call(net.loss, "forward", (flow, y)))
    loss_at = len(items) - 1
    items.append(requests.Call(net.loss, "backward"))
    flow = requests.Result(len(items) - 1)
    for layer in reversed(net.layers[1:]):
        items.append(requests.Call(layer, "backward", (flow,)))
        flow = requests.Result(len(items) - 1)
    first = net.layers[0]
    items.append(requests.Call(first, "backward_params" if hasattr(first, "backward_params") else "backward", (flow,)))
    grads: dict[str, Any] = {}
    for i, layer in enumerate(net.layers):
        if keys[i]:
            items.append(requests.Read(layer, "grads"))
            grads.update({f"{i}.{k}": requests.Result(len(items) - 1, k) for k in keys[i]})
    items.append(requests.Call(opt, "step", (grads,)))
    (result,) = requests.run(items, "a training step (forward, loss, backward, SGD.step)", keep=[loss_at])
    if not isinstance(result, (tuple, list)) or len(result) < 1:
        raise TypeError(f"{requests.label(net.loss)}.forward returned {type(result).__name__}, not (loss, probs)")
    return float(result[0])


@dataclass
class Pair:
    """The implementation's network and its twin, from the same weights, with their optimisers."""

    net: ProtocolNet
    twin: torch.nn.Sequential
    opt: Any
    opt_twin: torch.optim.SGD
    names: list[str] = field(default_factory=list)


def make_pair(impl: Any, arch: str, config: TrainConfig, dtype: str) -> Pair:
    spec = scratch_cnn.build(arch, np.random.default_rng(0)).spec()["layers"]
    net = ProtocolNet(impl, spec, init_rng(config.seed), dtype)
    twin = twins.twin_network(spec, torch.float64 if dtype == "float64" else torch.float32)
    twins.copy_network_params(net.layers, spec, twin)
    opt = impl.SGD(net.params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    # NOTE: weight decay on the protocol's weights ("W") only, as the protocol's SGD: not on biases, nor
    # on batch norm's gamma (torch's name for which is "weight" too)
    tensors = [(key, getattr(twin[i], layout_.torch_name)) for i, e in enumerate(spec)
               for key, layout_ in kind(e["type"]).params.items() if hasattr(twin[i], layout_.torch_name)]  # fmt: skip
    weights = [t for key, t in tensors if key == "W" and t is not None]
    biases = [t for key, t in tensors if key != "W" and t is not None]
    opt_twin = torch.optim.SGD(
        [{"params": weights, "weight_decay": config.weight_decay}, {"params": biases, "weight_decay": 0.0}],
        lr=config.lr,
        momentum=config.momentum,
    )
    return Pair(net, twin, opt, opt_twin, twins.network_param_names(net.layers))


def set_modes(pair: Pair, training: bool, dropout: bool | None = None) -> None:
    """Both networks' layers with modes (batch norm, dropout) in training (True) or eval mode; the
    layers whose training mode is random (dropout) in ``dropout``'s where it is given: the lockstep
    runs them in eval mode, so both sides compute the same function."""
    for i, entry in enumerate(pair.net.layer_spec):
        declared = kind(entry["type"])
        if not declared.modes:
            continue
        value = training if declared.repeatable or dropout is None else dropout
        pair.net.layers[i].training = value
        pair.twin[i].train(value)


def twin_step(pair: Pair, x: np.ndarray, y: np.ndarray) -> float:
    xt = layout.to_torch(layout.images_to_torch(x))
    pair.opt_twin.zero_grad()
    loss = F.cross_entropy(pair.twin(xt), torch.as_tensor(y))
    loss.backward()
    pair.opt_twin.step()
    return loss.item()


def set_lr(pair: Pair, lr: float) -> None:
    pair.opt.lr = lr
    for group in pair.opt_twin.param_groups:
        group["lr"] = lr


LabelFeed = Callable[[np.ndarray], np.ndarray]


def run_lockstep(
    impl: Any,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    arch: str = "seed",
    steps: int = 200,
    config: TrainConfig | None = None,
    labels_for_impl: LabelFeed | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Per-step losses and the largest parameter difference of the pair, float64.

    ``labels_for_impl`` alters the labels the implementation sees (the twin always gets the true
    ones): it exists to inject a data-pipeline fault and prove this judge notices.
    """
    config = config or TrainConfig(arch=arch, batch_size=32, lr=0.05, momentum=0.9, weight_decay=5e-4, lr_decay=0.6)
    pair = make_pair(impl, arch, config, "float64")
    set_modes(pair, True, dropout=False)  # NOTE: dropout in eval mode: two random masks would part at step 1
    images, labels = data["train"]
    rows = []
    step, epoch = 0, 0
    while step < steps:
        set_lr(pair, epoch_lr(config, epoch))
        for idx in batches(len(images), config.batch_size, config.seed, epoch):
            x = to_float(images[idx], np.float64)
            y = labels[idx].astype(np.intp)
            loss = pair.net.train_step(pair.opt, x, labels_for_impl(y) if labels_for_impl else y)
            loss_twin = twin_step(pair, x, y)
            ours = pair.net.params
            theirs = twins.network_params_from_twin(pair.twin, pair.net.layer_spec, pair.names)
            if wrong := [f"{n} {np.shape(ours[n])} (the twin's {theirs[n].shape})" for n in pair.names
                         if np.shape(ours[n]) != theirs[n].shape]:  # fmt: skip
                raise ProtocolViolation(f"after training step {step + 1} the parameters have the wrong shapes: "
                                        f"{'; '.join(wrong)}")  # fmt: skip
            diffs = {
                n: float(np.abs(ours[n] - theirs[n]).max() / max(np.abs(theirs[n]).max(), 1e-300)) for n in pair.names
            }
            worst = max(diffs, key=diffs.__getitem__)
            step += 1
            rows.append(
                {
                    "step": step,
                    "epoch": epoch + 1,
                    "loss": loss,
                    "loss_twin": loss_twin,
                    "loss_diff": abs(loss - loss_twin),
                    "loss_rel_diff": abs(loss - loss_twin) / max(abs(loss_twin), 1e-300),
                    "param_rel_diff": diffs[worst],
                    "worst_param": worst,
                    "worst_layer": f"layer {worst.split('.')[0]} ({pair.net.layer_spec[int(worst.split('.')[0])]['type']})",
                }
            )
            if progress:
                progress(step, steps)
            if step >= steps:
                break
        epoch += 1
    return pd.DataFrame(rows)


def lockstep_verdict(df: pd.DataFrame, bound: float = LOCKSTEP_BOUND) -> dict[str, Any]:
    """First step at which the loss or a parameter differs by ``bound`` (relative), and which one."""
    worst = df[["loss_rel_diff", "param_rel_diff"]].max(axis=1)
    broken = df[worst >= bound]
    verdict = {
        "steps": len(df),
        "bound": bound,
        "max_loss_rel_diff": float(df["loss_rel_diff"].max()),
        "max_param_rel_diff": float(df["param_rel_diff"].max()),
        "final_param_rel_diff": float(df["param_rel_diff"].iloc[-1]),
        "status": "pass" if broken.empty and len(df) else "fail",
        "first_broken_step": None,
        "broken_by": "",
        "broken_layer": None,  # the network layer where it was first seen (0 when the loss left first)
        "diagnosis": "",
    }
    if not broken.empty:
        first = broken.iloc[0]
        what = "loss" if first["loss_rel_diff"] >= bound else f"parameter {first['worst_param']}"
        layer = first.get("worst_layer", "")
        if what == "loss":
            diagnosis = (f"the loss left the bound at step {int(first['step'])} before any parameter did: the forward "
                         "pass or the data differ (labels, batch order, flatten order before a loss)")  # fmt: skip
        else:
            # NOTE: a parameter's gradient is made from what every layer after it sends back: the first one
            # out says where the difference is first seen, not which layer is wrong (summary.md lays it at
            # the first layer whose own judgement fails: reference.core.verdicts.blame)
            diagnosis = (f"the lockstep left the bound at step {int(first['step'])}; the first parameter out was "
                         f"{first['worst_param']}, of {layer}: its gradient (made by that layer from what every "
                         "layer after it and the loss send back) or its optimiser update differs")  # fmt: skip
        verdict["diagnosis"] = diagnosis
        start = 0 if what == "loss" else int(str(first["worst_param"]).split(".")[0])
        verdict.update(first_broken_step=int(first["step"]), broken_by=what, broken_layer=start)
    return verdict


def evaluate_pair(pair: Pair, images: np.ndarray, labels: np.ndarray, dtype: Any, batch: int = 250) -> dict[str, float]:
    """Test loss and accuracy of both networks."""
    from scratch_cnn.losses import log_softmax

    totals = {"loss": 0.0, "correct": 0, "loss_twin": 0.0, "correct_twin": 0}
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = to_float(images[start : start + batch], dtype)
            y = labels[start : start + batch].astype(np.intp)
            logp = log_softmax(np.asarray(pair.net.forward(x)))
            totals["loss"] += float(-logp[np.arange(len(y)), y].sum())
            totals["correct"] += int((logp.argmax(1) == y).sum())
            logits_t = pair.twin(layout.to_torch(layout.images_to_torch(x)))
            totals["loss_twin"] += float(F.cross_entropy(logits_t, torch.as_tensor(y), reduction="sum"))
            totals["correct_twin"] += int((logits_t.argmax(1).numpy() == y).sum())
    n = len(images)
    return {
        "test_loss": totals["loss"] / n,
        "test_acc": totals["correct"] / n,
        "test_loss_twin": totals["loss_twin"] / n,
        "test_acc_twin": totals["correct_twin"] / n,
    }


def run_curves(
    impl: Any,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    config: TrainConfig,
    *,
    limit: int | None = None,
    log_every: int = 50,
    progress: Callable[[str, int, int], None] | None = None,
) -> pd.DataFrame:
    """Train the pair in float32 side by side; one row per recorded point per run (``impl``/``torch``).

    The two runs alternate batch by batch; each run's wall time is measured separately.
    """
    pair = make_pair(impl, config.arch, config, "float32")
    # NOTE: dropout in eval mode here too: with two random masks the pair would part like two seeds, and
    # the gap bounds hold rounding only; dropout's randomness is judged by its own binomial test
    set_modes(pair, True, dropout=False)
    images, labels = data["train"]
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    test_images, test_labels = data["test"]
    rows: list[dict[str, Any]] = []
    step = 0
    for epoch in range(config.epochs):
        set_lr(pair, epoch_lr(config, epoch))
        seconds, sums, step = _train_epoch(pair, images, labels, config, epoch, step, rows, log_every, progress)
        rows += _epoch_rows(pair, config, epoch, step, (images, labels), (test_images, test_labels), seconds, sums)
    return pd.DataFrame(rows)


def _train_epoch(pair: Pair, images: np.ndarray, labels: np.ndarray, config: TrainConfig, epoch: int, step: int,
                 rows: list[dict[str, Any]], log_every: int,
                 progress: Callable[[str, int, int], None] | None) -> tuple[dict[str, float], dict[str, list], int]:  # fmt: skip
    """One epoch of both runs, batch by batch, appending a ``step`` row per run every ``log_every`` steps
    to ``rows``; returns each run's seconds, its [loss sum, correct, seen] and the step reached."""
    n_batches = -(-len(images) // config.batch_size)
    seconds = {"impl": 0.0, "torch": 0.0}
    sums = {"impl": [0.0, 0, 0], "torch": [0.0, 0, 0]}  # loss sum, correct, seen (for the epoch)
    window = {"impl": [0.0, 0], "torch": [0.0, 0]}
    for b, idx in enumerate(batches(len(images), config.batch_size, config.seed, epoch)):
        x = to_float(images[idx], np.float32)
        y = labels[idx].astype(np.intp)
        loss, loss_t = _timed_step(pair, x, y, seconds)
        step += 1
        for run, value in (("impl", loss), ("torch", loss_t)):
            sums[run][0] += value * len(idx)
            sums[run][2] += len(idx)
            window[run][0] += value * len(idx)
            window[run][1] += len(idx)
        if step % log_every == 0:
            for run in ("impl", "torch"):
                rows.append({"arch": config.arch, "run": run, "kind": "step", "epoch": epoch + 1, "step": step,
                             "train_loss": window[run][0] / window[run][1]})  # fmt: skip
                window[run] = [0.0, 0]
        if progress:
            progress(f"{config.arch} epoch {epoch + 1}/{config.epochs}", b + 1, n_batches)
    return seconds, sums, step


def _timed_step(pair: Pair, x: np.ndarray, y: np.ndarray, seconds: dict[str, float]) -> tuple[Any, Any]:
    """One training step of ours, then of the twin, on the batch; each one's wall time added to ``seconds``."""
    t0 = time.perf_counter()
    loss = pair.net.train_step(pair.opt, x, y)
    t1 = time.perf_counter()
    loss_t = twin_step(pair, x, y)
    t2 = time.perf_counter()
    seconds["impl"] += t1 - t0
    seconds["torch"] += t2 - t1
    return loss, loss_t


def _epoch_rows(pair: Pair, config: TrainConfig, epoch: int, step: int, train: tuple[np.ndarray, np.ndarray],
                test_set: tuple[np.ndarray, np.ndarray], seconds: dict[str, float],
                sums: dict[str, list]) -> list[dict[str, Any]]:  # fmt: skip
    """The ``epoch`` row of each run: its training loss, its accuracy on the first 10,000 training images,
    its test loss and accuracy, its seconds."""
    images, labels = train
    set_modes(pair, False)  # evaluated as used: batch norm on its running statistics, no dropout
    train_eval = evaluate_pair(pair, images[:10000], labels[:10000], np.float32)
    test = evaluate_pair(pair, test_set[0], test_set[1], np.float32)
    set_modes(pair, True, dropout=False)
    rows = []
    for run, suffix in (("impl", ""), ("torch", "_twin")):
        rows.append(
            {
                "arch": config.arch,
                "run": run,
                "kind": "epoch",
                "epoch": epoch + 1,
                "step": step,
                "train_loss": sums[run][0] / sums[run][2],
                "train_acc": train_eval[f"test_acc{suffix}"],
                "test_loss": test[f"test_loss{suffix}"],
                "test_acc": test[f"test_acc{suffix}"],
                "seconds": seconds[run],
            }
        )
    return rows


def curve_checks(curves: pd.DataFrame, *, min_accuracy: float = MIN_TEST_ACCURACY, arch: str = "lenet",
                 max_gap: float = MAX_ACCURACY_GAP) -> pd.DataFrame:  # fmt: skip
    """The bounds held on the float32 curves of ``arch``: one row per check (name, value, bound, status);
    the names of a network other than lenet start with it (``lenet-bn: final test accuracy (ours)``)."""
    epochs = curves[(curves["kind"] == "epoch") & (curves["arch"] == arch)]
    ours = epochs[epochs["run"] == "impl"].set_index("epoch")
    twin = epochs[epochs["run"] == "torch"].set_index("epoch")
    if ours.empty or twin.empty:
        return pd.DataFrame([{"check": f"{arch} curves", "value": np.nan, "bound": np.nan, "status": "fail",
                              "note": f"no {arch} epochs were recorded"}])  # fmt: skip
    final = ours.index.max()
    acc, acc_twin = float(ours.loc[final, "test_acc"]), float(twin.loc[final, "test_acc"])
    loss_gap = float((ours["test_loss"] - twin["test_loss"]).abs().max())
    checks = [
        ("final test accuracy (ours)", acc, min_accuracy, acc >= min_accuracy, ">="),
        (
            "final test accuracy gap |ours - twin|",
            abs(acc - acc_twin),
            max_gap,
            abs(acc - acc_twin) <= max_gap,
            "<=",
        ),
        ("largest test loss gap |ours - twin|", loss_gap, MAX_TEST_LOSS_GAP, loss_gap <= MAX_TEST_LOSS_GAP, "<="),
    ]
    named = (lambda c: c) if arch == "lenet" else (lambda c: f"{arch}: {c}")  # noqa: E731  (lenet's names: the baseline's)
    return pd.DataFrame(
        [{"check": named(c), "value": v, "bound": f"{op} {b}", "status": "pass" if ok else "fail", "note": f"after epoch {final}"}
         for c, v, b, ok, op in checks]
    )  # fmt: skip


def plot_curves(curves: pd.DataFrame, lockstep: pd.DataFrame | None, out: Any) -> list[Any]:
    """PNG plots: loss and accuracy per epoch/step (ours and twin on the same axes), and the lockstep
    difference on a log scale. Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for arch, group in curves.groupby("arch", sort=False) if len(curves) else []:
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
        for run, style in (("impl", "-"), ("torch", "--")):
            steps = group[(group["run"] == run) & (group["kind"] == "step")]
            epochs = group[(group["run"] == run) & (group["kind"] == "epoch")]
            label = "ours (NumPy)" if run == "impl" else "twin (PyTorch)"
            ax_loss.plot(steps["step"], steps["train_loss"], style, alpha=0.6, label=f"{label} train")
            ax_loss.plot(epochs["step"], epochs["test_loss"], style + "o", label=f"{label} test")
            ax_acc.plot(epochs["epoch"], epochs["test_acc"] * 100, style + "o", label=f"{label} test")
            ax_acc.plot(epochs["epoch"], epochs["train_acc"] * 100, style + "x", alpha=0.6, label=f"{label} train")
        ax_loss.set(xlabel="step", ylabel="cross-entropy", title=f"{arch}: loss", yscale="log")
        ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{arch}: accuracy")
        for ax in (ax_loss, ax_acc):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"curves_{arch}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    if lockstep is not None and len(lockstep):
        fig, ax = plt.subplots(figsize=(7, 4))
        for arch, run in lockstep.groupby("arch", sort=False) if "arch" in lockstep else [("", lockstep)]:
            named = f"{arch}: " if arch else ""
            ax.semilogy(run["step"], run["loss_rel_diff"].clip(lower=1e-18), label=f"{named}loss, relative")
            ax.semilogy(
                run["step"], run["param_rel_diff"].clip(lower=1e-18), label=f"{named}largest parameter, relative"
            )
        ax.axhline(LOCKSTEP_BOUND, color="red", linestyle=":", label=f"bound {LOCKSTEP_BOUND:g}")
        ax.set(xlabel="step", ylabel="|ours - twin| (relative)", title="lockstep, float64")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / "lockstep.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


QUICK_STEPS = 40  # lockstep steps of a quick run (40 batches of 32: a few thousand images)
LOCKSTEP_ARCH = "seed"  # the network of the lockstep (the blog's): every layer kind but AvgPool2D
# the course layers' network (batch norm, dropout), trained where the implementation has them: its
# lockstep (dropout in eval mode) is ~0.5 s a float64 step on 2 cores, so it takes at most these steps
COURSE_ARCH, COURSE_LOCKSTEP_STEPS, COURSE_EPOCHS = "lenet-bn", 60, 1


def curve_judge(
    impl: Any,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    epochs: int = 3,
    steps: int = 200,
    quick: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the lockstep and (unless ``quick``) the full float32 curves. Returns the tables and ``ok``
    (every bound held); ``write_curves`` writes them."""

    def lockstep(arch: str, n: int) -> tuple[pd.DataFrame, dict[str, Any]]:
        ran = run_lockstep(impl, data, arch=arch, steps=n,
                           progress=(lambda d, t: progress(f"lockstep {arch} (float64)", d, t)) if progress else None)  # fmt: skip
        return ran, lockstep_verdict(ran)

    lock, verdict = lockstep(LOCKSTEP_ARCH, QUICK_STEPS if quick else steps)
    rows = [_lockstep_row(verdict, LOCKSTEP_ARCH, "")]
    course = has_classes(impl, COURSE_ARCH)  # the course layers' network, where the implementation has them
    if course:
        lock_bn, verdict_bn = lockstep(COURSE_ARCH, min(COURSE_LOCKSTEP_STEPS, QUICK_STEPS if quick else steps))
        rows.append(_lockstep_row(verdict_bn, COURSE_ARCH, f"{COURSE_ARCH}: "))
        lock = pd.concat([lock.assign(arch=LOCKSTEP_ARCH), lock_bn.assign(arch=COURSE_ARCH)], ignore_index=True)
        verdict = verdict if verdict["status"] != "pass" else verdict_bn
    curves = pd.DataFrame()
    checks = pd.DataFrame()
    if not quick:
        runs = [TrainConfig(arch="lenet", epochs=epochs), SEED_SETTINGS]
        runs += [TrainConfig(arch=COURSE_ARCH, epochs=COURSE_EPOCHS)] if course else []
        curves = pd.concat([run_curves(impl, data, config, progress=progress) for config in runs], ignore_index=True)
        checks = pd.concat([curve_checks(curves)] + ([curve_checks(curves, min_accuracy=MIN_TEST_ACCURACY_BN, arch=COURSE_ARCH,
                                                                    max_gap=MAX_ACCURACY_GAP_BN)]
                           if course else []), ignore_index=True)  # fmt: skip
    checks = pd.concat([pd.DataFrame(rows), checks], ignore_index=True)
    return {"lockstep": lock, "verdict": verdict, "curves": curves, "checks": checks, "quick": quick,
            "ok": bool((checks["status"] == "pass").all())}  # fmt: skip


def _lockstep_row(verdict: dict[str, Any], arch: str, prefix: str) -> dict[str, Any]:
    return {"check": f"{prefix}lockstep max relative difference (loss or parameter)",
            "value": max(verdict["max_loss_rel_diff"], verdict["max_param_rel_diff"]), "bound": f"< {verdict['bound']:g}",
            "status": verdict["status"], "diagnosis": verdict["diagnosis"], "network": arch,
            "broken_layer": verdict["broken_layer"],
            "note": f"{verdict['steps']} steps" + (f"; broken at step {verdict['first_broken_step']} by {verdict['broken_by']}"
                                                    if verdict["first_broken_step"] else "")}  # fmt: skip


def has_classes(impl: Any, arch: str) -> bool:
    """Whether the implementation defines every kind of ``arch``'s layers."""
    from reference.core.verdicts import network_types

    return all(callable(getattr(impl, t, None)) for t in network_types(arch))


def write_curves(result: dict[str, Any], out: Path) -> list[Path]:
    """lockstep.csv, curves.csv (full runs), curve_checks.csv, PNG plots and curves.md into ``out``."""
    from reference.report.tables import markdown, write_atomic

    lock, curves, checks = result["lockstep"], result["curves"], result["checks"]
    write_atomic(out / "lockstep.csv", lock.to_csv(index=False))
    if len(curves):
        write_atomic(out / "curves.csv", curves.to_csv(index=False))
    write_atomic(out / "curve_checks.csv", checks.to_csv(index=False))
    plots = plot_curves(curves, lock, out)
    epochs_table = curves[curves["kind"] == "epoch"].drop(columns=["kind"]) if len(curves) else pd.DataFrame()
    seed_final = epochs_table[(epochs_table.get("arch") == "seed")] if len(epochs_table) else pd.DataFrame()
    lines = ["# Curve judge", "", "## Bounds", "", markdown(checks), "", "## Per epoch (float32)", "",
             markdown(epochs_table) if len(epochs_table) else "_quick run: lockstep only_", ""]  # fmt: skip
    if len(seed_final):
        ours = seed_final[seed_final["run"] == "impl"]["test_acc"].iloc[-1]
        lines += [f"The `seed` network (the blog's) after 1 epoch with its settings (batch {SEED_SETTINGS.batch_size}, "
                  f"lr {SEED_SETTINGS.lr}, plain SGD): **{ours:.2%}** test accuracy, beside the blog's "
                  f"{BLOG_SEED_ACCURACY:.1%} dev accuracy.", ""]  # fmt: skip
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    write_atomic(out / "curves.md", "\n".join(lines) + "\n")
    return plots


def curve_classes() -> tuple[str, ...]:
    """The classes training needs: every kind of the lockstep's and the curves' networks, their loss,
    and the optimiser."""
    from reference.core.verdicts import network_types
    from reference.layers import NETWORK_LOSS

    return tuple(dict.fromkeys([*network_types(LOCKSTEP_ARCH), *network_types("lenet"), NETWORK_LOSS, "SGD"]))


class CurvesJudge(Judge):
    """Training beside the twin. Its rows are its bounds (lockstep, and unless quick the float32
    curves); an implementation without SGD or a layer the networks use gets one ``missing`` row, one
    that raises (or whose worker is lost) during training one ``error`` or ``unsupported`` row."""

    name = "curves"
    title = "Curve judge"

    def __init__(self, out: Path | None = None) -> None:
        self.out = out  # kept for callers that pass it; files are written by write()
        self.result: dict[str, Any] | None = None

    def _row(self, status: str, note: str, case: str = "lockstep") -> Result:
        row = {"judge": self.name, "layer": "training", "case": case, "tensor": "-", "dtype": "",
               "status": status, "note": note, "family": "training"}  # fmt: skip
        return Result(self.name, pd.DataFrame([row]), ok=False)

    def run(self, ctx: Context) -> Result:
        from reference.impl.protocol import classify
        from reference.judges.base import judged_in, skip_reason

        self.result = None
        absent = [n for n in curve_classes() if not callable(getattr(ctx.impl, n, None))]
        if absent or ctx.data is None:
            return self._row("missing", f"needs {', '.join(absent)}, which the implementation lacks" if absent
                             else "no MNIST data given")  # fmt: skip
        from scratch_cnn.data import DataError

        try:
            data = ctx.data()
        except DataError as err:  # no MNIST here: training is not judged, and the row says why
            return self._row("missing", f"MNIST unavailable: {err}")
        if why := skip_reason(ctx.impl, "training"):
            return self._row("timeout", why)
        from reference.sandbox import requests

        seconds = requests.limits(ctx.impl)
        try:
            with judged_in(ctx.impl, "training", lazy=True, seconds=seconds.train_seconds if seconds else None):
                result = curve_judge(ctx.impl, data, epochs=ctx.epochs, steps=ctx.steps,
                                     quick=ctx.quick or not ctx.full_curves, progress=ctx.progress)  # fmt: skip
        except Exception as err:  # the implementation raised, or its worker was lost, while training
            status, message = classify(err)
            return self._row(status, f"training stopped: {message}")
        self.result = result
        checks = result["checks"]
        rows = pd.DataFrame({"judge": self.name, "layer": "training", "case": checks["check"], "tensor": "-",
                             "dtype": "", "status": checks["status"], "note": checks["note"], "family": "training",
                             "value": checks["value"], "bound": checks["bound"],
                             "diagnosis": checks.get("diagnosis", pd.Series([""] * len(checks))).fillna(""),
                             "network": checks.get("network"), "broken_layer": checks.get("broken_layer")})  # fmt: skip
        return Result(self.name, rows, ok=result["ok"])

    def lines(self, result: Result) -> list[str]:
        """One line per bound: status, check, value, bound, note."""

        def figures(r: pd.Series) -> str:
            value = r.get("value", float("nan"))
            return "" if pd.isna(value) else f" {value:.4g} (bound {r.get('bound', '')})"

        return [f"{r['status'].upper():4} {r['case']}:{figures(r)} {r['note']}" for _, r in result.rows.iterrows()]

    def write(self, result: Result, out: Path, impl_name: str) -> None:
        """The curve files of the last run (curves.md, lockstep.csv, curve_checks.csv, plots), or the
        one row that says why training was not judged."""
        from reference.report.tables import write_atomic

        out.mkdir(parents=True, exist_ok=True)
        if self.result is not None:
            write_curves(self.result, out)
        else:
            write_atomic(out / "curve_checks.csv", result.rows.rename(columns={"case": "check"}).to_csv(index=False))
