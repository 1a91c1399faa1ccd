"""The layer protocol an implementation must follow to be judged, and the loader that checks it.

An implementation is an importable module (``scratch_cnn`` by default, or ``--impl package.module``)
that defines these classes:

| name | constructor | forward | backward |
|---|---|---|---|
| `Conv2D` | `(in_ch, out_ch, kernel_size, stride=1, padding="same", bias=True, *, rng, dtype)` | x `(m,H,W,C_in)` -> `(m,Ho,Wo,C_out)` | dout -> dx |
| `ReLU` | `()` | any shape | dout -> dx |
| `MaxPool2D`, `AvgPool2D` | `(kernel_size=2, stride=None)` | `(m,H,W,C)` -> `(m,Ho,Wo,C)` (floor) | dout -> dx |
| `Flatten` | `()` | `(m,H,W,C)` -> `(m,H*W*C)`, NHWC order | dout -> dx |
| `Dense` | `(n_in, n_out, bias=True, *, rng, dtype)` | `(m,n_in)` -> `(m,n_out)` | dout -> dx |
| `SoftmaxCrossEntropy` | `()` | `forward(logits, labels) -> (mean loss, probs)` | `backward() -> dlogits` |
| `SGD` (curve judge only) | `(params, lr, momentum=0, weight_decay=0)` | `step(grads)` | |

Every layer has ``params`` and ``grads``: dicts with the same keys (``W``, ``b`` for Conv2D and
Dense; empty otherwise). ``params`` holds the live arrays: the judges write into them in place
(``layer.params["W"][...] = w``). ``grads`` is filled by ``backward``. Layouts: images NHWC, conv
weights ``(kh, kw, C_in, C_out)``, dense ``W (n_in, n_out)``. A layer computes in its input's dtype.
Conventions at kinks: ReLU'(0) = 0; a max-pool window's gradient goes to its first maximum in
row-major window order. The loss gradient is ``(softmax - onehot) / m`` (mean over the batch).
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType
from typing import Any

import numpy as np

LAYERS = ("Conv2D", "ReLU", "MaxPool2D", "AvgPool2D", "Flatten", "Dense")
PARAMETRIC = ("Conv2D", "Dense")
REQUIRED = (*LAYERS, "SoftmaxCrossEntropy")
DEFAULT_IMPL = "scratch_cnn"


class ImplError(ValueError):
    """An implementation that cannot be judged: the message names what is missing or wrong."""


# One call per class that the judges will make, checked with inspect.signature().bind().
SIGNATURE_PROBES: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "Conv2D": ((1, 1, 3), {"stride": 1, "padding": "same", "bias": True, "rng": None, "dtype": np.float64}),
    "ReLU": ((), {}),
    "MaxPool2D": ((2,), {"stride": None}),
    "AvgPool2D": ((2,), {"stride": None}),
    "Flatten": ((), {}),
    "Dense": ((2, 2), {"bias": True, "rng": None, "dtype": np.float64}),
    "SoftmaxCrossEntropy": ((), {}),
}
# name -> (constructor args, input shape, expected output shape) for a smoke run of forward
SMOKE = {
    "Conv2D": (((2, 3, 3), {}), (2, 5, 5, 2), (2, 5, 5, 3)),
    "ReLU": (((), {}), (2, 4, 4, 2), (2, 4, 4, 2)),
    "MaxPool2D": (((2,), {}), (2, 5, 5, 2), (2, 2, 2, 2)),
    "AvgPool2D": (((2,), {}), (2, 5, 5, 2), (2, 2, 2, 2)),
    "Flatten": (((), {}), (2, 3, 4, 5), (2, 60)),
    "Dense": (((6, 3), {}), (2, 6), (2, 3)),
}


def construct(impl: Any, layer_type: str, config: dict[str, Any], *, rng: np.random.Generator | None = None,
              dtype: Any = np.float64) -> Any:  # fmt: skip
    """Instantiate ``impl.<layer_type>(**config)`` (adding rng/dtype for parametric layers)."""
    cls = getattr(impl, layer_type)
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items()}
    if layer_type in PARAMETRIC:
        kwargs.update(rng=rng if rng is not None else np.random.default_rng(0), dtype=dtype)
    return cls(**kwargs)


def build_case_layer(impl: Any, layer_type: str, config: dict[str, Any], params: dict[str, np.ndarray],
                     dtype: Any) -> Any:  # fmt: skip
    """Construct the implementation's layer and write ``params`` into it in place (shapes checked)."""
    if layer_type == "SoftmaxCrossEntropy":
        return impl.SoftmaxCrossEntropy()
    layer = construct(impl, layer_type, config, dtype=np.dtype(dtype))
    for key, value in params.items():
        if key not in layer.params:
            raise ValueError(f"{layer_type} has no parameter {key!r} (params: {sorted(layer.params)})")
        if layer.params[key].shape != value.shape:
            raise ValueError(
                f"{layer_type}.params[{key!r}] has shape {layer.params[key].shape}, expected {value.shape}"
            )
        layer.params[key][...] = value
    return layer


def check_impl(impl: Any, name: str) -> None:
    """Raise ImplError naming every missing class, bad signature or wrong output shape."""
    missing = [n for n in REQUIRED if not inspect.isclass(getattr(impl, n, None))]
    if missing:
        raise ImplError(
            f"implementation {name!r} lacks {', '.join(missing)} (the layer protocol needs {', '.join(REQUIRED)})"
        )
    problems = []
    for cls_name, (args, kwargs) in SIGNATURE_PROBES.items():
        try:
            inspect.signature(getattr(impl, cls_name)).bind(*args, **kwargs)
        except TypeError as err:
            problems.append(f"{cls_name}{inspect.signature(getattr(impl, cls_name))} cannot be called as "
                            f"{cls_name}(*{args}, **{kwargs}): {err}")  # fmt: skip
    if problems:
        raise ImplError(f"implementation {name!r} has wrong signatures:\n  " + "\n  ".join(problems))
    for cls_name, ((args, kwargs), in_shape, out_shape) in SMOKE.items():
        try:
            cls = getattr(impl, cls_name)
            extra = {"rng": np.random.default_rng(0), "dtype": np.float64} if cls_name in PARAMETRIC else {}
            layer = cls(*args, **kwargs, **extra)
            for attr in ("forward", "backward", "params", "grads"):
                if not hasattr(layer, attr):
                    raise ImplError(f"{cls_name} instances have no {attr!r}")
            out = layer.forward(np.random.default_rng(0).standard_normal(in_shape))
        except ImplError as err:
            problems.append(str(err))
            continue
        except Exception as err:  # the implementation's own failure: report it, don't crash the judge
            problems.append(f"{cls_name}: forward on an input of shape {in_shape} raised {type(err).__name__}: {err}")
            continue
        if getattr(out, "shape", None) != out_shape:
            problems.append(
                f"{cls_name}: forward on {in_shape} returned shape {getattr(out, 'shape', type(out).__name__)}, expected {out_shape}"
            )
    if problems:
        raise ImplError(f"implementation {name!r} does not follow the layer protocol:\n  " + "\n  ".join(problems))


def load_impl(name: str = DEFAULT_IMPL) -> ModuleType:
    """Import and check an implementation module; ImplError says what is wrong."""
    try:
        module = importlib.import_module(name)
    except Exception as err:
        raise ImplError(f"cannot import implementation {name!r}: {type(err).__name__}: {err}") from err
    check_impl(module, name)
    return module
