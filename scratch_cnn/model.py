"""Sequential model: a list of layers with stable parameter names, saved to .npz without pickle."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._validate import check_array
from .activations import LeakyReLU, ReLU, Sigmoid, Tanh
from .conv import Conv2D
from .dense import Dense, Flatten
from .dropout import Dropout
from .layer import Layer
from .normalization import BatchNorm1D, BatchNorm2D
from .pooling import AvgPool2D, MaxPool2D

LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (Conv2D, ReLU, MaxPool2D, AvgPool2D, Flatten, Dense, LeakyReLU, Sigmoid, Tanh, BatchNorm1D,
                BatchNorm2D, Dropout)
}  # fmt: skip
MODEL_FORMAT = "scratch-cnn-model"
MODEL_VERSION = 1
SPEC_KEY = "__spec__"


class Sequential:
    """Layers applied in order. Parameter names are ``"{index}.{key}"``, e.g. ``"0.W"``, ``"7.b"``;
    buffer names likewise (``"1.running_mean"``). ``train()`` / ``eval()`` set every layer's mode."""

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = list(layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The live parameter arrays of every layer, by stable name."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()}

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """The gradients from the last backward, with the same names as ``params``."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.grads.items()}

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        """The live buffers (state saved with the model, never trained: BatchNorm's running statistics)."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in getattr(layer, "buffers", {}).items()}

    @property
    def training(self) -> bool:
        """True when every layer is in training mode (the default); set it to set every layer's mode."""
        return all(getattr(layer, "training", True) for layer in self.layers)

    @training.setter
    def training(self, mode: bool) -> None:
        for layer in self.layers:
            layer.training = bool(mode)

    def train(self, mode: bool = True) -> Sequential:
        """Put every layer in training mode (``mode=False``: eval mode); returns self."""
        self.training = mode
        return self

    def eval(self) -> Sequential:
        """Put every layer in eval mode (BatchNorm uses its running statistics, Dropout passes through)."""
        return self.train(False)

    @property
    def dtype(self) -> np.dtype:
        dtypes = {v.dtype for v in self.params.values()}
        return dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float32)

    def astype(self, dtype: Any) -> Sequential:
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (m, H, W, C) -> logits (m, n_classes), in x's dtype."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dout: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """dlogits (m, n_classes) -> dx (the input's shape and dtype); fills every layer's grads.

        With ``input_grad=False`` (training: no one needs the gradient of the images) the first layer
        fills its grads by its ``backward_params`` where it has one (ours skip dx: a quarter of
        lenet's backward), its ``backward`` otherwise, and this returns None.
        """
        for layer in reversed(self.layers[1:]):
            dout = layer.backward(dout)
        first = self.layers[0] if self.layers else None
        if first is None:
            return dout
        if not input_grad and hasattr(first, "backward_params"):
            first.backward_params(dout)
            return None
        dx = first.backward(dout)
        return dx if input_grad else None

    def predict_proba(self, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """x (n, H, W, C) float -> softmax probabilities (n, n_classes), evaluated in batches in eval
        mode (the layers' modes are restored afterwards)."""
        from .losses import log_softmax

        check_array("Sequential", x, rank=x.ndim if isinstance(x, np.ndarray) else 4)
        with self.evaluating():
            outs = [np.exp(log_softmax(self.forward(x[i : i + batch_size]))) for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, 0), dtype=x.dtype)

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[Sequential]:
        """``with model.evaluating():`` runs the block in eval mode, then restores each layer's own mode."""
        modes = [(layer, getattr(layer, "training", True)) for layer in self.layers]
        self.eval()
        try:
            yield self
        finally:
            for layer, mode in modes:
                layer.training = mode

    def spec(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "layers": [{"type": layer.name, "config": layer.config()} for layer in self.layers],
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the spec and parameters to ``path`` (.npz) atomically (temp file, then rename)."""
        arrays = {SPEC_KEY: np.array(json.dumps(self.spec()))}
        arrays.update(self.arrays())
        return atomic_savez(Path(path), arrays)

    def arrays(self) -> dict[str, np.ndarray]:
        """What a model file holds beside its spec: ``param:{name}`` and ``buffer:{name}`` arrays."""
        arrays = {f"param:{k}": v for k, v in self.params.items()}
        arrays.update({f"buffer:{k}": v for k, v in self.buffers.items()})
        return arrays

    @classmethod
    def from_spec(
        cls, spec: dict[str, Any], dtype: Any = np.float32, rng: np.random.Generator | None = None
    ) -> Sequential:
        """Layers from a spec, with placeholder weights (load fills them) in ``dtype``; Dropout layers
        draw their masks from ``rng`` (a fresh Generator when None)."""
        layers = []
        for entry in spec["layers"]:
            layer_cls = LAYER_TYPES[entry["type"]]
            config = dict(entry["config"])
            if layer_cls in (Conv2D, Dense):
                config.update(rng=np.random.default_rng(0), dtype=dtype)
            elif layer_cls in (BatchNorm1D, BatchNorm2D):
                config.update(dtype=dtype)
            elif layer_cls is Dropout:
                config.update(rng=rng if rng is not None else np.random.default_rng())
            for key in ("kernel_size", "stride", "padding"):
                if isinstance(config.get(key), list):
                    config[key] = tuple(config[key])
            layers.append(layer_cls(**config))
        return cls(layers)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Sequential:
        """Read a model written by ``save``; a file that is not ours raises ValueError saying why."""
        path = Path(path)
        arrays = read_npz(path, "model file")
        if "__meta__" in arrays:
            raise ValueError(f"model file {path} is a training checkpoint, not a model: pass the model.npz beside it, "
                             f"or continue training with: python -m scratch_cnn train --resume {path.parent}")  # fmt: skip
        if SPEC_KEY not in arrays:
            raise ValueError(f"model file {path} has no {SPEC_KEY} entry: not a scratch-cnn model")
        try:
            spec = json.loads(str(arrays.pop(SPEC_KEY)))
            if spec.get("format") != MODEL_FORMAT or spec.get("version") != MODEL_VERSION:
                raise ValueError(f"format {spec.get('format')!r} version {spec.get('version')!r}")
            unknown = [e["type"] for e in spec["layers"] if e["type"] not in LAYER_TYPES]
            if unknown:
                raise ValueError(f"unknown layer types {unknown}")
            buffers = {k.removeprefix("buffer:"): v for k, v in arrays.items() if k.startswith("buffer:")}
            params = {k.removeprefix("param:"): v for k, v in arrays.items() if not k.startswith("buffer:")}
            dtypes = {v.dtype for v in params.values()}
            model = cls.from_spec(spec, dtype=dtypes.pop() if len(dtypes) == 1 else np.float32)
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as err:
            raise ValueError(f"model file {path} has a malformed spec: {err}") from err
        fill_arrays(f"model file {path}", "parameter", model.params, params)
        fill_arrays(f"model file {path}", "buffer", model.buffers, buffers)
        return model

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``model(x)`` is ``model.forward(x)``: x (m, H, W, C) -> logits (m, n_classes)."""
        return self.forward(x)

    def __repr__(self) -> str:
        """The layers in order, each with its parameters' shapes, and the parameter count."""
        lines = [
            f"Sequential({len(self.layers)} layers, {sum(v.size for v in self.params.values()):,} parameters, {self.dtype})"
        ]
        for i, layer in enumerate(self.layers):
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in layer.params.items())
            lines.append(f"  ({i}) {layer!r}" + (f"  [{shapes}]" if shapes else ""))
        return "\n".join(lines)


def fill_arrays(where: str, what: str, expected: dict[str, np.ndarray], found: dict[str, np.ndarray]) -> None:
    """Copy ``found`` into the live arrays ``expected`` (a model's params or buffers), checking that
    the names, shapes and finiteness match; a ValueError naming ``where`` otherwise."""
    if set(expected) != set(found):
        raise ValueError(f"{where}: {what}s {sorted(found)} do not match its layers, which need {sorted(expected)}")
    for name, value in found.items():
        if value.shape != expected[name].shape:
            raise ValueError(f"{where}: {what} {name} has shape {value.shape}, expected {expected[name].shape}")
        if not np.all(np.isfinite(value)):
            bad = int((~np.isfinite(value)).sum())
            raise ValueError(f"{where}: {what} {name} holds {bad} NaN/Inf value(s) of {value.size}: "
                             "the weights are damaged (a diverged run?); retrain, or load an earlier model")  # fmt: skip
        expected[name][...] = value


ZIP_MAGIC = b"PK\x03\x04"


def read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file (never unpickling); ValueError naming the problem, and no advice to
    allow pickles: a file that is not a plain .npz is refused, whatever it holds."""
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != ZIP_MAGIC:
        raise ValueError(f"{what} {path} is not an .npz archive (it does not start with the zip signature; "
                         f"{'it is empty' if not head else 'wrong or damaged file'})")  # fmt: skip
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as err:  # zipfile, zlib, format errors: a damaged (e.g. truncated) archive
        reason = "arrays holding Python objects are refused" if "pickle" in str(err) else f"{type(err).__name__}: {err}"
        raise ValueError(f"{what} {path} is a damaged or foreign .npz archive ({reason})") from err


def atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``path`` via a temp file in the same directory and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
