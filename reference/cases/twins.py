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

from reference.layers import kind, layout

# torch warns that even kernels with padding="same" need a padded copy: that copy is the point here.
warnings.filterwarnings("ignore", message="Using padding='same' with even kernel lengths")


def make_twin(layer_type: str, config: dict[str, Any]) -> nn.Module:
    """A torch module (NCHW) equivalent to ``layer_type(**config)`` of the layer protocol (its kind's twin)."""
    return kind(layer_type).twin(dict(config))


def load_params(twin: nn.Module, layer_type: str, params: dict[str, np.ndarray]) -> None:
    """Copy protocol params (scratch_cnn layout) into the twin, converting layouts and dtype."""
    declared = kind(layer_type).params
    for key, value in params.items():
        target = getattr(twin, declared[key].torch_name)
        with torch.no_grad():
            target.data = layout.to_torch(declared[key].to_torch(value)).to(target.device)


def load_buffers(twin: nn.Module, layer_type: str, buffers: dict[str, np.ndarray]) -> None:
    """Copy protocol buffers (running statistics) into the twin's, by the kind's names for them."""
    names = kind(layer_type).buffers
    for key, value in buffers.items():
        target = getattr(twin, names[key])
        with torch.no_grad():
            target.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(target.dtype))


def buffers_of(twin: nn.Module, layer_type: str) -> dict[str, np.ndarray]:
    """The twin's buffers now (after a forward: updated in training mode), by their protocol names."""
    return {key: layout.to_numpy(getattr(twin, name)) for key, name in kind(layer_type).buffers.items()}


def param_grads(twin: nn.Module, layer_type: str, keys: list[str]) -> dict[str, np.ndarray]:
    """The twin's parameter gradients in scratch_cnn layout, for the protocol keys ``keys``."""
    declared = kind(layer_type).params
    out = {}
    for key in keys:
        grad = getattr(twin, declared[key].torch_name).grad
        out[key] = declared[key].from_torch(layout.to_numpy(grad)) if grad is not None else None
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
        module, declared = twin[int(index)], kind(spec_layers[int(index)]["type"]).params[key]
        tensor = getattr(module, declared.torch_name)
        tensor = tensor.grad if grads else tensor
        out[name] = declared.from_torch(layout.to_numpy(tensor))
    return out
