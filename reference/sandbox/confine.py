"""The worker confines itself, before it imports the implementation: limits, no new privileges,
no capabilities for a root worker, then Landlock (reference.sandbox.tiers says which, and why).

Runs in the worker only, on the plan the judge sent (``Confinement.plan``); imports nothing but the
standard library and reference.sandbox.landlock. Every step that cannot be done raises: a worker the
judge asked to confine and that is not confined must not run the implementation.
"""

from __future__ import annotations

import ctypes
import os
import resource
from typing import Any

from reference.sandbox import landlock

RLIMITS = {"as": resource.RLIMIT_AS, "core": resource.RLIMIT_CORE, "nofile": resource.RLIMIT_NOFILE,
           "fsize": resource.RLIMIT_FSIZE, "nproc": resource.RLIMIT_NPROC}  # fmt: skip
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
# NOTE: SECBIT_NOROOT and SECBIT_NO_SETUID_FIXUP, each with its lock: uid 0 no longer gains
# capabilities at exec, and nothing can undo that.
SECUREBITS_LOCKED_NOROOT = 0x01 | 0x02 | 0x04 | 0x08


class ConfinementError(OSError):
    """A step of the confinement failed (the worker stops before the implementation is imported)."""


def apply(plan: dict[str, Any]) -> dict[str, Any]:
    """Confine this process as ``plan`` says. Returns what holds (for the judge's report)."""
    held: dict[str, Any] = {"tier": plan.get("tier", "process"), "uid": os.geteuid()}
    for name, value in plan.get("rlimits", {}).items():
        limit = int(value)
        try:
            resource.setrlimit(RLIMITS[name], (limit, limit))
        except (ValueError, OSError) as err:
            raise ConfinementError(f"setrlimit({name}, {limit}): {err}") from None
    libc = ctypes.CDLL(None, use_errno=True)
    if plan.get("drop_caps"):
        _drop_capabilities(libc)
        held["capabilities"] = "none"
    if libc.prctl(landlock.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise ConfinementError(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
    if plan.get("landlock"):
        held["landlock"] = landlock.restrict(plan.get("read", []), plan.get("read_exec", []), plan.get("write", []),
                                             devices_rw=plan.get("devices_rw", []))  # fmt: skip
    return held


def _drop_capabilities(libc: Any) -> None:
    """Root without capabilities: the bounding set emptied, the securebits locked, then capset(0)."""
    last = int(open("/proc/sys/kernel/cap_last_cap").read()) if os.path.exists("/proc/sys/kernel/cap_last_cap") else 40
    if libc.prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED_NOROOT, 0, 0, 0) != 0:
        raise ConfinementError(f"prctl(PR_SET_SECUREBITS): {os.strerror(ctypes.get_errno())}")
    for cap in range(last + 1):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise ConfinementError(f"prctl(PR_CAPBSET_DROP, {cap}): {os.strerror(ctypes.get_errno())}")

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words
    if libc.capset(ctypes.byref(header), data) != 0:
        raise ConfinementError(f"capset: {os.strerror(ctypes.get_errno())}")
