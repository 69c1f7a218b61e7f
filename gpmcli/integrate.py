"""The explicit integrator every stochastic sampler shares (below fields and samplers in the layering).

PC predictors and correctors (the step methods of :mod:`gpmcli.fields.sde`), DiffFlow, Discriminator Flow, annealed
Langevin and DDLS all take steps of the form ``x <- x + drift * dt + scale * xi``: they differ only in the drift (a
weighted sum of fields), ``dt`` and the noise scale. :func:`em_step` is that step.
"""

from __future__ import annotations

import torch


def em_step(x: torch.Tensor, drift: torch.Tensor, dt: float | torch.Tensor, scale: float | torch.Tensor = 0.0,
            xi: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One explicit (Euler-Maruyama) step. Returns ``(x_new, x_mean)`` where ``x_mean`` is the noise-free part."""
    x_mean = x + drift * dt
    if xi is None:
        return x_mean, x_mean
    return x_mean + scale * xi, x_mean
