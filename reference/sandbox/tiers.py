"""Which sandbox a worker runs in, and what it may touch: the judge's side of the confinement.

Tiers, strongest first, chosen automatically (``--sandbox auto``) and named in every report:

| tier | what holds the worker | where it works |
|---|---|---|
| ``bwrap`` | bubblewrap (own mount, PID, network, IPC namespaces; the file system read-only, /tmp empty) and Landlock inside it where the kernel has it | user namespaces allowed |
| ``landlock`` | Landlock: reads only what it needs, writes only its own directory, no TCP, no signal or abstract socket outside its domain (by ABI) | Linux >= 5.13, inside Docker too |
| ``process`` | nothing but the limits below: **no sandbox**; the judge says so first and ``grade`` refuses it without ``--unsandboxed`` | anywhere |

In every tier: no_new_privs; an unprivileged uid when the judge is root (where that uid can run the
interpreter; else root without capabilities, and the report says why); rlimits on address space,
processes, open files, file size and core dumps; the judge as child subreaper, so every process a
worker starts is the judge's to kill before a report is written (reference.sandbox.reaper).

What the worker may read is one list (``Confinement.read``/``read_exec``): the interpreter and its
site-packages, the judges' and the network's packages (a protocol adapter imports them), the judged
files' folders, the shared libraries and a few files of /etc, /dev and /proc. Never /tmp (other
workers, other submissions' copies), the class folder, the judge's output or anyone's home.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from reference.sandbox import landlock

SANDBOXES = ("auto", "bwrap", "landlock", "process")
UID_RANGE = (61000, 64999)  # unprivileged ids for workers of a root judge (isolate uses 60000 + box id)
SYSTEM_READ_EXEC = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_READ = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/passwd",
               "/etc/group", "/etc/nsswitch.conf", "/etc/os-release", "/dev/urandom", "/dev/random", "/dev/zero",
               "/sys/devices/system/cpu", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat")  # fmt: skip
DEVICES_RW = ("/dev/null",)
KEEP_ROOT_ENV = "SCRATCH_CNN_SANDBOX_KEEP_ROOT"  # tests only: run root workers as root, so Landlock alone must hold


class SandboxUnavailable(ValueError):
    """The tier asked for cannot run here (the message says why and how to get it)."""


@dataclass
class Identity:
    """Who a worker runs as: ``uid``/``gid`` to switch to (None: the judge's own), and why."""

    uid: int | None = None
    gid: int | None = None
    note: str = ""

    def describe(self) -> str:
        if self.uid is not None:
            return f"uid {self.uid}"
        return "the judge's uid" + (f" ({self.note})" if self.note else "")


@dataclass
class Confinement:
    """What the worker applies to itself before it imports the implementation (plain data: it travels
    in the worker's first message)."""

    tier: str
    read: list[str] = field(default_factory=list)
    read_exec: list[str] = field(default_factory=list)
    devices_rw: list[str] = field(default_factory=list)
    landlock: bool = False  # restrict with Landlock (tiers bwrap and landlock, where the kernel has it)
    drop_caps: bool = False  # a root worker keeps its uid: drop every capability
    rlimits: dict[str, int] = field(default_factory=dict)

    def plan(self, workdir: str) -> dict[str, Any]:
        return {**asdict(self), "write": [workdir]}


# --- choosing the tier ---------------------------------------------------------------------------------


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def resolve_sandbox(choice: str) -> str:
    """``auto`` -> the strongest tier that works here; a named tier that cannot run: SandboxUnavailable."""
    if choice not in SANDBOXES:
        raise ValueError(f"--sandbox: {choice!r} is not one of {', '.join(SANDBOXES)}")
    if choice == "process":
        return "process"
    if choice in ("auto", "bwrap") and bwrap_works():
        return "bwrap"
    if choice == "bwrap":
        raise SandboxUnavailable("--sandbox bwrap: bubblewrap is not usable here (" + (
            "no 'bwrap' on PATH; on Debian: apt-get install bubblewrap" if not bwrap_path()
            else "'bwrap' is installed but cannot create its namespaces") + ")")  # fmt: skip
    if landlock_works():
        return "landlock"
    if choice == "landlock":
        raise SandboxUnavailable(f"--sandbox landlock: Landlock is not usable here ({landlock_problem()})")
    return "process"


FORKSERVER_OFF_ENV = "SCRATCH_CNN_NO_FORKSERVER"  # set: every worker a fresh interpreter (the bench's comparison)
FORKING_ABI = 6  # Landlock's signal and abstract-socket scoping: what keeps forked workers apart


def forking_problem(conf: Confinement) -> str:
    """'' where a session's workers may be forked from one server (reference.sandbox.forkserver);
    else why each worker is a fresh interpreter: a tier without Landlock, a Landlock without signal
    scoping (a forked worker could signal the server and its siblings), or the switch set."""
    if os.environ.get(FORKSERVER_OFF_ENV):
        return f"{FORKSERVER_OFF_ENV} is set"
    if conf.tier not in ("bwrap", "landlock") or not conf.landlock:
        return f"the {conf.tier} tier has no Landlock to keep forked workers apart"
    if landlock.abi_version() < FORKING_ABI:
        return f"Landlock ABI {landlock.abi_version()} has no signal scoping (ABI >= {FORKING_ABI})"
    return ""


def no_tier_warning() -> str:
    """The first line a judge prints where no sandbox tier exists."""
    return ("WARNING: no sandbox here (no usable bubblewrap, no Landlock: " + landlock_problem() + "); the judged "
            "code runs as an ordinary process that can read and write what this user can. Judge only code you trust, "
            "or install bubblewrap / use Linux >= 5.13.")  # fmt: skip


@lru_cache(maxsize=1)
def landlock_problem() -> str:
    abi = landlock.abi_version()
    return (
        f"ABI {abi}" if abi else "the kernel has no Landlock (Linux < 5.13, or 'landlock' not in the boot's lsm= list)"
    )


@lru_cache(maxsize=1)
def landlock_works() -> bool:
    """Landlock's ABI answers and a worker can restrict itself and still start (probed once)."""
    if landlock.abi_version() < 1:
        return False
    return _probe("landlock")


@lru_cache(maxsize=1)
def bwrap_works() -> bool:
    return bool(bwrap_path()) and _probe("bwrap")


def _probe(tier: str) -> bool:
    """Start the worker's interpreter the way a real worker starts (same identity, same tier) and
    let it confine itself and import the worker's room."""
    identity = worker_identity()
    conf = confinement(tier, identity, [], memory_mb=0)
    code = ("import json, sys; from reference.sandbox import confine; "
            "confine.apply(json.loads(sys.argv[1])); import reference.sandbox.worker")  # fmt: skip
    workdir = tempfile.mkdtemp(prefix="scratch-cnn-probe-")
    try:
        own_dir(workdir, identity)
        import json

        argv = [sys.executable, "-I", "-B", "-c", code, json.dumps(conf.plan(workdir))]
        if tier == "bwrap":
            argv = [*bwrap_argv(workdir, conf.read + conf.read_exec), *argv]
        done = subprocess.run(argv, cwd=workdir, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                              capture_output=True, timeout=60, **popen_identity(identity))  # fmt: skip
        return done.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- who the worker runs as --------------------------------------------------------------------------


@lru_cache(maxsize=1)
def unprivileged_can_run() -> str:
    """'' when an unprivileged uid can start the worker's interpreter and import the judges' worker
    room; else why not (the interpreter under a folder only root can enter, say)."""
    uid = UID_RANGE[0]
    try:
        done = subprocess.run([sys.executable, "-I", "-B", "-c", "import reference.sandbox.worker"], cwd="/",
                              env={"PATH": "/usr/bin:/bin"}, capture_output=True, timeout=60, user=uid, group=uid,
                              extra_groups=[])  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"an unprivileged uid cannot start {sys.executable} ({err})"
    if done.returncode == 0:
        return ""
    blocked = _first_closed_folder(Path(sys.executable).resolve()) or _first_closed_folder(Path(sys.base_prefix))
    where = f": {blocked} is closed to other users" if blocked else ""
    return f"an unprivileged uid cannot start the interpreter {sys.executable}{where}"


def _first_closed_folder(path: Path) -> str:
    for parent in [*reversed(path.parents), path]:
        with contextlib.suppress(OSError):
            if parent.is_dir() and not parent.stat().st_mode & 0o001:
                return f"{parent} (mode {parent.stat().st_mode & 0o777:o})"
    return ""


def worker_identity() -> Identity:
    """An unprivileged uid/gid for this session's workers when the judge is root and that uid can run
    the interpreter; else the judge's own uid (root: every capability dropped; see the note)."""
    if os.geteuid() != 0:
        return Identity(note="the judge is not root")
    if os.environ.get(KEEP_ROOT_ENV) == "1":
        return Identity(note=f"root kept: {KEEP_ROOT_ENV}=1 (tests)")
    problem = unprivileged_can_run()
    if problem:
        return Identity(note=f"root without capabilities: {problem}; process limits do not bind root")
    uid = _free_uid()
    return Identity(uid, uid)


def _free_uid() -> int:
    """A uid of UID_RANGE that no running process has (two judges at once get two)."""
    used = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in status.read_text().splitlines():
                if line.startswith("Uid:"):
                    used.add(int(line.split()[1]))
                    break
    choices = [u for u in range(*UID_RANGE) if u not in used]
    return random.SystemRandom().choice(choices or list(range(*UID_RANGE)))


def popen_identity(identity: Identity) -> dict[str, Any]:
    """subprocess.Popen's arguments that start a process as ``identity`` (done in C before exec:
    safe beside the judge's threads)."""
    if identity.uid is None:
        return {}
    return {"user": identity.uid, "group": identity.gid, "extra_groups": []}


def own_dir(path: str, identity: Identity) -> None:
    """``path`` is the worker's own: 0700, owned by the worker's uid."""
    os.chmod(path, 0o700)
    if identity.uid is not None:
        os.chown(path, identity.uid, identity.gid if identity.gid is not None else -1)


# --- what a worker may touch ------------------------------------------------------------------------


def package_dirs(*names: str) -> list[str]:
    """The folders of installed packages, found without importing them."""
    found = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            found += [str(Path(p).resolve()) for p in spec.submodule_search_locations]
    return found


def interpreter_dirs() -> list[str]:
    """The interpreter's prefixes (its standard library, extension modules and site-packages)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             *(sysconfig.get_paths().get(k, "") for k in ("stdlib", "platstdlib", "purelib", "platlib"))}  # fmt: skip
    paths.add(str(Path(sys.executable).resolve().parent))
    return sorted({str(Path(p).resolve()) for p in paths if p})


def confinement(tier: str, identity: Identity, target_folders: list[str], memory_mb: int,
                processes: int = 64, open_files: int = 256, file_mb: int = 256) -> Confinement:  # fmt: skip
    """The confinement of a session's workers in ``tier``."""
    read = sorted({*SYSTEM_READ, *package_dirs("reference", "scratch_cnn"), *target_folders})
    rlimits = {"core": 0, "nofile": open_files, "fsize": file_mb << 20}
    if memory_mb > 0:
        rlimits["as"] = memory_mb << 20
    if identity.uid is not None:  # NOTE: RLIMIT_NPROC counts every process of the uid; root ignores it
        rlimits["nproc"] = processes
    return Confinement(tier=tier, read=read, read_exec=sorted({*SYSTEM_READ_EXEC, *interpreter_dirs()}),
                       devices_rw=list(DEVICES_RW), landlock=tier in ("bwrap", "landlock") and landlock.abi_version() >= 1,
                       drop_caps=identity.uid is None and os.geteuid() == 0, rlimits=rlimits)  # fmt: skip


def bwrap_argv(workdir: str, readable: list[str], path: str | None = None) -> list[str]:
    """Bubblewrap: the file system read-only, /tmp and /dev/shm empty but for the worker's own
    directory and what it must read there, no network, own PIDs; the sandbox dies with the judge."""
    argv = [path or bwrap_path() or "bwrap", "--die-with-parent", "--new-session", "--unshare-all",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/dev/shm", "--tmpfs", "/tmp"]  # fmt: skip
    tmp = os.path.realpath(tempfile.gettempdir())
    for p in sorted({os.path.realpath(p) for p in readable}):
        if (p == tmp or p.startswith(tmp + os.sep) or p.startswith("/tmp/")) and os.path.exists(p):
            argv += ["--ro-bind", p, p]
    return [*argv, "--bind", workdir, workdir, "--chdir", workdir, "--"]
