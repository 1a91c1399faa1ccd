"""Every process a worker starts is the judge's to kill, double-forked, re-executed or not.

The judge makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``): a process orphaned anywhere
below it (a daemon that forked twice and called setsid) is re-parented to the judge, never to init,
so it stays in the judge's tree whatever it changes about itself (its environment, session, name).
``Sweep`` remembers which descendants the judge had before its workers started; ``kill_new()``
kills every descendant born since (stopping them first, until a scan finds none, so a process that
forks while it is being killed is caught too). Nothing here depends on anything a worker can read
or change: no marker in the environment decides what is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
_subreaper = False


def die_with_parent(parent: int | None = None) -> None:
    """SIGKILL this process when the thread that started it ends (``PR_SET_PDEATHSIG``; usable as a
    Popen ``preexec_fn``). With ``parent``: end now if that is no longer the parent (it ended first)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def become_subreaper() -> bool:
    """Make this process the child subreaper of everything it starts (once). False where the kernel refuses."""
    global _subreaper
    if not _subreaper:
        with contextlib.suppress(OSError, AttributeError):
            _subreaper = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    return _subreaper


def _stat(pid_dir: Path) -> tuple[int, int] | None:
    """(ppid, start time in clock ticks) of a process, from /proc/PID/stat (None if it is gone)."""
    try:
        raw = (pid_dir / "stat").read_text()
    except OSError:
        return None
    # NOTE: the command name (field 2) is in parentheses and may hold spaces and ')': split after the last ')'
    fields = raw.rpartition(")")[2].split()
    try:
        return int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def process_table() -> dict[int, tuple[int, int]]:
    """{pid: (ppid, start time)} of every process this one can see."""
    table = {}
    for pid_dir in Path("/proc").glob("[0-9]*"):
        found = _stat(pid_dir)
        if found is not None:
            table[int(pid_dir.name)] = found
    return table


def descendants(root: int, table: dict[int, tuple[int, int]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class Sweep:
    """The descendants of this process that existed when it was made are the host's (a test runner's
    or a notebook kernel's own children); every other descendant is a worker's or its offspring's."""

    def __init__(self) -> None:
        become_subreaper()
        self.root = os.getpid()
        table = process_table()
        self.before = {(pid, table[pid][1]) for pid in descendants(self.root, table)}

    def strays(self) -> set[int]:
        table = process_table()
        mine = descendants(self.root, table)
        host = {pid for pid in mine if (pid, table[pid][1]) in self.before}
        host_trees = set().union(*(descendants(pid, table) for pid in host)) if host else set()
        return mine - host - host_trees

    def kill_new(self, keep: set[int] = frozenset(), rounds: int = 200) -> int:
        """Kill every descendant born since this sweep was made but ``keep``; returns how many.
        Stops each first (SIGSTOP), rescans until no new one appears, then SIGKILLs them all."""
        stopped: set[int] = set()
        for _ in range(rounds):
            new = self.strays() - keep - stopped
            if not new:
                break
            for pid in new:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGSTOP)
            stopped |= new
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self._reap(stopped)
        return len(stopped)

    def _reap(self, pids: set[int]) -> None:
        """Collect the killed processes that are this process's children (re-parented orphans), so
        none stays a zombie; never waits on a child it did not kill (a host's Popen keeps its status)."""
        deadline = time.monotonic() + 5
        pending = set(pids)
        while pending and time.monotonic() < deadline:
            for pid in list(pending):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:  # not our child (its parent reaps it), or already collected
                    pending.discard(pid)
                    continue
                if done:
                    pending.discard(pid)
            if pending:
                time.sleep(0.01)
