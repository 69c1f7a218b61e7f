"""PyTorch-StudioGAN's 32x32 ResNet GAN (its ``resnet`` backbone: SNGAN on CIFAR-10), declared from the published
checkpoints' key and shape layout (``linear0``, ``blocks.I.0.{bn1,bn2,conv2d0,conv2d1,conv2d2}``, ``bn4``,
``conv2d5``; ``blocks.I.0.conv2d*``, ``linear1``, ``embedding``).

Both networks are class-conditional. gpm's samplers call ``G(z)`` and ``D(x)``, so each takes a label policy:

- generator ``label="uniform"``: the latent has one extra coordinate ``u`` (standard normal like the rest) and the
  class is ``floor(Phi(u) K)``: uniform over the K classes, and a function of the sample's own noise (same seed, same
  image for any batch size); ``label=k``: every image of class k.
- discriminator ``label="marginal"``: ``log mean_y exp(D(x, y))``, the logit of the class-averaged density ratio
  (for a projection discriminator, whose D(x, y) is a per-class logit); ``label=k``: D(x, k).

The discriminator's output is the adversarial output (``adv_output``, the projection term included) as a logit.
Spectral normalisation is folded into the weights when converting (the stored u, v give sigma = u^T W v, which is
what ``torch.nn.utils.spectral_norm`` divides by in eval mode).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gpmcli.nets import register_arch


class CondBN(nn.Module):
    """BatchNorm without affine (eps 1e-4) followed by a per-class gain (1 + embed0[y]) and bias (embed1[y])."""

    def __init__(self, num_classes: int, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=1e-4, affine=False)
        self.embed0 = nn.Embedding(num_classes, channels)
        self.embed1 = nn.Embedding(num_classes, channels)

    def forward(self, x, y):
        return self.bn(x) * (1 + self.embed0(y))[:, :, None, None] + self.embed1(y)[:, :, None, None]


class GenBlock(nn.Module):
    def __init__(self, cin: int, cout: int, num_classes: int):
        super().__init__()
        self.bn1, self.bn2 = CondBN(num_classes, cin), CondBN(num_classes, cout)
        self.conv2d0 = nn.Conv2d(cin, cout, 1)
        self.conv2d1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2d2 = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x, y):
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2, mode="nearest")
        h = self.conv2d2(F.relu(self.bn2(self.conv2d1(h), y)))
        return h + self.conv2d0(F.interpolate(x, scale_factor=2, mode="nearest"))


@register_arch("studiogan-resnet32-g")
class StudioGANGenerator(nn.Module):
    def __init__(self, z_dim: int = 128, channels: int = 256, num_classes: int = 10, n_blocks: int = 3,
                 label: int | str = "uniform"):
        super().__init__()
        if not (label == "uniform" or (isinstance(label, int) and 0 <= label < num_classes)):
            raise ValueError(f"label must be 'uniform' or a class in [0, {num_classes}), not {label!r}")
        self.z_dim, self.channels, self.num_classes, self.label = z_dim, channels, num_classes, label
        self.linear0 = nn.Linear(z_dim, channels * 16)
        self.blocks = nn.ModuleList([nn.ModuleList([GenBlock(channels, channels, num_classes)])
                                     for _ in range(n_blocks)])
        self.bn4 = nn.BatchNorm2d(channels, eps=1e-4)
        self.conv2d5 = nn.Conv2d(channels, 3, 3, padding=1)

    @property
    def latent_dim(self) -> int:
        return self.z_dim + (1 if self.label == "uniform" else 0)

    def labels(self, z: torch.Tensor) -> torch.Tensor:
        if self.label == "uniform":
            u = 0.5 * (1 + torch.erf(z[:, self.z_dim].double() / math.sqrt(2)))
            return (u * self.num_classes).floor().long().clamp(0, self.num_classes - 1)
        return torch.full((z.shape[0],), int(self.label), dtype=torch.long, device=z.device)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = self.labels(z) if y is None else y
        h = self.linear0(z[:, :self.z_dim]).view(-1, self.channels, 4, 4)
        for (block,) in self.blocks:
            h = block(h, y)
        return torch.tanh(self.conv2d5(F.relu(self.bn4(h))))


class DiscBlock(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv2d1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2d2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv2d0 = nn.Conv2d(cin, cout, 1) if (first or down or cin != cout) else None

    def forward(self, x):
        if self.first:  # StudioGAN's DiscOptBlock: no activation before the first convolution
            h = F.avg_pool2d(self.conv2d2(F.relu(self.conv2d1(x))), 2)
            return h + self.conv2d0(F.avg_pool2d(x, 2))
        h = self.conv2d2(F.relu(self.conv2d1(F.relu(x))))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.conv2d0 is not None:
            s = self.conv2d0(s)
            if self.down:
                s = F.avg_pool2d(s, 2)
        return h + s


@register_arch("studiogan-resnet32-d")
class StudioGANDiscriminator(nn.Module):
    def __init__(self, channels: int = 128, num_classes: int = 10, label: int | str = "marginal"):
        super().__init__()
        if not (label == "marginal" or (isinstance(label, int) and 0 <= label < num_classes)):
            raise ValueError(f"label must be 'marginal' or a class in [0, {num_classes}), not {label!r}")
        self.num_classes, self.label = num_classes, label
        downs = (True, True, False, False)
        self.blocks = nn.ModuleList([nn.ModuleList([DiscBlock(3 if i == 0 else channels, channels, d, i == 0)])
                                     for i, d in enumerate(downs)])
        self.linear1 = nn.Linear(channels, 1)
        self.embedding = nn.Embedding(num_classes, channels)

    def forward_all(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K): D(x, y) for every class y."""
        h = x
        for (block,) in self.blocks:
            h = block(h)
        h = F.relu(h).sum(dim=(2, 3))
        classes = self.embedding(torch.arange(self.num_classes, device=h.device))  # (K, C): the projection vectors
        return self.linear1(h) + h @ classes.t()

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = self.forward_all(x)
        if y is not None:
            return out.gather(1, y.reshape(-1, 1)).reshape(-1)
        if self.label == "marginal":
            return torch.logsumexp(out, dim=1) - math.log(self.num_classes)
        return out[:, int(self.label)]
