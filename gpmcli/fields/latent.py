"""Latent-space fields of a GAN: the generator map and the DDLS energy (docs/algorithms.md#6-gans-and-score-gan, #7-ddls).

``E(z) = 1/2 |z|^2 - d(G(z))`` with ``d`` the discriminator's realness (its pre-sigmoid logit, or a critic's raw
score; see :mod:`gpmcli.fields.discriminator`). ``exp(-E)`` is proportional to ``p0(z) exp(d(G(z)))``, the latent
density whose push-forward by ``G`` corrects the generator by the density ratio the discriminator estimates.
"""

from __future__ import annotations

import torch
from torch import nn

from gpmcli.errors import UsageError
from gpmcli.fields.base import Component
from gpmcli.fields.discriminator import DiscriminatorField


def latent_shape_of(comp: Component) -> tuple[int, ...]:
    """The latent shape a generator checkpoint declares (``latent.shape``, else ``(latent.dim,)``)."""
    lat = comp.config.get("latent") or {}
    if lat.get("distribution", "normal") != "normal":
        raise UsageError(f"{comp.ref}: latent distribution {lat.get('distribution')!r} is not supported (normal only)")
    shape = lat.get("shape") or ([lat["dim"]] if lat.get("dim") else None)
    if not shape:
        raise UsageError(f"{comp.ref}: generator config has no latent dim/shape")
    return tuple(int(s) for s in shape)


class GeneratorMap(nn.Module):
    """``x = G(z)`` reshaped to the data shape (generator in eval mode: saved BatchNorm statistics)."""

    def __init__(self, net: nn.Module, latent_shape: tuple[int, ...], data_shape: tuple[int, ...]):
        super().__init__()
        self.net = net.eval()
        self.latent_shape, self.data_shape = tuple(latent_shape), tuple(data_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.net(z)
        return x.reshape(z.shape[0], *self.data_shape) if self.data_shape else x


class LatentEnergy:
    """The DDLS energy ``E(z) = 1/2 |z|^2 - d(G(z))`` and its per-sample gradient.

    ``to_disc``: an optional ``(scale, shift)`` affine map from the generator's data range to the range the
    discriminator was trained on (e.g. [-1, 1] -> [0, 1]).
    """

    def __init__(self, generator: GeneratorMap, disc: DiscriminatorField,
                 to_disc: tuple[float, float] | None = None):
        if disc.time:
            raise UsageError("DDLS needs an unconditioned discriminator (its config has a time variable)")
        self.generator, self.disc, self.to_disc = generator, disc, to_disc

    def d_of_x(self, x: torch.Tensor) -> torch.Tensor:
        if self.to_disc is not None:
            x = x * self.to_disc[0] + self.to_disc[1]
        return self.disc.realness(x)

    def energy_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(E(z), grad E(z), d(G(z)))``, each per sample; correct under ``inference_mode``."""
        with torch.inference_mode(False), torch.enable_grad():
            zg = z.detach().clone().requires_grad_(True)
            d = self.d_of_x(self.generator(zg))
            e = 0.5 * zg.reshape(zg.shape[0], -1).pow(2).sum(1) - d
            (g,) = torch.autograd.grad(e.sum(), zg)
        return e.detach(), g.detach(), d.detach()


def range_map(src: tuple[float, float] | None, dst: tuple[float, float] | None) -> tuple[float, float] | None:
    """``(scale, shift)`` taking the interval ``src`` onto ``dst``; None when either is unknown or they agree."""
    if not src or not dst or tuple(src) == tuple(dst):
        return None
    scale = (dst[1] - dst[0]) / (src[1] - src[0])
    return scale, dst[0] - src[0] * scale
