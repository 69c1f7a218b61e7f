"""The exact denoiser of an isotropic Gaussian mixture, written as a network (two linear layers and a softmax).

``toy:`` targets are analytic fields that never pass through ``torch.autocast``; this module computes the same
posterior mean with ``nn.Linear`` layers, so mixed precision and compilation act on it exactly as on a trained network
while the float32 answer stays exact. For a mixture of ``N(mu_k, s^2 I)`` with weights ``w_k`` and ``x = x0 + sigma e``:

    r = softmax((x . mu_k - |mu_k|^2 / 2) / (s^2 + sigma^2) + log w_k)
    D(x, sigma) = (s^2 x + sigma^2 sum_k r_k mu_k) / (s^2 + sigma^2)

Used as an ``x0`` score network with ``noise_cond: sigma`` (benchmarks, ``scripts/precision_check.py``, tests).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gpmcli.nets import register_arch


@register_arch("gaussian-mixture-net")
class GaussianMixtureNet(nn.Module):
    def __init__(self, means: list[list[float]], std: float, weights: list[float] | None = None):
        super().__init__()
        mu = torch.tensor(means, dtype=torch.float32)
        k, d = mu.shape
        w = torch.tensor(weights if weights is not None else [1.0] * k, dtype=torch.float64)
        self.var = float(std) ** 2
        self.logits = nn.Linear(d, k)  # x . mu_k - |mu_k|^2 / 2 (the log-weight is added after the scaling)
        self.mix = nn.Linear(k, d, bias=False)  # sum_k r_k mu_k
        with torch.no_grad():
            self.logits.weight.copy_(mu)
            self.logits.bias.copy_(-0.5 * (mu**2).sum(1))
            self.mix.weight.copy_(mu.T)
        self.register_buffer("log_w", (w / w.sum()).log().float())

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s2 = sigma.reshape(-1, 1).to(x.dtype) ** 2
        v = self.var + s2
        r = torch.softmax(self.logits(x) / v + self.log_w, dim=1)
        return (self.var * x + s2 * self.mix(r)) / v


def pentagon_net() -> tuple[GaussianMixtureNet, dict]:
    """GPM's pentagon (5 modes on a circle of radius 3, std 0.5) as a network, with its checkpoint config."""
    means = [[3.0 * math.cos(math.pi / 2 + 2 * math.pi * i / 5), 3.0 * math.sin(math.pi / 2 + 2 * math.pi * i / 5)]
             for i in range(5)]
    net = GaussianMixtureNet(means, 0.5)
    config = {"role": "score", "arch": {"name": "gaussian-mixture-net", "kwargs": {"means": means, "std": 0.5}},
              "parameterization": {"type": "x0", "noise_cond": "sigma", "sigma_min": 0.002, "sigma_max": 80.0,
                                   "sigma_data": 3.0},
              "data": {"shape": [2], "range": None, "dataset": "toy:pentagon"},
              "provenance": {"source": "gpmcli.nets.mixture.pentagon_net (exact, no training)", "license": "mit"}}
    return net, config
