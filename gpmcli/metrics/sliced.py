"""Sliced Wasserstein distance between two point clouds (low-dimensional targets, ALGORITHMS.md section 9)."""

from __future__ import annotations

import torch


def sliced_wasserstein(x, y, n_proj: int = 256, generator: torch.Generator | None = None, p: int = 2) -> float:
    """``SW_p(x, y) = (E_theta W_p^p(theta.x, theta.y))^(1/p)`` over ``n_proj`` random unit directions.

    ``x`` (N, D) and ``y`` (M, D); when N != M the 1-D quantile functions are compared on a common grid of
    ``max(N, M)`` levels. Computed in float64 on CPU; directions come from ``generator`` (reproducible).
    """
    x = torch.as_tensor(x).reshape(len(x), -1).to(torch.float64).cpu()
    y = torch.as_tensor(y).reshape(len(y), -1).to(torch.float64).cpu()
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"dimension mismatch: {x.shape[1]} vs {y.shape[1]}")
    theta = torch.randn(n_proj, x.shape[1], dtype=torch.float64, generator=generator)
    theta = theta / theta.norm(dim=1, keepdim=True)
    px = torch.sort(x @ theta.T, dim=0).values  # (N, P)
    py = torch.sort(y @ theta.T, dim=0).values
    if px.shape[0] != py.shape[0]:
        m = max(px.shape[0], py.shape[0])
        q = (torch.arange(m, dtype=torch.float64) + 0.5) / m
        px = torch.quantile(px, q, dim=0, interpolation="lower")
        py = torch.quantile(py, q, dim=0, interpolation="lower")
    return float(((px - py).abs() ** p).mean() ** (1.0 / p))
