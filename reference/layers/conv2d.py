"""Conv2D: a 2-D cross-correlation of NHWC images with weights ``(kh, kw, C_in, C_out)`` and a bias."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

import scratch_cnn
from reference.layers import layout
from reference.layers.case import VALUE_KINDS, Case, as_pair, cycle
from reference.layers.faulty import Fault
from reference.layers.kind import Config, LayerKind, ParamLayout, Shape
from scratch_cnn import conv

NAME = "Conv2D"
SEARCHED = "searched"


def twin(config: Config) -> Any:
    from torch import nn

    padding = config.get("padding", "same")
    padding = 0 if padding == "valid" else (tuple(padding) if isinstance(padding, (list, tuple)) else padding)
    k, s = config["kernel_size"], config.get("stride", 1)
    return nn.Conv2d(config["in_ch"], config["out_ch"], tuple(k) if isinstance(k, (list, tuple)) else k,
                     stride=tuple(s) if isinstance(s, (list, tuple)) else s, padding=padding,
                     bias=config.get("bias", True))  # fmt: skip


def output_shape(config: Config, shape: Shape) -> Shape:
    (kh, kw), (sh, sw) = as_pair(config["kernel_size"]), as_pair(config.get("stride", 1))
    p = config.get("padding", "same")
    if p == "same":
        return (shape[0], shape[1], shape[2], config["out_ch"])
    ph, pw = (0, 0) if p == "valid" else as_pair(p)
    return (shape[0], (shape[1] + 2 * ph - kh) // sh + 1, (shape[2] + 2 * pw - kw) // sw + 1, config["out_ch"])


def family(config: Config, shape: Shape) -> str:
    p = config.get("padding", "same")
    pad = p if isinstance(p, str) else "explicit pad"
    return f"{pad}, stride {'1' if as_pair(config.get('stride', 1)) == (1, 1) else '> 1'}"


def draw_params(rng: np.random.Generator, config: Config) -> dict[str, np.ndarray]:
    k = as_pair(config["kernel_size"])
    params = {"W": rng.standard_normal((*k, config["in_ch"], config["out_ch"])) * 0.5}
    if config.get("bias", True):
        params["b"] = rng.uniform(-1, 1, config["out_ch"])
    return params


def pads(config: Config) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) as torch pads ('same': (k - 1) // 2 before, the rest after)."""
    p = config.get("padding", "same")
    k = as_pair(config["kernel_size"])
    if p == "valid":
        return (0, 0), (0, 0)
    if p == "same":
        return ((k[0] - 1) // 2, k[0] - 1 - (k[0] - 1) // 2), ((k[1] - 1) // 2, k[1] - 1 - (k[1] - 1) // 2)
    ph, pw = as_pair(p)
    return (ph, ph), (pw, pw)


def sliding(config: Config) -> tuple[tuple[int, int], tuple[int, int], tuple[tuple[int, int], tuple[int, int]]]:
    return as_pair(config["kernel_size"]), as_pair(config.get("stride", 1)), pads(config)


def accepts(config: Config, shape: Shape) -> bool:
    """torch takes 'same' padding at stride 1 only."""
    return not (config.get("padding", "same") == "same" and as_pair(config.get("stride", 1)) != (1, 1))


def param_shapes(config: Config) -> dict[str, Shape]:
    kh, kw = as_pair(config["kernel_size"])
    shapes: dict[str, Shape] = {"W": (kh, kw, int(config["in_ch"]), int(config["out_ch"]))}
    return {**shapes, "b": (int(config["out_ch"]),)} if config.get("bias", True) else shapes


AXES = {"x": ("m", "h", "w", "in_ch"), "g": ("m", "h", "w", "out_ch"), "W": ("kh", "kw", "in_ch", "out_ch"),
        "b": ("out_ch",)}  # fmt: skip


def flops(config: Config, shape: Shape) -> int:
    """Multiply-adds of a forward, times 2."""
    kh, kw = as_pair(config["kernel_size"])
    m, Ho, Wo, K = output_shape(config, shape)
    return 2 * m * Ho * Wo * K * kh * kw * shape[3]


# --- cases ---------------------------------------------------------------------------------------


def main_cases() -> list[Case]:
    """Every kernel (square and not), stride and padding form; then what blog-style convolutions take:
    odd square kernels, stride 1, 'valid' and 'same', square input, and the tuple forms of kernel,
    stride and padding beside the int forms."""
    kernels: list[Any] = [1, 2, 3, 4, 5, (2, 3), (3, 2)]
    paddings: list[Any] = ["same", "valid", 1, (2, 1)]
    cases = []
    for i, (k, s, p) in enumerate(
        (k, s, p) for k, s, p in itertools.product(kernels, [1, 2, 3], paddings) if not (p == "same" and s > 1)
    ):
        m, c_in, c_out = cycle([1, 3], i), cycle([1, 3, 2], i), cycle([1, 4], i // 2)
        H = 7 + i % 3
        config = {"in_ch": c_in, "out_ch": c_out, "kernel_size": k, "stride": s, "padding": p, "bias": i % 3 != 2}
        cases.append(Case(NAME, config, (m, H, H + i % 2, c_in), cycle(list(VALUE_KINDS), i), seed=i))
    for i, (k, p, H) in enumerate(itertools.product([1, 3, 5], ["same", "valid"], [6, 8])):
        c_in, c_out = cycle([1, 3], i), cycle([2, 4], i // 2)
        config = {"in_ch": c_in, "out_ch": c_out, "kernel_size": k, "stride": 1, "padding": p, "bias": True}
        cases.append(Case(NAME, config, (2, H, H, c_in), cycle(["noise", "mnist", "zeros"], i), seed=200 + i))
    for j, (k, s, p) in enumerate([((3, 3), (1, 1), (1, 1)), ((3, 3), (2, 2), (0, 0)), (3, 2, 1), ((5, 5), 1, (2, 2))]):
        config = {"in_ch": 2, "out_ch": 3, "kernel_size": k, "stride": s, "padding": p, "bias": True}
        cases.append(Case(NAME, config, (2, 8, 8, 2), "noise", seed=220 + j))
    return cases


def per_axis_cases() -> list[Case]:
    """Kernels and strides that differ per axis, 'same' with an even side (padded (0, 1) there)."""
    conv = [((2, 3), (1, 2), "valid"), ((3, 2), (2, 1), (1, 0)), (3, (2, 1), 1), ((3, 3), (1, 2), (0, 1)),
            ((2, 3), 1, "same"), ((4, 1), 1, "same")]  # fmt: skip
    cases = []
    for i, (k, s, p) in enumerate(conv):
        config = {"in_ch": 2, "out_ch": 3, "kernel_size": k, "stride": s, "padding": p, "bias": True}
        cases.append(Case(NAME, config, (2, 7, 8, 2), cycle(["noise", "mnist"], i), seed=240 + i, tag="per-axis"))
    return cases


def edge_cases() -> list[Case]:
    """An input exactly one window."""
    conv = {"in_ch": 2, "out_ch": 2, "kernel_size": (3, 2), "stride": 1, "padding": "valid", "bias": True}
    return [Case(NAME, conv, (2, 3, 2, 2), "noise", seed=264, tag="edge")]


def tutorial_cases() -> list[Case]:
    """The most common tutorial: one input channel, 8 filters 3x3 'valid' without bias on 28x28."""
    conv = {"in_ch": 1, "out_ch": 8, "kernel_size": 3, "stride": 1, "padding": "valid", "bias": False}
    return [Case(NAME, conv, (2, 28, 28, 1), "mnist", seed=600, tag="tutorial"),
            Case(NAME, {**conv, "out_ch": 2}, (2, 6, 6, 1), "ties", seed=601, tag="tutorial")]  # fmt: skip


def lifecycle() -> list[Case]:
    conv = {"in_ch": 2, "out_ch": 3, "kernel_size": 3, "stride": 1, "padding": "same", "bias": True}
    return [Case(NAME, conv, (2, 6, 6, 2), "noise", seed=500, then=((2, 6, 6, 2), "noise", 501)),
            Case(NAME, conv, (2, 6, 6, 2), "noise", seed=501, then=((3, 8, 8, 2), "mnist", 502))]  # fmt: skip


VARIANTS = [(2, (8, 8), 2, "ties"), (1, (7, 9), 8, "zeros"), (3, (6, 6), 3, "near_ties")]  # (m, (H, W), C_out, values)


def candidates() -> list[Case]:
    """The tutorials' configurations first (stride 1, 3x3, 'valid', one channel, no bias), then outward;
    each on three inputs (a batch of one too, and sides that differ)."""
    space = itertools.product([1, 2], [3, 5, 1, 2], ["valid", "same", 1], [1, 2, 3], [False, True])
    out, i = [], 0
    for s, k, p, c_in, bias in space:
        if p == "same" and s > 1:
            continue
        for m, (H, W), c_out, values in VARIANTS:
            config = {"in_ch": c_in, "out_ch": c_out, "kernel_size": k, "stride": s, "padding": p, "bias": bias}
            out.append(Case(NAME, config, (m, H, W, c_in), values, seed=700 + i, tag=SEARCHED))
            i += 1
    return out


def secret(rng: np.random.Generator, seed: int) -> list[Case]:
    k = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    p = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    c_in, c_out, m = int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 5))
    H, W = int(rng.integers(max(1, k[0] - 2 * p[0]), 11)), int(rng.integers(max(1, k[1] - 2 * p[1]), 11))
    config = {
        "in_ch": c_in,
        "out_ch": c_out,
        "kernel_size": k,
        "stride": s,
        "padding": p,
        "bias": bool(rng.random() < 0.7),
    }
    values = str(rng.choice([v for v in VALUE_KINDS if v != "mnist"]))
    return [Case(NAME, config, (m, H, W, c_in), values, seed, tag="secret")]


def strategy() -> Any:
    from hypothesis import strategies as st

    pair = st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4)))

    @st.composite
    def conv(draw: Any) -> Case:
        k = as_pair(draw(pair))
        s = draw(st.integers(1, 3))
        p = draw(st.sampled_from(["valid", 0, 1, 2, (1, 2)] + (["same"] if s == 1 else [])))
        pads = as_pair(p) if not isinstance(p, str) else (0, 0)
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
        return Case(NAME, config, (m, H, W, c_in), draw(st.sampled_from(VALUE_KINDS)), draw(st.integers(0, 2**16)))

    return conv()


# --- the catalogue's faults, written against this kind ----------------------------------------


class ConvDWMissingOneOverM(scratch_cnn.Conv2D):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = super().backward(dout)
        self.grads["W"] = self.grads["W"] * dout.shape[0]  # the 1/m of the mean loss forgotten
        return dx


class ConvDWOneSignFlipped(scratch_cnn.Conv2D):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = super().backward(dout)
        self.grads["W"].reshape(-1)[0] *= -1
        return dx


class ConvBiasGradDropped(scratch_cnn.Conv2D):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = super().backward(dout)
        if "b" in self.grads:
            self.grads["b"] = np.zeros_like(self.grads["b"])
        return dx


class ConvBackwardOffByOnePad(scratch_cnn.Conv2D):
    """dx cropped one row/column off: the padding taken as one more than it is."""

    def backward(self, dout: np.ndarray) -> np.ndarray:
        cache = self._recall(dout)
        (t, bt), (lt, rt) = cache.pads
        shifted = cache._replace(pads=((t + 1, max(bt - 1, 0)), (lt + 1, max(rt - 1, 0))))
        dx, dW, db = conv.conv_backward(dout, shifted)
        self.grads = {"W": dW} if db is None else {"W": dW, "b": db}
        return dx


class ConvFlippedKernel(scratch_cnn.Conv2D):
    """A true convolution (kernel flipped) where the protocol says cross-correlation."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        saved = self.params["W"]
        self.params["W"] = np.ascontiguousarray(saved[::-1, ::-1])
        try:
            return super().forward(x)
        finally:
            self.params["W"] = saved


def faults(build: Any) -> list[Any]:
    """The catalogue's convolution faults: a dW without the batch mean's 1/m, one dW element's sign,
    a dropped bias gradient, dx cropped with the padding off by one, a flipped kernel."""

    ours = lambda c: c.layer == NAME  # noqa: E731
    return [
        Fault("conv_dW_missing_1_over_m", "conv dW misses the 1/m of the mean loss", lambda: build(Conv2D=ConvDWMissingOneOverM),
              lambda c, t, s: ours(c) and t == "dW" and c.input_shape[0] > 1),
        Fault("conv_dW_sign_flip", "one element of conv dW has its sign flipped", lambda: build(Conv2D=ConvDWOneSignFlipped),
              lambda c, t, s: ours(c) and t == "dW"),
        Fault("conv_bias_grad_dropped", "conv bias gradient is zero", lambda: build(Conv2D=ConvBiasGradDropped),
              lambda c, t, s: ours(c) and t == "db"),
        Fault("conv_backward_off_by_one_pad", "conv backward crops dx with the padding off by one",
              lambda: build(Conv2D=ConvBackwardOffByOnePad), lambda c, t, s: ours(c) and t == "dx"),
        Fault("conv_flipped_kernel", "conv forward flips the kernel (convolution, not correlation)",
              lambda: build(Conv2D=ConvFlippedKernel),
              lambda c, t, s: ours(c) and t in ("out", "dx") and as_pair(c.config["kernel_size"]) != (1, 1)),
    ]  # fmt: skip


SMOKE = ({"in_ch": 2, "out_ch": 3, "kernel_size": 3, "stride": 1, "padding": "same", "bias": True}, (2, 4, 4, 2))

WEIGHT_LAYOUTS = {  # a user's conv weight layout: (theirs -> the protocol's (kh, kw, C_in, C_out), and back), views
    "OIHW": (lambda w: w.transpose(2, 3, 1, 0), lambda w: w.transpose(3, 2, 0, 1)),  # (C_out, C_in, kh, kw)
    "OHW": (
        lambda w: w.transpose(1, 2, 0)[:, :, None, :],
        lambda w: w[:, :, 0, :].transpose(2, 0, 1),
    ),  # one input channel
}

KIND = LayerKind(
    per_sample=True,
    name=NAME,
    signature=("in_ch", "out_ch", "kernel_size", "stride", "padding", "bias"),
    defaults={"stride": 1, "padding": "same", "bias": True},
    params={
        "W": ParamLayout(layout.conv_weight_to_torch, layout.conv_weight_from_torch, "weight"),
        "b": ParamLayout(layout.same, layout.same, "bias"),
    },  # fmt: skip
    images=True,
    twin=twin,
    output_shape=output_shape,
    family=family,
    draw_params=draw_params,
    cases={"main": main_cases, "per-axis": per_axis_cases, "edge": edge_cases, "tutorial": tutorial_cases},
    lifecycle=lifecycle,
    smoke=SMOKE,
    smoke_alternatives=(
        ({"in_ch": 1, "out_ch": 2, "kernel_size": 3, "stride": 1, "padding": "valid", "bias": False}, (2, 6, 6, 1)),
        ({"in_ch": 1, "out_ch": 2, "kernel_size": 3, "stride": 1, "padding": "valid", "bias": True}, (2, 6, 6, 1)),
        ({"in_ch": 2, "out_ch": 3, "kernel_size": 3, "stride": 1, "padding": "valid", "bias": True}, (2, 6, 6, 2)),
        ({"in_ch": 2, "out_ch": 3, "kernel_size": 3, "stride": 1, "padding": "same", "bias": False}, (2, 4, 4, 2)),
    ),
    per_axis=(
        {"in_ch": 2, "out_ch": 3, "kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 0), "bias": True},
        (2, 8, 9, 2),
    ),  # fmt: skip
    candidates=candidates,
    secret=secret,
    strategy=strategy,
    flops=flops,
    adjoint=True,
    weight_convention="conv_weight",
    weight_layouts=WEIGHT_LAYOUTS,
    faults=faults,
    axes=lambda name, ndim: AXES[name],
    param_shapes=param_shapes,
    sliding=sliding,
    accepts=accepts,
)
