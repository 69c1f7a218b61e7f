"""Bilinear resizing conventions used by FID pipelines.

``tf1``: TensorFlow 1's ``resize_bilinear(align_corners=False)`` without half-pixel centres, which the TTUR FID code
and torch-fidelity use: output pixel i samples the input at ``i * in / out`` (top-left aligned), the upper neighbour
clamped to the last row/column. ``torch-bilinear``: ``F.interpolate(mode="bilinear", align_corners=False)``
(half-pixel centres, no antialiasing), what pytorch-fid uses.

Both are separable; ``tf1`` is applied as two small interpolation matrices (out x in), so it runs as matmuls on any
device.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

RESIZE_MODES = ("tf1", "torch-bilinear")


@lru_cache(maxsize=32)
def _tf1_matrix(n_in: int, n_out: int) -> np.ndarray:
    scale = np.float32(n_in) / np.float32(n_out)
    src = np.arange(n_out, dtype=np.float32) * scale
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo.astype(np.float32)).astype(np.float64)
    m = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def tf1_matrix(n_in: int, n_out: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The (n_out, n_in) matrix of TF1's half-pixel-free bilinear resize along one axis."""
    return torch.as_tensor(_tf1_matrix(int(n_in), int(n_out)), dtype=dtype, device=device)


def resize_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) float -> (B, C, *size) with TF1's bilinear rule."""
    h, w = x.shape[-2:]
    rh = tf1_matrix(h, size[0], x.device, x.dtype)
    rw = tf1_matrix(w, size[1], x.device, x.dtype)
    # rows first (contract W), then columns (contract H)
    return torch.matmul(rh, torch.matmul(x, rw.T))


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if mode == "tf1":
        return resize_tf1(x, size)
    if mode == "torch-bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    raise ValueError(f"unknown resize mode {mode!r}; choose one of {', '.join(RESIZE_MODES)}")
