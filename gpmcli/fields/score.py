"""Data-score fields from any parameterisation, reduced to one denoiser ``D(x, sigma)`` (ALGORITHMS.md section 1).

A score checkpoint's config says how its network's output maps to a denoiser::

    "parameterization": {"type": "edm", "sigma_data": 0.5, "sigma_min": 0.002, "sigma_max": 80}

Network calling convention for every type: ``net(x_in, c_noise) -> output`` of x's shape.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gpmcli.errors import UsageError
from gpmcli.fields.base import Component, Denoiser, expand_sigma


class EDMDenoiser(Denoiser):
    """EDM preconditioning: ``D = c_skip x + c_out F(c_in x, c_noise)``, ``c_noise = ln(sigma) / 4``."""

    def __init__(self, net: nn.Module, sigma_data: float = 0.5, sigma_min: float = 0.002, sigma_max: float = 80.0):
        super().__init__()
        self.net = net
        self.sigma_data, self.sigma_min, self.sigma_max = float(sigma_data), float(sigma_min), float(sigma_max)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = expand_sigma(sigma, x)
        sd2 = self.sigma_data**2
        c_skip = sd2 / (s**2 + sd2)
        c_out = s * self.sigma_data / torch.sqrt(s**2 + sd2)
        c_in = 1.0 / torch.sqrt(s**2 + sd2)
        c_noise = torch.log(sigma.to(x.dtype)) / 4
        return c_skip * x + c_out * self.net(c_in * x, c_noise).to(x.dtype)


def denoiser_from_component(comp: Component) -> Denoiser:
    """The denoiser of a ``score`` component, whatever its parameterisation."""
    if comp.role != "score":
        raise UsageError(f"{comp.ref} is a {comp.role} checkpoint, not a score network")
    if isinstance(comp.module, Denoiser):
        return comp.module
    p = comp.config.get("parameterization", {})
    kind = p.get("type")
    if kind == "edm":
        return EDMDenoiser(comp.module, p.get("sigma_data", 0.5), p.get("sigma_min", 0.002), p.get("sigma_max", 80.0))
    raise UsageError(f"{comp.ref}: unsupported score parameterization {kind!r}")
