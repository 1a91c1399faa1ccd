"""What the two batch-norm kinds share (BatchNorm1D on rows, BatchNorm2D on NHWC images): their
parameters, buffers, modes, twin, cases and faults; each declares itself in its own module."""

from __future__ import annotations

from typing import Any

import numpy as np

import scratch_cnn
from reference.layers.case import Case, upstream_gradient
from reference.layers.faulty import Fault
from reference.layers.kind import Config, Convention, LayerKind, ParamLayout
from reference.layers.layout import same
from scratch_cnn import normalization

SIGNATURE = ("num_features", "eps", "momentum")
DEFAULTS = {"eps": 1e-5, "momentum": 0.1}
PARAMS = {"gamma": ParamLayout(same, same, "weight"), "beta": ParamLayout(same, same, "bias")}
BUFFERS = {"running_mean": "running_mean", "running_var": "running_var"}
MODES = ("train", "eval")


def twin(module: str) -> Any:
    def make(config: Config) -> Any:
        from torch import nn

        layer = getattr(nn, module)(
            config["num_features"], eps=config.get("eps", 1e-5), momentum=config.get("momentum", 0.1)
        )
        return layer.train(config.get("mode", "train") == "train")

    return make


def draw_params(rng: np.random.Generator, config: Config) -> dict[str, np.ndarray]:
    C = config["num_features"]
    return {"gamma": rng.uniform(0.5, 1.5, C), "beta": rng.uniform(-1, 1, C)}


def draw_buffers(rng: np.random.Generator, config: Config) -> dict[str, np.ndarray]:
    """Running statistics away from their start (0 and 1), so eval mode shows whether it uses them."""
    C = config["num_features"]
    return {"running_mean": rng.uniform(-1, 1, C), "running_var": rng.uniform(0.5, 2.0, C)}


def family(config: Config, shape: tuple[int, ...]) -> str:
    per_channel = int(np.prod(shape[:-1]))
    return f"{config.get('mode', 'train')} mode" + (", one value per channel" if per_channel == 1 else "")


def trains(shape: tuple[int, ...]) -> bool:
    """Whether training mode is judged on inputs of ``shape``: three values per channel or more.

    # NOTE: one value per channel raises in training (as torch does). At two, the normalised values are
    # +-sqrt(var / (var + eps)) and dx is the eps / (var + eps) remainder of a cancellation: rounding
    # noise of relative size eps_float / (eps / var), ~1e-3 in float32, that no tolerance separates
    # from a bug. Both are judged in eval mode."""
    return int(np.prod(shape[:-1])) >= 3


def cases(name: str, shapes: list[tuple[int, ...]], seed0: int) -> list[Case]:
    """Every shape in both modes on noise; the large offsets (where E[x^2] - E[x]^2 cancels) and constant
    channels (a variance of 0) in training mode; momentum and eps other than the defaults."""
    out = []
    for i, shape in enumerate(shapes):
        C = shape[-1]
        if not trains(shape):
            out.append(Case(name, {"num_features": C, "mode": "eval"}, shape, "noise", seed=seed0 + 10 * i))
            continue
        for mode in MODES:
            out.append(Case(name, {"num_features": C, "mode": mode}, shape, "noise", seed=seed0 + 10 * i))
        out.append(Case(name, {"num_features": C, "mode": "train"}, shape, "offset", seed=seed0 + 10 * i + 1))
        if C > 1:  # constant channels beside others (one channel all constant: dgamma all 0, nothing compared)
            out.append(Case(name, {"num_features": C, "mode": "train"}, shape, "constant", seed=seed0 + 10 * i + 2))
        out.append(Case(name, {"num_features": C, "eps": 1e-3, "momentum": 0.3, "mode": "train"}, shape, "ties",
                        seed=seed0 + 10 * i + 3))  # fmt: skip
    return out


def lifecycle(name: str, shape: tuple[int, ...], second: tuple[int, ...], seed: int) -> list[Case]:
    """Two rounds in each mode: round 2 on another batch (its output must be a fresh instance's: in
    training mode the running statistics do not enter it; in eval mode nothing changes them)."""
    C = shape[-1]
    return [Case(name, {"num_features": C, "mode": mode}, shape, "noise", seed=seed + i, then=(second, "noise", seed + 2 + i))
            for i, mode in enumerate(MODES)]  # fmt: skip


def secret(name: str, rank: int, rng: np.random.Generator, seed: int) -> list[Case]:
    m, C = int(rng.integers(2, 9)), int(rng.integers(1, 6))
    shape = (m, C) if rank == 2 else (m, int(rng.integers(1, 6)), int(rng.integers(1, 6)), C)
    mode = str(rng.choice(MODES)) if trains(shape) else "eval"
    return [
        Case(
            name,
            {"num_features": C, "mode": mode},
            shape,
            str(rng.choice(["noise", "offset", "ties"])),
            seed,
            tag="secret",
        )
    ]


# --- the catalogue's faults, written against these kinds -------------------------------------------


def _normalised(layer: Any, x: np.ndarray, var_scale: float = 1.0, eps_outside: bool = False) -> np.ndarray:
    """A training-mode forward of ``layer`` with one flaw: the batch variance times ``var_scale`` (n / (n - 1):
    the unbiased one), or eps added outside the square root; the running statistics left alone (a
    training-mode fault runs the layer's own forward first, for them)."""
    dt = x.dtype.type
    rows = x.reshape(-1, x.shape[-1])
    mean, var = rows.mean(axis=0), rows.var(axis=0) * dt(var_scale)
    inv = dt(1) / (np.sqrt(var) + dt(layer.eps)) if eps_outside else dt(1) / np.sqrt(var + dt(layer.eps))
    xhat = (x - mean) * inv
    cache = normalization.BatchNormCache(xhat, inv.astype(x.dtype), True)
    return layer._remember(xhat * layer.params["gamma"] + layer.params["beta"], cache)


def _unbiased_variance(base: type) -> type:
    class UnbiasedVariance(base):  # type: ignore[misc, valid-type]
        def forward(self, x: np.ndarray) -> np.ndarray:
            n = x.size // x.shape[-1]
            out = super().forward(x)  # the running statistics updated right
            return _normalised(self, x, var_scale=n / (n - 1)) if self.training else out

    return UnbiasedVariance


def _eps_outside_sqrt(base: type) -> type:
    class EpsOutsideSqrt(base):  # type: ignore[misc, valid-type]
        def forward(self, x: np.ndarray) -> np.ndarray:
            out = super().forward(x)  # the running statistics updated right
            return _normalised(self, x, eps_outside=True) if self.training else out

    return EpsOutsideSqrt


def _dgamma_wrong_axes(base: type) -> type:
    class DgammaWrongAxes(base):  # type: ignore[misc, valid-type]
        def backward(self, dout: np.ndarray) -> np.ndarray:
            xhat = self._cache.xhat
            dx = super().backward(dout)
            total = float((dout * xhat).sum())  # summed over the channels too
            self.grads["gamma"] = np.full_like(self.grads["gamma"], total)
            return dx

    return DgammaWrongAxes


def _constant_statistics(base: type) -> type:
    class ConstantStatistics(base):  # type: ignore[misc, valid-type]
        def backward(self, dout: np.ndarray) -> np.ndarray:
            inv_std = self._cache.inv_std
            super().backward(dout)
            return dout * (self.params["gamma"] * inv_std)  # the mean and variance taken as constants

    return ConstantStatistics


def _eval_uses_batch_stats(base: type) -> type:
    class EvalUsesBatchStats(base):  # type: ignore[misc, valid-type]
        def forward(self, x: np.ndarray) -> np.ndarray:
            return _normalised(self, x) if not self.training else super().forward(x)

    return EvalUsesBatchStats


def _running_var_biased(base: type) -> type:
    class RunningVarBiased(base):  # type: ignore[misc, valid-type]
        def forward(self, x: np.ndarray) -> np.ndarray:
            before = self.buffers["running_var"].copy()
            out = super().forward(x)
            if self.training:
                var = x.reshape(-1, x.shape[-1]).var(axis=0)  # biased, where the unbiased goes
                self.buffers["running_var"][...] = before * (1 - self.momentum) + self.momentum * var
            return out

    return RunningVarBiased


def formula(config: Config, inputs: dict[str, Any], *, var_scale: str = "biased", eps_outside: bool = False,
            dgamma_all: bool = False, constant_stats: bool = False, eval_batch_stats: bool = False,
            running_biased: bool = False) -> dict[str, np.ndarray]:  # fmt: skip
    """Batch norm's tensors on a case, float64, written out from its formulas, with one classic bug
    switched on (the diagnoses' hypotheses): out, dx, dgamma, dbeta and the buffers after the step."""
    x = np.asarray(inputs["x"], dtype=np.float64)
    gamma, beta = (np.asarray(inputs["params"][k], dtype=np.float64) for k in ("gamma", "beta"))
    rm, rv = (np.asarray(inputs["buffers"][k], dtype=np.float64).copy() for k in ("running_mean", "running_var"))
    eps, momentum = float(config.get("eps", 1e-5)), float(config.get("momentum", 0.1))
    rows = x.reshape(-1, x.shape[-1])
    n = rows.shape[0]
    batch = config.get("mode", "train") == "train" or eval_batch_stats
    mean, var = (rows.mean(axis=0), rows.var(axis=0)) if batch else (rm, rv)
    if batch and var_scale == "unbiased":
        var = var * n / (n - 1)
    std = np.sqrt(var) + eps if eps_outside else np.sqrt(var + eps)
    xhat = (x - mean) / std
    g = upstream_gradient(inputs, x.shape).astype(np.float64)
    grow, xrow = g.reshape(-1, x.shape[-1]), xhat.reshape(-1, x.shape[-1])
    if batch and not constant_stats:
        dx = gamma / std / n * (n * g - grow.sum(axis=0) - xhat * (grow * xrow).sum(axis=0))
    else:
        dx = g * gamma / std
    dgamma = (grow * xrow).sum(axis=0)
    if config.get("mode", "train") == "train":
        unbiased = rows.var(axis=0) * (n / (n - 1) if not running_biased else 1.0)
        rm, rv = (1 - momentum) * rm + momentum * rows.mean(axis=0), (1 - momentum) * rv + momentum * unbiased
    return {"out": xhat * gamma + beta, "dx": dx, "dgamma": np.full_like(dgamma, dgamma.sum()) if dgamma_all else dgamma,
            "dbeta": grow.sum(axis=0), "running_mean": rm, "running_var": rv}  # fmt: skip


def _check_running_var(value: Any) -> bool:
    if value not in ("unbiased", "biased"):
        raise ValueError(f"running_var convention {value!r}: the running variance moves towards the batch's 'unbiased' "
                         "(torch's) or 'biased' variance (CS231n's)")  # fmt: skip
    return value == "biased"


def _running_var_under(inputs: dict[str, Any], config: Config, value: Any) -> dict[str, np.ndarray]:
    """The running variance after the step, moved towards the batch's biased variance (in training mode)."""
    if config.get("mode", "train") != "train":
        return {}
    return {"running_var": formula(config, inputs, running_biased=value == "biased")["running_var"]}


RUNNING_VAR = Convention(
    "running_var",
    _check_running_var,
    None,
    lambda v: f"the running variance moved towards the {v} batch variance",
    _running_var_under,
)


def _variant(**flaw: Any) -> Any:
    return lambda config, inputs, ours: formula(config, inputs, **flaw)


VARIANTS = {
    "unbiased_variance": ("batch norm normalising with the unbiased variance (n / (n - 1))", _variant(var_scale="unbiased")),
    "eps_outside_sqrt": ("batch norm with eps outside the square root (sqrt(var) + eps)", _variant(eps_outside=True)),
    "dgamma_wrong_axes": ("batch norm's dgamma summed over the channels too", _variant(dgamma_all=True)),
    "constant_statistics": ("a batch-norm backward that treats the batch mean and variance as constants "
                            "(dx = g * gamma / std)", _variant(constant_stats=True)),
    "eval_uses_batch_stats": ("batch norm in eval mode normalising with the batch's statistics, not the running ones",
                              _variant(eval_batch_stats=True)),
    "running_var_biased": ("batch norm updating the running variance with the biased batch variance",
                           _variant(running_biased=True)),
}  # fmt: skip


def _normalisation(c: Any, t: str, s: dict[str, Any]) -> bool:
    """The rows a training-mode normalisation fault shows in (dbeta is sum(g) whatever the normalisation)."""
    return c.config.get("mode") == "train" and t in ("out", "dx", "dgamma")


WRONGS = {  # name: (the wrong class, what it does, which rows show it: (case, tensor, row) -> bool)
    "unbiased_variance": (_unbiased_variance, "normalises with the unbiased variance (n / (n - 1))", _normalisation),
    # NOTE: 1 / (sqrt(var) + eps) is off by ~eps / (2 var) ~ 1e-5 at the default eps: beyond float64's
    # tolerance, at float32's (None: either); eps = 1e-3 shows in float32 too
    "eps_outside_sqrt": (_eps_outside_sqrt, "1 / (sqrt(var) + eps): eps outside the square root",
                         lambda c, t, s: _normalisation(c, t, s) and (True if s["dtype"] == "float64" or c.config.get("eps", 0) >= 1e-3 else None)),
    "dgamma_wrong_axes": (_dgamma_wrong_axes, "dgamma summed over the channels too",
                          lambda c, t, s: t == "dgamma" and c.config["num_features"] > 1),
    "constant_statistics": (_constant_statistics, "backward treats the batch mean and variance as constants",
                            lambda c, t, s: c.config.get("mode") == "train" and t == "dx"),
    "eval_uses_batch_stats": (_eval_uses_batch_stats, "eval mode normalises with the batch's statistics",
                              lambda c, t, s: c.config.get("mode") == "eval" and t in ("out", "dx", "dgamma")),
    "running_var_biased": (_running_var_biased, "the running variance updated with the biased variance",
                           lambda c, t, s: c.config.get("mode") == "train" and t == "running_var"),
}  # fmt: skip


def faults(name: str, build: Any) -> list[Any]:
    base = getattr(scratch_cnn, name)
    out = []
    for wrong, (make, words, shows) in WRONGS.items():
        cls = make(base)
        ours = lambda c, t, s, shows=shows: c.layer == name and shows(c, t, s)  # noqa: E731
        out.append(Fault(f"{name.lower()}_{wrong}", f"{name}: {words}", lambda cls=cls: build(**{name: cls}), ours))
    return out


def kind(name: str, module: str, rank: int, shapes: list[tuple[int, ...]], lifecycle_shapes: tuple[Any, Any],
         seed0: int, images: bool) -> LayerKind:  # fmt: skip
    smoke_shape = shapes[0]
    return LayerKind(
        name=name, optional=True, signature=SIGNATURE, defaults=DEFAULTS, extras=("dtype",), params=PARAMS,
        buffers=BUFFERS, draw_buffers=draw_buffers, modes=MODES, images=images, twin=twin(module), family=family,
        draw_params=draw_params, cases={"main": lambda: cases(name, shapes, seed0)},
        lifecycle=lambda: lifecycle(name, *lifecycle_shapes, seed0 + 500),
        smoke=({"num_features": smoke_shape[-1], "mode": "train"}, smoke_shape),
        smoke_alternatives=(({"num_features": smoke_shape[-1], "mode": "eval"}, smoke_shape),),
        candidates=lambda: cases(name, shapes[:1], 700), secret=lambda rng, seed: secret(name, rank, rng, seed),
        flops=lambda config, shape: 8 * int(np.prod(shape)), faults=lambda build: faults(name, build),
        param_shapes=lambda config: {"gamma": (config["num_features"],), "beta": (config["num_features"],)},
        variants=VARIANTS,
        conventions=(RUNNING_VAR,),
    )  # fmt: skip
