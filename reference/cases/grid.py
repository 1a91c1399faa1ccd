"""The cases every judge runs, put together from the layer kinds' declarations (reference.layers):
each kind's own cases, the families every quick run keeps, the layer shapes of the built-in
networks, the lifecycle rounds, cases drawn from a teacher's secret seed, and hypothesis strategies
over the same space. What a case is and the values it draws live in reference.layers.case."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from reference.layers import KINDS, NETWORK_LOSS, kind
from reference.layers.case import (  # noqa: F401  (the names the judges import from here)
    KEPT_FAMILIES,
    VALUE_KINDS,
    Case,
    as_pair,
    cycle,
    make_values,
    upstream_gradient,
)

_as_pair = as_pair  # the name earlier code imports
KEPT_ORDER = ("per-axis", "edge", "tutorial", "batch")  # the kept families, in the order the grid lists them


def family(case: Case) -> str:
    """The configuration family the coverage table groups a case by."""
    if case.lifecycle:
        return "lifecycle: two rounds on one instance"
    if case.tag in KEPT_FAMILIES:
        return KEPT_FAMILIES[case.tag]
    if case.tag:
        return f"{case.tag} layer shapes"
    return kind(case.layer).family(case.config, case.input_shape)


def config_family(layer: str, config: dict[str, Any], shape: tuple[int, ...]) -> str:
    return kind(layer).family(config, shape)


def case_inputs(case: Case, dtype: str) -> dict[str, Any]:
    """Deterministic input, parameters and labels of a case (float64 draws, in that order, cast to
    ``dtype``); a case that carries its own numbers (a shrunk case, reference.judges.shrink) gives those."""
    given = getattr(case, "given_inputs", None)
    if given is not None:
        return given(dtype)
    rng = np.random.default_rng([case.seed, 7])  # NOTE: the same first draw as layers.case.input_values
    x = make_values(rng, case.input_shape, case.values).astype(dtype)
    declared = kind(case.layer)
    params = {k: v.astype(dtype) for k, v in declared.draw_params(rng, case.config).items()}
    labels = declared.draw_target(rng, case.input_shape)
    if isinstance(labels, np.ndarray) and labels.dtype.kind == "f":  # a regression target: in the case's dtype
        labels = labels.astype(dtype)
    buffers = {k: v.astype(dtype) for k, v in declared.draw_buffers(rng, case.config).items()}
    return {"x": x, "params": params, "labels": labels, "buffers": buffers, "g_seed": [case.seed, 11]}


def input_stats(case: Case, x: np.ndarray) -> dict[str, int]:
    """How many exact zeros, ties and near-ties the input has (so a row that never hit a branch shows)."""
    return {"zeros": int((x == 0).sum()), "ties": 0, "near_ties": 0, **kind(case.layer).kink_stats(case.config, x)}


def expected_output_shape(case: Case) -> tuple[int, ...]:
    """The shape a right forward returns on the case's input (the loss: its probabilities')."""
    return tuple(kind(case.layer).output_shape(case.config, case.input_shape))


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
            values = "mnist" if i == 0 else kind(entry["type"]).network_values
            case = Case(entry["type"], config, tuple(h.shape), values, seed=300 + i, tag=arch)
            cases.setdefault(case.id, case)
            h = layer.forward(h)
        case = Case(NETWORK_LOSS, {}, tuple(h.shape), "noise", seed=399, tag=arch)
        cases.setdefault(case.id, case)
    return list(cases.values())


def lifecycle_grid() -> list[Case]:
    """Two forward/backward rounds on one instance, the second with other values and, where the
    configuration allows, another batch size, spatial size and channel count. Round two must equal
    a fresh instance's: this catches gradients accumulated across calls, caches kept from the first
    call, and shapes fixed at the first call."""
    return [c for k in KINDS.values() for c in k.lifecycle()]


def secret_grid(secret: int, per_layer: int = 3) -> list[Case]:
    """Cases drawn from a teacher's secret seed: configurations, sizes (batches up to 150), values and
    seeds no submission can know in advance, so code tuned to the public grid (right only on the
    shapes it has seen) fails here. The same seed draws the same cases; each is tagged "secret"."""
    cases = []
    for index, declared in enumerate(KINDS.values()):
        rng = np.random.default_rng([secret, 0x5EC, index])
        for _ in range(per_layer):
            cases += declared.secret(rng, int(rng.integers(1 << 30)))
    return list({c.id: c for c in cases}.values())


def grid() -> list[Case]:
    """The fixed grid: every kind's own cases, the kept families (per-axis, edge, tutorial, training
    batches), the layer shapes of the built-in networks, and the lifecycle cases."""
    own = [c for k in KINDS.values() for c in k.cases_of("main")]
    kept = [c for f in KEPT_ORDER for k in KINDS.values() for c in k.cases_of(f)]
    return list({c.id: c for c in [*own, *kept, *arch_grid(), *lifecycle_grid()]}.values())


def _draw(seed: int, case: Case) -> float:
    """A number in [0, 1) fixed by the seed and the case's id alone (not by where the case stands)."""
    digest = hashlib.sha256(f"{seed}:{case.id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


QUICK = 0.25  # the share of the grid a quick run (--quick, grade's default) samples


def sample(cases: list[Case], fraction: float, seed: int = 0) -> list[Case]:
    """A fixed random subset, for quick runs, that still holds every (layer, value kind, family) triple.

    # NOTE: each case is in or out by a number drawn from its own id, so adding a case (or a layer
    # kind) anywhere in the grid never changes which of the others a quick run takes."""
    keep = [c for c in cases if _draw(seed, c) < fraction or c.lifecycle or c.tag in KEPT_FAMILIES]  # few, cheap
    key = lambda c: (c.layer, c.values, family(c))  # noqa: E731
    have = {key(c) for c in keep}
    for c in cases:
        if key(c) not in have:
            keep.append(c)
            have.add(key(c))
    return keep


def strategies() -> Any:
    """Hypothesis strategies over the same space as the grid: ``st.one_of`` of every kind's cases,
    each case one that compares something (``informative``)."""
    from hypothesis import strategies as st

    return st.one_of(*(s for s in (k.strategy() for k in KINDS.values()) if s is not None)).filter(informative)


# NOTE: values no float32 computation gets to float32's tolerance, so they are judged in float64 only:
# batch norm's large offsets (1e4 + U(-1, 1)): the mean of float32 values ~1e4 is off by ~1e4 * 6e-8 =
# 6e-4 in any summation order, an error of ~1e-3 in the normalised output, 100x float32's atol. The bug
# they exist for (the variance as E[x^2] - E[x]^2) is off by ~1e-7 in float64, 10^4 times its atol.
# Its constant channels: at a variance of 0, 1 / sqrt(eps) ~ 316 multiplies the rounding of whichever
# form computes the output: torch's own float32 (x * scale + shift) is 5e-6 off the exact beta there,
# about float32's atol; in float64 the same is 1e-14. Division by a variance of 0 shows in float64 alike.
FLOAT64_ONLY = frozenset({"offset", "constant"})


def layer_cases(cases: list[Case]) -> list[Case]:
    """The cases of layers and losses (judged by the layer judges); an optimiser's cases are the
    optimiser judge's (reference.judges.optimizers)."""
    return [c for c in cases if not kind(c.layer).optimizer]


def repeatable(case: Case) -> bool:
    """The same inputs give the same outputs in the case's mode: finite differences and two rounds on
    one instance apply (dropout in training mode draws a new mask each forward: they do not)."""
    return kind(case.layer).repeatable or case.config.get("mode") == "eval"


def informative(case: Case) -> bool:
    """A case whose twin's output is not all zeros. NOTE: a few windows of mostly-zero (mnist) input, or
    a ReLU of only negatives, give two zero tensors: nothing is compared, and no implementation passes
    such a case (its rows are ``vacuous``)."""
    declared = kind(case.layer)
    if declared.loss or declared.optimizer or declared.self_reference is not None:
        return True
    from reference.cases import twins
    from reference.layers import layout

    inputs = case_inputs(case, "float64")
    twin = twins.make_twin(case.layer, case.config).double()
    if inputs["params"]:
        twins.load_params(twin, case.layer, inputs["params"])
    out = twin(layout.to_torch(layout.images_to_torch(inputs["x"])))
    return bool(layout.to_numpy(out).any())
