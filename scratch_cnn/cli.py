"""`python -m scratch_cnn {fetch-data, train, evaluate, predict}`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .architectures import ARCHITECTURES
from .data import DataError, ensure_mnist, load_mnist, load_split
from .imageio import read_digit
from .model import Sequential
from .train import TrainConfig, confusion_matrix, evaluate, run_training

DEFAULTS = TrainConfig()


def _data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="directory holding the four MNIST IDX files (checked before the cache)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m scratch_cnn", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch-data", help="fetch and verify MNIST, print where the files are")
    _data_arg(p)

    p = sub.add_parser("train", help="train a named architecture on MNIST")
    _data_arg(p)
    p.add_argument("--arch", default=DEFAULTS.arch, help=f"one of {sorted(ARCHITECTURES)} (default %(default)s)")
    p.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    p.add_argument("--lr", type=float, default=DEFAULTS.lr)
    p.add_argument("--momentum", type=float, default=DEFAULTS.momentum)
    p.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay, help="L2 on weights, not biases")
    p.add_argument("--lr-decay", type=float, default=DEFAULTS.lr_decay, help="lr of epoch e is lr * lr_decay**e")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    p.add_argument("--dtype", default=DEFAULTS.dtype, help="float32 (default) or float64")
    p.add_argument("--limit", type=int, default=None, help="train on the first N training images only")
    p.add_argument("--log-every", type=int, default=DEFAULTS.log_every, help="history row every K steps")
    p.add_argument("--out", type=Path, default=None, help="output directory (default runs/ARCH)")
    p.add_argument("--resume", type=Path, default=None, metavar="DIR", help="continue the run checkpointed in DIR")

    p = sub.add_parser("evaluate", help="test accuracy and confusion matrix of a saved model")
    p.add_argument("model", type=Path)
    _data_arg(p)

    p = sub.add_parser("predict", help="classify one 28x28 digit image (.png or .npy)")
    p.add_argument("model", type=Path)
    p.add_argument("image", type=Path)
    return ap


def cmd_fetch(args: argparse.Namespace) -> None:
    directory = ensure_mnist(args.data_dir)
    print(f"MNIST verified in {directory}")


def cmd_train(args: argparse.Namespace) -> None:
    if args.resume is not None:
        out = args.resume
    else:
        config = TrainConfig(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             momentum=args.momentum, weight_decay=args.weight_decay,
            lr_decay=args.lr_decay, seed=args.seed,
                             dtype=args.dtype, limit=args.limit, log_every=args.log_every)  # fmt: skip
        config.validate()  # before any data is fetched or directory made
        out = args.out if args.out is not None else Path("runs") / args.arch
    data = load_mnist(args.data_dir)
    try:
        result = run_training(config if args.resume is None else TrainConfig(), data, out,
                              resume=args.resume is not None)  # fmt: skip
    except KeyboardInterrupt:
        print(f"\ninterrupted: the last completed epoch's checkpoint is in {out}; "
              f"continue with: python -m scratch_cnn train --resume {out}", file=sys.stderr)  # fmt: skip
        raise SystemExit(130) from None
    if result:
        print(f"model: {out / 'model.npz'}  history: {out / 'history.csv'}")
    else:
        print(f"nothing to do: {out} has already trained every epoch")


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
    model = Sequential.load(args.model)
    x = read_digit(args.image).astype(model.dtype)
    probs = model.predict_proba(x)[0]
    print(f"digit {int(probs.argmax())}")
    for digit, p in enumerate(probs):
        print(f"  {digit}: {p:.4f}")


COMMANDS = {"fetch-data": cmd_fetch, "train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
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
