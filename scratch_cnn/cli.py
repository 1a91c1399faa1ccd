"""`python -m scratch_cnn {fetch-data, train, evaluate, predict}`."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from contextlib import nullcontext
from pathlib import Path

from .architectures import ARCHITECTURES
from .data import DataError, ensure_mnist, load_mnist, load_split
from .imageio import read_digit, sample_path
from .model import Sequential
from .train import CHECKPOINT, TrainConfig, confusion_matrix, evaluate, load_checkpoint, run_training

DEFAULTS = TrainConfig()


def _data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="directory holding the four MNIST IDX files (checked before the cache)")


TRAIN_OPTIONS = ("arch", "epochs", "batch_size", "lr", "momentum", "weight_decay", "lr_decay", "seed", "dtype", "limit",
                 "log_every", "eval_limit")  # fmt: skip
RESUMABLE = ("epochs", "eval_limit")  # what --resume accepts: extend the run, evaluate on fewer images


def parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    ap = argparse.ArgumentParser(prog="python -m scratch_cnn", description=__doc__, formatter_class=fmt)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch-data", help="fetch and verify MNIST, print where the files are", formatter_class=fmt)
    _data_arg(p)

    # NOTE: training options default to None here (the defaults are TrainConfig's, shown in the help),
    # so that an option given beside --resume can be told from one left alone.
    p = sub.add_parser("train", help="train a named architecture on MNIST", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train on MNIST; checkpoint and model after every epoch. With --resume DIR the run "
                       "continues with its own settings; --epochs N then extends it to N epochs.")  # fmt: skip
    _data_arg(p)
    d = DEFAULTS
    p.add_argument("--arch", help=f"one of {', '.join(sorted(ARCHITECTURES))} (default: {d.arch})")
    p.add_argument(
        "--epochs", type=int, help=f"epochs to train; with --resume, extends the run to this many (default: {d.epochs})"
    )
    p.add_argument("--batch-size", type=int, help=f"images per step (default: {d.batch_size})")
    p.add_argument("--lr", type=float, help=f"learning rate of epoch 1 (default: {d.lr})")
    p.add_argument("--momentum", type=float, help=f"SGD momentum, as torch.optim.SGD (default: {d.momentum})")
    p.add_argument("--weight-decay", type=float, help=f"L2 on weights, not biases (default: {d.weight_decay})")
    p.add_argument("--lr-decay", type=float, help=f"lr of epoch e is lr * lr_decay**e (default: {d.lr_decay})")
    p.add_argument("--seed", type=int, help=f"weights and batch order, >= 0 (default: {d.seed})")
    p.add_argument("--dtype", help=f"float32 or float64 (default: {d.dtype})")
    p.add_argument("--limit", type=int, help="train on the first N training images only (default: all 60,000)")
    p.add_argument("--log-every", type=int, help=f"a history row every K steps (default: {d.log_every})")
    p.add_argument(
        "--eval-limit", type=int, help="evaluate each epoch on the first N test images (default: all 10,000)"
    )
    p.add_argument("--out", type=Path, default=None, help="output directory (default: runs/ARCH)")
    p.add_argument("--resume", type=Path, default=None, metavar="DIR", help="continue the run checkpointed in DIR")

    p = sub.add_parser("evaluate", help="test accuracy and confusion matrix of a saved model", formatter_class=fmt)
    p.add_argument("model", type=Path, help="a model.npz written by train")
    _data_arg(p)

    p = sub.add_parser("predict", help="classify one digit image (.png or .npy, any size)", formatter_class=fmt,
                       description="Classify one digit image. An image that is not 28x28 is padded to a square and "
                       "resized to 28x28; one that is mostly light (a dark digit on white) is inverted, as MNIST "
                       "digits are light on dark. A note on stderr tells each such change.")  # fmt: skip
    p.add_argument("model", type=Path, help="a model.npz written by train")
    p.add_argument("image", type=Path, nargs="?",
                   help="a digit image: an 8-bit greyscale, RGB or RGBA .png, or a 2-D .npy array (uint8, or "
                   "floats in [0, 1])")  # fmt: skip
    p.add_argument(
        "--sample", action="store_true", help="classify the sample digit shipped with scratch_cnn (a 7), not an image"
    )
    return ap


def check_out(out: Path) -> None:
    """Refuse an --out that cannot hold a run, before anything is fetched or created."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory; choose another --out")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {probe} is not writable; choose another --out")


def cmd_fetch(args: argparse.Namespace) -> None:
    directory = ensure_mnist(args.data_dir)
    print(f"MNIST verified in {directory}")


def cmd_train(args: argparse.Namespace) -> None:
    given = {k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None}
    if args.resume is not None:
        other = [f"--{k.replace('_', '-')}" for k in given if k not in RESUMABLE] + (["--out"] if args.out else [])
        if other:
            raise ValueError(f"--resume continues a run with its own settings; only --epochs (to extend it) and "
                             f"--eval-limit can be given beside it, not {', '.join(other)}")  # fmt: skip
        out, created = args.resume, False
        load_checkpoint(out)  # a missing or damaged checkpoint is named before MNIST is loaded
        config = TrainConfig(epochs=given.get("epochs", 0), eval_limit=given.get("eval_limit"))
    else:
        config = TrainConfig(**given)
        config.validate()  # before any data is fetched or directory made
        out = args.out if args.out is not None else Path("runs") / config.arch
        check_out(out)
        if (out / CHECKPOINT).exists():
            raise ValueError(f"{out} already holds a checkpoint; pass --resume {out} or choose another --out")
        created = not out.exists()
    data = load_mnist(args.data_dir)
    try:
        result = run_training(config, data, out, resume=args.resume is not None)
    except KeyboardInterrupt:
        raise Interrupted(interrupted_message(out, created)) from None
    except BaseException:
        if created and not (out / CHECKPOINT).exists():
            shutil.rmtree(out, ignore_errors=True)  # nothing of value was written: leave nothing behind
        raise
    if result:
        print(f"model: {out / 'model.npz'}  history: {out / 'history.csv'}")
    else:
        print(f"nothing to do: {out} has already trained every epoch (give --epochs N to extend it)")


class Interrupted(Exception):
    """Ctrl-C: the message says truthfully what is left and how to continue."""


def interrupted_message(out: Path, created: bool) -> str:
    if (out / CHECKPOINT).is_file():
        try:
            _, _, _, done, _ = load_checkpoint(out)
        except ValueError:
            done = "a finished"
        return (f"interrupted: the checkpoint of epoch {done} is in {out}; continue with: "
                f"python -m scratch_cnn train --resume {out}")  # fmt: skip
    if created:
        shutil.rmtree(out, ignore_errors=True)
    return (f"interrupted before the first epoch finished: nothing was checkpointed, so there is nothing to resume "
            f"(and nothing was left in {out}); start the run again with the same command")  # fmt: skip


def cmd_evaluate(args: argparse.Namespace) -> None:
    model = Sequential.load(args.model)
    images, labels = load_split("test", ensure_mnist(args.data_dir))
    result = evaluate(model, images, labels)
    print(f"test accuracy {result['accuracy']:.4f} ({int(round(result['accuracy'] * len(labels)))}/{len(labels)}), "
          f"loss {result['loss']:.4f}")  # fmt: skip
    matrix = confusion_matrix(labels, result["pred"])
    print("confusion matrix (rows: true digit, columns: predicted)")
    print("     " + "".join(f"{j:>6}" for j in range(10)))
    for i, row in enumerate(matrix):
        print(f"{i:>4} " + "".join(f"{v:>6}" for v in row))


def cmd_predict(args: argparse.Namespace) -> None:
    if args.sample == (args.image is not None):
        raise ValueError("predict takes an image or --sample, not both" if args.sample else
                         "predict needs an image (a .png or .npy file), or --sample for the digit shipped with "
                         "scratch_cnn")  # fmt: skip
    model = Sequential.load(args.model)
    notes: list[str] = []
    with sample_path() if args.sample else nullcontext(args.image) as image:
        if args.sample:
            notes.append(f"the sample digit shipped with scratch_cnn, a 7: {image}")
        x = read_digit(image, dtype=model.dtype, notes=notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    probs = model.predict_proba(x)[0]
    print(f"digit {int(probs.argmax())}")
    for digit, p in enumerate(probs):
        print(f"  {digit}: {p:.4f}")


COMMANDS = {"fetch-data": cmd_fetch, "train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except Interrupted as err:
        print(f"\n{err}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"\ninterrupted during {args.command}: nothing was written (MNIST enters the cache only through "
              "temp files and renames)", file=sys.stderr)  # fmt: skip
        return 130
    except OSError as err:  # an unwritable or full disk outside the training loop's own checks
        where = f" {err.filename}" if getattr(err, "filename", None) else ""
        print(f"error: cannot access{where}: {err.strerror or err}", file=sys.stderr)
        return 2
    except (ValueError, DataError) as err:
        message = str(err)
        first, _, rest = message.partition("\n")
        print(f"error: {first}", file=sys.stderr)
        if rest:
            print(rest, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
