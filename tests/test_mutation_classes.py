"""The classes of bug the mutation run found escaping (reference/mutants/), written the way users
write them, each caught by the case or rule added for it: per-axis strides, the edges of the
domain, returned buffers that are reused, bias=False, a dtype round trip, unchecked labels."""

import numpy as np
import pytest

import scratch_cnn
from reference.cases.grid import KEPT_FAMILIES, grid
from reference.impl.faults import _impl
from reference.judges.rules import check_protocol, protocol_lines
from tests.test_any_implementation import judge_all, verdicts


def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class LoopMaxPool:
    """A user's max pool (NHWC, loops over output positions, argmax per window); ``flaw`` picks the bug."""

    flaw = ""

    def __init__(self, kernel_size=2, stride=None):
        self.k = pair(kernel_size)
        self.s = pair(stride if stride is not None else kernel_size)
        self.params, self.grads = {}, {}

    def forward(self, x):
        (kh, kw), (sh, sw) = self.k, self.s
        if self.flaw == "one stride":
            sw = sh  # "strides are square anyway"
        m, H, W, C = x.shape
        if self.flaw == "refuses one window" and (H <= kh or W <= kw):
            raise ValueError("input must be larger than the window")
        Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
        out = np.empty((m, Ho, Wo, C), dtype=x.dtype)
        index_type = np.uint8 if self.flaw == "8-bit argmax" else np.int64  # "saves memory"
        self.arg = np.empty((m, Ho, Wo, C), dtype=index_type)
        for i in range(Ho):
            for j in range(Wo):
                win = x[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :].reshape(m, kh * kw, C)
                self.arg[:, i, j, :] = win.argmax(axis=1)  # the first maximum, as torch
                out[:, i, j, :] = win.max(axis=1)
        self.shape, self.strides = x.shape, (sh, sw)
        return out

    def backward(self, dout):
        kw, (sh, sw) = self.k[1], self.strides
        dx = np.zeros(self.shape, dtype=dout.dtype)
        m, Ho, Wo, C = dout.shape
        mi, ci = np.meshgrid(np.arange(m), np.arange(C), indexing="ij")
        for i in range(Ho):
            for j in range(Wo):
                a, b = np.divmod(self.arg[:, i, j, :].astype(np.int64), kw)
                np.add.at(dx, (mi, i * sh + a, j * sw + b, ci), dout[:, i, j, :])
        return dx


def loop_pool(flaw):
    return type(f"LoopMaxPool_{flaw or 'correct'}", (LoopMaxPool,), {"flaw": flaw})


def pool_rows(cls, only_new=False):
    """Every judge on the max-pool grid (``only_new``: its per-axis and edge cases alone)."""
    cases = [c for c in grid() if c.layer == "MaxPool2D" and (c.tag in KEPT_FAMILIES or not only_new)]
    return judge_all(_impl(MaxPool2D=cls), cases, networks={})


def failing(rows, judge="autograd"):
    return rows[rows["status"].isin(["fail", "error"]) & (rows["judge"] == judge)]


def test_the_loop_max_pool_is_right_so_its_flawed_variants_below_are_judged_by_their_flaw_alone():
    rows = pool_rows(loop_pool(""))
    assert verdicts(rows)["MaxPool2D"] == "PASS", rows[rows.status != "pass"][["case", "note"]].head()


@pytest.mark.parametrize(
    "flaw, caught_by",
    [
        ("one stride", "stride=1x2"),  # only a per-axis stride shows it
        ("refuses one window", "x2x3x3x2"),  # an input exactly one window
        ("8-bit argmax", "kernel_size=1x257"),  # offsets 0..256: the last wraps to 0
    ],
)
def test_a_flawed_max_pool_is_caught_by_the_case_made_for_its_class(flaw, caught_by):
    rows = pool_rows(loop_pool(flaw), only_new=True)
    bad = failing(rows)
    assert bad["case"].str.contains(caught_by, regex=False).any(), bad[["case", "tensor", "note"]].head()
    assert verdicts(rows)["MaxPool2D"] == "FAIL"


class ReLUReusedBuffer:
    """Preallocates its output "for speed" and hands the same buffer back every call."""

    def __init__(self):
        self.params, self.grads, self.buf = {}, {}, None

    def forward(self, x):
        if self.buf is None or self.buf.shape != x.shape or self.buf.dtype != x.dtype:
            self.buf = np.empty_like(x)
        self.mask = x > 0
        return np.maximum(x, 0, out=self.buf)

    def backward(self, dout):
        return dout * self.mask


class DenseAlwaysBias(scratch_cnn.Dense):
    """Returns a bias gradient whether or not the layer has a bias."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["b"] = dout.sum(axis=0)
        return dx


class ReLUFirstDtype(scratch_cnn.ReLU):
    """Remembers the dtype of its first input and casts every later output to it."""

    def forward(self, x):
        self.dtype = getattr(self, "dtype", x.dtype)
        return super().forward(x).astype(self.dtype)

    def backward(self, dout):
        return super().backward(dout).astype(self.dtype)


class PoolSquareOutputShape(scratch_cnn.MaxPool2D):
    """Its output_shape, written for square windows, uses the first axis's kernel and stride for both."""

    def output_shape(self, input_shape):
        m, H, W, C = input_shape
        (k, _), (s, _) = self.kernel_size, self.stride
        return (m, (H - k) // s + 1, (W - k) // s + 1, C)


class LossUncheckedLabels:
    """The textbook loss on probabilities: -log p[range(m), y], no check that y is a class."""

    def __init__(self):
        self.params, self.grads = {}, {}

    def forward(self, logits, labels):
        z = logits - logits.max(axis=1, keepdims=True)
        self.p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        self.y = labels
        m = len(labels)
        return float(-np.log(self.p[np.arange(m), labels]).mean()), self.p.copy()

    def backward(self):
        d = self.p.copy()
        d[np.arange(len(self.y)), self.y] -= 1
        return d / len(self.y)


@pytest.mark.parametrize(
    "layer, bug, line",
    [
        ("ReLU", ReLUReusedBuffer, "returned arrays stay the caller's: out returned by round 1 changed during round 2"),
        ("Dense", DenseAlwaysBias, "params and grads, bias=False: params has ['W'], grads ['W', 'b']"),
        ("ReLU", ReLUFirstDtype, "dtype kept after a float32 round: out is float32, dx is float32"),
        (
            "SoftmaxCrossEntropy",
            LossUncheckedLabels,
            "labels outside [0, K) refused: label -1 of K=5 classes was scored",
        ),
        (
            "MaxPool2D",
            PoolSquareOutputShape,
            "output_shape agrees with forward: output_shape(2, 8, 9, 2) = (2, 3, 4, 2), forward returns (2, 3, 8, 2)",
        ),
    ],
    ids=[
        "reused-output-buffer",
        "bias-grad-without-bias",
        "first-dtype-kept",
        "labels-unchecked",
        "square-output-shape",
    ],
)
def test_a_protocol_bug_is_one_line_naming_its_rule(layer, bug, line):
    lines = protocol_lines(check_protocol(_impl(**{layer: bug}), [layer]))
    assert len(lines) == 1 and lines[0].startswith(f"protocol: {layer}: FAIL {line}"), lines


def test_the_new_rules_pass_scratch_cnn_and_are_rows_of_every_layer_they_apply_to():
    rows = check_protocol(scratch_cnn)
    assert (rows["status"] == "pass").all(), rows[rows.status != "pass"]
    per_rule = rows.groupby("case")["layer"].apply(set)
    assert per_rule["returned arrays stay the caller's"] == set(rows["layer"]) - {"Sequential"}
    assert per_rule["params and grads, bias=False"] == {"Conv2D", "Dense"}
    assert per_rule["labels outside [0, K) refused"] == {"SoftmaxCrossEntropy"}


class SequentialForgetsDx(scratch_cnn.Sequential):
    """A user's container whose backward runs every layer and forgets to return the result."""

    def backward(self, dout, input_grad=True):
        for layer in reversed(self.layers):
            dout = layer.backward(dout)


class SequentialGradsByKey(scratch_cnn.Sequential):
    """Names gradients by key alone, so layer 4's W overwrites layer 0's."""

    @property
    def grads(self):
        return {k: v for layer in self.layers for k, v in layer.grads.items()}


class SequentialAstypeForgetsLayers(scratch_cnn.Sequential):
    """Converts nothing: astype only returns self."""

    def astype(self, dtype):
        return self


@pytest.mark.parametrize(
    "bug, why",
    [
        (
            SequentialAstypeForgetsLayers,
            "after astype(float32), forward on float32 input raised ValueError: Conv2D: input",
        ),
        (SequentialForgetsDx, "dx has shape (), expected (2, 4, 4, 2)"),
        (SequentialGradsByKey, "grads has ['W', 'b'], the layers' grads are ['0.W', '0.b', '4.W', '4.b']"),
    ],
    ids=["astype-converts-nothing", "no-dx", "grads-by-key"],
)
def test_a_sequential_that_disagrees_with_its_own_layers_is_named(bug, why):
    lines = [line for line in protocol_lines(check_protocol(_impl(Sequential=bug))) if "Sequential" in line]
    assert len(lines) == 1 and lines[0].startswith(
        f"protocol: Sequential: FAIL Sequential agrees with its layers: {why}"
    )
