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

``grads`` keep the last backward's gradients until the next backward (a later forward leaves them
alone), and a layer used for a second round (new input, new batch size, new spatial size or channel
count where its configuration allows) gives what a fresh instance would.

Optional: ``backward_params(dout)``, which fills ``grads`` exactly as ``backward`` would and need not
compute dx. Networks in training call it on their first layer (nobody needs the gradient of the
images) when the layer has it, ``backward`` otherwise; the protocol judge checks that the two agree.

A partial implementation is judged for what it has. A class the module lacks makes its layer's rows
``missing``; a constructor or forward that raises ``NotImplementedError`` declares a limit (the row
is ``unsupported``, with the message); any other exception is an ``error`` row (a failure). Code in
other layouts or styles goes through ``reference.impl.adapters`` first.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from reference.layers import KINDS, LAYERS, LOSSES, OPTIMIZERS, OPTIONAL, PARAMETRIC  # noqa: F401 (the protocol's names)
from reference.sandbox import requests

REQUIRED = (*LAYERS, *LOSSES)  # the blog's network's kinds: a module without one of them has a ``missing`` row
JUDGED = (*REQUIRED, *OPTIONAL)  # every kind the layer judges judge (the optional ones where the module has them)
CLASSES = (*JUDGED, *OPTIMIZERS)  # every class of the protocol a module may define
DEFAULT_IMPL = "scratch_cnn"
REFERENCE_DIR = str(Path(__file__).resolve().parents[1])


class ImplError(ValueError):
    """An implementation that cannot be judged at all (it does not import, or defines no protocol
    class): the message names the problem."""


class ProtocolViolation(RuntimeError):
    """The implementation broke a rule of the protocol (params that are copies, say); the judges turn
    it into an ``error`` row whose message names the rule."""


def load_impl(name: str = DEFAULT_IMPL) -> ModuleType:
    """Import an implementation by module name (``pkg.module``) or by file path (``path/to/file.py``).

    A file's directory goes on ``sys.path`` first, so the file can import its siblings. Only a module
    that cannot be imported, or that defines none of the protocol's classes, is refused (ImplError);
    anything less is judged layer by layer.
    """
    try:
        if name.endswith(".py") or os.sep in name or "/" in name:
            module = _import_file(Path(name))
        else:
            module = importlib.import_module(name)
    except ImplError:
        raise
    except Exception as err:
        raise ImplError(f"cannot import implementation {name!r}: {type(err).__name__}: {err}") from err
    if not any(available(module, n) for n in CLASSES):
        raise ImplError(f"implementation {name!r} defines none of the protocol's classes ({', '.join(CLASSES)}): "
                        "nothing to judge; code in other layouts or styles can be wrapped with reference.impl.adapters")  # fmt: skip
    return module


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise ImplError(f"cannot import implementation {str(path)!r}: no such file")
    directory = str(path.resolve().parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    module_name = f"_judged_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImplError(f"cannot import implementation {str(path)!r}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def available(impl: Any, layer_type: str) -> bool:
    """Whether the implementation defines ``layer_type`` (a class, or any callable that builds one)."""
    return callable(getattr(impl, layer_type, None))


def missing_layers(impl: Any, layer_types: tuple[str, ...] | list[str] = REQUIRED) -> list[str]:
    return [n for n in layer_types if not available(impl, n)]


def construct(impl: Any, layer_type: str, config: dict[str, Any], *, rng: np.random.Generator | None = None,
              dtype: Any = np.float64) -> Any:  # fmt: skip
    """Instantiate ``impl.<layer_type>(**config)`` (adding rng/dtype for parametric layers)."""
    cls = getattr(impl, layer_type)
    layer = cls(**constructor_kwargs(layer_type, config, rng=rng, dtype=dtype))
    if "mode" in config:  # NOTE: a mode is the layer's ``training`` attribute, never a constructor argument
        layer.training = config["mode"] == "train"
    return layer


def constructor_kwargs(layer_type: str, config: dict[str, Any], *, rng: np.random.Generator | None = None,
                       dtype: Any = np.float64) -> dict[str, Any]:  # fmt: skip
    """The keyword arguments of ``<layer_type>(**config)`` (rng/dtype added for parametric layers)."""
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items() if k != "mode"}
    extras = {"rng": rng if rng is not None else np.random.default_rng(0), "dtype": dtype}
    kwargs.update({k: extras[k] for k in KINDS[layer_type].constructor_extras})
    return kwargs


def built_at_once(impl: Any, layer_type: str, config: dict[str, Any], params: dict[str, np.ndarray],
                  dtype: Any, reads: tuple[str, ...] = ()) -> Any:  # fmt: skip
    """A sandboxed layer constructed with ``params`` written and read back in one exchange
    (requests.build) instead of three; None where that does not apply (in this process, a mode to set)
    or where anything in it did not go as the protocol says: the caller then builds it step by step,
    which names what went wrong as it always has. A time limit is not tried twice: WorkerLost raised."""
    from reference.sandbox.client import WorkerLost

    if "mode" in config:
        return None
    try:
        got = requests.build(impl, layer_type, constructor_kwargs(layer_type, config, dtype=np.dtype(dtype)), params,
                             f"{layer_type}() with its params written", reads)  # fmt: skip
    except WorkerLost as err:
        if err.reason in ("timeout", "budget"):
            raise
        return None
    except Exception:  # noqa: BLE001  # NOTE: told again, step by step, with the protocol's own words
        return None
    if got is None:
        return None
    layer, back = got
    for key, value in params.items():
        have = back.get(key) if isinstance(back, dict) else None
        if not isinstance(have, np.ndarray) or have.shape != value.shape or not np.array_equal(have, value):
            return None
    return layer


def write_params(layer: Any, layer_type: str, params: dict[str, np.ndarray], attr: str = "params") -> None:
    """Write ``params`` into the layer's live arrays (its ``params``, or its ``buffers``) and read them back.

    # NOTE: the protocol's params are the arrays the layer computes with. A ``params`` property that
    # returns copies (or converted arrays) swallows the write: without the read-back the judges would
    # compare the layer's own random weights with the reference's and report a maths bug.
    """
    own = getattr(layer, attr)
    for key, value in params.items():
        _check_param(layer_type, own, key, value, attr)
    try:
        back = requests.write_params(layer, own, params, f"writing {layer_type}.{attr}", attr)
    except TypeError as err:  # an entry that is no array
        raise ProtocolViolation(f"{layer_type}.{err}") from None
    if back is None:  # a layer of this process: written and read back here
        for key, value in params.items():
            own[key][...] = value
        back = getattr(layer, attr)
    for key, value in params.items():
        got = back.get(key) if isinstance(back, dict) else None
        if got is None or not np.array_equal(np.asarray(got), value):
            raise ProtocolViolation(_NOT_LIVE.format(layer_type=layer_type, key=key, attr=attr))


def _check_param(layer_type: str, own: dict[str, Any], key: str, value: np.ndarray, attr: str = "params") -> None:
    if key not in own:
        names = ", ".join(map(repr, (KINDS[layer_type].buffers if attr == "buffers" else KINDS[layer_type].params)))
        raise ProtocolViolation(f"{layer_type}.{attr} has no key {key!r} (keys: {sorted(own)}); "
                                f"the protocol names them {names}")  # fmt: skip
    if np.shape(own[key]) != value.shape:
        raise ProtocolViolation(f"{layer_type}.{attr}[{key!r}] has shape {np.shape(own[key])}, expected "
                                f"{value.shape} (the protocol's layout; see reference.impl.adapters for others)")  # fmt: skip


_NOT_LIVE = (
    "{layer_type}.{attr}[{key!r}] is not live: a value written into it in place is not there when read "
    "back (does `{attr}` return copies?); the protocol needs the arrays the layer computes with"
)


def read_grads(layer: Any, layer_type: str, keys: list[str]) -> dict[str, np.ndarray]:
    """Copies of ``layer.grads[k]`` for each parameter key, right after a backward (from a sandboxed
    layer: its grads read as data in one exchange)."""
    try:
        grads = requests.read(layer, "grads")
    except Exception as err:
        grads = _no_attribute(err)
    return checked_grads(grads, layer_type, keys)


def backward_and_grads(
    layer: Any, layer_type: str, g: np.ndarray, keys: list[str]
) -> tuple[Any, dict[str, np.ndarray]]:
    """``layer.backward(g)`` and then ``read_grads``: for a sandboxed layer in one exchange
    (requests.call_then_read), raising what the two one after the other raise."""
    got = requests.call_then_read(layer, "backward", (g,), "grads")
    if got is None:
        dx = layer.backward(g)
        return dx, read_grads(layer, layer_type, keys)
    dx, grads, failed = got
    return dx, checked_grads(_no_attribute(failed) if failed is not None else grads, layer_type, keys)


def backward_grads_and_params(layer: Any, layer_type: str, g: np.ndarray, keys: list[str]
                              ) -> tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray] | None]:  # fmt: skip
    """``backward_and_grads``, and the values of ``layer.params[k]`` for each key as they are after
    it: for a sandboxed layer all three in one exchange (the params read where the requests one by one
    read them next). The params are None where they were not read so (a layer of this process, no
    keys, a read that raised or no dict of arrays): the caller reads them itself, as before."""
    got = requests.call_then_reads(layer, "backward", (g,), ["grads", "params"]) if keys else None
    if got is None:
        dx, grads = backward_and_grads(layer, layer_type, g, keys)
        return dx, grads, None
    dx, reads, failed = got
    if failed is not None and failed[0] == 0:  # the grads' read raised: as read_grads takes it
        return dx, checked_grads(_no_attribute(failed[1]), layer_type, keys), None
    grads = checked_grads(reads[0], layer_type, keys)
    now = reads[1] if failed is None else None
    if not isinstance(now, dict) or not all(isinstance(now.get(k), np.ndarray) for k in keys):
        return dx, grads, None
    return dx, grads, {k: now[k] for k in keys}


def forward_backward_reads(layer: Any, layer_type: str, x: np.ndarray, g: np.ndarray, keys: list[str]
                           ) -> tuple[Any, Any, dict[str, Any], dict[str, np.ndarray]] | None:  # fmt: skip
    """For a sandboxed layer, in one exchange: ``layer.forward(x)``, ``layer.backward(g)``, then (with
    ``keys``) ``layer.params`` and ``read_grads``, as data: (out, dx, params, grads). Raises what the
    four one after the other raise (a grads read that raises AttributeError: no grads, as read_grads
    takes it). None for a layer of this process or a lazy scope's: the caller makes the calls itself."""
    from reference.sandbox.client import RemoteError

    if not requests.fusable(layer):
        return None
    who = requests.label(layer)
    items: list[Any] = [requests.Call(layer, "forward", (x,)), requests.Call(layer, "backward", (g,))]
    if keys:
        items += [requests.Read(layer, "params"), requests.Read(layer, "grads")]
    values, failed = requests.run(items, f"{who}.forward and .backward", keep=list(range(len(items))), partial=True,
                                  calls=2)  # fmt: skip
    if failed is not None:
        stopped = ["forward", "backward", "params", "grads"][failed[0]]
        err = RemoteError(failed[1], f"{who}.{stopped}")
        if stopped != "grads":
            raise err
        checked_grads(_no_attribute(err), layer_type, keys)  # raises: no dict of grads
    if not keys:
        return values[0], values[1], {}, {}
    params = values[2]
    if not isinstance(params, dict) or not all(k in params for k in keys):
        raise ProtocolViolation(f"{layer_type}.params lacks {', '.join(map(repr, keys))} after backward")
    return values[0], values[1], params, checked_grads(values[3], layer_type, keys)


def _no_attribute(err: BaseException) -> None:
    """None for an AttributeError (here or in a worker): no such attribute; any other exception raised."""
    if isinstance(err, AttributeError) or "AttributeError" in getattr(err, "mro", ()):
        return None
    raise err


def checked_grads(grads: Any, layer_type: str, keys: list[str]) -> dict[str, np.ndarray]:
    """Copies of ``grads[k]`` for each parameter key; ProtocolViolation when grads is no dict or lacks a key."""
    if not isinstance(grads, dict):
        raise ProtocolViolation(f"{layer_type}.grads is {type(grads).__name__}, not a dict keyed like params")
    absent = [k for k in keys if grads.get(k) is None]
    if absent:
        raise ProtocolViolation(f"{layer_type}.grads has no {', '.join(map(repr, absent))} after backward "
                                f"(keys: {sorted(grads)}); backward must fill a gradient for every key of params")  # fmt: skip
    return {k: np.array(grads[k], copy=True) for k in keys}


def build_case_layer(impl: Any, layer_type: str, config: dict[str, Any], params: dict[str, np.ndarray],
                     dtype: Any, buffers: dict[str, np.ndarray] | None = None,
                     reads: tuple[str, ...] = ()) -> Any:  # fmt: skip
    """Construct the implementation's layer and write ``params`` (and ``buffers``) into it in place
    (checked); ``reads``: attributes a sandbox reads in the same exchange (requests.read_at_build)."""
    if KINDS[layer_type].loss:  # a loss takes no configuration and has no parameters
        return getattr(impl, layer_type)()
    if not buffers and (layer := built_at_once(impl, layer_type, config, params, dtype, reads)) is not None:
        return layer
    layer = construct(impl, layer_type, config, dtype=np.dtype(dtype))
    write_params(layer, layer_type, params)
    if buffers:
        write_params(layer, layer_type, buffers, attr="buffers")
    return layer


def classify(err: BaseException) -> tuple[str, str]:
    """(status, message) for an exception raised by the implementation.

    ``NotImplementedError`` is a declared limit: ``unsupported``. A ProtocolViolation names the rule
    broken. A worker that was lost (it ended, was killed, timed out, sent garbage) is an ``error``
    that says so. Anything else is an ``error``, with the implementation's last frame. The same
    holds for an exception raised in a sandboxed worker (reference.sandbox.client.RemoteError).
    """
    from reference.sandbox.client import RemoteError, WorkerLost

    if isinstance(err, RemoteError):
        names, text, where = err.mro, err.message, err.where
    elif isinstance(err, WorkerLost):  # a time limit cut it: not judged, never a fail (it names the limit)
        return ("timeout" if err.reason in ("timeout", "budget") else "error"), str(err)
    else:
        names, text, where = [c.__name__ for c in type(err).__mro__], str(err), implementation_frame(err)
    name = names[0] if names else "Exception"
    if "NotImplementedError" in names:
        return "unsupported", f"{name}: {text}" if text else name
    if isinstance(err, ProtocolViolation):
        return "error", f"protocol: {err}"
    hint = ""
    if name == "TypeError" and not where and ("argument" in text or "positional" in text):
        # raised at the judges' call itself: the constructor's signature is not the protocol's
        hint = (" (the protocol calls Conv2D(in_ch, out_ch, kernel_size, stride=, padding=, bias=, rng=, dtype=), "
                "Dense(n_in, n_out, bias=, rng=, dtype=), MaxPool2D/AvgPool2D(kernel_size, stride=); "
                "see reference/impl/protocol.py, or wrap the class with reference.impl.adapters)")  # fmt: skip
    return "error", f"{name}: {text}" + (f" (at {where})" if where else hint)


def implementation_frame(err: BaseException) -> str:
    """``file:line in function`` of the last frame outside the judges, NumPy and the standard library."""
    from reference.sandbox.worker import own_frame

    skip = (REFERENCE_DIR + os.sep, os.path.dirname(np.__file__) + os.sep, os.path.dirname(os.__file__) + os.sep)
    return own_frame(
        err, skip, keep=(os.path.join(REFERENCE_DIR, "impl") + os.sep,)
    )  # the adapters are the user's glue
