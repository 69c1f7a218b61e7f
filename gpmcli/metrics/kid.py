"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel
k(x, y) = (xᵀy / d + 1)³, averaged over random subsets.

Dot products run in the features' dtype (float32 features: float32 GEMMs); kernel values and sums in float64.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from gpmcli.errors import UsageError
from gpmcli.metrics.frechet import MetricWarning


def _kernel_sum_offdiag(k: torch.Tensor) -> torch.Tensor:
    return k.sum() - torch.diagonal(k).sum()


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD² of two equal-or-unequal-size samples with the cubic polynomial kernel."""
    d = x.shape[1]
    m, n = x.shape[0], y.shape[0]
    kxx = ((x @ x.T).double() / d + 1.0) ** 3
    kyy = ((y @ y.T).double() / d + 1.0) ** 3
    kxy = ((x @ y.T).double() / d + 1.0) ** 3
    v = (_kernel_sum_offdiag(kxx) / (m * (m - 1)) + _kernel_sum_offdiag(kyy) / (n * (n - 1))
         - 2.0 * kxy.sum() / (m * n))
    return float(v)


def kid(feats1, feats2, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0,
        device=None) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD² over ``subsets`` random subsets (without replacement) of ``subset_size``.

    The std is the population standard deviation over subsets (as torchmetrics and torch-fidelity report it).
    Subset indices come from ``numpy.random.default_rng(seed)``: the same seed gives the same value.
    """
    x = torch.as_tensor(np.asarray(feats1) if not isinstance(feats1, torch.Tensor) else feats1)
    y = torch.as_tensor(np.asarray(feats2) if not isinstance(feats2, torch.Tensor) else feats2)
    if device is not None:
        x, y = x.to(device), y.to(device)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise UsageError(f"KID: feature shapes {tuple(x.shape)} and {tuple(y.shape)} do not match")
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise UsageError("KID needs at least 2 samples on each side")
    if m < subset_size:
        warnings.warn(f"KID subset size reduced from {subset_size} to {m} (fewer samples)", MetricWarning,
                      stacklevel=2)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        ix = torch.as_tensor(rng.choice(x.shape[0], m, replace=False), device=x.device)
        iy = torch.as_tensor(rng.choice(y.shape[0], m, replace=False), device=y.device)
        vals.append(mmd2_unbiased(x[ix], y[iy]))
    v = np.asarray(vals, dtype=np.float64)
    return float(v.mean()), float(v.std())
