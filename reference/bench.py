"""`nox -s bench`: the speed of a training step, as a ratio against PyTorch on the same machine in
the same run (never an absolute time: the machines are shared and noisy).

Target (issue: the NumPy network): a LeNet-like step (conv5x5 1->32, pool, conv5x5 32->64, pool,
dense 3136->128, dense 128->10, batch 64, float32) within 1.5x the time of the same step in PyTorch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
import torch

from reference.impl.protocol import DEFAULT_IMPL, load_impl
from reference.judges.curves import make_pair, twin_step
from scratch_cnn.train import TrainConfig

TARGET_RATIO = 1.5


def time_steps(step, repeats: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def run(impl_name: str = DEFAULT_IMPL, arch: str = "lenet", batch: int = 64, repeats: int = 30) -> pd.DataFrame:
    """Median seconds per training step of the implementation and of its twin, interleaved in rounds."""
    config = TrainConfig(arch=arch, batch_size=batch)
    pair = make_pair(load_impl(impl_name), arch, config, "float32")
    rng = np.random.default_rng(0)
    x = rng.random((batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    ours, theirs = [], []
    for _ in range(3):  # alternate, so a burst of noise hits both
        ours += time_steps(lambda: pair.net.train_step(pair.opt, x, y), repeats // 3)
        theirs += time_steps(lambda: twin_step(pair, x, y), repeats // 3)
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    return pd.DataFrame([{"arch": arch, "batch": batch, "dtype": "float32", "threads": torch.get_num_threads(),
                          "ours_s": m_ours, "torch_s": m_theirs, "ratio": m_ours / m_theirs,
                          "target_ratio": TARGET_RATIO, "within_target": m_ours / m_theirs <= TARGET_RATIO}])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reference.bench", description=__doc__)
    ap.add_argument("--impl", default=DEFAULT_IMPL)
    ap.add_argument("--arch", default="lenet")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    df = run(args.impl, args.arch, repeats=args.repeats)
    print(df.to_markdown(index=False, floatfmt=".3g"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
