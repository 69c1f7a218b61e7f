"""Architectures of networks trained by other projects, with their original state-dict key layouts.

Each class loads the original weights strictly (same parameter names and shapes) so that a converted checkpoint
reproduces the original network's outputs exactly. Discriminators that ended in a sigmoid in their source return the
pre-sigmoid *logit* by default (``prob=False``); ``prob=True`` restores the original sigmoid output. The converter
records which one in the checkpoint config (``"output": "logit" | "prob"``).

- ``csinva-mlp-gan-g`` / ``csinva-mlp-gan-d``: the MNIST MLP GAN of csinva/gan-vae-pretrained-pytorch
  (``nn.Sequential`` keys ``0.*, 2.*, 4.*``).
- ``wgangp-generator`` / ``wgangp-critic``: the MNIST WGAN-GP of Ryhan9834/Digit-Generation-WGAN-GP
  (keys ``gen.i.j`` / ``crit.i.j``).
- ``dcgan-generator`` / ``dcgan-discriminator``: pytorch/examples DCGAN of any width and depth (keys ``main.i``);
  the csinva MNIST DCGAN discriminator is ``dcgan-discriminator`` with ``n_layers=3, final_stride=2,
  final_padding=1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from gpmcli.nets import register_arch


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


@register_arch("csinva-mlp-gan-g")
class CsinvaMLPGenerator(nn.Sequential):
    """``Linear(z, h) ReLU Linear(h, h) ReLU Linear(h, prod(out_shape)) Tanh``; output reshaped to ``out_shape``."""

    def __init__(self, z_dim: int = 64, hidden: int = 256, out_shape: Sequence[int] = (1, 28, 28)):
        out_shape = tuple(int(s) for s in out_shape)
        super().__init__(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, math.prod(out_shape)), nn.Tanh())
        self.out_shape = out_shape

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return super().forward(_flat(z)).reshape(z.shape[0], *self.out_shape)


@register_arch("csinva-mlp-gan-d")
class CsinvaMLPDiscriminator(nn.Sequential):
    """``Linear(in, h) LReLU(0.2) Linear(h, h) LReLU(0.2) Linear(h, 1)`` [+ ``Sigmoid`` when ``prob``]; input flattened.

    Output shape ``(N, 1)`` as in the original.
    """

    def __init__(self, in_dim: int = 784, hidden: int = 256, prob: bool = False):
        layers = [nn.Linear(in_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                  nn.Linear(hidden, 1)]
        if prob:
            layers.append(nn.Sigmoid())
        super().__init__(*layers)
        self.prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_flat(x))


def _wgan_gen_block(cin: int, cout: int, kernel: int, stride: int, final: bool = False) -> nn.Sequential:
    if final:
        return nn.Sequential(nn.ConvTranspose2d(cin, cout, kernel, stride), nn.Tanh())
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, kernel, stride), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@register_arch("wgangp-generator")
class WGANGPGenerator(nn.Module):
    """Ryhan9834 WGAN-GP generator: z (N, z_dim) -> (N, im_chan, 28, 28) in [-1, 1]."""

    def __init__(self, z_dim: int = 64, hidden: int = 64, im_chan: int = 1):
        super().__init__()
        self.z_dim = z_dim
        self.gen = nn.Sequential(
            _wgan_gen_block(z_dim, hidden * 4, 3, 2),
            _wgan_gen_block(hidden * 4, hidden * 2, 4, 1),
            _wgan_gen_block(hidden * 2, hidden, 3, 2),
            _wgan_gen_block(hidden, im_chan, 4, 2, final=True),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.gen(z.reshape(z.shape[0], self.z_dim, 1, 1))


def _wgan_crit_block(cin: int, cout: int, final: bool = False) -> nn.Sequential:
    if final:
        return nn.Sequential(nn.Conv2d(cin, cout, 4, 2))
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True))


@register_arch("wgangp-critic")
class WGANGPCritic(nn.Module):
    """Ryhan9834 WGAN-GP critic: (N, im_chan, 28, 28) -> (N, 1) critic score (higher = more real)."""

    def __init__(self, im_chan: int = 1, hidden: int = 64):
        super().__init__()
        self.crit = nn.Sequential(_wgan_crit_block(im_chan, hidden), _wgan_crit_block(hidden, hidden * 2),
                                  _wgan_crit_block(hidden * 2, 1, final=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _flat(self.crit(x))


def _depth(image_size: int, n_layers: int | None) -> int:
    if n_layers is not None:
        return int(n_layers)
    k = math.log2(image_size / 4)
    if k < 1 or k != int(k):
        raise ValueError(f"image_size {image_size} is not 4 * 2^k (k >= 1); give n_layers and the final layer")
    return int(k)


@register_arch("dcgan-generator")
class DCGANGenerator(nn.Module):
    """pytorch/examples DCGAN generator (keys ``main.i``), any width ``ngf``, depth and channel count ``nc``.

    ``ConvT(nz, ngf*2^(L-1), 4, 1, 0) BN ReLU``, then ``L-1`` blocks ``ConvT(., ./2, 4, 2, 1) BN ReLU``, then
    ``ConvT(ngf, nc, final_kernel, final_stride, final_padding) Tanh``. ``L = log2(image_size / 4)`` unless
    ``n_layers`` is given (64x64: L = 4). ``z`` may be ``(N, nz)`` or ``(N, nz, 1, 1)``.
    """

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, image_size: int = 64, n_layers: int | None = None,
                 final_kernel: int = 4, final_stride: int = 2, final_padding: int = 1, bias: bool = False):
        super().__init__()
        L = _depth(image_size, n_layers)
        self.nz = nz
        ch = ngf * 2 ** (L - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=bias), nn.BatchNorm2d(ch), nn.ReLU(True)]
        for _ in range(L - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=bias), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, nc, final_kernel, final_stride, final_padding, bias=bias), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.reshape(z.shape[0], self.nz, 1, 1))


@register_arch("dcgan-discriminator")
class DCGANDiscriminator(nn.Module):
    """pytorch/examples DCGAN discriminator (keys ``main.i``), any width ``ndf``, depth and channel count ``nc``.

    ``Conv(nc, ndf, 4, 2, 1) LReLU(0.2)``, then ``L-1`` blocks ``Conv(., 2., 4, 2, 1) BN LReLU(0.2)``, then
    ``Conv(ndf*2^(L-1), 1, final_kernel, final_stride, final_padding)`` [+ ``Sigmoid`` when ``prob``].
    ``L = log2(image_size / 4)`` unless ``n_layers`` is given. Output shape ``(N,)`` as in pytorch/examples.
    """

    def __init__(self, nc: int = 3, ndf: int = 64, image_size: int = 64, n_layers: int | None = None,
                 final_kernel: int = 4, final_stride: int = 1, final_padding: int = 0, bias: bool = False,
                 prob: bool = False):
        super().__init__()
        L = _depth(image_size, n_layers)
        layers: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=bias), nn.LeakyReLU(0.2, inplace=True)]
        ch = ndf
        for _ in range(L - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=bias), nn.BatchNorm2d(ch * 2),
                       nn.LeakyReLU(0.2, inplace=True)]
            ch *= 2
        layers.append(nn.Conv2d(ch, 1, final_kernel, final_stride, final_padding, bias=bias))
        if prob:
            layers.append(nn.Sigmoid())
        self.main = nn.Sequential(*layers)
        self.prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).reshape(-1)


@register_arch("diffusers-unet2d")
class DiffusersUNet2D(nn.Module):
    """A diffusers ``UNet2DModel`` built from its config (diffusers is an optional dependency: ``gpm[diffusers]``).

    ``forward(x, t)`` returns the UNet's output tensor (eps, x0 or v by the scheduler's ``prediction_type``) at the
    DDPM timestep ``t`` (a float index in [0, T-1]); state-dict keys are the UNet's under ``unet.``.
    """

    def __init__(self, config: dict):
        super().__init__()
        try:
            from diffusers import UNet2DModel
        except ImportError:  # pragma: no cover - depends on the environment
            from gpmcli.errors import UsageError

            raise UsageError("this checkpoint needs diffusers: pip install 'gpm[diffusers]'") from None
        self.unet = UNet2DModel.from_config(dict(config))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        return self.unet(x, t.reshape(-1)).sample
