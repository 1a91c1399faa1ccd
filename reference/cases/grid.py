"""The cases every judge runs: a fixed grid over every layer option, hypothesis strategies over the
same space, and input values that exercise the kinks (exact zeros, exact ties, near-ties)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

VALUE_KINDS = ("noise", "zeros", "ties", "near_ties", "large", "tiny", "mnist")
# tags of the cases every run keeps (quick runs too): each is a class of bug no other case shows
KEPT_FAMILIES = {
    "per-axis": "kernel and stride differ per axis",
    "edge": "edges of the domain",
    "tutorial": "the shapes of tutorials",
    "searched": "found inside what the layer supports",
    "batch": "training batch sizes",
    "secret": "drawn from the secret seed",
}


@dataclass(frozen=True)
class Case:
    """One layer configuration and one input. ``input_shape`` is NHWC (or (m, n) for Dense/loss)."""

    layer: str
    config: dict[str, Any] = field(hash=False)
    input_shape: tuple[int, ...]
    values: str = "noise"
    seed: int = 0
    tag: str = ""  # where the case comes from when not the plain grid: "lenet", "seed", "tiny" (a layer's shape there)
    then: tuple[tuple[int, ...], str, int] | None = None  # lifecycle: the second round's (input_shape, values, seed)

    @property
    def id(self) -> str:
        parts = [f"{k}={_short(v)}" for k, v in self.config.items()]
        text = f"{self.layer}[{','.join(parts)}] x{'x'.join(map(str, self.input_shape))} {self.values} s{self.seed}"
        if self.then is not None:
            shape, values, seed = self.then
            text += f" then x{'x'.join(map(str, shape))} {values} s{seed}"
        return text

    @property
    def network_layer(self) -> bool:
        """A layer shape of a built-in network (large: probed on a subset)."""
        return bool(self.tag) and self.tag not in KEPT_FAMILIES

    @property
    def lifecycle(self) -> bool:
        return self.then is not None

    def second(self) -> Case:
        """The second round of a lifecycle case, as a case of its own (what a fresh instance sees)."""
        assert self.then is not None
        shape, values, seed = self.then
        return Case(self.layer, self.config, shape, values, seed, self.tag)

    @property
    def family(self) -> str:
        """The configuration family the coverage table groups by."""
        if self.lifecycle:
            return "lifecycle: two rounds on one instance"
        if self.tag in KEPT_FAMILIES:
            return KEPT_FAMILIES[self.tag]
        if self.tag:
            return f"{self.tag} layer shapes"
        return config_family(self.layer, self.config, self.input_shape)


def config_family(layer: str, config: dict[str, Any], shape: tuple[int, ...]) -> str:
    if layer == "Conv2D":
        p = config.get("padding", "same")
        pad = p if isinstance(p, str) else "explicit pad"
        return f"{pad}, stride {'1' if _as_pair(config.get('stride', 1)) == (1, 1) else '> 1'}"
    if layer in ("MaxPool2D", "AvgPool2D"):
        k = _as_pair(config.get("kernel_size", 2))
        s = _as_pair(config["stride"]) if config.get("stride") is not None else k
        overlap = "non-overlapping" if s == k else ("overlapping" if s[0] < k[0] or s[1] < k[1] else "gapped")
        divides = (shape[1] - k[0]) % s[0] == 0 and (shape[2] - k[1]) % s[1] == 0
        return f"{overlap}, {'windows cover the input' if divides else 'a remainder left over'}"
    if layer == "ReLU":
        return f"rank {len(shape)}"
    if layer == "Dense":
        return "with bias" if config.get("bias", True) else "without bias"
    if layer == "SoftmaxCrossEntropy":
        return "batch of 1" if shape[0] == 1 else "batch > 1"
    return layer.lower()


def _short(v: Any) -> str:
    return "x".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)


def make_values(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """float64 values of one of VALUE_KINDS (cast to the case's dtype by the caller; all kinds are
    exactly representable in float32 where it matters: ties are small integers). An input is never
    all zeros (a case on all zeros would prove nothing)."""
    values = _draw_values(rng, shape, kind)
    if values.size and not values.any():
        values.reshape(-1)[0] = 1.0  # reshape of a fresh array is a view
    return values


def _draw_values(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    if kind == "noise":
        return rng.uniform(-1, 1, shape)
    if kind == "zeros":
        return np.where(rng.random(shape) < 0.5, 0.0, rng.uniform(-1, 1, shape))
    if kind == "ties":
        return rng.integers(-2, 3, shape).astype(np.float64)
    if kind == "near_ties":  # ties broken by offsets of a few 1e-6: closer than 1e-5, still distinct in float32
        return rng.integers(-2, 3, shape) + 1e-6 * rng.integers(-3, 4, shape)
    if kind == "large":
        return rng.uniform(-1, 1, shape) * 1e3
    if kind == "tiny":
        return rng.uniform(-1, 1, shape) * 1e-4
    if kind == "rising":  # along the width axis: each window's maximum is its last element (edge cases only)
        return np.linspace(0, 1, shape[2]).reshape(1, 1, -1, 1) + 1e-3 * rng.uniform(-1, 1, shape)
    if kind == "mnist":  # quantised like MNIST pixels: mostly exact zeros, levels k/255
        return np.where(rng.random(shape) < 0.7, 0.0, rng.integers(1, 256, shape) / 255.0)
    raise ValueError(f"unknown value kind {kind!r}; expected one of {VALUE_KINDS}")


def case_inputs(case: Case, dtype: str) -> dict[str, Any]:
    """Deterministic input, parameters and labels of a case (float64 draws cast to ``dtype``); a case
    that carries its own numbers (a shrunk case, reference.judges.shrink) gives those."""
    given = getattr(case, "given_inputs", None)
    if given is not None:
        return given(dtype)
    rng = np.random.default_rng([case.seed, 7])
    x = make_values(rng, case.input_shape, case.values).astype(dtype)
    params = {}
    if case.layer == "Conv2D":
        c = case.config
        k = c["kernel_size"] if isinstance(c["kernel_size"], (tuple, list)) else (c["kernel_size"],) * 2
        params["W"] = (rng.standard_normal((*k, c["in_ch"], c["out_ch"])) * 0.5).astype(dtype)
        if c.get("bias", True):
            params["b"] = rng.uniform(-1, 1, c["out_ch"]).astype(dtype)
    elif case.layer == "Dense":
        c = case.config
        params["W"] = (rng.standard_normal((c["n_in"], c["n_out"])) * 0.5).astype(dtype)
        if c.get("bias", True):
            params["b"] = rng.uniform(-1, 1, c["n_out"]).astype(dtype)
    labels = rng.integers(0, case.input_shape[-1], case.input_shape[0]) if case.layer == "SoftmaxCrossEntropy" else None
    return {"x": x, "params": params, "labels": labels, "g_seed": [case.seed, 11]}


def upstream_gradient(inputs: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
    """The case's fixed random upstream gradient (the projection vector g), of the input's dtype; the
    case's own ``g`` where it carries one of this shape (a shrunk case)."""
    if inputs.get("g") is not None and np.shape(inputs["g"]) == tuple(shape):
        return np.array(inputs["g"], dtype=inputs["x"].dtype)
    return np.random.default_rng(inputs["g_seed"]).standard_normal(shape).astype(inputs["x"].dtype)


def pool_window_ties(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int]:
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


def input_stats(case: Case, x: np.ndarray) -> dict[str, int]:
    """How many exact zeros, ties and near-ties the input has (so a row that never hit a branch shows)."""
    stats = {"zeros": int((x == 0).sum()), "ties": 0, "near_ties": 0}
    if case.layer in ("MaxPool2D", "AvgPool2D"):
        kernel = _as_pair(case.config.get("kernel_size", 2))
        stride = _as_pair(case.config.get("stride")) if case.config.get("stride") is not None else kernel
        stats["ties"], stats["near_ties"] = pool_window_ties(x, kernel, stride)
    return stats


def expected_output_shape(case: Case) -> tuple[int, ...]:
    """The shape a right forward returns on the case's input (the loss: its probabilities')."""
    shape, c = case.input_shape, case.config
    if case.layer == "Conv2D":
        (kh, kw), (sh, sw) = _as_pair(c["kernel_size"]), _as_pair(c.get("stride", 1))
        p = c.get("padding", "same")
        if p == "same":
            return (shape[0], shape[1], shape[2], c["out_ch"])
        ph, pw = (0, 0) if p == "valid" else _as_pair(p)
        return (shape[0], (shape[1] + 2 * ph - kh) // sh + 1, (shape[2] + 2 * pw - kw) // sw + 1, c["out_ch"])
    if case.layer in ("MaxPool2D", "AvgPool2D"):
        k = _as_pair(c.get("kernel_size", 2))
        s = _as_pair(c["stride"]) if c.get("stride") is not None else k
        return (shape[0], (shape[1] - k[0]) // s[0] + 1, (shape[2] - k[1]) // s[1] + 1, shape[3])
    if case.layer == "Flatten":
        return (shape[0], int(np.prod(shape[1:])))
    if case.layer == "Dense":
        return (shape[0], c["n_out"])
    return tuple(shape)  # ReLU, the loss's probabilities


def _as_pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _cycle(seq: list[Any], i: int) -> Any:
    return seq[i % len(seq)]


def conv_grid() -> list[Case]:
    kernels: list[Any] = [1, 2, 3, 4, 5, (2, 3), (3, 2)]
    paddings: list[Any] = ["same", "valid", 1, (2, 1)]
    cases = []
    for i, (k, s, p) in enumerate(
        (k, s, p) for k, s, p in itertools.product(kernels, [1, 2, 3], paddings) if not (p == "same" and s > 1)
    ):
        m, c_in, c_out = _cycle([1, 3], i), _cycle([1, 3, 2], i), _cycle([1, 4], i // 2)
        H = 7 + i % 3
        config = {"in_ch": c_in, "out_ch": c_out, "kernel_size": k, "stride": s, "padding": p, "bias": i % 3 != 2}
        cases.append(Case("Conv2D", config, (m, H, H + i % 2, c_in), _cycle(list(VALUE_KINDS), i), seed=i))
    return cases


POOL_KINDS = ["ties", "noise", "near_ties", "mnist", "zeros"]
# (H, W): square and not, sides that every window configuration below divides or leaves a remainder
POOL_SIZES = [(6, 6), (7, 7), (6, 8), (9, 7)]


def pool_grid(layer: str) -> list[Case]:
    """Every window x stride on square and non-square inputs whose sides windows do and do not cover,
    plus 2x2/2 (the pooling real networks use) on even sides with exact ties and near-ties, in int
    and tuple forms."""
    cases = []
    for i, (k, s, hw) in enumerate(itertools.product([1, 2, 3, (2, 3)], [None, 1, 2, 3], POOL_SIZES)):
        config = {"kernel_size": k, "stride": s}
        shape = (_cycle([1, 2], i), *hw, _cycle([1, 3], i // 4))
        cases.append(Case(layer, config, shape, _cycle(POOL_KINDS, i + i // 4), seed=i))
    n = len(cases)
    for j, (config, hw, kind) in enumerate(itertools.product(
        [{"kernel_size": 2, "stride": None}, {"kernel_size": 2, "stride": 2}, {"kernel_size": (2, 2), "stride": (2, 2)}],
        [(8, 8), (4, 6)], ["ties", "near_ties", "mnist"],
    )):  # fmt: skip
        cases.append(Case(layer, config, (2, *hw, 3), kind, seed=n + j))
    return cases


RELU_SHAPES = [(7,), (4, 7), (2, 3, 5), (2, 5, 5, 3), (2, 3, 2, 4, 3)]  # rank 1 to 5


def elementwise_grid() -> list[Case]:
    relu = [Case("ReLU", {}, shape, kind, seed=i)
            for i, (shape, kind) in enumerate(itertools.product(RELU_SHAPES, VALUE_KINDS))]  # fmt: skip
    flatten = [Case("Flatten", {}, (1, 3, 4, 2), "noise", 0), Case("Flatten", {}, (3, 5, 2, 4), "mnist", 1),
               Case("Flatten", {}, (2, 4, 4, 3), "zeros", 2)]  # fmt: skip
    return relu + flatten


def conv_square_grid() -> list[Case]:
    """What blog-style convolutions support: odd square kernels, stride 1, 'valid' and 'same', square
    input; and the tuple forms of kernel, stride and padding beside the int forms."""
    cases = []
    for i, (k, p, H) in enumerate(itertools.product([1, 3, 5], ["same", "valid"], [6, 8])):
        c_in, c_out = _cycle([1, 3], i), _cycle([2, 4], i // 2)
        config = {"in_ch": c_in, "out_ch": c_out, "kernel_size": k, "stride": 1, "padding": p, "bias": True}
        cases.append(Case("Conv2D", config, (2, H, H, c_in), _cycle(["noise", "mnist", "zeros"], i), seed=200 + i))
    for j, (k, s, p) in enumerate([((3, 3), (1, 1), (1, 1)), ((3, 3), (2, 2), (0, 0)), (3, 2, 1), ((5, 5), 1, (2, 2))]):
        config = {"in_ch": 2, "out_ch": 3, "kernel_size": k, "stride": s, "padding": p, "bias": True}
        cases.append(Case("Conv2D", config, (2, 8, 8, 2), "noise", seed=220 + j))
    return cases


def anisotropic_grid() -> list[Case]:
    """Kernels and strides that differ per axis, with overlapping windows: code that uses one axis's
    stride (or kernel) for both passes every square case and fails these."""
    conv = [((2, 3), (1, 2), "valid"), ((3, 2), (2, 1), (1, 0)), (3, (2, 1), 1), ((3, 3), (1, 2), (0, 1)),
            ((2, 3), 1, "same"), ((4, 1), 1, "same")]  # 'same' with an even side: padded (0, 1) there, (1, 1) or none on the other  # fmt: skip
    cases = []
    for i, (k, s, p) in enumerate(conv):
        config = {"in_ch": 2, "out_ch": 3, "kernel_size": k, "stride": s, "padding": p, "bias": True}
        cases.append(Case("Conv2D", config, (2, 7, 8, 2), _cycle(["noise", "mnist"], i), seed=240 + i, tag="per-axis"))
    pool = [((2, 3), (1, 2)), ((3, 2), (2, 1)), (2, (1, 2)), ((3, 3), (2, 1))]
    for layer in ("MaxPool2D", "AvgPool2D"):
        for i, (k, s) in enumerate(pool):
            cases.append(Case(layer, {"kernel_size": k, "stride": s}, (2, 7, 8, 2), _cycle(["ties", "near_ties"], i),
                              seed=250 + i, tag="per-axis"))  # fmt: skip
    return cases


def edge_grid() -> list[Case]:
    """Edges of the domain: an input exactly one window (one output element), and max-pool windows of
    256 and 257 elements (a winner index kept in 8 bits holds offsets 0..255: the 257th wraps to 0)."""
    shapes = [({"kernel_size": 3, "stride": None}, (2, 3, 3, 2), "ties"),
              ({"kernel_size": (2, 3), "stride": 1}, (1, 2, 3, 3), "near_ties"),
              ({"kernel_size": (16, 16), "stride": None}, (1, 16, 16, 1), "noise"),
              ({"kernel_size": (1, 257), "stride": None}, (1, 1, 257, 1), "rising")]  # fmt: skip
    cases = [Case(layer, config, shape, kind, seed=260 + i, tag="edge")
             for layer in ("MaxPool2D", "AvgPool2D") for i, (config, shape, kind) in enumerate(shapes)]  # fmt: skip
    conv = {"in_ch": 2, "out_ch": 2, "kernel_size": (3, 2), "stride": 1, "padding": "valid", "bias": True}
    return [*cases, Case("Conv2D", conv, (2, 3, 2, 2), "noise", seed=264, tag="edge")]


def tutorial_grid() -> list[Case]:
    """The shapes of the most common tutorial CNN: one input channel, 8 filters 3x3 'valid' without
    bias on 28x28, 2x2 max pooling of 26x26, a dense layer of 13*13*8 inputs to 10 classes. Code
    written for that network takes these and often nothing else of the grid."""
    conv = {"in_ch": 1, "out_ch": 8, "kernel_size": 3, "stride": 1, "padding": "valid", "bias": False}
    pool = {"kernel_size": 2, "stride": None}
    cases = [Case("Conv2D", conv, (2, 28, 28, 1), "mnist", seed=600, tag="tutorial"),
             Case("Conv2D", {**conv, "out_ch": 2}, (2, 6, 6, 1), "ties", seed=601, tag="tutorial"),
             Case("MaxPool2D", pool, (2, 26, 26, 8), "ties", seed=602, tag="tutorial"),
             Case("MaxPool2D", pool, (2, 26, 26, 8), "near_ties", seed=603, tag="tutorial"),
             Case("AvgPool2D", pool, (2, 26, 26, 8), "mnist", seed=604, tag="tutorial"),
             Case("ReLU", {}, (2, 26, 26, 8), "zeros", seed=605, tag="tutorial"),
             Case("Flatten", {}, (2, 13, 13, 8), "noise", seed=606, tag="tutorial"),
             Case("Dense", {"n_in": 13 * 13 * 8, "n_out": 10, "bias": True}, (2, 13 * 13 * 8), "zeros", seed=607,
                  tag="tutorial"),
             Case("SoftmaxCrossEntropy", {}, (2, 10), "noise", seed=608, tag="tutorial")]  # fmt: skip
    return cases


ARCH_BATCH = 2  # > 1, so a gradient that forgets (or repeats) the 1/m of the mean shows


def plain_config(config: dict[str, Any]) -> dict[str, Any]:
    """A model spec's config in the simplest form a user's layer takes: [a, a] -> a, [a, b] -> (a, b)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, (list, tuple)) and len(value) == 2:
            value = value[0] if value[0] == value[1] else tuple(value)
        out[key] = value
    return out


def arch_grid(archs: tuple[str, ...] = ("lenet", "seed", "tiny")) -> list[Case]:
    """The exact layer shapes of each built-in network on 28x28 MNIST-like input (batch ARCH_BATCH)."""
    import scratch_cnn

    cases: dict[str, Case] = {}
    for arch in archs:
        model = scratch_cnn.build(arch, np.random.default_rng(0), np.float64)
        h = np.zeros((ARCH_BATCH, 28, 28, 1))
        for i, (layer, entry) in enumerate(zip(model.layers, model.spec()["layers"], strict=True)):
            config = plain_config(entry["config"])
            values = "mnist" if i == 0 else ("zeros" if entry["type"] in ("ReLU", "Dense") else "ties")
            case = Case(entry["type"], config, tuple(h.shape), values, seed=300 + i, tag=arch)
            cases.setdefault(case.id, case)
            h = layer.forward(h)
        case = Case("SoftmaxCrossEntropy", {}, tuple(h.shape), "noise", seed=399, tag=arch)
        cases.setdefault(case.id, case)
    return list(cases.values())


def lifecycle_grid() -> list[Case]:
    """Two forward/backward rounds on one instance, the second with other values and, where the
    configuration allows, another batch size, spatial size and channel count. Round two must equal
    a fresh instance's: this catches gradients accumulated across calls, caches kept from the first
    call, and shapes fixed at the first call."""
    conv = {"in_ch": 2, "out_ch": 3, "kernel_size": 3, "stride": 1, "padding": "same", "bias": True}
    dense = {"n_in": 6, "n_out": 4, "bias": True}
    pool = {"kernel_size": 2, "stride": None}
    rounds = [
        ("Conv2D", conv, (2, 6, 6, 2), ((2, 6, 6, 2), "noise", 501)),
        ("Conv2D", conv, (2, 6, 6, 2), ((3, 8, 8, 2), "mnist", 502)),
        ("Dense", dense, (3, 6), ((3, 6), "noise", 503)),
        ("Dense", dense, (3, 6), ((5, 6), "zeros", 504)),
        ("MaxPool2D", pool, (2, 4, 4, 3), ((2, 4, 4, 3), "ties", 505)),
        ("MaxPool2D", pool, (2, 4, 4, 3), ((3, 6, 8, 5), "ties", 506)),
        ("AvgPool2D", pool, (2, 4, 4, 3), ((2, 4, 4, 3), "noise", 507)),
        ("AvgPool2D", pool, (2, 4, 4, 3), ((3, 6, 8, 5), "noise", 508)),
        ("ReLU", {}, (2, 4, 4, 3), ((2, 4, 4, 3), "zeros", 509)),
        ("ReLU", {}, (2, 4, 4, 3), ((3, 5), "zeros", 510)),
        ("Flatten", {}, (2, 4, 4, 3), ((2, 4, 4, 3), "noise", 511)),
        ("Flatten", {}, (2, 4, 4, 3), ((3, 2, 6, 5), "noise", 512)),
        ("SoftmaxCrossEntropy", {}, (4, 10), ((4, 10), "noise", 513)),
        ("SoftmaxCrossEntropy", {}, (4, 10), ((6, 10), "large", 514)),
    ]
    return [Case(layer, config, shape, "noise", seed=500 + i, then=then)
            for i, (layer, config, shape, then) in enumerate(rounds)]  # fmt: skip


def dense_grid() -> list[Case]:
    cases = []
    for i, (n_in, n_out, m, bias) in enumerate(itertools.product([1, 7], [1, 5], [1, 4], [True, False])):
        cases.append(
            Case("Dense", {"n_in": n_in, "n_out": n_out, "bias": bias}, (m, n_in), _cycle(list(VALUE_KINDS), i), i)
        )
    return cases


TRAINING_BATCHES = (64, 128)  # the batch sizes training uses (scratch_cnn's default is 64)


def training_batch_grid() -> list[Case]:
    """Dense and the loss at the batch sizes of training, kept in quick runs: code that is right on the
    small batches of the rest of the grid and wrong on a real batch (a loop bound, a buffer sized
    once, a branch on the batch size) passes every other case."""
    cases = []
    for i, m in enumerate(TRAINING_BATCHES):
        cases.append(
            Case("Dense", {"n_in": 20, "n_out": 10, "bias": True}, (m, 20), "zeros", seed=700 + i, tag="batch")
        )
        cases.append(Case("SoftmaxCrossEntropy", {}, (m, 10), "noise", seed=710 + i, tag="batch"))
    return cases


def secret_grid(secret: int, per_layer: int = 3) -> list[Case]:
    """Cases drawn from a teacher's secret seed: configurations, sizes (batches up to 150), values and
    seeds no submission can know in advance, so code tuned to the public grid (right only on the
    shapes it has seen) fails here. The same seed draws the same cases; each is tagged "secret"."""
    rng = np.random.default_rng([secret, 0x5EC])
    kinds = [k for k in VALUE_KINDS if k != "mnist"]
    cases = []
    for _ in range(per_layer):
        seed = int(rng.integers(1 << 30))
        kind = str(rng.choice(kinds))
        k = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        p = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        c_in, c_out, m = int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 5))
        H, W = int(rng.integers(max(1, k[0] - 2 * p[0]), 11)), int(rng.integers(max(1, k[1] - 2 * p[1]), 11))
        conv = {
            "in_ch": c_in,
            "out_ch": c_out,
            "kernel_size": k,
            "stride": s,
            "padding": p,
            "bias": bool(rng.random() < 0.7),
        }
        cases.append(Case("Conv2D", conv, (m, H, W, c_in), kind, seed, tag="secret"))
        kp = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        for layer in ("MaxPool2D", "AvgPool2D"):
            cases.append(_secret_pool(rng, layer, kp, m, c_in, seed + 1))
        n_in, n_out, batch = int(rng.integers(1, 40)), int(rng.integers(1, 20)), int(rng.integers(1, 151))
        dense = {"n_in": n_in, "n_out": n_out, "bias": bool(rng.random() < 0.7)}
        cases.append(Case("Dense", dense, (batch, n_in), kind, seed + 2, tag="secret"))
        cases.append(_secret_relu(rng, seed + 3))
        cases.append(Case("Flatten", {}, (m, H, W, c_in), kind, seed + 4, tag="secret"))
        cases.append(Case("SoftmaxCrossEntropy", {}, (batch, int(rng.integers(2, 12))), str(rng.choice(["noise", "ties", "large"])),
                          seed + 5, tag="secret"))  # fmt: skip
    return list({c.id: c for c in cases}.values())


def _secret_pool(rng: np.random.Generator, layer: str, kernel: tuple[int, int], m: int, c: int, seed: int) -> Case:
    """A pooling case whose output is not all zeros (drawn again until it is not: a few windows of
    small integers can all be 0, and two zero tensors compare nothing)."""
    stride = None if rng.random() < 0.3 else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    shape = (m, int(rng.integers(kernel[0], 11)), int(rng.integers(kernel[1], 11)), c)
    kind = str(rng.choice(["ties", "near_ties", "noise"]))
    while True:
        case = Case(layer, {"kernel_size": kernel, "stride": stride}, shape, kind, seed, tag="secret")
        step = stride or kernel
        windows = sliding_window_view(case_inputs(case, "float64")["x"], kernel, axis=(1, 2))[:, :: step[0], :: step[1]]
        pooled = windows.max(axis=(-2, -1)) if layer == "MaxPool2D" else windows.mean(axis=(-2, -1))
        if pooled.any():
            return case
        seed += 1


def _secret_relu(rng: np.random.Generator, seed: int) -> Case:
    """A ReLU case of random rank and sizes whose input has a positive element and an exact zero
    (drawn again until it has: a ReLU case whose every input is <= 0 compares two zero tensors)."""
    while True:
        shape = tuple(int(n) for n in rng.integers(2, 7, int(rng.integers(1, 5))))
        case = Case("ReLU", {}, shape, "zeros", seed, tag="secret")
        x = case_inputs(case, "float64")["x"]
        if (x > 0).any() and (x == 0).any():
            return case
        seed += 1


def loss_grid() -> list[Case]:
    return [Case("SoftmaxCrossEntropy", {}, shape, kind, seed=i)
            for i, (shape, kind) in enumerate(itertools.product([(1, 10), (8, 10), (5, 3)], ["noise", "ties", "large"]))]  # fmt: skip


def grid() -> list[Case]:
    """The fixed grid: every option of every layer, the layer shapes of the built-in networks, and the
    lifecycle cases (two rounds on one instance)."""
    cases = [*conv_grid(), *conv_square_grid(), *anisotropic_grid(), *edge_grid(), *tutorial_grid(), *pool_grid("MaxPool2D"), *pool_grid("AvgPool2D"),
             *elementwise_grid(), *dense_grid(), *training_batch_grid(), *loss_grid(), *arch_grid(), *lifecycle_grid()]  # fmt: skip
    return list({c.id: c for c in cases}.values())


def sample(cases: list[Case], fraction: float, seed: int = 0) -> list[Case]:
    """A fixed random subset, for quick runs, that still holds every (layer, value kind, family) triple."""
    rng = np.random.default_rng(seed)
    keep = [c for c in cases if rng.random() < fraction or c.lifecycle or c.tag in KEPT_FAMILIES]  # few, cheap
    key = lambda c: (c.layer, c.values, c.family)  # noqa: E731
    have = {key(c) for c in keep}
    for c in cases:
        if key(c) not in have:
            keep.append(c)
            have.add(key(c))
    return keep


def strategies() -> Any:
    """Hypothesis strategies over the same space as the grid: ``st.one_of`` of every layer's cases."""
    from hypothesis import strategies as st

    pair = st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4)))
    kind = st.sampled_from(VALUE_KINDS)
    seed = st.integers(0, 2**16)

    @st.composite
    def conv(draw: Any) -> Case:
        k = _as_pair(draw(pair))
        s = draw(st.integers(1, 3))
        p = draw(st.sampled_from(["valid", 0, 1, 2, (1, 2)] + (["same"] if s == 1 else [])))
        pads = _as_pair(p) if not isinstance(p, str) else (0, 0)
        H = draw(st.integers(max(1, k[0] - 2 * pads[0]), 8))
        W = draw(st.integers(max(1, k[1] - 2 * pads[1]), 8))
        c_in, c_out, m = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
        config = {
            "in_ch": c_in,
            "out_ch": c_out,
            "kernel_size": k,
            "stride": s,
            "padding": p,
            "bias": draw(st.booleans()),
        }
        return Case("Conv2D", config, (m, H, W, c_in), draw(kind), draw(seed))

    @st.composite
    def pool(draw: Any) -> Case:
        k = _as_pair(draw(pair))
        stride = draw(st.one_of(st.none(), st.integers(1, 3)))
        H, W = draw(st.integers(k[0], 8)), draw(st.integers(k[1], 8))
        layer = draw(st.sampled_from(["MaxPool2D", "AvgPool2D"]))
        return Case(layer, {"kernel_size": k, "stride": stride}, (draw(st.integers(1, 2)), H, W, draw(st.integers(1, 3))),
                    draw(st.sampled_from(["ties", "near_ties", "mnist", "noise"])), draw(seed))  # fmt: skip

    @st.composite
    def dense(draw: Any) -> Case:
        n_in, n_out = draw(st.integers(1, 9)), draw(st.integers(1, 9))
        return Case("Dense", {"n_in": n_in, "n_out": n_out, "bias": draw(st.booleans())}, (draw(st.integers(1, 5)), n_in),
                    draw(kind), draw(seed))  # fmt: skip

    @st.composite
    def relu(draw: Any) -> Case:
        shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=5)))
        return Case("ReLU", {}, shape, draw(kind), draw(seed))

    @st.composite
    def loss(draw: Any) -> Case:
        return Case("SoftmaxCrossEntropy", {}, (draw(st.integers(1, 6)), draw(st.integers(2, 10))),
                    draw(st.sampled_from(["noise", "ties", "large", "tiny"])), draw(seed))  # fmt: skip

    return st.one_of(conv(), pool(), dense(), relu(), loss())
