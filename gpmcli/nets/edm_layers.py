"""Layers of the EDM networks (:mod:`gpmcli.nets.edm`): noise embeddings, linear and convolution layers with the
published checkpoints' parameter names (and the up/down-sampling filters of the convolutions), group norm."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding: [cos(x f_k), sin(x f_k)], f_k = (1/max_positions)^(k / (n/2 - endpoint))."""

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False):
        super().__init__()
        self.num_channels, self.max_positions, self.endpoint = num_channels, max_positions, endpoint

    def forward(self, x):
        half = self.num_channels // 2
        k = torch.arange(half, dtype=torch.float32, device=x.device) / (half - (1 if self.endpoint else 0))
        f = (1.0 / self.max_positions) ** k
        x = torch.outer(x, f.to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of fixed frequencies (buffer ``freqs``): [cos(2 pi f x), sin(2 pi f x)]."""

    def __init__(self, num_channels: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, x):
        x = torch.outer(x, (2 * math.pi * self.freqs).to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


class Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / math.sqrt(in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))


class Conv2d(nn.Module):
    """Convolution with optional 2x up/down resampling by a separable FIR filter (buffer ``resample_filter``);
    ``kernel=0`` is resampling only (no weight). ``fused`` applies the resampling and the convolution in one pass."""

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True, up: bool = False, down: bool = False,
                 resample_filter: Sequence[float] = (1, 1), fused: bool = False):
        super().__init__()
        self.in_channels, self.out_channels, self.up, self.down, self.fused = cin, cout, up, down, fused
        fan = cin * kernel * kernel
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel) / math.sqrt(max(fan, 1))) if kernel else None
        self.bias = nn.Parameter(torch.zeros(cout)) if kernel and bias else None
        f = torch.as_tensor(list(resample_filter), dtype=torch.float32)
        f = torch.outer(f, f)[None, None] / f.sum() ** 2
        self.register_buffer("resample_filter", f if (up or down) else None)

    def forward(self, x):
        w = None if self.weight is None else self.weight.to(x.dtype)
        f = None if self.resample_filter is None else self.resample_filter.to(x.dtype)
        wp = w.shape[-1] // 2 if w is not None else 0
        fp = (f.shape[-1] - 1) // 2 if f is not None else 0
        if self.fused and self.up and w is not None:
            x = F.conv_transpose2d(x, (4 * f).tile(self.in_channels, 1, 1, 1), groups=self.in_channels, stride=2,
                                   padding=max(fp - wp, 0))
            x = F.conv2d(x, w, padding=max(wp - fp, 0))
        elif self.fused and self.down and w is not None:
            x = F.conv2d(x, w, padding=wp + fp)
            x = F.conv2d(x, f.tile(self.out_channels, 1, 1, 1), groups=self.out_channels, stride=2)
        else:
            if self.up:
                x = F.conv_transpose2d(x, (4 * f).tile(self.in_channels, 1, 1, 1), groups=self.in_channels,
                                       stride=2, padding=fp)
            if self.down:
                x = F.conv2d(x, f.tile(self.in_channels, 1, 1, 1), groups=self.in_channels, stride=2, padding=fp)
            if w is not None:
                x = F.conv2d(x, w, padding=wp)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        return x


class GroupNorm(nn.Module):
    """Group norm with min(32, C / 4) groups."""

    def __init__(self, num_channels: int, num_groups: int = 32, min_per_group: int = 4, eps: float = 1e-5):
        super().__init__()
        self.num_groups, self.eps = min(num_groups, num_channels // min_per_group), eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x):
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)
