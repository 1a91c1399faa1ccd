"""The optimiser judge's twins are torch.optim's update through its functional form
(reference.layers.optimizer.FunctionalTwin: no torch._dynamo import). Held here to the torch.optim
classes themselves, bit for bit, over every configuration of the grid and hypothesis' draws, in both
dtypes; and a judge process imports nothing after its preload, however many twins it runs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.cases.grid import grid
from reference.judges.optimizers import hyper_of
from reference.layers import KINDS, kind, optimizer

OPTIMIZERS = [name for name, declared in KINDS.items() if declared.optimizer]
GRID_CASES = [case for case in grid() if kind(case.layer).optimizer]


def torch_class(name: str) -> Any:
    """torch.optim's own class for an optimiser kind, built as the twins are."""
    return lambda groups, **hyper: getattr(torch.optim, name)(groups, **hyper)


def trajectories(make: Any, hyper: dict[str, Any], dtype: str, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in optimizer.PARAM_SHAPES.items()}
    grads = [{k: rng.standard_normal(s).astype(dtype) for k, s in optimizer.PARAM_SHAPES.items()}
             for _ in range(optimizer.STEPS)]  # fmt: skip
    return optimizer.torch_steps(make, hyper, params, grads)


def same_bits(a: list[dict[str, np.ndarray]], b: list[dict[str, np.ndarray]]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]) for k in x)
        for x, y in zip(a, b, strict=True)
    )


def test_every_optimiser_kind_is_covered() -> None:
    assert set(OPTIMIZERS) == {"Adam", "RMSprop"} and {c.layer for c in GRID_CASES} == set(OPTIMIZERS)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", GRID_CASES, ids=lambda c: c.id)
def test_twin_is_torch_optim_bit_for_bit_on_the_grid(case: Any, dtype: str) -> None:
    hyper = hyper_of(case)
    twin = trajectories(kind(case.layer).twin(case.config), hyper, dtype, case.seed)
    assert same_bits(twin, trajectories(torch_class(case.layer), hyper, dtype, case.seed))


@given(
    lr=st.floats(1e-4, 0.5),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.5, 0.9999),
    eps=st.sampled_from([1e-8, 1e-6, 1e-3]),
    decay=st.sampled_from([0.0, 0.05]),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_adam_twin_is_torch_optim_for_any_hyperparameters(lr, beta1, beta2, eps, decay, dtype) -> None:
    hyper = {"lr": lr, "betas": (beta1, beta2), "eps": eps, "weight_decay": decay}
    assert same_bits(trajectories(kind("Adam").twin({}), hyper, dtype, 5),
                     trajectories(torch_class("Adam"), hyper, dtype, 5))  # fmt: skip


@given(
    lr=st.floats(1e-4, 0.1),
    alpha=st.floats(0.5, 0.999),
    momentum=st.sampled_from([0.0, 0.3, 0.9]),
    decay=st.sampled_from([0.0, 0.05]),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_rmsprop_twin_is_torch_optim_for_any_hyperparameters(lr, alpha, momentum, decay, dtype) -> None:
    hyper = {"lr": lr, "alpha": alpha, "eps": 1e-8, "momentum": momentum, "weight_decay": decay}
    assert same_bits(trajectories(kind("RMSprop").twin({}), hyper, dtype, 6),
                     trajectories(torch_class("RMSprop"), hyper, dtype, 6))  # fmt: skip


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_the_comparison_sees_one_ulp_of_a_hyperparameter(name: str) -> None:
    hyper = hyper_of(next(c for c in GRID_CASES if c.layer == name))
    nudged = {**hyper, "lr": float(np.nextafter(hyper["lr"], 1.0))}
    assert not same_bits(trajectories(kind(name).twin({}), nudged, "float64", 7),
                         trajectories(torch_class(name), hyper, "float64", 7))  # fmt: skip


def test_a_twin_refuses_a_hyperparameter_it_does_not_apply() -> None:
    with pytest.raises(TypeError):
        trajectories(
            kind("Adam").twin({}), {"lr": 0.1, "betas": (0.9, 0.99), "eps": 1e-8, "amsgrad": True}, "float64", 1
        )


def test_a_judge_imports_nothing_after_its_preload() -> None:
    """Every twin of the grid (one case of each layer kind, each dtype) and every optimiser's run in a
    fresh process after reference.judging.preload without training: no module is imported (so none
    could come from a file a worker wrote, and none costs a judgement its import: torch._dynamo and
    sympy were 1.5 s); after the preload with training, the curve judge's SGD step imports nothing."""
    script = textwrap.dedent(
        """
        import json, sys
        from reference.judging import preload
        preload(training=False)
        before = set(sys.modules)
        from reference.cases.grid import case_inputs, grid
        from reference.judges.optimizers import hyper_of
        from reference.judges.runs import twin_run
        from reference.layers import kind, optimizer
        seen = {}
        for case in grid():
            seen.setdefault(case.layer, case)
        for case in seen.values():
            for dtype in ("float32", "float64"):
                if kind(case.layer).optimizer:
                    params, grads = optimizer.draw(case, dtype)
                    optimizer.torch_steps(kind(case.layer).twin(case.config), hyper_of(case), params, grads)
                else:
                    twin_run(case, case_inputs(case, dtype))
        new = sorted(set(sys.modules) - before)
        preload(training=True)  # a judge with curves: the curve judge's torch.optim.SGD imports nothing more
        import torch
        before = set(sys.modules)
        w = torch.zeros(3, requires_grad=True)
        w.grad = torch.ones(3)
        torch.optim.SGD([w], lr=0.1, momentum=0.9).step()
        print(json.dumps({"kinds": sorted(seen), "new": new, "new_training": sorted(set(sys.modules) - before)}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["kinds"] == sorted(KINDS)
    assert got["new"] == [], got["new"]
    assert got["new_training"] == [], got["new_training"]
