"""The torch twin of every layer, and of a whole network, built from the same configuration.

The twins use torch's own semantics for everything a layer decides (padding="same", floor output
sizes, max-pool tie-breaking), never scratch_cnn's code, so they judge it independently. Layout
conversion goes through reference.layout only.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from reference.cases import layout

# torch warns that even kernels with padding="same" need a padded copy: that copy is the point here.
warnings.filterwarnings("ignore", message="Using padding='same' with even kernel lengths")


class Flatten(nn.Module):
    """NCHW -> (m, H*W*C) in scratch_cnn's NHWC flatten order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layout.flatten_nchw_as_nhwc(x)


def _pair(v: Any) -> Any:
    return tuple(v) if isinstance(v, (list, tuple)) else v


def make_twin(layer_type: str, config: dict[str, Any]) -> nn.Module:
    """A torch module (NCHW) equivalent to ``layer_type(**config)`` of the layer protocol."""
    c = dict(config)
    if layer_type == "Conv2D":
        padding = c.get("padding", "same")
        padding = 0 if padding == "valid" else _pair(padding)
        return nn.Conv2d(c["in_ch"], c["out_ch"], _pair(c["kernel_size"]), stride=_pair(c.get("stride", 1)),
                         padding=padding, bias=c.get("bias", True))  # fmt: skip
    if layer_type == "ReLU":
        return nn.ReLU()
    if layer_type in ("MaxPool2D", "AvgPool2D"):
        kernel = _pair(c.get("kernel_size", 2))
        stride = _pair(c.get("stride")) if c.get("stride") is not None else None
        cls = nn.MaxPool2d if layer_type == "MaxPool2D" else nn.AvgPool2d
        return cls(kernel, stride=stride)
    if layer_type == "Flatten":
        return Flatten()
    if layer_type == "Dense":
        return nn.Linear(c["n_in"], c["n_out"], bias=c.get("bias", True))
    raise ValueError(f"no torch twin for layer type {layer_type!r}")


def load_params(twin: nn.Module, layer_type: str, params: dict[str, np.ndarray]) -> None:
    """Copy protocol params (scratch_cnn layout) into the twin, converting layouts and dtype."""
    for key, value in params.items():
        to_torch, _ = layout.PARAM_LAYOUT[layer_type][key]
        target = getattr(twin, layout.TORCH_PARAM_NAME[key])
        with torch.no_grad():
            target.data = layout.to_torch(to_torch(value)).to(target.device)


def param_grads(twin: nn.Module, layer_type: str, keys: list[str]) -> dict[str, np.ndarray]:
    """The twin's parameter gradients in scratch_cnn layout, for the protocol keys ``keys``."""
    out = {}
    for key in keys:
        _, from_torch = layout.PARAM_LAYOUT[layer_type][key]
        grad = getattr(twin, layout.TORCH_PARAM_NAME[key]).grad
        out[key] = from_torch(layout.to_numpy(grad)) if grad is not None else None
    return out


def twin_network(spec_layers: list[dict[str, Any]], dtype: Any = torch.float32) -> nn.Sequential:
    """A torch Sequential mirroring a protocol network spec (``[{"type":..., "config":...}, ...]``)."""
    return nn.Sequential(*(make_twin(e["type"], e["config"]) for e in spec_layers)).to(dtype)


def copy_network_params(layers: list[Any], spec_layers: list[dict[str, Any]], twin: nn.Sequential) -> None:
    """Copy every parameter of the protocol ``layers`` into ``twin`` (same index, converted layout)."""
    for i, (layer, entry) in enumerate(zip(layers, spec_layers, strict=True)):
        if layer.params:
            load_params(twin[i], entry["type"], layer.params)


def network_param_names(layers: list[Any]) -> list[str]:
    return [f"{i}.{k}" for i, layer in enumerate(layers) for k in layer.params]


def network_params_from_twin(twin: nn.Sequential, spec_layers: list[dict[str, Any]], names: list[str],
                             grads: bool = False) -> dict[str, np.ndarray]:  # fmt: skip
    """Twin parameters (or their grads) by protocol name ``"{i}.{key}"``, in scratch_cnn layout."""
    out = {}
    for name in names:
        index, key = name.split(".")
        module, layer_type = twin[int(index)], spec_layers[int(index)]["type"]
        tensor = getattr(module, layout.TORCH_PARAM_NAME[key])
        tensor = tensor.grad if grads else tensor
        out[name] = layout.PARAM_LAYOUT[layer_type][key][1](layout.to_numpy(tensor))
    return out
