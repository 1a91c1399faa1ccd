"""Landlock (Linux >= 5.13): an unprivileged process restricts itself and every process it starts.

The worker calls ``restrict(...)`` on itself before it imports the implementation, so the code under
judgement can read only what it needs, write only its own directory, reach no TCP port and signal
no process outside its own domain (where the kernel's ABI has those rights), and no process it
starts can lift any of it. Written against the kernel's user-space ABI (include/uapi/linux/landlock.h,
Documentation/userspace-api/landlock.rst) through ctypes: three system calls and three structs.

| ABI | kernel | adds (used here) |
|---|---|---|
| 1 | 5.13 | file-system access rights |
| 2 | 5.19 | REFER (link/rename across folders) |
| 3 | 6.2 | TRUNCATE |
| 4 | 6.7 | TCP bind and connect |
| 5 | 6.10 | IOCTL_DEV |
| 6 | 6.12 | scopes: abstract UNIX sockets, signals |

Imports only the standard library: the worker's room loads it before anything of the implementation.
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Any

# NOTE: the system-call numbers are the same on every architecture that has Landlock (they were
# added after the tables were unified), except alpha's; x86-64 and arm64 both use 444-446.
_SYS = {"create_ruleset": 444, "add_rule": 445, "restrict_self": 446}

_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

FS = {
    "execute": 1 << 0, "write_file": 1 << 1, "read_file": 1 << 2, "read_dir": 1 << 3,
    "remove_dir": 1 << 4, "remove_file": 1 << 5, "make_char": 1 << 6, "make_dir": 1 << 7,
    "make_reg": 1 << 8, "make_sock": 1 << 9, "make_fifo": 1 << 10, "make_block": 1 << 11,
    "make_sym": 1 << 12, "refer": 1 << 13, "truncate": 1 << 14, "ioctl_dev": 1 << 15,
}  # fmt: skip
FS_SINCE = {"refer": 2, "truncate": 3, "ioctl_dev": 5}  # every other right exists since ABI 1
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6

READ = ("read_file", "read_dir")
READ_EXEC = (*READ, "execute")
OWN_DIR = ("write_file", "read_file", "read_dir", "remove_dir", "remove_file", "make_dir", "make_reg",
           "make_sym", "make_fifo", "make_sock", "refer", "truncate")  # fmt: skip


class LandlockError(OSError):
    """Landlock is missing or a call failed (the message names the call and errno)."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]  # fmt: skip


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # NOTE: the kernel's struct is __attribute__((packed)): 12 bytes, not 16
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI (0: none, or disabled at boot, or not Linux)."""
    if platform.system() != "Linux" or platform.machine() == "alpha":
        return 0
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(ctypes.c_long(_SYS["create_ruleset"]), None, ctypes.c_size_t(0),
                           ctypes.c_uint32(_CREATE_RULESET_VERSION))  # fmt: skip
    return max(0, int(version))


def mask(rights: tuple[str, ...], abi: int) -> int:
    """The bits of ``rights`` that ABI ``abi`` knows."""
    return sum(FS[r] for r in rights if FS_SINCE.get(r, 1) <= abi)


def restrict(read: list[str], read_exec: list[str], write: list[str], *, devices_rw: list[str] = ()) -> dict[str, Any]:
    """Restrict this process (and all it will start) to: reading the files under ``read``, reading and
    executing those under ``read_exec``, everything inside ``write`` (its own directory), reading and
    writing the device files ``devices_rw`` (/dev/null); no TCP (ABI >= 4); no signal to and no
    abstract UNIX socket of any process outside this domain (ABI >= 6). Sets no_new_privs first (the
    kernel's precondition). Paths that do not exist are skipped. Returns what was enforced (plain
    data for run.json). Raises LandlockError where Landlock is missing or a call fails."""
    abi = abi_version()
    if abi < 1:
        raise LandlockError("Landlock is not available (kernel < 5.13, or not enabled at boot)")
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    handled = mask(tuple(FS), abi)
    attr = _RulesetAttr(handled, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
                        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)  # fmt: skip
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else 16 if abi >= 4 else 8  # older kernels refuse unknown fields
    ruleset = libc.syscall(ctypes.c_long(_SYS["create_ruleset"]), ctypes.byref(attr), ctypes.c_size_t(size),
                           ctypes.c_uint32(0))  # fmt: skip
    if ruleset < 0:
        raise LandlockError(ctypes.get_errno(), f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    ruleset = int(ruleset)
    added: list[str] = []
    try:
        for paths, rights in ((read, mask(READ, abi)), (read_exec, mask(READ_EXEC, abi)),
                              (write, mask(OWN_DIR, abi)), (devices_rw, mask(("read_file", "write_file"), abi))):  # fmt: skip
            for path in paths:
                if _add_path(libc, ruleset, path, rights, handled):
                    added.append(path)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise LandlockError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(ctypes.c_long(_SYS["restrict_self"]), ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise LandlockError(ctypes.get_errno(), f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)
    return {"abi": abi, "tcp_denied": abi >= 4, "signals_scoped": abi >= 6, "paths": len(added)}


def _add_path(libc: Any, ruleset: int, path: str, rights: int, handled: int) -> bool:
    """One rule: ``rights`` beneath ``path`` (a file takes only the rights a file can have)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not os.path.isdir(path):
            rights &= mask(("execute", "write_file", "read_file", "truncate", "ioctl_dev"), 99)
        beneath = _PathBeneathAttr(rights & handled, fd)
        if libc.syscall(ctypes.c_long(_SYS["add_rule"]), ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                        ctypes.byref(beneath), ctypes.c_uint32(0)) != 0:  # fmt: skip
            raise LandlockError(ctypes.get_errno(), f"landlock_add_rule({path}): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)
    return True
