"""One judgement of one implementation across the trust boundary, shared by every command.

``judgement(...)`` opens a sandbox session (the implementation is imported in a worker, never here),
runs the judges with the session's proxy standing where the module stood, and always closes the
session (every worker and stray process killed) before anything is written. What the judges found
lives in memory until then, so nothing the judged code did while it ran can touch a report.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from reference.impl.protocol import CLASSES
from reference.sandbox.client import Limits, Session, open_session
from reference.sandbox.target import find_target
from reference.sandbox.tiers import SandboxUnavailable, no_tier_warning, resolve_sandbox

NAMES = (
    *CLASSES,
    "SGD",
    "Sequential",
)  # the protocol's classes (the optional kinds, the optimisers), SGD and Sequential


_LIMITS = Limits()


def limits_from(case_timeout: float = _LIMITS.case_seconds, time_budget: float = _LIMITS.run_seconds,
                train_timeout: float = _LIMITS.train_seconds, memory_mb: int = _LIMITS.memory_mb,
                log_bytes: int = _LIMITS.log_bytes) -> Limits:  # fmt: skip
    """The limits the command line's options name (``--case-timeout`` and so on; each option's default
    is Limits' own). Checked when a judgement opens (``check_limits``)."""
    return Limits(case_seconds=case_timeout, run_seconds=time_budget, train_seconds=train_timeout,
                  memory_mb=memory_mb, log_bytes=log_bytes)  # fmt: skip


@dataclass(frozen=True)
class SandboxOptions:
    """The trust boundary's options: the tier (``--sandbox``), whether to refuse where no tier works
    (``--require-sandbox``), the limits, and how many layers are judged at once (``--parallel``)."""

    tier: str = "auto"
    require: bool = False
    limits: Limits = field(default_factory=Limits)
    parallel: int | None = None


def check_limits(limits: Limits) -> None:
    for name, value in (("--case-timeout", limits.case_seconds), ("--time-budget", limits.run_seconds),
                        ("--train-timeout", limits.train_seconds)):  # fmt: skip
        if not value > 0:
            raise ValueError(f"{name} must be > 0 seconds (got {value:g})")
    if limits.memory_mb < 0 or limits.log_bytes < 0:
        raise ValueError("--memory-mb and --log-bytes must be >= 0 (0: no memory limit)")


@dataclass
class Judgement:
    """What a run found, held in memory until its session is closed."""

    session: Session
    results: dict[str, Any] = field(default_factory=dict)
    logs: list[tuple[str, bytes]] = field(default_factory=list)  # (file name, captured output), after close
    costs: list[dict[str, Any]] = field(default_factory=list)  # a row per judge run (reference/costs.py)
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    @property
    def impl(self) -> Any:
        return self.session.impl

    def run_info(self) -> dict[str, Any]:
        s = self.session
        digest = s.target.digest()
        return {"run_id": s.run_id, "started": self.started, "impl": s.target.name, "impl_sha256": digest["sha256"],
                "judged_files": digest["files"], "sandbox": s.sandbox, "sandbox_detail": s.describe(),
                "limits": s.limits.describe(), "incidents": s.events}  # fmt: skip

    def stamp_lines(self) -> str:
        info = self.run_info()
        detail = info["sandbox_detail"]
        lines = [f"- run `{info['run_id']}`, started {info['started']}",
                 f"- judged: `{info['impl']}`, SHA-256 `{info['impl_sha256']}` of {len(info['judged_files'])} file(s)",
                 f"- sandbox: **{info['sandbox']}** ({sandbox_words(detail)}); limits: "
                 f"{info['limits']['case_seconds']:g} s per case, {info['limits']['run_seconds']:g} s per run, "
                 f"{info['limits']['memory_mb']} MB per worker"]  # fmt: skip
        if info["sandbox"] == "process":
            lines.insert(0, f"- **{no_tier_warning()}**")
        return "\n".join(lines)

    def incidents(self) -> pd.DataFrame:
        return pd.DataFrame(self.session.events, columns=["scope", "reason", "message"])


def sandbox_words(detail: dict[str, Any]) -> str:
    """``landlock, uid 61234, no capabilities, subreaper`` and the like, for a report's first lines."""
    parts = [detail.get("identity", "")]
    if detail.get("landlock"):
        parts.append("Landlock")
    parts.append(f"capabilities: {detail.get('capabilities', '?')}")
    return "; ".join(p for p in parts if p)


@contextmanager
def judgement(impl: str, sandbox: SandboxOptions | None = None, *, training: bool = True) -> Iterator[Judgement]:
    """A session on ``impl`` (a module name or a file) in the tier and under the limits of ``sandbox``,
    closed on the way out. Raises TargetError / ImportFailed (the implementation cannot be judged) or
    ValueError (an option).

    Every module the judges will use is imported first (``preload``; ``training``: the curve judge may
    run, and torch.optim's ``_dynamo`` with it): nothing the judge imports after a worker has started
    comes from a file that worker could have touched."""
    sandbox = sandbox or SandboxOptions()
    check_limits(sandbox.limits)
    target = find_target(impl)
    tier = resolve_sandbox(sandbox.tier)
    if tier == "process":
        if sandbox.require:
            raise SandboxUnavailable(f"--require-sandbox: {no_tier_warning()}")
        print(no_tier_warning(), file=sys.stderr, flush=True)
    # NOTE: matplotlib (0.5 s of CPU) draws only curves and a failing layer's heat maps: imported
    # first where curves will run or where nothing keeps a worker from writing site-packages (the
    # process tier); in bubblewrap and Landlock no worker can (tests/test_sandbox_tiers.py)
    preload(training=training, drawing=training or tier == "process")
    j = None
    try:
        if sandbox.parallel is not None and sandbox.parallel < 1:
            raise ValueError(f"--parallel must be >= 1 (got {sandbox.parallel})")
        session = open_session(target, NAMES, limits=sandbox.limits, sandbox=tier, parallel=sandbox.parallel)
        j = Judgement(session)
        yield j
    finally:
        if j is not None:
            j.session.close()
            j.logs = j.session.worker_logs()


_PRELOADED: list[str] = []
_WARMED: list[bool] = []  # preload's SGD step has run in this process


def preload(*, training: bool = True, drawing: bool = True) -> list[str]:
    """Import every module of the judges, and the libraries they import lazily, now (once); with
    ``training``, what the curve judge's torch.optim.SGD imports on its first step too (torch._dynamo:
    1 s of CPU; no other judge uses a torch.optim class: tests/test_optimizer_twins.py); with
    ``drawing``, matplotlib and its pyplot (the curves' and heat maps' plots)."""
    import importlib

    if drawing:
        import matplotlib

        matplotlib.use("Agg")
        importlib.import_module("matplotlib.pyplot")

    if training and not _WARMED:
        import torch

        w = torch.zeros(1, requires_grad=True)
        w.grad = torch.zeros(1)
        torch.optim.SGD([w], lr=0.1, momentum=0.9).step()
        _WARMED.append(True)  # once: what it imports stays imported
    if _PRELOADED:
        return _PRELOADED
    import pkgutil

    here = [str(Path(__file__).resolve().parent)]  # the package's folder (not `import reference`: no import cycle)
    names = [m.name for m in pkgutil.walk_packages(here, "reference.") if not m.name.endswith("__main__")]
    for name in [*names, "torch", "pandas", "tabulate", "threadpoolctl"]:
        importlib.import_module(name)
    _PRELOADED.extend(names)
    return _PRELOADED


def write_logs(j: Judgement, out: Path) -> None:
    """The workers' captured output (each capped) into ``out/worker-logs/``."""
    if not j.logs:
        return
    folder = out / "worker-logs"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in j.logs:
        (folder / name).write_bytes(data)


def mnist_loader(data_dir: str | None) -> Callable[[], dict[str, Any]]:
    """MNIST on first use (DataError propagates: the caller turns it into exit 2)."""
    cache: dict[str, Any] = {}

    def load() -> dict[str, Any]:
        if "data" not in cache:
            from scratch_cnn.data import load_mnist

            cache["data"] = load_mnist(data_dir)
        return cache["data"]

    return load
