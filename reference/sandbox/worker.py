"""The worker's room: the only place the judged implementation is imported and run.

Started by the judge (reference.sandbox.client) as ``python -I -m reference.sandbox.worker IN OUT``
in an empty temporary directory, under limits, inside bubblewrap where the machine has it. It reads
requests from fd IN and answers on fd OUT in reference.sandbox.wire frames; its stdout and stderr
belong to the implementation (the judge keeps a capped log of them). It imports nothing of the
judges: it builds the objects it is asked for, calls them, and sends back what they return. It
is never told an expected answer, so there is nothing here to compare or to fake.

Requests: ``call`` (an object or one of its methods, with arguments), ``batch`` (calls and writes in
order, in one exchange), ``sweep`` (a finite-difference plan's trials, one number back per trial),
``getattr``, ``getitem``, ``setitem``, ``setattr``, ``put`` (keep an input here), ``fetch`` (an
array's data), ``len``, ``keys``, ``release``, ``bye``. Answers:
``{"ok": value}`` or ``{"raised": {type, mro, message, where}}``. Objects stay here in a table and
travel as handles; arrays travel as data when the judge asks for results (``fetch``), else as handles.
"""

from __future__ import annotations

import importlib
import importlib.util
import operator
import os
import sys
import time
import traceback
from typing import Any

import numpy as np

from reference.sandbox import confine, wire

HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep
SKIP = (HERE, os.path.dirname(np.__file__) + os.sep, os.path.dirname(os.__file__) + os.sep)
MAX_TEXT = 2000  # characters of an exception's message sent back


class Room:
    def __init__(self) -> None:
        self.table: dict[int, Any] = {}
        self.next_id = 1
        self.spent = 0.0  # CPU seconds inside the implementation's code (calls, attribute reads, writes)
        self.calls = 0  # entries into the implementation's code (calls, attribute reads and writes)

    def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``: the implementation's code, its CPU time counted in ``spent``."""
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            self.spent += time.process_time() - start
            self.calls += 1

    def cost(self) -> list[float]:
        """[CPU seconds in the implementation, CPU seconds of this process so far, calls into the
        implementation]: the judge's accounts (reference/costs.py). A submission could falsify them:
        they go into the bench report only, never into a verdict."""
        return [self.spent, time.process_time(), float(self.calls)]

    # --- handles ----------------------------------------------------------------------------------

    def ref(self, obj: Any) -> dict[str, Any]:
        ref_id = self.next_id
        self.next_id += 1
        self.table[ref_id] = obj
        node: dict[str, Any] = {"t": "ref", "id": ref_id, "type": type(obj).__name__, "callable": callable(obj)}
        if isinstance(obj, np.ndarray):
            node.update(kind="array", shape=list(obj.shape), dtype=obj.dtype.str)
        else:
            node["kind"] = "object"
            node["methods"] = methods_of(obj)
        return node

    def resolve(self, ref_id: int) -> Any:
        if ref_id not in self.table:
            raise wire.WireError(f"no object {ref_id} here")
        return self.table[ref_id]

    # --- encoding ---------------------------------------------------------------------------------

    def encode(self, value: Any, fetch: bool) -> tuple[Any, list[memoryview]]:
        enc = wire.Encoder(by_ref=(lambda v: self.eager(v, enc)) if fetch else self.ref, arrays_by_ref=not fetch)
        return enc.value(value), enc.buffers

    def eager(self, v: Any, enc: wire.Encoder) -> Any:
        """A result that is not a plain value: an array-like (a torch tensor, say) goes as data when
        NumPy can read it as numbers, anything else stays here as a handle."""
        if hasattr(v, "__array__") and not callable(getattr(v, "forward", None)):
            try:
                a = np.asarray(v)
            except Exception:
                return self.ref(v)
            if a.dtype.kind in wire.NUMERIC_KINDS:
                return enc.array(a)
        return self.ref(v)

    def perform(self, sub: dict[str, Any], dec: wire.Decoder) -> tuple[Any, bool]:
        """One item of a batch: a call (its result kept), a getattr (kept), or a write (nothing kept).
        Its target and arguments may name earlier items' results (``{"t": "res", "i": k}``)."""
        target = dec.value(sub["obj"]) if isinstance(sub["obj"], dict) else self.resolve(sub["obj"])
        if sub.get("op") == "setitem":
            self.run(operator.setitem, target, dec.value(sub["key"]), dec.value(sub["value"]))
            return None, False
        if sub.get("op") == "getattr":  # with "default": getattr(target, attr, None)
            return self.run(getattr, target, sub["attr"], *((None,) if sub.get("default") else ())), True
        fn = self.run(getattr, target, sub["attr"]) if sub.get("attr") else target
        kwargs = sub.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise wire.WireError("a call's keyword arguments that are not an object")
        result = self.run(
            fn, *[dec.value(a) for a in sub.get("args", [])], **{k: dec.value(v) for k, v in kwargs.items()}
        )
        if "dot" in sub:  # <result, g> for a probe: one number back instead of the whole output
            g = dec.value(sub["dot"])
            product = np.asarray(result, dtype=np.float64) * g
            if sub.get("rows"):  # per row (stacked trials): a number per row of the result
                return [float(v) for v in product.reshape(len(product), -1).sum(axis=1)], True
            return float(np.sum(product)), True
        return result, True

    def sweep(self, req: dict[str, Any], dec: wire.Decoder) -> list[float]:
        """A finite-difference plan's trials (reference.judges.finite_diff) in one exchange. Per entry
        ``[index, restore, trials]`` of ``plan`` and per value tried there: the value written at the
        index (of a fresh copy of the first call's first argument, or of the array ``target`` in place,
        ``restore`` written back after the entry's trials), the ``calls`` run in order, each on fresh
        copies of the arrays sent (an argument may name an earlier call's result of the same trial), and
        one number kept: ``<last result, dot>`` or ``float(last result[item])``. The implementation sees
        exactly the calls the judge would make one by one; only the copies of the input are saved."""
        plan, calls = req.get("plan"), req.get("calls")
        if not isinstance(plan, list) or not isinstance(calls, list) or not calls:
            raise wire.WireError("a sweep without its plan or its calls")
        target = self.resolve(req["target"]) if req.get("target") is not None else None
        first = calls[0].get("args") if isinstance(calls[0], dict) else None
        if target is None and not (isinstance(first, list) and first and isinstance(first[0], dict)
                                   and first[0].get("t") == "nd"):  # fmt: skip
            raise wire.WireError("a sweep of the input whose first call is not sent the input")
        dot = dec.value(req["dot"]) if "dot" in req else None
        item = req.get("item")
        out: list[float] = []
        for entry in plan:
            if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[2], list)):
                raise wire.WireError("a sweep entry that is not [index, restore, trials]")
            key = dec.value(entry[0])
            for node in entry[2]:
                value = dec.value(node)
                if target is not None:
                    self.run(operator.setitem, target, key, value)
                results: list[tuple[Any, bool]] = []
                dec.results = results
                for n, call in enumerate(calls):
                    obj = dec.value(call["obj"]) if isinstance(call["obj"], dict) else self.resolve(call["obj"])
                    # NOTE: a forward may write into its input: every array sent is a fresh copy each trial
                    args = [dec.value(a).copy() if isinstance(a, dict) and a.get("t") == "nd" else dec.value(a)
                            for a in call.get("args", [])]  # fmt: skip
                    if n == 0 and target is None:
                        args[0][key] = value
                    fn = self.run(getattr, obj, call["attr"])
                    results.append((self.run(fn, *args), True))
                last = results[-1][0]
                out.append(float(np.sum(np.asarray(last, dtype=np.float64) * dot)) if dot is not None
                           else float(last[item]))  # fmt: skip
            if target is not None:
                self.run(operator.setitem, target, key, dec.value(entry[1]))
        dec.results = None
        return out

    # --- requests ---------------------------------------------------------------------------------

    def batch(self, req: dict[str, Any], dec: wire.Decoder) -> tuple[dict[str, Any], list[memoryview]]:
        """A batch's items in order; the results asked for (``keep``, default every call and read), each
        as it was when its item ended. With ``partial``, an item that raises stops the batch and the
        answer says which it was (``failed``), beside the results so far; else the batch raises."""
        results: list[Any] = []
        dec.results = results
        keep = req.get("keep")
        wanted = set(keep) if isinstance(keep, list) else None
        sent: dict[int, Any] = {}  # NOTE: what a result was when its item ended (a later item may change it)
        failed = None
        for i, sub in enumerate(req.get("items", [])):
            try:
                value, kept = self.perform(sub, dec)
            except BaseException as err:  # SystemExit too: the implementation's
                if not req.get("partial"):
                    raise
                failed = {"at": i, "raised": raised(err)}
                break
            results.append((value, kept))
            if (wanted is None and kept) or (wanted is not None and i in wanted):
                sent[i] = snapshot(value)
        order = [i for i in range(len(results)) if results[i][1]] if keep is None else keep
        value, out = self.encode([sent[i] for i in order if i in sent], fetch=True)
        return ({"ok": value} if failed is None else {"ok": value, "failed": failed}), out

    def handle(self, req: dict[str, Any], buffers: list[memoryview]) -> tuple[dict[str, Any], list[memoryview]]:
        op = req.get("op")
        for ref_id in req.get("release", ()):
            self.table.pop(ref_id, None)
        dec = wire.Decoder(buffers, resolve=self.resolve)
        if op == "batch":  # several calls and writes in order, one exchange; stops at the first that raises
            return self.batch(req, dec)
        if op == "sweep":
            value, out = self.encode(self.sweep(req, dec), fetch=True)
            return {"ok": value}, out
        if op == "call":
            target = self.resolve(req["obj"])
            fn = self.run(getattr, target, req["attr"]) if req.get("attr") else target
            args = [dec.value(a) for a in req.get("args", [])]
            kwargs = {k: dec.value(v) for k, v in req.get("kwargs", {}).items()}
            result = self.run(fn, *args, **kwargs)
            value, out = self.encode(result, fetch=bool(req.get("fetch")))
            states = [[slot, rng.bit_generator.state] for slot, rng in dec.rngs]
            return {"ok": value, "rngs": wire._jsonable_state(states)}, out
        if op == "getattr":  # arrays as handles, unless the judge asks for their data now
            value, out = self.encode(self.run(getattr, self.resolve(req["obj"]), req["attr"]),
                                     fetch=bool(req.get("fetch")))  # fmt: skip
            return {"ok": value}, out
        if op == "getitem":
            obj = self.resolve(req["obj"])
            value, out = self.encode(
                self.run(operator.getitem, obj, dec.value(req["key"])), fetch=bool(req.get("fetch"))
            )
            return {"ok": value}, out
        if op == "setitem":
            self.run(operator.setitem, self.resolve(req["obj"]), dec.value(req["key"]), dec.value(req["value"]))
            return {"ok": None}, []
        if op == "put":
            return {"ok": self.ref(dec.value(req["value"]))}, []
        if op == "setattr":
            self.run(setattr, self.resolve(req["obj"]), req["attr"], dec.value(req["value"]))
            return {"ok": None}, []
        if op == "fetch":
            a = np.asarray(self.resolve(req["obj"]))
            enc = wire.Encoder()
            return {"ok": enc.array(a)}, enc.buffers
        if op == "len":
            return {"ok": self.run(len, self.resolve(req["obj"]))}, []
        if op == "keys":
            value, out = self.encode(self.run(list, self.resolve(req["obj"])), fetch=False)
            return {"ok": value}, out
        if op == "release":
            return {"ok": None}, []
        raise wire.WireError(f"unknown request {op!r}")


def methods_of(obj: Any) -> list[str]:
    """The public methods an object's class defines (functions on its type, not shadowed by its own
    attributes): the judge calls them without asking first whether they exist."""
    try:
        own = vars(obj) if hasattr(obj, "__dict__") else {}
        return sorted(n for n in dir(type(obj)) if not n.startswith("_") and n not in own
                      and callable(getattr(type(obj), n, None)) and not isinstance(getattr(type(obj), n), type))  # fmt: skip
    except Exception:  # a class whose attributes cannot be listed: the judge asks each time
        return []


def raised(err: BaseException) -> dict[str, Any]:
    """What the judge learns of an exception: its type, its classes, its message, and the last frame
    of the implementation's own code (not this room, NumPy or the standard library)."""
    where = own_frame(err, SKIP)
    try:
        message = str(err)[:MAX_TEXT]
    except BaseException:  # a __str__ that raises is the implementation's too
        message = "(its message could not be read)"
    return {"type": type(err).__name__, "mro": [c.__name__ for c in type(err).__mro__], "message": message,
            "where": where}  # fmt: skip


def own_frame(err: BaseException, skip: tuple[str, ...], keep: tuple[str, ...] = ()) -> str:
    """``file:line in function: `source line` (name: what it held, ...)`` of the last frame of the
    implementation's own code (files under none of ``skip``): the call it made, and the arrays and
    numbers it passed there, so an error deep in NumPy reads as the implementation's call."""
    own = [(frame, lineno) for frame, lineno in traceback.walk_tb(err.__traceback__)
           if not frame.f_code.co_filename.startswith(skip) or frame.f_code.co_filename.startswith(keep)]  # fmt: skip
    if not own:
        return ""
    frame, lineno = own[-1]
    where = f"{os.path.basename(frame.f_code.co_filename)}:{lineno} in {frame.f_code.co_name}"
    import linecache
    import re

    line = linecache.getline(frame.f_code.co_filename, lineno).strip()
    if not line:
        return where
    held = []
    for name in dict.fromkeys(re.findall(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*", line)):
        value = _lookup(frame.f_locals, name)
        if isinstance(value, np.ndarray):
            held.append(f"{name}: {value.dtype} {value.shape}")
        elif isinstance(value, (int, float, tuple)) and not isinstance(value, bool) and len(repr(value)) < 40:
            held.append(f"{name} = {value!r}")
        if len(held) == 5:
            break
    return f"{where}: `{line[:160]}`" + (f" ({', '.join(held)})" if held else "")


def _lookup(names: dict[str, Any], dotted: str) -> Any:
    """``a.b.c`` read from a frame's locals through plain attributes only (no property runs), or None."""
    first, *rest = dotted.split(".")
    value = names.get(first)
    for attr in rest:
        if value is None:
            return None
        value = getattr(value, "__dict__", {}).get(attr)
    return value


def snapshot(value: Any) -> Any:
    """``value`` as it is now: arrays copied (in a dict, list or tuple too), anything else itself."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if type(value) is dict:
        return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(v.copy() if isinstance(v, np.ndarray) else v for v in value)
    return value


def import_impl(spec: dict[str, Any]) -> Any:
    """The implementation: a file (``path``), a module by name (``name``, found through ``search``
    folders appended to sys.path), or a factory ``name:function`` that returns a namespace."""
    for folder in spec.get("search", []):
        if folder not in sys.path:
            sys.path.append(folder)  # after the standard library and site-packages: it never shadows them
    if spec["kind"] == "file":
        path = spec["path"]
        name = f"_judged_{os.path.splitext(os.path.basename(path))[0]}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"{path} is not a Python file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module
    module_name, _, factory = spec["name"].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, factory)() if factory else module


def main(argv: list[str]) -> None:
    fd_in, fd_out = int(argv[1]), int(argv[2])
    sys.argv = ["scratch-cnn-worker"]  # an argv of its own: the judge's options are none of its business
    hello, _ = wire.receive(fd_in)
    try:
        held = confine.apply(hello.get("confine", {}))
    except BaseException as err:  # NOTE: never run the implementation unconfined: say why and stop
        wire.send(fd_out, {"confine_failed": f"{type(err).__name__}: {err}"}, [])
        os._exit(3)
    wire.send(fd_out, {"ready": held}, [])
    room = Room()
    try:
        module = room.run(import_impl, hello["impl"])
        room.table[0] = module
        names = {n: callable(getattr(module, n, None)) for n in hello.get("names", [])}
        answer: dict[str, Any] = {"ok": {"t": "dict", "k": list(names), "v": list(names.values())}}
    except BaseException as err:  # the module does not import: the judge says so and stops
        answer = {"raised": raised(err), "phase": "import"}
        traceback.print_exc()  # into the worker's log: the whole traceback, for the report
    answer["cost"] = room.cost()
    wire.send(fd_out, answer, [])
    while True:
        try:
            req, buffers = wire.receive(fd_in)
        except wire.Closed:
            os._exit(0)
        if req.get("op") == "bye":
            os._exit(0)  # no atexit hooks, no __del__ of the implementation's objects: the judge is done
        try:
            answer, out = room.handle(req, buffers)
        except BaseException as err:  # SystemExit and KeyboardInterrupt too: they are the implementation's
            answer, out = {"raised": raised(err)}, []
        answer["seq"], answer["cost"] = req.get("seq"), room.cost()
        try:
            wire.send(fd_out, answer, out)
        except TypeError as err:  # a result that cannot travel (an object array, say)
            wire.send(fd_out, {"raised": raised(err), "seq": req.get("seq")}, [])


if __name__ == "__main__":
    main(sys.argv)
