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


def rerun_training_command(impl: str) -> str:
    """The one command that reruns the training check alone: the float64 lockstep beside the twin."""
    return f"python -m reference curves --impl {shlex.quote(impl)} --quick"


def smallest_lines(shrunk: Any, impl: str) -> list[str]:
    """Per failing layer, its smallest failing input (a row of autograd_shrunk.csv, reference.judges.shrink)
    and the command that reruns exactly it; where nothing smaller failed the same way, that said."""
    lines = []
    for r in shrunk.itertuples():
        lines.append(f"  {r.layer}: smallest failing input: {r.description}")
        if isinstance(r.case, str) and r.case:
            lines.append(f"    rerun: {rerun_command(impl, r.case)}")
    return lines
