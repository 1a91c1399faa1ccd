"""What crosses the trust boundary, and how: frames of one JSON header and raw array buffers.

Both sides use this module; it imports only the standard library and NumPy, so the worker's room
stays free of the judges. Nothing here unpickles: a frame is

    b"SCNN" | uint32 header length | uint64 body length | JSON header | raw buffers (the body)

and a value is a JSON tree in which an array is ``{"t": "nd", "b": i, "dtype": "<f8", "shape": [...]}``
(buffer ``i`` of the body), a handle to an object that stays in the worker is ``{"t": "ref", ...}``.
The judge's side decodes with ``trusted=False``: every dtype, shape, size and node is checked, and
anything else is a ``WireError`` (the worker sent garbage), never code run in the judge.
"""

from __future__ import annotations

import json
import math
import os
import select
import struct
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

MAGIC = b"SCNN"
PREFIX = struct.Struct("<4sIQ")
MAX_HEADER = 16 << 20  # a JSON header of 16 MB is already far beyond any honest message
MAX_DEPTH = 32  # nesting of a value tree (tuples of dicts of arrays need 4)
# NOTE: values of exactly these types stand for themselves on the wire (``Encoder.value`` and
# ``Decoder.value`` give them back unchanged): a sequence of nothing else is sent and read in one step
PLAIN = frozenset({type(None), bool, int, float, str})
NUMERIC_KINDS = "biufc"  # bool, signed, unsigned, float, complex: plain numbers, nothing that holds objects


class WireError(ValueError):
    """A frame or value that does not follow this format (names what was wrong)."""


class Timeout(Exception):
    """The other side did not answer before the deadline."""


class Closed(Exception):
    """The other side closed its end (its process ended)."""


# --- values ---------------------------------------------------------------------------------------


class Res:
    """In a batch: the result of its item ``i`` (``[key]`` of it when given), as an argument."""

    __slots__ = ("i", "key")

    def __init__(self, i: int, key: Any = None) -> None:
        self.i, self.key = i, key


class Ref:
    """A handle to an object kept on the worker's side, as it travels."""

    __slots__ = ("id",)

    def __init__(self, id: int) -> None:
        self.id = id


def check_dtype(text: Any) -> np.dtype:
    """A numeric dtype from its string form (``"<f8"``); anything else is a WireError."""
    if not isinstance(text, str) or len(text) > 8:
        raise WireError(f"dtype {text!r} is not a short string")
    try:
        dtype = np.dtype(text)
    except TypeError as err:
        raise WireError(f"dtype {text!r} is not a NumPy dtype") from err
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise WireError(f"dtype {text!r} is not a plain numeric dtype")
    return dtype


def check_shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > 32:
        raise WireError(f"shape {shape!r} is not a list of at most 32 sizes")
    if not all(type(n) is int and 0 <= n < 1 << 40 for n in shape):
        raise WireError(f"shape {shape!r} holds something other than sizes")
    return tuple(shape)


class Encoder:
    """Turns a value into a JSON tree plus buffers. ``by_ref(obj)`` decides what stays behind as a
    handle (the worker's table); ``rngs`` collects the Generators sent, so their states can be synced."""

    def __init__(self, by_ref: Any = None, arrays_by_ref: bool = False) -> None:
        self.buffers: list[memoryview] = []
        self.by_ref = by_ref
        self.arrays_by_ref = arrays_by_ref
        self.rngs: list[np.random.Generator] = []

    def array(self, a: np.ndarray) -> dict[str, Any]:
        a = a if a.flags.c_contiguous else a.copy(order="C")  # NOTE: not ascontiguousarray, which makes 0-d 1-d
        if a.dtype.kind not in NUMERIC_KINDS or a.dtype.fields is not None:
            raise TypeError(f"an array of dtype {a.dtype} (not plain numbers) cannot cross the sandbox boundary")
        self.buffers.append(memoryview(a).cast("B") if a.size else memoryview(b""))
        return {"t": "nd", "b": len(self.buffers) - 1, "dtype": a.dtype.str, "shape": list(a.shape)}

    def value(self, v: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise TypeError("a value nested too deep to cross the sandbox boundary")
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, Ref):
            return {"t": "ref", "id": v.id}
        if isinstance(v, Res):
            return {"t": "res", "i": v.i, "key": v.key}
        if isinstance(v, (int, float)) and not isinstance(v, np.generic):
            return int(v) if isinstance(v, int) else float(v)
        if isinstance(v, complex):
            return {"t": "complex", "v": [v.real, v.imag]}
        if isinstance(v, np.generic):
            if v.dtype.kind not in NUMERIC_KINDS:
                raise TypeError(f"a NumPy scalar of dtype {v.dtype} cannot cross the sandbox boundary")
            item = v.item()
            return {"t": "scalar", "dtype": v.dtype.str, "v": [item.real, item.imag] if v.dtype.kind == "c" else item}
        if isinstance(v, np.ndarray):
            if self.arrays_by_ref and self.by_ref is not None:
                return self.by_ref(v)
            return self.array(v)
        if isinstance(v, np.dtype) or (isinstance(v, type) and issubclass(v, np.generic)):
            return {"t": "dtype", "v": np.dtype(v).str}
        if v is Ellipsis:
            return {"t": "ellipsis"}
        if isinstance(v, slice):
            return {"t": "slice", "v": [self.value(v.start, depth + 1), self.value(v.stop, depth + 1),
                                        self.value(v.step, depth + 1)]}  # fmt: skip
        if isinstance(v, np.random.Generator):
            self.rngs.append(v)
            return {"t": "rng", "state": _jsonable_state(v.bit_generator.state), "slot": len(self.rngs) - 1}
        if isinstance(v, (tuple, list)):
            tag = type(v).__name__ if type(v) in (tuple, list) else "list"
            if depth < MAX_DEPTH and all(type(x) in PLAIN for x in v):  # a sweep's numbers, say
                return {"t": tag, "v": list(v)}
            return {"t": tag, "v": [self.value(x, depth + 1) for x in v]}
        if type(v) is dict and all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in v):
            return {"t": "dict", "k": list(v), "v": [self.value(x, depth + 1) for x in v.values()]}
        if self.by_ref is not None:
            return self.by_ref(v)
        raise TypeError(f"a {type(v).__name__} cannot cross the sandbox boundary")


def _jsonable_state(state: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(state))


def rng_from_state(state: Any) -> np.random.Generator:
    """A Generator of the bit generator a state names (PCG64 and NumPy's others), at that state."""
    if not isinstance(state, dict) or state.get("bit_generator") not in (
        "PCG64",
        "PCG64DXSM",
        "MT19937",
        "Philox",
        "SFC64",
    ):
        raise WireError("a random generator's state names no NumPy bit generator")  # fmt: skip
    bit = getattr(np.random, state["bit_generator"])()
    try:
        bit.state = state
    except (TypeError, ValueError, KeyError) as err:
        raise WireError(f"a random generator's state is not valid: {err}") from err
    return np.random.Generator(bit)


class Decoder:
    """Turns a JSON tree and its buffers back into values. ``resolve(id)`` gives the object of a
    handle (worker side); ``make_ref(node)`` builds a proxy for one (judge side)."""

    def __init__(self, buffers: list[memoryview], *, resolve: Any = None, make_ref: Any = None) -> None:
        self.buffers = buffers
        self.resolve = resolve
        self.make_ref = make_ref
        self.rngs: list[tuple[int, np.random.Generator]] = []
        self.results: list[tuple[Any, bool]] | None = None  # a batch's earlier results (worker side)

    def value(self, node: Any, depth: int = 0) -> Any:
        """The value a JSON tree stands for: plain JSON scalars as they are, a tagged node by its tag's
        decoder (``TAGS``); anything else is a WireError."""
        if depth > MAX_DEPTH:
            raise WireError("a value nested too deep")
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            raise WireError("a bare list where a tagged value belongs")
        if not isinstance(node, dict):
            raise WireError(f"a {type(node).__name__} where a value belongs")
        t = node.get("t")
        decode = self.TAGS.get(t) if isinstance(t, str) else None
        if decode is None:
            raise WireError(f"an unknown value tag {t!r}")
        return decode(self, node, depth)

    def _nd(self, node: dict[str, Any], depth: int) -> np.ndarray:
        """An array: one buffer of the body."""
        return self.array(node)

    def _sequence(self, node: dict[str, Any], depth: int) -> tuple[Any, ...] | list[Any]:
        """A tuple or a list of values."""
        t = node["t"]
        items = node.get("v")
        if not isinstance(items, list):
            raise WireError(f"a {t} without items")
        if depth < MAX_DEPTH and all(type(x) in PLAIN for x in items):  # each stands for itself (PLAIN)
            out = list(items)
        else:
            out = [self.value(x, depth + 1) for x in items]
        return tuple(out) if t == "tuple" else out

    def _dict(self, node: dict[str, Any], depth: int) -> dict[Any, Any]:
        """A dict: its keys (strings or integers) paired with its values."""
        keys, values = node.get("k"), node.get("v")
        if not isinstance(keys, list) or not isinstance(values, list) or len(keys) != len(values):
            raise WireError("a dict whose keys and values do not pair up")
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in keys):
            raise WireError("a dict key that is not a string or an integer")
        return {k: self.value(v, depth + 1) for k, v in zip(keys, values, strict=True)}

    def _scalar(self, node: dict[str, Any], depth: int) -> np.generic:
        """A NumPy scalar of a plain numeric dtype (a complex one as [re, im])."""
        dtype = check_dtype(node.get("dtype"))
        v = node.get("v")
        if dtype.kind == "c":
            if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)):
                raise WireError("a complex scalar that is not [re, im]")
            return dtype.type(complex(v[0], v[1]))
        if not isinstance(v, (bool, int, float)):
            raise WireError(f"a scalar of dtype {dtype} whose value is {type(v).__name__}")
        try:
            return dtype.type(v)
        except (OverflowError, ValueError) as err:
            raise WireError(f"a scalar {v!r} that is no {dtype}") from err

    def _complex(self, node: dict[str, Any], depth: int) -> complex:
        """A Python complex, as [re, im]."""
        v = node.get("v")
        if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)):
            raise WireError("a complex that is not [re, im]")
        return complex(v[0], v[1])

    def _dtype(self, node: dict[str, Any], depth: int) -> np.dtype:
        """A plain numeric dtype."""
        return check_dtype(node.get("v"))

    def _ellipsis(self, node: dict[str, Any], depth: int) -> Any:
        """``...``."""
        return Ellipsis

    def _slice(self, node: dict[str, Any], depth: int) -> slice:
        """A slice of integers (or None) [start, stop, step]."""
        parts = node.get("v")
        if not isinstance(parts, list) or len(parts) != 3 or not all(p is None or type(p) is int for p in parts):
            raise WireError("a slice that is not [start, stop, step] of integers")
        return slice(*parts)

    def _rng(self, node: dict[str, Any], depth: int) -> np.random.Generator:
        """A random generator at the state sent, remembered with its slot (to sync its state back)."""
        rng = rng_from_state(node.get("state"))
        self.rngs.append((node.get("slot"), rng))
        return rng

    def _res(self, node: dict[str, Any], depth: int) -> Any:
        """An earlier item's result in a batch (``[key]`` of it when given); an unknown tag outside a batch."""
        if self.results is None:
            raise WireError(f"an unknown value tag {node['t']!r}")
        i = node.get("i")
        if type(i) is not int or not 0 <= i < len(self.results):
            raise WireError(f"a batch result {i!r} that is not an earlier item")
        found = self.results[i][0]
        return found if node.get("key") is None else found[node["key"]]

    def _ref(self, node: dict[str, Any], depth: int) -> Any:
        """A handle: the object it names (worker side) or a proxy for it (judge side); an unknown tag
        where this side has neither."""
        if self.resolve is not None:
            ref_id = node.get("id")
            if type(ref_id) is not int:
                raise WireError("a handle without an integer id")
            return self.resolve(ref_id)
        if self.make_ref is not None:
            return self.make_ref(node)
        raise WireError(f"an unknown value tag {node['t']!r}")

    # the decoder of each tag (called with the decoder, the node and its depth)
    TAGS: ClassVar[dict[str, Callable[[Decoder, dict[str, Any], int], Any]]] = {
        "nd": _nd,
        "tuple": _sequence,
        "list": _sequence,
        "dict": _dict,
        "scalar": _scalar,
        "complex": _complex,
        "dtype": _dtype,
        "ellipsis": _ellipsis,
        "slice": _slice,
        "rng": _rng,
        "res": _res,
        "ref": _ref,
    }

    def array(self, node: dict[str, Any]) -> np.ndarray:
        index = node.get("b")
        if type(index) is not int or not 0 <= index < len(self.buffers):
            raise WireError(f"an array naming buffer {index!r} of {len(self.buffers)}")
        dtype, shape = check_dtype(node.get("dtype")), check_shape(node.get("shape"))
        buf = self.buffers[index]
        expected = math.prod(shape) * dtype.itemsize
        if buf.nbytes != expected:
            raise WireError(f"an array of shape {shape} and dtype {dtype} in {buf.nbytes} bytes (needs {expected})")
        if not expected:
            return np.zeros(shape, dtype=dtype)
        arr = np.frombuffer(buf, dtype=dtype).reshape(shape)
        return arr if arr.flags.aligned else arr.copy()  # buffers share one body; a misaligned one is copied


# --- frames ---------------------------------------------------------------------------------------


def send(fd: int, header: dict[str, Any], buffers: list[memoryview], deadline: float | None = None) -> None:
    """Write one frame to ``fd`` (blocking, or until ``deadline`` on a non-blocking fd)."""
    sizes = [b.nbytes for b in buffers]
    head = json.dumps({**header, "buffers": sizes}, separators=(",", ":")).encode()
    first = PREFIX.pack(MAGIC, len(head), sum(sizes)) + head
    # NOTE: small buffers are joined into writes of up to 1 MB (a batch of 1,000 small arrays in a
    # few writes, not 1,000: each write can wake the reader); a large buffer is written as it is.
    parts: list[memoryview] = []
    pending, pending_bytes = [first], len(first)
    for b in buffers:
        if b.nbytes >= 1 << 18:
            parts.append(memoryview(b"".join(pending)))
            parts.append(b)
            pending, pending_bytes = [], 0
            continue
        pending.append(b)
        pending_bytes += b.nbytes
        if pending_bytes >= 1 << 20:
            parts.append(memoryview(b"".join(pending)))
            pending, pending_bytes = [], 0
    if pending:
        parts.append(memoryview(b"".join(pending)))
    for part in parts:
        view = part
        while view.nbytes:
            try:
                n = os.write(fd, view[: 1 << 20])
            except BlockingIOError:
                _wait(fd, deadline, write=True)
                continue
            except BrokenPipeError as err:
                raise Closed("the other side closed its end") from err
            view = view[n:]


def _wait(fd: int, deadline: float | None, write: bool = False) -> None:
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    if timeout == 0.0:
        raise Timeout()
    r, w, _ = select.select([] if write else [fd], [fd] if write else [], [], timeout)
    if not (r or w):
        raise Timeout()


CHUNK = 16 << 20  # NOTE: a frame's body is read into memory as it arrives, at most this much ahead of it


def _read_exact(fd: int, n: int, deadline: float | None) -> bytearray:
    """``n`` bytes from ``fd``. The buffer grows with what arrives (16 MB at a time), so a header
    that announces gigabytes and sends nothing costs nothing: memory follows the bytes, not the claim."""
    out = bytearray(min(n, CHUNK))
    got = 0
    while got < n:
        if got == len(out):
            out.extend(bytes(min(n - got, CHUNK, len(out))))  # grows geometrically, never past what is due
        view = memoryview(out)
        try:
            k = os.readv(fd, [view[got:]])
        except BlockingIOError:
            _wait(fd, deadline)
            continue
        finally:
            view.release()
        if k == 0:
            raise Closed("the other side closed its end")
        got += k
    return out


def receive(fd: int, deadline: float | None = None, max_body: int = 1 << 34) -> tuple[dict[str, Any], list[memoryview]]:
    """Read one frame: (header, buffers). A frame that breaks the format is a WireError."""
    magic, head_len, body_len = PREFIX.unpack(bytes(_read_exact(fd, PREFIX.size, deadline)))
    if magic != MAGIC:
        raise WireError(f"a frame that does not start with {MAGIC!r} (got {magic!r})")
    if head_len > MAX_HEADER:
        raise WireError(f"a header of {head_len} bytes (at most {MAX_HEADER})")
    if body_len > max_body:
        raise WireError(f"a message of {body_len} bytes (at most {max_body})")
    rest = memoryview(_read_exact(fd, head_len + body_len, deadline))
    try:
        header = json.loads(bytes(rest[:head_len]))
    except (ValueError, RecursionError) as err:
        raise WireError(f"a header that is not JSON: {err}") from err
    sizes = header.get("buffers") if isinstance(header, dict) else None
    if not isinstance(sizes, list) or not all(type(s) is int and s >= 0 for s in sizes) or sum(sizes) != body_len:
        raise WireError("a header whose buffer sizes do not add up to the body")
    body = rest[head_len:]
    buffers, pos = [], 0
    for size in sizes:
        buffers.append(body[pos : pos + size])
        pos += size
    return header, buffers
