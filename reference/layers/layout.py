"""The one place where layouts convert between scratch_cnn (NumPy) and torch.

| thing | scratch_cnn | torch |
|---|---|---|
| images | NHWC `(m, H, W, C)` | NCHW `(m, C, H, W)` |
| conv weight | `(kh, kw, C_in, C_out)` | `(C_out, C_in, kh, kw)` |
| dense weight | `(n_in, n_out)` | `nn.Linear.weight` `(n_out, n_in)` |
| flatten | NHWC order, channels fastest | the twin permutes NCHW -> NHWC before flattening |
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def to_torch(x: np.ndarray, *, requires_grad: bool = False) -> torch.Tensor:
    """A torch tensor on its own copy of ``x`` (same dtype, CPU)."""
    import torch  # NOTE: here, not at import: the layer declarations read this module in workers without torch

    return torch.tensor(np.ascontiguousarray(x), requires_grad=requires_grad)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def images_to_torch(x: np.ndarray) -> np.ndarray:
    """NHWC -> NCHW (any array of rank 4; other ranks pass through)."""
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def images_from_torch(x: np.ndarray) -> np.ndarray:
    """NCHW -> NHWC (any array of rank 4; other ranks pass through)."""
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def conv_weight_to_torch(w: np.ndarray) -> np.ndarray:
    """(kh, kw, C_in, C_out) -> (C_out, C_in, kh, kw)."""
    return w.transpose(3, 2, 0, 1)


def conv_weight_from_torch(w: np.ndarray) -> np.ndarray:
    """(C_out, C_in, kh, kw) -> (kh, kw, C_in, C_out)."""
    return w.transpose(2, 3, 1, 0)


def dense_weight_to_torch(w: np.ndarray) -> np.ndarray:
    """(n_in, n_out) -> (n_out, n_in)."""
    return w.T


def dense_weight_from_torch(w: np.ndarray) -> np.ndarray:
    return w.T


def same(a: np.ndarray) -> np.ndarray:
    """A parameter whose layout is torch's too (a bias)."""
    return a


def flatten_nchw_as_nhwc(x: torch.Tensor) -> torch.Tensor:
    """(m, C, H, W) -> (m, H*W*C) in scratch_cnn's NHWC flatten order."""
    return x.permute(0, 2, 3, 1).flatten(1)
