"""The EDM paper's networks (Karras et al. 2022, "Elucidating the design space..."), written for gpm from the paper
and the published checkpoints' parameter layout, so that ``gpm convert --from edm-pkl`` loads their weights with the
same state-dict keys (``model.map_layer0.weight``, ``model.enc.32x32_block0.conv0.weight``, ...).

- :class:`SongUNet`: the DDPM++ / NCSN++ UNet of Song et al. 2021 as configured in EDM (positional or Fourier noise
  embedding; standard, skip or residual encoder; standard or skip decoder; resample filter ``[1, 1]`` or
  ``[1, 3, 3, 1]``), unconditional or class-conditional.
- :class:`EDMNetwork`: a preconditioned denoiser ``D(x; sigma)`` around it: ``vp`` (VP-SDE training: c_noise =
  (M - 1) t(sigma)), ``ve`` (c_noise = log(sigma / 2)) or ``edm`` (the paper's c_skip, c_out, c_in, c_noise =
  log(sigma) / 4). ``forward(x, sigma)`` returns the denoised image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gpmcli.nets import register_arch
from gpmcli.nets.edm_layers import Conv2d, FourierEmbedding, GroupNorm, Linear, PositionalEmbedding


class UNetBlock(nn.Module):
    """Residual block (norm0 -> conv0 -> + affine(emb) -> norm1 -> conv1, skip, scaled) with optional self-attention
    (norm2 -> qkv -> softmax(q k / sqrt(c)) v -> proj)."""

    def __init__(self, cin: int, cout: int, emb: int, up=False, down=False, attention=False, num_heads=1,
                 dropout=0.0, skip_scale=math.sqrt(0.5), eps=1e-6, resample_filter=(1, 1), resample_proj=True,
                 adaptive_scale=False):
        super().__init__()
        self.in_channels, self.out_channels = cin, cout
        self.num_heads = num_heads if attention else 0
        self.dropout, self.skip_scale, self.adaptive_scale = dropout, skip_scale, adaptive_scale
        self.norm0 = GroupNorm(cin, eps=eps)
        self.conv0 = Conv2d(cin, cout, 3, up=up, down=down, resample_filter=resample_filter)
        self.affine = Linear(emb, cout * (2 if adaptive_scale else 1))
        self.norm1 = GroupNorm(cout, eps=eps)
        self.conv1 = Conv2d(cout, cout, 3)
        self.skip = None
        if cout != cin or up or down:
            k = 1 if (resample_proj or cout != cin) else 0
            self.skip = Conv2d(cin, cout, k, up=up, down=down, resample_filter=resample_filter)
        if self.num_heads:
            self.norm2 = GroupNorm(cout, eps=eps)
            self.qkv = Conv2d(cout, cout * 3, 1)
            self.proj = Conv2d(cout, cout, 1)

    def forward(self, x, emb):
        h = self.conv0(F.silu(self.norm0(x)))
        p = self.affine(emb)[:, :, None, None].to(h.dtype)
        if self.adaptive_scale:
            scale, shift = p.chunk(2, dim=1)
            h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        else:
            h = F.silu(self.norm1(h + p))
        h = self.conv1(F.dropout(h, p=self.dropout, training=self.training))
        h = (h + (self.skip(x) if self.skip is not None else x)) * self.skip_scale
        if self.num_heads:
            b, c = h.shape[:2]
            q, k, v = self.qkv(self.norm2(h)).reshape(b * self.num_heads, c // self.num_heads, 3, -1).unbind(2)
            w = torch.einsum("ncq,nck->nqk", q.float(), k.float() / math.sqrt(k.shape[1])).softmax(dim=2)
            a = torch.einsum("nqk,nck->ncq", w.to(q.dtype), v)
            h = (self.proj(a.reshape(h.shape)) + h) * self.skip_scale
        return h


class SongUNet(nn.Module):
    """DDPM++ / NCSN++ as in EDM. Keys: ``map_noise``, ``map_label``, ``map_augment``, ``map_layer0/1``,
    ``enc.{R}x{R}_{conv,down,block<i>,aux_down,aux_skip,aux_residual}``,
    ``dec.{R}x{R}_{in0,in1,up,block<i>,aux_up,aux_norm,aux_conv}``."""

    def __init__(self, img_resolution: int, in_channels: int, out_channels: int, label_dim: int = 0,
                 augment_dim: int = 0, model_channels: int = 128, channel_mult: Sequence[int] = (1, 2, 2, 2),
                 channel_mult_emb: int = 4, num_blocks: int = 4, attn_resolutions: Sequence[int] = (16,),
                 dropout: float = 0.10, label_dropout: float = 0.0, embedding_type: str = "positional",
                 channel_mult_noise: int = 1, encoder_type: str = "standard", decoder_type: str = "standard",
                 resample_filter: Sequence[int] = (1, 1)):
        super().__init__()
        emb, noise = model_channels * channel_mult_emb, model_channels * channel_mult_noise
        bk = dict(emb=emb, num_heads=1, dropout=dropout, skip_scale=math.sqrt(0.5), eps=1e-6,
                  resample_filter=resample_filter, resample_proj=True, adaptive_scale=False)
        self.label_dropout = label_dropout
        self.map_noise = (PositionalEmbedding(noise, endpoint=True) if embedding_type == "positional"
                          else FourierEmbedding(noise))
        self.map_label = Linear(label_dim, noise) if label_dim else None
        self.map_augment = Linear(augment_dim, noise, bias=False) if augment_dim else None
        self.map_layer0 = Linear(noise, emb)
        self.map_layer1 = Linear(emb, emb)
        self.enc = nn.ModuleDict()
        cout = caux = in_channels
        for level, mult in enumerate(channel_mult):
            r = img_resolution >> level
            if level == 0:
                self.enc[f"{r}x{r}_conv"] = Conv2d(cout, model_channels, 3)
                cout = model_channels
            else:
                self.enc[f"{r}x{r}_down"] = UNetBlock(cout, cout, down=True, **bk)
                if encoder_type == "skip":
                    self.enc[f"{r}x{r}_aux_down"] = Conv2d(caux, caux, 0, down=True, resample_filter=resample_filter)
                    self.enc[f"{r}x{r}_aux_skip"] = Conv2d(caux, cout, 1)
                if encoder_type == "residual":
                    self.enc[f"{r}x{r}_aux_residual"] = Conv2d(caux, cout, 3, down=True,
                                                               resample_filter=resample_filter, fused=True)
                    caux = cout
            for i in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{r}x{r}_block{i}"] = UNetBlock(cin, cout, attention=r in attn_resolutions, **bk)
        skips = [b.out_channels for n, b in self.enc.items() if "aux" not in n]
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            r = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{r}x{r}_in0"] = UNetBlock(cout, cout, attention=True, **bk)
                self.dec[f"{r}x{r}_in1"] = UNetBlock(cout, cout, **bk)
            else:
                self.dec[f"{r}x{r}_up"] = UNetBlock(cout, cout, up=True, **bk)
            for i in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                self.dec[f"{r}x{r}_block{i}"] = UNetBlock(cin, cout, attention=(i == num_blocks and
                                                                                 r in attn_resolutions), **bk)
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    self.dec[f"{r}x{r}_aux_up"] = Conv2d(out_channels, out_channels, 0, up=True,
                                                         resample_filter=resample_filter)
                self.dec[f"{r}x{r}_aux_norm"] = GroupNorm(cout, eps=1e-6)
                self.dec[f"{r}x{r}_aux_conv"] = Conv2d(cout, out_channels, 3)

    def forward(self, x, noise_labels, class_labels=None, augment_labels=None):
        emb = self.map_noise(noise_labels)
        emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(emb.shape)  # [sin, cos] order
        if self.map_label is not None and class_labels is not None:
            emb = emb + self.map_label(class_labels * math.sqrt(self.map_label.in_features))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))
        skips, aux = [], x
        for name, block in self.enc.items():
            if "aux_down" in name:
                aux = block(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + block(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + block(aux)) / math.sqrt(2)
            else:
                x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
                skips.append(x)
        aux, tmp = None, None
        for name, block in self.dec.items():
            if "aux_up" in name:
                aux = block(aux)
            elif "aux_norm" in name:
                tmp = block(x)
            elif "aux_conv" in name:
                tmp = block(F.silu(tmp))
                aux = tmp if aux is None else tmp + aux
            else:
                if x.shape[1] != block.in_channels:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = block(x, emb)
        return aux


PRECONDS = ("vp", "ve", "edm")


@register_arch("edm-network")
class EDMNetwork(nn.Module):
    """A preconditioned EDM denoiser ``D(x; sigma)`` (the state dict is the original's: ``model.`` + the UNet's).

    ``precond``: ``vp`` (``beta_d``, ``beta_min``, ``M``), ``ve`` or ``edm`` (``sigma_data``); ``model`` holds the
    UNet's constructor arguments (``model_type`` ``SongUNet``)."""

    def __init__(self, precond: str, img_resolution: int, img_channels: int, label_dim: int = 0,
                 model_type: str = "SongUNet", model: dict | None = None, beta_d: float = 19.9,
                 beta_min: float = 0.1, M: int = 1000, sigma_data: float = 0.5):
        super().__init__()
        if precond not in PRECONDS:
            raise ValueError(f"precond must be one of {PRECONDS}, not {precond!r}")
        if model_type != "SongUNet":
            raise ValueError(f"model_type {model_type!r} is not implemented in gpm (SongUNet only)")
        self.precond, self.label_dim = precond, label_dim
        self.beta_d, self.beta_min, self.M, self.sigma_data = float(beta_d), float(beta_min), int(M), float(sigma_data)
        self.model = SongUNet(img_resolution=img_resolution, in_channels=img_channels, out_channels=img_channels,
                              label_dim=label_dim, **(model or {}))

    def vp_t(self, sigma):
        """VP time of a noise level: the inverse of sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)."""
        return ((self.beta_min**2 + 2 * self.beta_d * torch.log1p(sigma**2)).sqrt() - self.beta_min) / self.beta_d

    def forward(self, x, sigma, class_labels=None):
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1, 1, 1)
        sigma = sigma.expand(x.shape[0], 1, 1, 1)
        if self.label_dim and class_labels is None:
            class_labels = torch.zeros(1, self.label_dim, device=x.device)
        if self.precond == "vp":
            c_skip, c_out, c_in = 1.0, -sigma, 1 / (sigma**2 + 1).sqrt()
            c_noise = (self.M - 1) * self.vp_t(sigma)
        elif self.precond == "ve":
            c_skip, c_out, c_in, c_noise = 1.0, sigma, 1.0, (0.5 * sigma).log()
        else:
            sd = self.sigma_data
            c_skip = sd**2 / (sigma**2 + sd**2)
            c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
            c_in = 1 / (sd**2 + sigma**2).sqrt()
            c_noise = sigma.log() / 4
        f = self.model(c_in * x, c_noise.flatten(), class_labels=class_labels)
        return c_skip * x + c_out * f.to(torch.float32)
