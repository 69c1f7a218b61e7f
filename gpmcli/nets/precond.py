"""Noise-level preconditioning for sigma-conditioned networks (discriminators of DiffFlow).

``f(x, sigma) = inner(c_in(sigma) x, ln(sigma) / 4)`` with ``c_in = 1 / sqrt(sigma^2 + sigma_data^2)``, the EDM input
scaling: the inner network sees inputs of unit scale and a log-noise condition at every sigma. Saved as
``{"name": "sigma-precond", "kwargs": {"inner": {"name": ..., "kwargs": ...}, "sigma_data": ...}}``.
"""

from __future__ import annotations

import torch
from torch import nn

from gpmcli.fields.base import expand_sigma
from gpmcli.nets import register_arch


@register_arch("sigma-precond")
class SigmaPrecond(nn.Module):
    def __init__(self, inner: dict, sigma_data: float = 0.5):
        super().__init__()
        from gpmcli.nets import build_arch

        self.inner = build_arch(inner)
        self.sigma_data = float(sigma_data)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        c_in = 1.0 / torch.sqrt(expand_sigma(sigma, x) ** 2 + self.sigma_data**2)
        return self.inner(x * c_in, torch.log(sigma) / 4)
