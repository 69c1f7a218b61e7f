"""Small MLPs for low-dimensional data (score networks and discriminators on toy targets)."""

from __future__ import annotations

import math

import torch
from torch import nn

from gpmcli.nets import register_arch


class FourierFeatures(nn.Module):
    """Fixed random Fourier features of a scalar (time or log-noise); frequencies are a saved buffer."""

    def __init__(self, dim: int = 32, scale: float = 16.0):
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        a = 2 * math.pi * t.reshape(-1, 1).to(self.freqs.dtype) * self.freqs[None]
        return torch.cat([a.cos(), a.sin()], dim=1)


@register_arch("mlp")
class MLP(nn.Module):
    """``f(x, c)`` with an optional scalar condition ``c`` (noise level or time) embedded by Fourier features."""

    def __init__(self, in_dim: int = 2, out_dim: int = 2, hidden: int = 128, depth: int = 3, cond_dim: int = 32,
                 conditional: bool = True, act: str = "silu", fourier_scale: float = 16.0):
        super().__init__()
        self.conditional = conditional
        self.embed = FourierFeatures(cond_dim, fourier_scale) if conditional else None
        acts = {"silu": nn.SiLU, "relu": nn.ReLU, "lrelu": lambda: nn.LeakyReLU(0.2)}
        layers: list[nn.Module] = []
        d = in_dim + (cond_dim if conditional else 0)
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), acts[act]()]
            d = hidden
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = x.reshape(x.shape[0], -1)
        if self.conditional:
            if c is None:
                raise ValueError("this MLP is conditional: pass the noise level or time")
            c = torch.as_tensor(c, dtype=h.dtype, device=h.device).expand(h.shape[0])
            h = torch.cat([h, self.embed(c).to(h.dtype)], dim=1)
        return self.net(h).reshape(x.shape[0], -1)
