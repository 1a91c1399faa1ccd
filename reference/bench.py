"""`nox -s bench`: the performance report, every figure a ratio against PyTorch measured on the same
machine in the same run (never an absolute time held as a target: the machines are shared and noisy).

Writes ``reports/latest/bench/``: ``steps.csv`` (a lenet training step, float32, batch 32/64/256, at 1
and 2 threads: ours, torch, the ratio, images/s, and the floor of the step's matrix products alone),
``layers.csv`` (each layer's forward and backward beside torch's, and each convolution's GFLOP/s
against this machine's measured sgemm rate), ``memory.csv`` (peak RSS of a training run of each side,
each in its own process), ``isolation.csv`` (the layer judges in-process vs through workers in each sandbox tier: none, Landlock, bubblewrap), ``bench.md`` and ``layers.png``. Target (issue: speed): the batch-64 step
within TARGET_RATIO of torch's.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import scratch_cnn
from reference.impl.protocol import DEFAULT_IMPL, load_impl
from reference.judges.curves import make_pair, twin_step
from reference.layers import kind, layout
from reference.report.tables import markdown, write_atomic
from reference.threads import pin_threads
from scratch_cnn.train import TrainConfig

TARGET_RATIO = 1.25


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sgemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    return 2 * n**3 / median_time(lambda: a @ a, repeats) / 1e9


def batch_data(batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((batch, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, batch)


def step_rows(impl: Any, batches: list[int], threads: int, repeats: int, peak: float) -> list[dict[str, Any]]:
    """Median seconds per lenet training step, ours and the twin, alternating in rounds."""
    rows = []
    for batch in batches:
        pair = make_pair(impl, "lenet", TrainConfig(arch="lenet", batch_size=batch), "float32")
        x, y = batch_data(batch)
        ours, theirs = [], []
        for _ in range(3):  # alternate, so a burst of noise hits both
            ours.append(median_time(lambda p=pair, x=x, y=y: p.net.train_step(p.opt, x, y), max(repeats // 3, 3)))
            theirs.append(median_time(lambda p=pair, x=x, y=y: twin_step(p, x, y), max(repeats // 3, 3)))
        o, t = statistics.median(ours), statistics.median(theirs)
        floor = gemm_floor(batch, max(repeats // 3, 3))
        at_peak = gemm_flops(batch) / (peak * 1e9)
        rows.append({"batch": batch, "threads": threads, "ours_s": o, "torch_s": t, "ratio": o / t,
                     "gemm_floor_s": floor, "gemm_floor_ratio": floor / t, "gemm_at_sgemm_peak_s": at_peak,
                     "ours_images_per_s": batch / o, "torch_images_per_s": batch / t,
                     "target_ratio": TARGET_RATIO if batch == 64 else np.nan})  # fmt: skip
    return rows


def gemm_operands(batch: int) -> list[tuple[str, tuple[int, int], tuple[int, int], int]]:
    """The matrix products of one im2col lenet training step: (what, A shape, B shape, how many times).

    Per convolution: the forward ``cols @ W`` and ``cols^T @ dZ`` for dW, and (not for the first
    layer, whose dx nobody needs) one ``dZ @ W[a, b]^T`` per kernel offset for dx; per dense layer the
    forward, dW and dx (again not for a first layer).
    """
    model = scratch_cnn.build("lenet", np.random.default_rng(0))
    x = np.zeros((batch, 28, 28, 1), dtype=np.float32)
    products = []
    for i, layer in enumerate(model.layers):
        y = layer.forward(x)
        out = y.shape
        if isinstance(layer, scratch_cnn.Conv2D):
            (kh, kw), (C, K) = layer.kernel_size, (layer.in_ch, layer.out_ch)
            rows = out[0] * out[1] * out[2]
            products += [(f"{i} Conv2D forward", (rows, kh * kw * C), (kh * kw * C, K), 1),
                         (f"{i} Conv2D dW", (kh * kw * C, rows), (rows, K), 1)]  # fmt: skip
            if i:
                products.append((f"{i} Conv2D dx", (rows, K), (K, C), kh * kw))
        elif isinstance(layer, scratch_cnn.Dense):
            n_in, n_out = layer.n_in, layer.n_out
            products += [(f"{i} Dense forward", (batch, n_in), (n_in, n_out), 1),
                         (f"{i} Dense dW", (n_in, batch), (batch, n_out), 1)]  # fmt: skip
            if i:
                products.append((f"{i} Dense dx", (batch, n_out), (n_out, n_in), 1))
        x = y
    return products


def gemm_flops(batch: int) -> int:
    """Floating-point operations of the step's matrix products (2 per multiply-add)."""
    return sum(2 * a[0] * a[1] * b[1] * times for _, a, b, times in gemm_operands(batch))


def gemm_floor(batch: int, repeats: int) -> float:
    """Seconds of the step's matrix products alone (operands ready, outputs preallocated): what any
    im2col NumPy step pays before a single copy, mask or sum."""
    rng = np.random.default_rng(0)
    calls = []
    for what, a_shape, b_shape, times in gemm_operands(batch):
        # dW multiplies a transposed view (cols^T, x^T), as the layers do
        a = (
            rng.random(a_shape[::-1], dtype=np.float32).T
            if what.endswith("dW")
            else rng.random(a_shape, dtype=np.float32)
        )
        b = rng.random(b_shape, dtype=np.float32)
        out = np.empty((a_shape[0], b_shape[1]), dtype=np.float32)
        calls += [(a, b, out)] * times

    def products() -> None:
        for a, b, out in calls:
            np.matmul(a, b, out=out)

    return median_time(products, repeats)


def layer_rows(impl: Any, batch: int, threads: int, repeats: int, peak: float) -> list[dict[str, Any]]:
    """Each lenet layer's forward and backward, ours (NHWC) beside the twin's module (NCHW)."""
    pair = make_pair(impl, "lenet", TrainConfig(arch="lenet", batch_size=batch), "float32")
    x, _ = batch_data(batch)
    rows = []
    h = x
    for i, (layer, module, entry) in enumerate(zip(pair.net.layers, pair.twin, pair.net.layer_spec, strict=True)):
        out = layer.forward(h)
        g = np.random.default_rng(i).standard_normal(out.shape).astype(np.float32)
        # the first layer's backward is its parameters' gradients only, on both sides, as in a training step
        declared = kind(entry["type"])
        params_only = i == 0 and declared.parametric and hasattr(layer, "backward_params")
        f_ours = median_time(lambda layer=layer, h=h: layer.forward(h), repeats)
        backward = layer.backward_params if params_only else layer.backward
        b_ours = median_time(lambda backward=backward, g=g: backward(g), repeats)
        ht = layout.to_torch(layout.images_to_torch(h), requires_grad=not params_only)
        gt = layout.to_torch(layout.images_to_torch(g))
        with torch.no_grad():
            f_torch = median_time(lambda module=module, ht=ht: module(ht), repeats)

        def torch_backward(module: Any = module, ht: Any = ht, gt: Any = gt) -> None:
            module(ht).backward(gt)

        fb_torch = median_time(torch_backward, repeats)
        row = {"threads": threads, "layer": f"{i} {entry['type']}" + (" (grads only)" if params_only else ""),
               "shape_in": str(tuple(h.shape)),
               "ours_forward_ms": f_ours * 1e3, "torch_forward_ms": f_torch * 1e3,
               "ours_backward_ms": b_ours * 1e3, "torch_backward_ms": max(fb_torch - f_torch, 0.0) * 1e3,
               "conv_forward_gflops": np.nan, "conv_backward_gflops": np.nan, "sgemm_gflops": peak}  # fmt: skip
        if declared.parametric and declared.sliding is not None:  # a convolution: its rate beside sgemm's
            flops = float(declared.flops(entry["config"], tuple(h.shape)))
            backward_flops = flops if params_only else 2 * flops  # dW, and dx unless grads only
            row.update(conv_forward_gflops=flops / f_ours / 1e9, conv_backward_gflops=backward_flops / b_ours / 1e9)
        rows.append(row)
        h = out
    return rows


RSS_SCRIPT = """
import sys, numpy as np
side, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
from threadpoolctl import threadpool_limits
threadpool_limits(1)
rng = np.random.default_rng(0)
x, y = rng.random((batch, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, batch)
if side == "ours":
    import scratch_cnn as sc
    from scratch_cnn.train import train_step
    model = sc.build("lenet", np.random.default_rng(0))
    opt, loss = sc.SGD(model.params, lr=0.05, momentum=0.9), sc.SoftmaxCrossEntropy()
    for _ in range(steps):
        train_step(model, loss, opt, x, y)
else:
    import torch, scratch_cnn as sc
    from reference.cases import twins
    from reference.layers import layout
    torch.set_num_threads(1)
    twin = twins.twin_network(sc.build("lenet", np.random.default_rng(0)).spec()["layers"], torch.float32)
    opt = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9)
    xt, yt = layout.to_torch(layout.images_to_torch(x)), torch.as_tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(twin(xt), yt).backward()
        opt.step()
# NOTE: ru_maxrss survives exec (it would report the parent's peak); VmHWM is this process's own
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def memory_rows(batch: int = 64, steps: int = 20) -> list[dict[str, Any]]:
    """Peak RSS (MB) of each side training lenet, each in a fresh process (ours never imports torch)."""
    rows = []
    for side in ("ours", "torch"):
        done = subprocess.run([sys.executable, "-c", RSS_SCRIPT, side, str(steps), str(batch)], capture_output=True,
                              text=True, check=True)  # fmt: skip
        rows.append({"side": side, "batch": batch, "steps": steps, "peak_rss_mb": int(done.stdout.split()[-1]) / 1024})
    return rows


def plot_layers(layers: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = layers[layers["threads"] == layers["threads"].max()]
    fig, ax = plt.subplots(figsize=(10, 4))
    idx = np.arange(len(df))
    for k, (col, label) in enumerate([("ours_forward_ms", "ours forward"), ("torch_forward_ms", "torch forward"),
                                      ("ours_backward_ms", "ours backward"), ("torch_backward_ms", "torch backward")]):  # fmt: skip
        ax.bar(idx + (k - 1.5) * 0.2, df[col], 0.2, label=label)
    ax.set_xticks(idx, df["layer"], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="ms (median)", title=f"lenet layers, batch 64, float32, {int(df['threads'].iloc[0])} thread(s)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def isolation_rows(impl_name: str) -> list[dict[str, Any]]:
    """The cost of the trust boundary: the layer judges (protocol, autograd, finite differences,
    lifecycle) on the quick grid, once on the module imported here and once through sandboxed
    workers (bubblewrap where it works, one layer per core), same run, same cases."""
    from reference.cases.grid import QUICK, grid, sample
    from reference.judges.base import Context
    from reference.judges.finite_diff import NETWORKS
    from reference.judging import SandboxOptions, judgement
    from reference.pipeline import LAYER_JUDGES, make_judges

    cases = sample(grid(), QUICK)

    def judge_all(impl: Any) -> int:
        ctx = Context(impl, impl_name, cases, quick=True, networks=NETWORKS)
        return sum(len(j.run(ctx).rows) for j in make_judges(LAYER_JUDGES, crosscheck=False))

    rows = []
    start = time.perf_counter()
    n = judge_all(load_impl(impl_name))
    rows.append({"how": "in this process (before the boundary)", "sandbox": "none", "rows": n,
                 "seconds": time.perf_counter() - start, "worker uid": "-"})  # fmt: skip
    from reference.sandbox.tiers import SandboxUnavailable

    for sandbox, parallel in (("process", 1), ("process", None), ("landlock", None), ("bwrap", None)):
        start = time.perf_counter()
        try:
            with judgement(impl_name, SandboxOptions(tier=sandbox, parallel=parallel)) as j:
                n = judge_all(j.impl)
                how = f"in workers, {j.session.parallel} layer(s) at once"
                used = j.session.sandbox + (" (no sandbox: limits only)" if sandbox == "process" else "")
                who = j.session.identity.describe()
        except SandboxUnavailable as err:  # a tier this machine does not offer: said, not measured
            rows.append(
                {"how": "not measured", "sandbox": sandbox, "rows": 0, "seconds": float("nan"), "worker uid": str(err)}
            )
            continue
        rows.append({"how": how, "sandbox": used, "rows": n, "seconds": time.perf_counter() - start, "worker uid": who})
    for r in rows:
        r["ratio"] = r["seconds"] / rows[0]["seconds"]
    return rows


def run(impl_name: str = DEFAULT_IMPL, out: Path = Path("reports/latest/bench"), repeats: int = 30,
        thread_counts: tuple[int, ...] = (1, 2), judgement_modes: tuple[str, ...] = ("quick", "full", "check"),
        judgement_repeats: int = 3) -> dict[str, pd.DataFrame]:  # fmt: skip
    impl = load_impl(impl_name)
    steps, layers = [], []
    for threads in thread_counts:
        pin_threads(threads)
        peak = sgemm_gflops()
        print(f"[bench] {threads} thread(s): sgemm {peak:.0f} GFLOP/s; lenet steps at batch 32/64/256 ...", flush=True)
        steps += step_rows(impl, [32, 64, 256], threads, repeats, peak)
        print(f"[bench] {threads} thread(s): per-layer forward/backward ...", flush=True)
        layers += layer_rows(impl, 64, threads, max(repeats // 2, 5), peak)
    print("[bench] peak memory of each side, in fresh processes ...", flush=True)
    memory = memory_rows()
    pin_threads(1)
    print("[bench] the trust boundary: the layer judges in this process and through sandboxed workers ...", flush=True)
    tables = {"steps": pd.DataFrame(steps), "layers": pd.DataFrame(layers), "memory": pd.DataFrame(memory),
              "isolation": pd.DataFrame(isolation_rows(impl_name))}  # fmt: skip
    if judgement_modes:
        from reference.bench_judgement import LOOP_IMPL, judgement_tables

        tables["judgement"], tables["judgement_by_judge"] = judgement_tables([impl_name, LOOP_IMPL], judgement_modes,
                                                                            judgement_repeats)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        write_atomic(out / f"{name}.csv", df.to_csv(index=False))
    plot_layers(tables["layers"], out / "layers.png")
    at64 = tables["steps"][tables["steps"]["batch"] == 64]
    best = at64.loc[at64["ratio"].idxmin()]
    verdict = (f"lenet step, batch 64, float32: {best['ratio']:.2f}x torch at {int(best['threads'])} thread(s) "
               f"(target <= {TARGET_RATIO}x: {'met' if best['ratio'] <= TARGET_RATIO else 'NOT met'}); "
               f"its matrix products alone take {best['gemm_floor_ratio']:.2f}x torch's whole step")  # fmt: skip
    text = [f"# Benchmark: {impl_name} beside PyTorch (same machine, same run)", "", verdict, "",
            "## A training step (lenet, float32)", "",
            "`gemm_floor_s`: the step's matrix products alone, at the shapes im2col gives them (operands ready, "
            "outputs preallocated, no copy, mask or sum): what any im2col NumPy step pays at least. "
            "`gemm_floor_ratio` is that floor over torch's whole step. `gemm_at_sgemm_peak_s`: the same "
            "floating-point operations at the rate of a square 1024 sgemm (what a GEMM of friendlier shapes "
            "would take).", "", markdown(tables["steps"]), "",
            "## Per layer (batch 64): milliseconds, and each convolution's GFLOP/s beside the measured sgemm rate", "",
            markdown(tables["layers"]), "", "## Peak memory (RSS), a fresh process per side", "",
            markdown(tables["memory"]), "",
            "## The trust boundary: the layer judges on the quick grid, in-process vs sandboxed (target <= 1.5x)", "",
            markdown(tables["isolation"]), "", "![layers](layers.png)", ""]  # fmt: skip
    if "judgement" in tables:
        text += ["## A judgement: `judge --no-curves`, CPU seconds of the judge and its workers", "",
                 "Where the CPU goes: the implementation's own calls (timed in the worker: the floor), the torch "
                 "twins, the judge's own Python, the workers' start-up and imports, the exchanges (the workers' CPU "
                 "outside the implementation), the judge process's start-up (imports) and the rest (its reports). "
                 "`judge_share`: all but the "
                 "implementation's calls.", "", markdown(tables["judgement"]), "", "### By judge", "",
                 markdown(tables["judgement_by_judge"]), ""]  # fmt: skip
    write_atomic(out / "bench.md", "\n".join(text))
    print(markdown(tables["steps"]))
    print(markdown(tables["isolation"]))
    if "judgement" in tables:
        print(markdown(tables["judgement"]))
    print(verdict)
    print(f"[bench] wrote {out}/bench.md, steps.csv, layers.csv, memory.csv, layers.png")
    return tables


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reference.bench", description=__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    ap.add_argument("--impl", default=DEFAULT_IMPL, help="the implementation (module or file)")
    ap.add_argument("--out", type=Path, default=Path("reports/latest/bench"), help="report directory")
    ap.add_argument("--repeats", type=int, default=30, help="timed steps per measurement")
    ap.add_argument("--judgement", default="quick,full,check",
                    help="the judgement's cost on these grids (quick, full) and of a student's check() (check); "
                    "'' for none: judgement.csv")  # fmt: skip
    ap.add_argument("--judgement-repeats", type=int, default=3,
                    help="runs of each judgement of --impl (its row: the run of median CPU, the least and most beside)")  # fmt: skip
    args = ap.parse_args(argv)
    modes = tuple(m for m in args.judgement.split(",") if m)
    from reference.bench_judgement import CHOICES

    if any(m not in CHOICES for m in modes):
        print(f"error: --judgement takes {', '.join(CHOICES)}, not {args.judgement!r}", file=sys.stderr)
        return 2
    if args.repeats < 3:
        print("error: --repeats must be >= 3", file=sys.stderr)
        return 2
    if args.judgement_repeats < 1:
        print("error: --judgement-repeats must be >= 1", file=sys.stderr)
        return 2
    run(args.impl, args.out, args.repeats, judgement_modes=modes, judgement_repeats=args.judgement_repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
