"""The explicit integrator every stochastic sampler shares.

PC predictors, DiffFlow, Discriminator Flow, Langevin correctors and DDLS all take steps of the form
``x <- x + drift * dt + scale * xi``: they differ only in the drift (a weighted sum of fields), ``dt`` and the noise
scale. :func:`em_step` is that step; :func:`edm_sigmas` the rho-schedule noise ladder.
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


def edm_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
               device: torch.device | str = "cpu", append_zero: bool = True) -> torch.Tensor:
    """Karras et al. (2022) ladder: ``(smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho``, i = 0..n-1,
    followed by 0 when ``append_zero`` (float64, decreasing)."""
    i = torch.arange(n, dtype=torch.float64, device=device)
    inv = 1.0 / rho
    frac = i / max(n - 1, 1)
    s = (sigma_max**inv + frac * (sigma_min**inv - sigma_max**inv)) ** rho
    if append_zero:
        s = torch.cat([s, s.new_zeros(1)])
    return s
