"""What the two pooling kinds share (their window configuration, cases and search); each declares
itself in its own module (``maxpool2d``, ``avgpool2d``) with what is its own."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from reference.layers.case import Case, as_pair, cycle
from reference.layers.kind import Config, Shape

SEARCHED = "searched"
POOL_VALUES = ["ties", "noise", "near_ties", "mnist", "zeros"]
# (H, W): square and not, sides that every window configuration below divides or leaves a remainder
POOL_SIZES = [(6, 6), (7, 7), (6, 8), (9, 7)]
SMOKE = ({"kernel_size": 2, "stride": None}, (2, 4, 4, 2))
SMOKE_ALTERNATIVES = (
    ({"kernel_size": 2, "stride": None}, (2, 4, 4, 1)),
    ({"kernel_size": 2, "stride": None}, (1, 4, 4, 1)),
)
PER_AXIS = ({"kernel_size": (3, 2), "stride": (2, 1)}, (2, 8, 9, 2))
SIGNATURE = ("kernel_size", "stride")
DEFAULTS = {"kernel_size": 2, "stride": None}


def windows(config: Config) -> tuple[tuple[int, int], tuple[int, int]]:
    """(kernel, stride) as pairs; the stride defaults to the kernel."""
    k = as_pair(config.get("kernel_size", 2))
    return k, (as_pair(config["stride"]) if config.get("stride") is not None else k)


def sliding(config: Config) -> tuple[tuple[int, int], tuple[int, int], tuple[tuple[int, int], tuple[int, int]]]:
    """Its windows, unpadded."""
    kernel, stride = windows(config)
    return kernel, stride, ((0, 0), (0, 0))


def accepts(config: Config, shape: Shape) -> bool:
    """A window fits inside the input."""
    (kh, kw), _ = windows(config)
    return shape[1] >= kh and shape[2] >= kw


def axes(name: str, ndim: int) -> tuple[str, ...]:
    return ("m", "h", "w", "c")


def output_shape(config: Config, shape: Shape) -> Shape:
    k, s = windows(config)
    return (shape[0], (shape[1] - k[0]) // s[0] + 1, (shape[2] - k[1]) // s[1] + 1, shape[3])


def family(config: Config, shape: Shape) -> str:
    k, s = windows(config)
    overlap = "non-overlapping" if s == k else ("overlapping" if s[0] < k[0] or s[1] < k[1] else "gapped")
    divides = (shape[1] - k[0]) % s[0] == 0 and (shape[2] - k[1]) % s[1] == 0
    return f"{overlap}, {'windows cover the input' if divides else 'a remainder left over'}"


def window_ties(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int]:
    """(windows whose maximum occurs more than once, windows whose top two differ by < 1e-5 but not 0)."""
    if x.ndim != 4 or x.shape[1] < kernel[0] or x.shape[2] < kernel[1]:
        return 0, 0
    w = sliding_window_view(x, kernel, axis=(1, 2))[:, :: stride[0], :: stride[1]]
    w = w.reshape(*w.shape[:4], -1)
    if w.shape[-1] < 2:
        return 0, 0
    top2 = np.sort(w, axis=-1)[..., -2:]
    gap = top2[..., 1] - top2[..., 0]
    return int((gap == 0).sum()), int(((gap > 0) & (gap < 1e-5)).sum())


def kink_stats(config: Config, x: np.ndarray) -> dict[str, int]:
    ties, near = window_ties(x, *windows(config))
    return {"ties": ties, "near_ties": near}


def flops(config: Config, shape: Shape) -> int:
    (kh, kw), _ = windows(config)
    m, Ho, Wo, C = output_shape(config, shape)
    return m * Ho * Wo * C * kh * kw


def main_cases(name: str) -> list[Case]:
    """Every window x stride on square and non-square inputs whose sides windows do and do not cover,
    plus 2x2/2 (the pooling real networks use) on even sides with exact ties and near-ties, in int
    and tuple forms."""
    cases = []
    for i, (k, s, hw) in enumerate(itertools.product([1, 2, 3, (2, 3)], [None, 1, 2, 3], POOL_SIZES)):
        shape = (cycle([1, 2], i), *hw, cycle([1, 3], i // 4))
        cases.append(Case(name, {"kernel_size": k, "stride": s}, shape, cycle(POOL_VALUES, i + i // 4), seed=i))
    n = len(cases)
    for j, (config, hw, values) in enumerate(itertools.product(
        [{"kernel_size": 2, "stride": None}, {"kernel_size": 2, "stride": 2}, {"kernel_size": (2, 2), "stride": (2, 2)}],
        [(8, 8), (4, 6)], ["ties", "near_ties", "mnist"],
    )):  # fmt: skip
        cases.append(Case(name, config, (2, *hw, 3), values, seed=n + j))
    return cases


def per_axis_cases(name: str) -> list[Case]:
    """Kernels and strides that differ per axis, with overlapping windows."""
    pool = [((2, 3), (1, 2)), ((3, 2), (2, 1)), (2, (1, 2)), ((3, 3), (2, 1))]
    return [Case(name, {"kernel_size": k, "stride": s}, (2, 7, 8, 2), cycle(["ties", "near_ties"], i), seed=250 + i,
                 tag="per-axis") for i, (k, s) in enumerate(pool)]  # fmt: skip


def edge_cases(name: str) -> list[Case]:
    """An input exactly one window, and windows of 256 and 257 elements (a winner index kept in 8 bits
    holds offsets 0..255: the 257th wraps to 0)."""
    shapes = [({"kernel_size": 3, "stride": None}, (2, 3, 3, 2), "ties"),
              ({"kernel_size": (2, 3), "stride": 1}, (1, 2, 3, 3), "near_ties"),
              ({"kernel_size": (16, 16), "stride": None}, (1, 16, 16, 1), "noise"),
              ({"kernel_size": (1, 257), "stride": None}, (1, 1, 257, 1), "rising")]  # fmt: skip
    return [
        Case(name, config, shape, values, seed=260 + i, tag="edge") for i, (config, shape, values) in enumerate(shapes)
    ]


def lifecycle(name: str, seed: int, values: str) -> list[Case]:
    """Two rounds: the same shapes, then another batch, spatial size and channel count (round 2 on ``values``)."""
    pool = {"kernel_size": 2, "stride": None}
    return [Case(name, pool, (2, 4, 4, 3), "noise", seed=seed, then=((2, 4, 4, 3), values, seed + 1)),
            Case(name, pool, (2, 4, 4, 3), "noise", seed=seed + 1, then=((3, 6, 8, 5), values, seed + 2))]  # fmt: skip


def candidates(name: str) -> list[Case]:
    out = []
    for i, (k, s, c, hw) in enumerate(itertools.product([2, 3, (2, 3)], [None, 1, 2], [1, 2], [(6, 6), (7, 9)])):
        values = ["ties", "near_ties", "mnist"][i % 3]
        out.append(Case(name, {"kernel_size": k, "stride": s}, (2, *hw, c), values, seed=700 + i, tag=SEARCHED))
    return out


def secret(name: str, reduce: Any, rng: np.random.Generator, seed: int) -> list[Case]:
    """A pooling case whose output is not all zeros (drawn again until it is not: a few windows of
    small integers can all be 0, and two zero tensors compare nothing)."""
    kernel = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    stride = None if rng.random() < 0.3 else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    shape = (
        int(rng.integers(1, 5)),
        int(rng.integers(kernel[0], 11)),
        int(rng.integers(kernel[1], 11)),
        int(rng.integers(1, 5)),
    )
    values = str(rng.choice(["ties", "near_ties", "noise"]))
    from reference.layers.case import make_values

    while True:
        case = Case(name, {"kernel_size": kernel, "stride": stride}, shape, values, seed, tag="secret")
        x = make_values(np.random.default_rng([seed, 7]), shape, values)
        step = stride or kernel
        w = sliding_window_view(x, kernel, axis=(1, 2))[:, :: step[0], :: step[1]]
        pooled = reduce(w, axis=(-2, -1))  # what the layer's forward gives: np.max or np.mean over each window
        if pooled.any():
            return [case]
        seed += 1


def strategy(name: str) -> Any:
    from hypothesis import strategies as st

    pair = st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4)))

    @st.composite
    def pool(draw: Any) -> Case:
        k = as_pair(draw(pair))
        stride = draw(st.one_of(st.none(), st.integers(1, 3)))
        H, W = draw(st.integers(k[0], 8)), draw(st.integers(k[1], 8))
        return Case(name, {"kernel_size": k, "stride": stride}, (draw(st.integers(1, 2)), H, W, draw(st.integers(1, 3))),
                    draw(st.sampled_from(["ties", "near_ties", "mnist", "noise"])), draw(st.integers(0, 2**16)))  # fmt: skip

    return pool()


def shared_fields(name: str, reduce: Any, lifecycle_seed: int, lifecycle_values: str,
                  tutorial: Any) -> dict[str, Any]:  # fmt: skip
    """The LayerKind fields a pooling kind shares with every other (``reduce``: np.max or np.mean, the
    window's function the secret cases are drawn around; ``tutorial``: its tutorial-shaped cases)."""
    return {
        "name": name, "signature": SIGNATURE, "defaults": DEFAULTS, "images": True,
        "output_shape": output_shape, "family": family,
        "cases": {"main": lambda: main_cases(name), "per-axis": lambda: per_axis_cases(name),
                  "edge": lambda: edge_cases(name), "tutorial": tutorial},
        "lifecycle": lambda: lifecycle(name, lifecycle_seed, lifecycle_values),
        "smoke": SMOKE, "smoke_alternatives": SMOKE_ALTERNATIVES, "per_axis": PER_AXIS,
        "candidates": lambda: candidates(name), "secret": lambda rng, seed: secret(name, reduce, rng, seed),
        "strategy": lambda: strategy(name), "kink_stats": kink_stats, "flops": flops, "windows": windows,
        "axes": axes, "sliding": sliding, "accepts": accepts,
    }  # fmt: skip


def route_max_pool(x: np.ndarray, g: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                   rule: str) -> np.ndarray:  # fmt: skip
    """max pool's dx under a routing rule: 'first', 'last', 'every', 'split' (g / number of ties), or
    'isclose' (every element np.isclose to the window's maximum)."""
    (kh, kw), (sh, sw) = kernel, stride
    Ho, Wo = g.shape[1:3]
    dx = np.zeros(x.shape, dtype=np.float64)
    for i in range(Ho):
        for j in range(Wo):
            win = x[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :]
            peak = win.max(axis=(1, 2), keepdims=True)
            hit = np.isclose(win, peak) if rule == "isclose" else win == peak
            if rule in ("first", "last"):
                flat = hit.reshape(hit.shape[0], -1, hit.shape[3])
                k = np.argmax(flat, axis=1) if rule == "first" else flat.shape[1] - 1 - np.argmax(flat[:, ::-1], axis=1)
                one = np.zeros_like(flat)
                np.put_along_axis(one, k[:, None, :], True, axis=1)
                hit = one.reshape(hit.shape)
            share = g[:, i : i + 1, j : j + 1, :] / (hit.sum(axis=(1, 2), keepdims=True) if rule == "split" else 1)
            dx[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :] += hit * share
    return dx
