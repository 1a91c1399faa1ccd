"""What the judges may ask of a judged implementation: the sandbox's whole public surface, in one place.

The judges hold the implementation (``ctx.impl``) and the layers built from it as opaque handles:
in a sandbox they stand for objects in a worker, in the unit tests they are the objects themselves.
Besides calling the protocol's methods on them, the judges ask only these:

| request | what it does | in a sandbox | in this process |
|---|---|---|---|
| ``scope(impl, name)`` | run what is built inside in the worker of ``name`` (a layer type, ``network lenet``, ``training``), each call under its time limit | the worker of that scope | nothing |
| ``skip_reason(impl, name)`` | why ``name``'s cases are not run any more ('' when they are): a time-out, the run's budget | the session's record | '' |
| ``keep(impl, array)`` | the array as the implementation holds it (to see whether a call writes into its input) | a copy kept in the worker | a copy |
| ``parallel(impl)`` | how many layers are judged at once | the session's setting | 1 |
| ``write_params(layer, own, params, during, attr)`` | write arrays into ``layer.params[k][...]`` (or ``buffers``) and read it back, as data | one exchange | None: the caller writes itself |
| ``build(impl, name, kwargs, params, during, reads)`` | construct a layer, write its params in place and read them back, as data, then read the attributes ``reads`` (``read_at_build`` gives them) | one exchange | None: the caller builds it itself |
| ``alive(obj)`` | whether a handle's object is still there (its worker not lost or replaced) | the session's record | True |
| ``fusable(obj)`` | whether a ``run`` of ``obj``'s calls and reads can stand for them one by one | a handle outside a lazy scope | False |
| ``construct_then(impl, name, args, kwargs, then, work)`` | construct an object, then run ``then`` on it (an optimiser's steps and its params after each), results as data | one exchange | None: the caller does each itself |
| ``call_then_read(obj, method, args, name)`` | a call, then an attribute read, as data (a backward and its grads) | one exchange | None: the caller does both |
| ``call_then_reads(obj, method, args, names)`` | a call, then several attribute reads, as data (a backward, its grads and its params) | one exchange | None: the caller does each |
| ``read(layer, name)`` | ``getattr(layer, name)`` as data (arrays copied now) | one exchange | the attribute |
| ``sweep(calls, plan, during, ...)`` | a finite-difference plan's trials: per value tried at an index (of a copy of the input, or of a parameter in place), the calls in order, one number back | one exchange | None: the caller runs them itself |
| ``run(items, during)`` | a list of ``Call``, ``Write`` and ``Read`` items run in order, earlier results named by ``Result``; the results of the calls (or of ``keep``) come back as data | one exchange | None: the caller runs them itself |

Every request that reaches a worker turns a worker's failure into the exceptions the judges already
make rows of (reference.sandbox.client.RemoteError, WorkerLost).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.sandbox import wire
from reference.sandbox.client import RemoteArray, RemoteImpl, RemoteObject


@dataclass(frozen=True)
class Call:
    """``obj.method(*args)``; with ``dot``, only ``sum(result * dot)`` comes back (one float), with
    ``rows`` too, that sum per row of the result (a list: ``dot`` broadcast along its first axis)."""

    obj: Any
    method: str
    args: tuple[Any, ...] = ()
    dot: np.ndarray | None = None
    rows: bool = False
    kwargs: tuple[tuple[str, Any], ...] = ()  # (name, value) pairs; method '': obj itself is called


@dataclass(frozen=True)
class Write:
    """``target[key] = value`` (``target`` an array handle: a layer's parameter)."""

    target: Any
    key: Any
    value: Any


@dataclass(frozen=True)
class Read:
    """``getattr(obj, name)``; with ``or_none``, ``getattr(obj, name, None)``."""

    obj: Any
    name: str
    or_none: bool = False


def Result(index: int, key: Any = None) -> Any:  # noqa: N802  (a value that stands for an earlier result)
    """Item ``index``'s result (``[key]`` of it), as an argument of a later item."""
    return wire.Res(index, key)


def sandboxed(obj: Any) -> bool:
    """Whether ``obj`` stands for an object in a worker."""
    return isinstance(obj, (RemoteObject, RemoteArray, RemoteImpl))


def scope(impl: Any, name: str, **limits: Any) -> contextlib.AbstractContextManager[None]:
    return impl._session.case(name, **limits) if isinstance(impl, RemoteImpl) else contextlib.nullcontext()


def skip_reason(impl: Any, name: str) -> str:
    return impl._session.skip_reason(name) if isinstance(impl, RemoteImpl) else ""


def keep(impl: Any, value: np.ndarray) -> Any:
    return impl._session.put(value) if isinstance(impl, RemoteImpl) else value.copy()


def parallel(impl: Any) -> int:
    return impl._session.parallel if isinstance(impl, RemoteImpl) else 1


def limits(impl: Any) -> Any:
    """The run's limits (reference.sandbox.client.Limits) in a sandbox, else None."""
    return impl._session.limits if isinstance(impl, RemoteImpl) else None


def write_params(layer: Any, own: dict[str, Any], params: dict[str, np.ndarray], during: str,
                 attr: str = "params") -> Any:  # fmt: skip
    """In a sandbox: every ``own[k][...] = params[k]`` and a fresh ``getattr(layer, attr)`` (its
    ``params``, or its ``buffers``) read back, in one exchange (the read-back as data). None for a layer
    of this process. TypeError when an entry of ``own`` is no array handle."""
    if not isinstance(layer, RemoteObject):
        return None
    items: list[Any] = []
    for key, value in params.items():
        if not isinstance(own[key], RemoteArray):
            raise TypeError(f"{attr}[{key!r}] is a {type(own[key]).__name__}, not an array")
        items.append(Write(own[key], Ellipsis, value))
    items.append(Read(layer, attr))
    (back,) = run(items, during, keep=[len(items) - 1])
    return back


def build(
    impl: Any,
    name: str,
    kwargs: dict[str, Any],
    params: dict[str, np.ndarray],
    during: str,
    reads: tuple[str, ...] = (),
) -> tuple[Any, Any] | None:
    """In a sandbox: ``impl.<name>(**kwargs)``, every ``params[k]`` written into the new layer's
    ``params[k][...]`` and its ``params`` read back as data, then each attribute of ``reads`` read
    (``getattr(layer, name, None)``, as data; ``read_at_build`` gives it), in one exchange: (the layer's
    handle, what was read back). None for an implementation of this process. Raises what the worker
    raised (an entry that is missing or no array: the implementation's KeyError or TypeError)."""
    if not isinstance(impl, RemoteImpl) or not impl._session.names.get(name):
        return None
    session = impl._session
    cls = session.worker().class_handle(name)
    items: list[Any] = [Call(cls, "", (), kwargs=tuple(kwargs.items())), Read(Result(0), "params")]
    items += [Write(Result(1, key), Ellipsis, value) for key, value in params.items()]
    items.append(Read(Result(0), "params"))
    items += [Read(Result(0), attr, or_none=True) for attr in reads]
    got = run(items, during, keep=[0, *range(len(items) - 1 - len(reads), len(items))])
    if got is None:
        return None
    layer, back, *read = got
    if isinstance(layer, RemoteObject):
        layer.__dict__.update(_label=name, _lazy=session.lazy, _read=dict(zip(reads, read, strict=True)))
    return layer, back


NOT_READ = object()  # read_at_build's answer for an attribute not read with the layer's construction


def read_at_build(layer: Any, name: str) -> Any:
    """``getattr(layer, name, None)`` as ``build`` read it right after the layer's construction (its
    ``reads``), or NOT_READ where it was not read so: the caller reads it itself."""
    return layer.__dict__.get("_read", {}).get(name, NOT_READ) if isinstance(layer, RemoteObject) else NOT_READ


def read(layer: Any, name: str) -> Any:
    """``getattr(layer, name)`` with its arrays as data, read now."""
    return layer._fetched(name) if isinstance(layer, RemoteObject) else getattr(layer, name)


def label(obj: Any) -> str:
    """What a handle stands for, in words (``Dense``), for the messages of a request's failure."""
    return str(obj.__dict__.get("_label", type(obj).__name__)) if isinstance(obj, RemoteObject) else type(obj).__name__


def alive(obj: Any) -> bool:
    """Whether the object a handle stands for is still there to use: its worker not lost, and still its
    scope's worker (one started after a loss holds none of the old objects). True for an object of this
    process."""
    if not isinstance(obj, (RemoteObject, RemoteArray)):
        return True
    worker = obj._worker
    return not worker.dead and worker.session.workers.get(worker.scope) is worker


def fusable(obj: Any) -> bool:
    """Whether ``obj`` stands for an object in a worker whose results come back as data (not in a
    lazy scope, where results stay handles): what a ``run`` of its calls and reads can stand for."""
    return isinstance(obj, RemoteObject) and not obj.__dict__.get("_lazy")


def same_worker(*objs: Any) -> bool:
    """Whether every handle stands for an object of one and the same worker (so a ``run`` can chain them)."""
    return (
        bool(objs)
        and all(isinstance(o, (RemoteObject, RemoteArray)) for o in objs)
        and all(o._worker is objs[0]._worker for o in objs)
    )


def run(items: list[Any], during: str, keep: list[int] | None = None, partial: bool = False,
        work: int | None = None, calls: int = 1) -> Any:  # fmt: skip
    """Run ``items`` (``Call``, ``Write``, ``Read``) in one exchange with their worker; the results of the
    calls (or of the items ``keep``) as data, each as it was when its item ended. With ``partial``:
    (those of the items that ran, None or (index, the exception report of the item that raised)).
    ``work``: the bytes the items one by one would send (their time limit's calibration); ``calls``: the
    calls among them that would each have had a time limit of their own (the limit's floor, once each).
    None when the items' objects are not one worker's."""
    handles = [i.obj if isinstance(i, (Call, Read)) else i.target for i in items]
    owners = [h for h in handles if not isinstance(h, wire.Res)]
    if not owners or not same_worker(*owners):
        return None
    worker = owners[0]._worker
    plain = []
    for item in items:
        if isinstance(item, Call):
            dot = () if item.dot is None else (item.dot, item.rows)
            plain.append(("call", item.obj, item.method, item.args, dict(item.kwargs), *dot))
        elif isinstance(item, Write):
            plain.append(("setitem", item.target, item.key, item.value))
        else:
            plain.append(("getattr", item.obj, item.name, item.or_none))
    return worker.batch(plain, during, keep=keep, partial=partial, work=work, calls=calls)


def construct_then(impl: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], then: list[Any],
                   work: int) -> tuple[list[Any], Any] | None:  # fmt: skip
    """In a sandbox: ``impl.<name>(*args, **kwargs)``, then the items ``then`` (``Call``, ``Read``,
    ``Write``; ``Result(0)`` is the new object, ``Result(k)`` the k-th item of ``then``) in order, in one
    exchange under the time limit of ``work`` bytes sent one by one: (the results of the calls and
    reads of ``then`` that ran, as data, each as it was when its item ended; None, or the exception
    the item that stopped the rest raised: a RemoteError named as that request alone names it). None
    for an implementation of this process or a lazy scope."""
    if not isinstance(impl, RemoteImpl) or not impl._session.names.get(name) or impl._session.lazy:
        return None
    from reference.sandbox.client import RemoteError

    cls = impl._session.worker().class_handle(name)
    items = [Call(cls, "", args, kwargs=tuple(kwargs.items())), *then]
    keep = [i for i, item in enumerate(items) if i and not isinstance(item, Write)]
    values, failed = run(items, f"{name}()", keep=keep, partial=True, work=work)
    if failed is None:
        return values, None
    stopped = items[failed[0]]
    if failed[0] == 0:
        during = f"{name}()"
    elif isinstance(stopped, Call):
        during = f"{name}.{stopped.method}"
    elif isinstance(stopped, Read):
        during = f"{name}.{stopped.name}"
    else:
        during = f"writing into {name}"
    return values, RemoteError(failed[1], during)


def call_then_read(obj: Any, method: str, args: tuple[Any, ...], name: str) -> tuple[Any, Any, Any] | None:
    """In a sandbox: ``obj.method(*args)``, then ``getattr(obj, name)``, in one exchange, both as data:
    (the call's result, the attribute or None, None or the attribute read's RemoteError). The call's
    own exception is raised, as the call alone would raise it. None for an object of this process or
    one whose results stay handles (a lazy scope). ``call_then_reads`` with one read."""
    got = call_then_reads(obj, method, args, [name])
    if got is None:
        return None
    result, reads, failed = got
    return (result, None, failed[1]) if failed is not None else (result, reads[0], None)


def call_then_reads(obj: Any, method: str, args: tuple[Any, ...], names: list[str]
                    ) -> tuple[Any, list[Any], tuple[int, Any] | None] | None:  # fmt: skip
    """``call_then_read`` with several attribute reads after the call, in order: (the call's result,
    the values of the reads that ran, None or (the index in ``names`` of the read that raised, its
    RemoteError)). The call's own exception is raised. None for an object of this process or a lazy
    scope's."""
    if not isinstance(obj, RemoteObject) or obj.__dict__.get("_lazy"):
        return None
    from reference.sandbox.client import RemoteError

    who = label(obj)
    values, failed = run([Call(obj, method, args), *(Read(obj, n) for n in names)], f"{who}.{method}",
                         keep=list(range(len(names) + 1)), partial=True)  # fmt: skip
    if failed is not None and failed[0] == 0:
        raise RemoteError(failed[1], f"{who}.{method}")
    if failed is not None:
        return values[0], values[1:], (failed[0] - 1, RemoteError(failed[1], f"{who}.{names[failed[0] - 1]}"))
    return values[0], values[1:], None


def sweep(calls: list[Call], plan: list[tuple[Any, Any, list[Any]]], during: str, *, target: Any = None,
          item: int | None = None, work: int = 0) -> list[float] | None:  # fmt: skip
    """A finite-difference plan (``(index, value to restore, values to try)`` per entry) in one exchange
    with the calls' worker: per trial, the value written at the index (of a fresh copy of the first
    call's first argument; of ``target``, a parameter, in place, with its value restored after the
    entry), the calls run in order (``Result(k)``: call k's result of the same trial), and one number
    back: ``<last result, last call's dot>`` or ``float(last result[item])``. ``work``: the bytes the
    calls one by one would send (their time limit's calibration). None when the calls' objects are
    not one worker's."""
    owners = [c.obj for c in calls if not isinstance(c.obj, wire.Res)] + ([target] if target is not None else [])
    if not owners or not same_worker(*owners):
        return None
    dot = calls[-1].dot
    return owners[0]._worker.sweep([(c.obj, c.method, c.args) for c in calls], plan, during, target=target,
                                   dot=dot, item=item, work=work)  # fmt: skip
