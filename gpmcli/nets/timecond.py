"""Time-conditioned discriminators for images (Discriminator Flow, ALGORITHMS.md section 4)."""

from __future__ import annotations

import math

import torch
from torch import nn

from gpmcli.nets import register_arch
from gpmcli.nets.mlp import FourierFeatures


@register_arch("time-dcgan-discriminator")
class TimeDCGANDiscriminator(nn.Module):
    """``f(x, t)``: a DCGAN-style conv discriminator (``Conv(4, 2, 1)`` + LeakyReLU(0.2) blocks, channels doubling,
    no batch normalisation so a sample's value never depends on its batch) whose every block adds a learned
    projection of the Fourier features of ``t`` (frequencies a saved buffer) as a per-channel bias. Output ``(N,)``."""

    def __init__(self, nc: int = 1, ndf: int = 32, image_size: int = 32, cond_dim: int = 32, fourier_scale: float = 1.0):
        super().__init__()
        n_layers = int(math.log2(image_size / 4))
        if n_layers < 1 or 4 * 2**n_layers != image_size:
            raise ValueError(f"image_size {image_size} is not 4 * 2^k (k >= 1)")
        self.embed = FourierFeatures(cond_dim, fourier_scale)
        self.convs, self.proj = nn.ModuleList(), nn.ModuleList()
        cin, ch = nc, ndf
        for _ in range(n_layers):
            self.convs.append(nn.Conv2d(cin, ch, 4, 2, 1))
            self.proj.append(nn.Linear(cond_dim, ch))
            cin, ch = ch, ch * 2
        self.act = nn.LeakyReLU(0.2)
        self.out = nn.Conv2d(cin, 1, 4, 1, 0)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        e = self.embed(t).to(x.dtype)
        h = x
        for conv, proj in zip(self.convs, self.proj):
            h = self.act(conv(h) + proj(e)[:, :, None, None])
        return self.out(h).reshape(x.shape[0])
