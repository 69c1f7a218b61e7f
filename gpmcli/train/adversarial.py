"""Adversarial losses and the shared machinery of gpm's GAN-family trainers (ALGORITHMS.md sections 4, 6 and 8).

Losses ``(a, b, c)`` of section 4: the discriminator minimises ``mean a(f(fake)) - mean b(f(real)) [+ GP]``; particles
and generators minimise ``mean c(f(x))``.

- ``vanilla``: ``a = softplus(u)``, ``b = -softplus(-u)``, ``c = softplus(-u)`` (logistic loss, non-saturating
  generator loss; ``f`` is the logit of "real", high on real data);
- ``ipm``: ``a = -u``, ``b = -u``, ``c = u`` (``f`` low on real data, as GPM trains it);
- ``hinge``: ``a = relu(1 + u)``, ``b = -relu(1 - u)``, ``c = -u`` (high on real).

:func:`disc_config` records the matching reading convention for :mod:`gpmcli.fields.discriminator` (``output``,
``loss``, ``real``), so a trained discriminator is read the way it was trained.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from gpmcli.errors import UsageError

LOSSES = ("vanilla", "ipm", "hinge")


def _check(loss: str) -> None:
    if loss not in LOSSES:
        raise UsageError(f"unknown adversarial loss {loss!r}; expected one of {', '.join(LOSSES)}")


def loss_a(loss: str, u: torch.Tensor) -> torch.Tensor:
    _check(loss)
    return {"vanilla": lambda: F.softplus(u), "ipm": lambda: -u, "hinge": lambda: F.relu(1 + u)}[loss]()


def loss_b(loss: str, u: torch.Tensor) -> torch.Tensor:
    _check(loss)
    return {"vanilla": lambda: -F.softplus(-u), "ipm": lambda: -u, "hinge": lambda: -F.relu(1 - u)}[loss]()


def loss_c(loss: str, u: torch.Tensor) -> torch.Tensor:
    _check(loss)
    return {"vanilla": lambda: F.softplus(-u), "ipm": lambda: u, "hinge": lambda: -u}[loss]()


def discriminator_loss(loss: str, f_fake: torch.Tensor, f_real: torch.Tensor) -> torch.Tensor:
    """``mean a(f(fake)) - mean b(f(real))``."""
    return loss_a(loss, f_fake).mean() - loss_b(loss, f_real).mean()


def particle_loss(loss: str, f_fake: torch.Tensor) -> torch.Tensor:
    """``mean c(f(x))``: what generators (and particles) minimise."""
    return loss_c(loss, f_fake).mean()


def gradient_penalty(fn: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     alpha: torch.Tensor, center: float = 0.0) -> torch.Tensor:
    """``mean (|grad f(x_hat)| - center)^2`` at ``x_hat = alpha real + (1 - alpha) fake`` (``alpha`` per sample,
    in [0, 1]); ``center = 0`` is the zero-centred penalty GPM uses, ``1`` WGAN-GP's. Differentiable in the network."""
    a = alpha.reshape(-1, *([1] * (real.ndim - 1))).to(real.dtype)
    xh = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
    out = fn(xh).reshape(-1)
    (g,) = torch.autograd.grad(out.sum(), xh, create_graph=True)
    return (g.reshape(g.shape[0], -1).norm(dim=1) - center).pow(2).mean()


def disc_config(loss: str) -> dict:
    """How :mod:`gpmcli.fields.discriminator` must read a network trained with ``loss``."""
    _check(loss)
    return {"output": "logit" if loss == "vanilla" else "critic", "loss": loss,
            "real": "low" if loss == "ipm" else "high"}


def optimal_vanilla_logit(log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """The logistic-loss optimum ``f* = log q - log p`` (real density q, fake density p), for tests and docs."""
    return log_q - log_p


# ---- helpers shared by the GAN-family trainers ------------------------------------------------------------------------

def build_net(name: str, **kwargs):
    """A registered architecture and its ``arch`` config entry."""
    from gpmcli.nets import build_arch

    arch = {"name": name, "kwargs": kwargs}
    return build_arch(arch), arch


def adam(params, lr: float, betas=(0.5, 0.999)) -> torch.optim.Adam:
    """Adam with GAN betas (0.5, 0.999) by default (ALGORITHMS.md section 8)."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas))
