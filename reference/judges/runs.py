"""A case run on the twin and on the implementation: the tensors every judge compares.

``twin_run``: the torch side (out, dx, parameter gradients, in the protocol's layout); ``impl_run``:
the implementation's side in the same names, forward and backward apart; ``alternative_run``: the
twin under a variant a common bug computes instead (for the diagnoses); ``loss_on``: a fresh
instance of the implementation's loss on other logits (a diagnosis testing its premise).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reference.cases import layout, twins
from reference.cases.grid import Case, _as_pair, upstream_gradient
from reference.impl.protocol import build_case_layer, read_grads


def twin_run(case: Case, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """The torch side: out, dx and param grads, all converted to scratch_cnn layout."""
    x = inputs["x"]
    xt = layout.to_torch(layout.images_to_torch(x), requires_grad=True)
    if case.layer == "SoftmaxCrossEntropy":
        yt = torch.tensor(inputs["labels"])
        loss = F.cross_entropy(xt, yt, reduction="mean")
        loss.backward()
        probs = torch.softmax(xt.detach(), dim=1)
        return {"loss": layout.to_numpy(loss), "probs": layout.to_numpy(probs), "dlogits": layout.to_numpy(xt.grad)}
    twin = twins.make_twin(case.layer, case.config).to(xt.dtype)
    if inputs["params"]:
        twins.load_params(twin, case.layer, inputs["params"])
    out_t = twin(xt)
    out = layout.images_from_torch(layout.to_numpy(out_t))
    g = upstream_gradient(inputs, out.shape)
    out_t.backward(layout.to_torch(layout.images_to_torch(g)))
    result = {"out": out, "g": g, "dx": layout.images_from_torch(layout.to_numpy(xt.grad))}
    for key, value in twins.param_grads(twin, case.layer, list(inputs["params"])).items():
        result[f"d{key}"] = value
    return result


def impl_run(layer: Any, case: Case, inputs: dict[str, Any], g: np.ndarray | None) -> dict[str, Any]:
    """The implementation's side, in the same names as twin_run. Forward and backward are run apart:
    an exception in one is kept (under ``"!forward"`` / ``"!backward"``) and the other's tensors are
    still there to judge. Backward gets the reference's upstream gradient, of the shape a right
    forward returns, whatever shape this forward returned."""
    result: dict[str, Any] = {}
    if case.layer == "SoftmaxCrossEntropy":
        try:
            loss, probs = layer.forward(inputs["x"], inputs["labels"])
            result.update(loss=np.asarray(loss, dtype=inputs["x"].dtype), probs=probs)
        except Exception as err:
            result["!forward"] = err
            return result  # the loss's backward reads what its forward kept: nothing to run it on
        try:
            result["dlogits"] = layer.backward()
        except Exception as err:
            result["!backward"] = err
        return result
    try:
        result["out"] = layer.forward(inputs["x"].copy())
    except Exception as err:
        result["!forward"] = err
        return result  # a backward after a failed forward has no cache to read
    if g is None:
        return result
    try:
        result["dx"] = layer.backward(g.copy())
        for key, value in read_grads(layer, case.layer, list(inputs["params"])).items():
            result[f"d{key}"] = value
    except Exception as err:
        result["!backward"] = err
    return result


def loss_on(impl: Any, logits: np.ndarray, labels: np.ndarray, dtype: str) -> dict[str, Any]:
    """A fresh instance of the implementation's loss on other logits (a diagnosis testing its premise)."""
    layer = build_case_layer(impl, "SoftmaxCrossEntropy", {}, {}, dtype)
    loss, probs = layer.forward(logits, labels)
    return {"loss": np.asarray(loss, dtype=logits.dtype), "probs": probs, "dlogits": layer.backward()}


def alternative_run(case: Case, inputs: dict[str, Any], variant: str) -> dict[str, np.ndarray] | None:
    """The twin's tensors under a variant of the case that a common bug computes instead:
    ``flipped_kernel`` (convolution, not correlation) or ``swapped_window`` (a pool's kh x kw read as kw x kh)."""
    if variant == "flipped_kernel" and "W" in inputs["params"]:
        flipped = {**inputs["params"], "W": np.ascontiguousarray(inputs["params"]["W"][::-1, ::-1])}
        return twin_run(case, {**inputs, "params": flipped})
    if variant == "swapped_window" and case.layer in ("MaxPool2D", "AvgPool2D"):
        k = _as_pair(case.config.get("kernel_size", 2))
        s = case.config.get("stride")
        config = {"kernel_size": k[::-1], "stride": None if s is None else _as_pair(s)[::-1]}
        swapped = Case(case.layer, config, case.input_shape, case.values, case.seed)
        try:
            return twin_run(swapped, inputs)
        except RuntimeError:  # the swapped window does not fit the input
            return None
    return None
