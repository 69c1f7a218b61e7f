"""Small convolutional networks for images, conditioned on a scalar (log-noise or time): a UNet (score networks,
called ``net(x, c)`` and returning x's shape) and its encoder half with a scalar head (discriminators, ``net(x, c)``
returning ``(B, 1)``). Sized for CPU training on 32x32 data (the defaults are about 0.9M and 0.3M parameters)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from gpmcli.nets import register_arch
from gpmcli.nets.mlp import FourierFeatures


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch // 4) or 1, ch)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, dropout: float = 0.0):
        super().__init__()
        self.n1, self.c1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.e = nn.Linear(emb, 2 * cout)
        self.n2, self.c2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)

    def forward(self, x, emb):
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.e(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.n2(h) * (1 + scale) + shift)
        return self.skip(x) + self.c2(self.drop(h))


class Attention(nn.Module):
    def __init__(self, ch: int, heads: int = 1):
        super().__init__()
        self.norm, self.qkv, self.proj, self.heads = _norm(ch), nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1), heads
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        o = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(o.transpose(-1, -2).reshape(b, c, h, w))


class _Embed(nn.Module):
    """Scalar condition -> embedding vector (fixed Fourier features, then a small MLP)."""

    def __init__(self, emb: int, fourier_scale: float):
        super().__init__()
        self.fourier = FourierFeatures(emb // 2, scale=fourier_scale)
        self.mlp = nn.Sequential(nn.Linear(emb // 2, emb), nn.SiLU(), nn.Linear(emb, emb))

    def forward(self, c, batch: int, like: torch.Tensor):
        c = torch.as_tensor(c, dtype=like.dtype, device=like.device).reshape(-1).expand(batch)
        return self.mlp(self.fourier(c).to(like.dtype))


@register_arch("unet")
class UNet(nn.Module):
    """``F(x, c)``: residual blocks at ``len(mults)`` resolutions, self-attention at the resolutions in ``attn``."""

    def __init__(self, in_ch: int = 1, ch: int = 32, mults: tuple[int, ...] | list[int] = (1, 2, 2), blocks: int = 2,
                 attn: tuple[int, ...] | list[int] = (8,), img: int = 32, emb: int = 128, dropout: float = 0.0,
                 fourier_scale: float = 16.0):
        super().__init__()
        self.embed = _Embed(emb, fourier_scale)
        self.inp = nn.Conv2d(in_ch, ch, 3, padding=1)
        self.down = nn.ModuleList()
        chans, c, res = [ch], ch, img
        for i, m in enumerate(mults):
            for _ in range(blocks):
                self.down.append(nn.ModuleList([ResBlock(c, ch * m, emb, dropout),
                                                Attention(ch * m) if res in attn else nn.Identity()]))
                c = ch * m
                chans.append(c)
            if i < len(mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
                chans.append(c)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(c, c, emb, dropout), Attention(c), ResBlock(c, c, emb, dropout)])
        self.up = nn.ModuleList()
        for i, m in reversed(list(enumerate(mults))):
            for _ in range(blocks + 1):
                self.up.append(nn.ModuleList([ResBlock(c + chans.pop(), ch * m, emb, dropout),
                                              Attention(ch * m) if res in attn else nn.Identity()]))
                c = ch * m
            if i > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"),
                                              nn.Conv2d(c, c, 3, padding=1)]))
                res *= 2
        self.out = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, in_ch, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        emb = self.embed(c, x.shape[0], x)
        h = self.inp(x)
        skips = [h]
        for layer in self.down:
            if len(layer) == 1:
                h = layer[0](h)
            else:
                h = layer[1](layer[0](h, emb))
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for layer in self.up:
            if isinstance(layer[0], nn.Upsample):
                h = layer[1](layer[0](h))
            else:
                h = layer[1](layer[0](torch.cat([h, skips.pop()], 1), emb))
        return self.out(h)


@register_arch("cond-convnet")
class CondConvNet(nn.Module):
    """Conditional discriminator ``f(x, c) -> (B, 1)``: residual blocks with stride-2 downsampling, mean pooling and
    a linear head."""

    def __init__(self, in_ch: int = 1, ch: int = 32, mults: tuple[int, ...] | list[int] = (1, 2, 2), blocks: int = 1,
                 emb: int = 128, fourier_scale: float = 16.0):
        super().__init__()
        self.embed = _Embed(emb, fourier_scale)
        self.inp = nn.Conv2d(in_ch, ch, 3, padding=1)
        self.blocks = nn.ModuleList()
        c = ch
        for i, m in enumerate(mults):
            for _ in range(blocks):
                self.blocks.append(ResBlock(c, ch * m, emb))
                c = ch * m
            if i < len(mults) - 1:
                self.blocks.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.head = nn.Sequential(_norm(c), nn.SiLU())
        self.lin = nn.Linear(c, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        emb = self.embed(c, x.shape[0], x)
        h = self.inp(x)
        for b in self.blocks:
            h = b(h, emb) if isinstance(b, ResBlock) else b(h)
        return self.lin(self.head(h).mean(dim=(2, 3)))
