"""What a layer kind is, to the judges: one declaration (``LayerKind``) per kind, in its own module.

A declaration holds everything the judges know about the kind; the grid, the rules, the search,
coverage, the twins, the adapters, the bench and the mutation run read it and never branch on a
layer's name. Its fields, by what reads them:

| field | what it says | read by |
|---|---|---|
| ``name``, ``role`` | the protocol's class name; ``"layer"`` (forward(x) / backward(dout)), ``"loss"`` (forward(logits, labels) -> (loss, probs); backward()) or ``"optimizer"`` (``(params, lr, ...)``, ``step(grads)``) | everything |
| ``outputs``, ``input_grad`` | the names of what forward returns (``out``; a loss's ``loss``, ``probs``) and of the gradient backward returns (``dx``; a loss's ``dlogits``), as the rows name the tensors | the judges |
| ``signature``, ``defaults``, ``params`` | the constructor's configuration keys in order, their defaults, the parameter keys and their layouts against torch (``ParamLayout``) | the protocol, the adapters, the twins, the shrinker (which keys it shrinks: ``kernel_size``, ``stride``, ``padding``, ``bias``) |
| ``images`` | its input is a batch of NHWC images (so a NCHW style converts it) | the adapters, the heat maps, the shrinker (its words) |
| ``twin`` | the torch module that judges it, built from a configuration (torch imported there, never at import) | the autograd and finite-difference judges |
| ``output_shape`` | the shape a right forward returns | the rules, the search, the shrinker |
| ``family`` | the configuration family a case belongs to, for the coverage table | coverage |
| ``draw_params``, ``draw_target`` | a case's parameters and labels, from its random generator, in that order | ``reference.cases.grid.case_inputs`` |
| ``cases`` | its cases by family: ``main`` (sampled by quick runs), and the kept families (``per-axis``, ``edge``, ``tutorial``, ``batch``) | the grid |
| ``lifecycle`` | its two-round cases (round 2 must equal a fresh instance's) | the lifecycle judge |
| ``smoke``, ``smoke_alternatives``, ``per_axis`` | the protocol rules' configurations: the first, those tried next, and one whose every size differs per axis (the ``output_shape`` rule) | the rules |
| ``candidates`` | small cases in the order the search tries them (the tutorials' first) | the search |
| ``secret`` | cases drawn from a teacher's secret seed | the grid |
| ``strategy`` | a hypothesis strategy over its configurations and inputs | the property tests |
| ``kink_stats``, ``kink_needs`` | how many of an input's elements sit at its kinks (zeros, ties, near-ties), and which it must meet to be proven | coverage, the finite-difference judge, the shrinker (its words) |
| ``conventions`` | the conventions at its kinks it may declare instead of the protocol's (``Convention``) | the judges (reference.judges.conventions) |
| ``flops`` | multiply-adds of a forward, for the bench | the bench |
| ``adjoint`` | linear in its input: <A x, y> == <x, A^T y> is checked | the finite-difference judge |
| ``window_max`` | its output is each window's maximum: at a tie any split of the window's gradient over its maxima is a subgradient (the window rule) | the finite-difference judge, the shrinker (its words) |
| ``windows`` | its kernel and stride (a pooling layer), for the window rule and the heat map; the shrinker keeps its windows whole | the finite-difference judge, the heat map, the shrinker |
| ``optional`` | judged only where the implementation has it: a class without it is no ``missing`` row (the kinds courses add: batch norm, dropout, ...) | the judges, the grade |
| ``extras`` | the keywords the judges add to its constructor (default: ``rng``, ``dtype`` for a kind with parameters) | the protocol |
| ``buffers``, ``draw_buffers`` | its buffers (``running_mean``, ...) and the twin's name for each; a case's buffers, drawn after its labels and written in like its parameters | the judges, the twins |
| ``modes`` | the modes it runs in (``train``, ``eval``: its ``training`` attribute); a case's ``mode`` key says which (never passed to the constructor) | the judges |
| ``class_targets`` | a loss whose targets are class indices in [0, K): a label outside is refused (a protocol rule) | the rules |
| ``self_reference`` | judged against its own randomness: ``self_reference(inputs, ours, g, config) -> (ref, checks)`` builds the reference from what the implementation returned (dropout's mask), ``checks`` are ``(name, ok, note, share of the allowed deviation used)`` rows (a binomial test); used instead of the twin | the autograd judge |
| ``repeatable`` | the same inputs give the same outputs (no randomness in the mode judged): finite differences and two rounds apply | the finite-difference and lifecycle judges |
| ``faults`` | the catalogue's faults written against it (``faults(build)``: ``build(**overrides)`` is scratch_cnn's classes with some replaced) | the fault catalogue |
| ``axes`` | the role of each axis of its arrays, ``axes(name, ndim)`` for ``x``, ``g``, ``W``, ``b``: ``m`` (the batch), ``h``, ``w`` (image rows, columns), ``kh``, ``kw`` (kernel rows, columns), ``c`` (channels carried through), ``k`` (classes), ``hwc`` (an image flattened), ``aN`` (an axis of its own), or the configuration key that holds the axis's length (``in_ch``, ``n_out``, ...: cutting the axis sets it); default ``batch_first`` | the shrinker |
| ``param_shapes`` | the shapes of its parameters a configuration gives, in the protocol's layouts | the shrinker (reading a shrunk case's id) |
| ``sliding`` | it slides a kernel over the image's rows and columns: ``sliding(config)`` is (kernel, stride, ((top, bottom), (left, right)) padding), pairs of ints; None for a layer that does not | the shrinker, the bench |
| ``accepts`` | whether its twin takes the configuration on an input of that shape, beyond an output of at least one element (torch's 'same' padding only at stride 1; a pooling window inside the input; a loss over two classes or more) | the shrinker |
| ``network_values`` | the values its cases at the built-in networks' layer shapes draw (after the first layer): ``ties`` (pooling), ``zeros`` (what a ReLU gives, where its own kink or a dense layer's rows meet them) | the grid |
| ``flattens`` | images in, one row per image out (a per-sample or channels-first style reorders its order) | the adapters |
| ``rows_in`` | its input is rows ``(m, n)``, which a column-major style gives as ``(n, m)`` (``Conventions.dense_x``) | the adapters |
| ``weight_convention``, ``weight_layouts`` | the ``Conventions`` field that names its weight's layout (``conv_weight``, ``dense_weight``), and for each other layout (``"OIHW"``, ``"out_in"``, ...) the views (theirs -> the protocol's, the protocol's -> theirs) | the adapters |
| ``variants`` | its classic bugs as what they compute: ``{name: (words, compute)}``; a layer's ``compute(config, inputs, ours)`` gives the tensors (float64) the bug gives on a case (``ours``: what the implementation returned, for a kind judged against its own randomness), an optimiser's ``compute(hyper, params, grads)`` the parameters after each step. A failing tensor that equals a variant's is diagnosed by its words | the diagnoses (reference.core.diagnosis.known_variant), the optimiser judge |
| ``per_sample`` | each sample's output depends on that sample's input alone, whatever else is in the batch: an element sweep stacks its perturbed copies of one sample along the batch axis, one call for many trials | the finite-difference judge |
| ``pointwise`` | ``out.flat[i]`` depends on ``x.flat[i]`` alone (elementwise, or a reshape): the upstream gradient is cut where the input is | the shrinker |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reference.layers.case import Case

Shape = tuple[int, ...]
Config = dict[str, Any]
Pair = tuple[int, int]


@dataclass(frozen=True)
class ParamLayout:
    """One parameter: how it converts to its torch twin's and back, and the twin's name for it."""

    to_torch: Callable[[np.ndarray], np.ndarray]
    from_torch: Callable[[np.ndarray], np.ndarray]
    torch_name: str


@dataclass(frozen=True)
class Convention:
    """A convention a layer may declare in ``kink_conventions`` (``key``): ``check(value)`` raises
    ValueError for a value that is no valid choice (outside the subdifferential) and says whether it
    differs from the protocol's; ``reference(x, g, config, value)`` is the reference dx under it
    (float64); ``words(value)`` names it in a verdict. A convention on other tensors than dx (batch
    norm's running variance) gives ``replaces(inputs, config, value)`` instead: those tensors, float64."""

    key: str
    check: Callable[[Any], bool]
    reference: Callable[[np.ndarray, np.ndarray, Config, Any], np.ndarray] | None
    words: Callable[[Any], str]
    replaces: Callable[[dict[str, Any], Config, Any], dict[str, np.ndarray]] | None = None


def _none(*_: Any) -> Any:
    return None


def _no_cases() -> list[Case]:
    return []


def _no_stats(config: Config, x: np.ndarray) -> dict[str, int]:
    return {}


def batch_first(name: str, ndim: int) -> tuple[str, ...]:
    """The axes of an input or upstream gradient (``x``, ``g``) of rank 2 or more: the batch, then
    axes of their own (``a1``, ``a2``, ...); every axis of a parameter one of its own (an elementwise
    layer's, ReLU's)."""
    return tuple("m" if i == 0 and ndim > 1 and name in ("x", "g") else f"a{i}" for i in range(ndim))


@dataclass(frozen=True)
class LayerKind:
    """Everything the judges know about one layer kind (see the module's table)."""

    name: str
    role: str = "layer"
    outputs: tuple[str, ...] = ("out",)
    input_grad: str = "dx"
    signature: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, ParamLayout] = field(default_factory=dict)
    images: bool = False
    twin: Callable[[Config], Any] = _none
    output_shape: Callable[[Config, Shape], Shape] = lambda config, shape: tuple(shape)
    family: Callable[[Config, Shape], str] = lambda config, shape: ""
    draw_params: Callable[[np.random.Generator, Config], dict[str, np.ndarray]] = lambda rng, config: {}
    draw_target: Callable[[np.random.Generator, Shape], Any] = lambda rng, shape: None
    cases: Mapping[str, Callable[[], list[Case]]] = field(default_factory=dict)
    lifecycle: Callable[[], list[Case]] = _no_cases
    smoke: tuple[Config, Shape] = ({}, (2, 4))
    smoke_alternatives: tuple[tuple[Config, Shape], ...] = ()
    per_axis: tuple[Config, Shape] | None = None
    candidates: Callable[[], list[Case]] = _no_cases
    secret: Callable[[np.random.Generator, int], list[Case]] = lambda rng, seed: []
    strategy: Callable[[], Any] = _none
    kink_stats: Callable[[Config, np.ndarray], dict[str, int]] = _no_stats
    kink_needs: tuple[str, ...] = ()
    conventions: tuple[Convention, ...] = ()
    flops: Callable[[Config, Shape], int] = lambda config, shape: 0
    adjoint: bool = False
    window_max: bool = False
    windows: Callable[[Config], tuple[tuple[int, int], tuple[int, int]]] | None = None
    faults: Callable[[Callable[..., Any]], list[Any]] = lambda build: []
    axes: Callable[[str, int], tuple[str, ...]] = batch_first
    param_shapes: Callable[[Config], dict[str, Shape]] = lambda config: {}
    sliding: Callable[[Config], tuple[Pair, Pair, tuple[Pair, Pair]]] | None = None
    accepts: Callable[[Config, Shape], bool] = lambda config, shape: True
    per_sample: bool = False
    pointwise: bool = False
    flattens: bool = False
    network_values: str = "ties"
    rows_in: bool = False
    weight_convention: str = ""
    weight_layouts: Mapping[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = field(
        default_factory=dict
    )
    optional: bool = False
    extras: tuple[str, ...] | None = None
    buffers: Mapping[str, str] = field(default_factory=dict)
    draw_buffers: Callable[[np.random.Generator, Config], dict[str, np.ndarray]] = lambda rng, config: {}
    modes: tuple[str, ...] = ()
    class_targets: bool = False
    self_reference: Callable[..., Any] | None = None
    repeatable: bool = True
    variants: Mapping[str, tuple[str, Callable[..., Any]]] = field(default_factory=dict)

    @property
    def parametric(self) -> bool:
        """It has parameters: its grads are judged."""
        return bool(self.params)

    @property
    def constructor_extras(self) -> tuple[str, ...]:
        """The keywords the judges add to its constructor: ``rng=`` and ``dtype=`` for a kind with
        parameters, unless it declares its own (``extras``)."""
        return self.extras if self.extras is not None else (("rng", "dtype") if self.parametric else ())

    @property
    def optimizer(self) -> bool:
        return self.role == "optimizer"

    @property
    def loss(self) -> bool:
        return self.role == "loss"

    def cases_of(self, family: str) -> list[Case]:
        make = self.cases.get(family)
        return make() if make is not None else []
