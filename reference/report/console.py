"""What the commands print while they run: progress lines and the command that reruns a case."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any


def progress_bar(desc: str) -> Callable[[int, int], None]:
    """A (done, total) callback over scratch_cnn's Progress: a tqdm bar on a terminal, elsewhere a line
    every few seconds (done/total, elapsed, ETA), so a CI log shows that long work is moving."""
    from scratch_cnn.train import Progress

    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        bar = state.setdefault("bar", Progress(total, desc))
        bar.update(done - bar.done)
        if done >= total:
            bar.__exit__()

    return update


def progress_sink() -> Callable[[str, int, int], None]:
    bars: dict[str, Callable[[int, int], None]] = {}
    return lambda desc, done, total: bars.setdefault(desc, progress_bar(desc))(done, total)


def rerun_command(impl: str, case: str) -> str:
    """The one command that reruns a case alone."""
    return f"python -m reference judge --impl {shlex.quote(impl)} --case {shlex.quote(case)}"
