"""Discriminator fields: the realness ``d(x, t)``, its per-sample input gradient, and the particle velocity.

docs/algorithms.md#4-discriminator-flow, #5-diffflow and #7-ddls. A discriminator checkpoint's config says how to read its network::

    "output": "logit" | "prob" | "critic",    # prob (a network ending in a sigmoid) becomes a logit
    "loss":   "vanilla" | "ipm" | "hinge",     # sets the particle velocity v = -grad c(f(x))
    "time":   null | {"kind": "flow-time" | "sigma", "n_steps", "eta", "family", "sigmas"},
    "real":   "high" (default) | "low"         # optional: which end of f means "real"

Network call: ``net(x)`` when ``time`` is null, else ``net(x, t)`` with ``t`` the flow time ``k/N`` (flow-time) or the
noise level ``sigma`` (sigma-conditioned); ``t`` is a tensor of shape ``(B,)``.

The *realness* ``r(x)`` is the oriented output: ``r = f`` (the logit, or a critic's raw score) unless the config says
``"real": "low"`` (GPM's IPM discriminators are trained low on real data, docs/algorithms.md#4-discriminator-flow), then ``r = -f``. Velocities in
terms of ``r``: vanilla ``sigmoid(-r) grad r`` (= ``-grad softplus(-f)``), IPM and hinge ``grad r``; with
``"real": "low"`` the IPM velocity is ``-grad f`` exactly as docs/algorithms.md#4-discriminator-flow writes it. DDLS uses ``d = r`` (docs/algorithms.md#7-ddls: the
pre-sigmoid logit, or a critic's raw output). DiffFlow uses ``grad r`` as the log-density-ratio gradient
``grad log(q/p)`` (logistic loss only).

Gradients are per sample (``grad`` of the batch sum; samples do not interact in an eval-mode network) and are correct
even when the caller runs under ``torch.inference_mode()`` or ``torch.no_grad()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from gpmcli.errors import UsageError
from gpmcli.fields.base import Component

log = logging.getLogger("gpm")

OUTPUTS = ("logit", "prob", "critic")
LOSSES = ("vanilla", "ipm", "hinge")
TIME_KINDS = (None, "flow-time", "sigma")
PROB_EPS = 1e-6  # probabilities are clamped to [eps, 1 - eps] before the logit


def input_grad(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fn(x), d sum(fn(x)) / dx)`` for a per-sample scalar function ``fn: (B, ...) -> (B,)``.

    Works under ``inference_mode``/``no_grad``: the input is cloned out of any inference tensor and the graph is built
    with grad mode forced on. Both results are detached.
    """
    with torch.inference_mode(False), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        y = fn(xg)
        if y.numel() != x.shape[0]:
            raise UsageError(f"expected one value per sample, got shape {tuple(y.shape)} for a batch of {x.shape[0]}")
        y = y.reshape(x.shape[0])
        (g,) = torch.autograd.grad(y.sum(), xg)
    return y.detach(), g.detach()


def prob_to_logit(p: torch.Tensor, eps: float = PROB_EPS) -> torch.Tensor:
    """``log p - log(1 - p)`` with ``p`` clamped to ``[eps, 1 - eps]`` (finite for a saturated sigmoid)."""
    p = p.clamp(eps, 1.0 - eps)
    return torch.log(p) - torch.log1p(-p)


class DiscriminatorField(nn.Module):
    """A discriminator seen as a field. Subclasses implement :meth:`realness`.

    ``k``/``n`` are the step index and the number of steps (flow time ``k/n``); ``sigma`` the noise level (a float or a
    ``(B,)`` tensor). Each subclass reads the time variable its training used and ignores the others.
    """

    loss: str = "vanilla"
    time: dict | None = None

    def realness(self, x: torch.Tensor, *, k: int | None = None, n: int | None = None,
                 sigma: torch.Tensor | float | None = None) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def grad(self, x: torch.Tensor, **t) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r(x), grad_x r(x))``, per sample."""
        return input_grad(lambda xx: self.realness(xx, **t), x)

    def velocity(self, x: torch.Tensor, **t) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r(x), v(x))`` with the particle velocity ``v = -grad c(f(x))`` of the loss (docs/algorithms.md#4-discriminator-flow)."""
        r, g = self.grad(x, **t)
        return r, velocity_from_grad(self.loss, r, g)


def velocity_from_grad(loss: str, r: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Particle velocity from the realness ``r`` and its gradient ``g``: vanilla ``sigmoid(-r) g``, IPM/hinge ``g``."""
    if loss == "vanilla":
        return torch.sigmoid(-r).reshape(-1, *([1] * (g.ndim - 1))).to(g.dtype) * g
    if loss in ("ipm", "hinge"):
        return g
    raise UsageError(f"unknown discriminator loss {loss!r}; expected one of {', '.join(LOSSES)}")


def _logit_module(net: nn.Module) -> nn.Module | None:
    """The network without its final sigmoid when that is visible (an ``nn.Sequential`` ending in ``nn.Sigmoid``):
    an exact logit, no clamping needed."""
    if isinstance(net, nn.Sequential) and len(net) > 1 and isinstance(net[-1], nn.Sigmoid):
        return net[:-1]
    return None


class NetDiscriminator(DiscriminatorField):
    """A discriminator network read through its config (output, loss, time, orientation, input shape)."""

    def __init__(self, net: nn.Module, *, output: str = "logit", loss: str = "vanilla", time: dict | None = None,
                 real: str = "high", data_shape: tuple[int, ...] | None = None):
        super().__init__()
        if output not in OUTPUTS:
            raise UsageError(f"discriminator output {output!r}: expected one of {', '.join(OUTPUTS)}")
        if loss not in LOSSES:
            raise UsageError(f"discriminator loss {loss!r}: expected one of {', '.join(LOSSES)}")
        kind = (time or {}).get("kind")
        if kind not in TIME_KINDS:
            raise UsageError(f"discriminator time kind {kind!r}: expected flow-time, sigma or null")
        if real not in ("high", "low"):
            raise UsageError(f"discriminator 'real' must be high or low, not {real!r}")
        self.net = net
        self.output, self.loss, self.time, self.sign = output, loss, time or None, (1.0 if real == "high" else -1.0)
        self.data_shape = tuple(data_shape) if data_shape else None
        # a prob network whose sigmoid we can see is evaluated without it (exact logit, no clamping)
        self._logit_net = _logit_module(net) if output == "prob" else None

    def raw(self, x: torch.Tensor, *, k: int | None = None, n: int | None = None,
            sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """The network's logit (or critic score), shape ``(B,)``."""
        if self.data_shape and tuple(x.shape[1:]) != self.data_shape and x[0].numel() == _numel(self.data_shape):
            x = x.reshape(x.shape[0], *self.data_shape)
        net = self._logit_net if self._logit_net is not None else self.net
        kind = self.time["kind"] if self.time else None
        if kind is None:
            out = net(x)
        elif kind == "flow-time":
            if k is None:
                raise UsageError("this discriminator is conditioned on flow time: the sampler must pass the step")
            nn_ = n or int(self.time.get("n_steps") or 0)
            if not nn_:
                raise UsageError("flow-time discriminator without n_steps in its config")
            out = net(x, torch.full((x.shape[0],), k / nn_, dtype=x.dtype, device=x.device))
        else:
            if sigma is None:
                raise UsageError("this discriminator is conditioned on the noise level: the sampler must pass sigma")
            s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
            out = net(x, s.expand(x.shape[0]) if s.ndim == 0 else s.reshape(-1))
        out = out.reshape(x.shape[0], -1)
        if out.shape[1] != 1:
            raise UsageError(f"the discriminator returned {out.shape[1]} values per sample; expected one")
        out = out[:, 0]
        if self.output == "prob" and self._logit_net is None:
            out = prob_to_logit(out)
        return out

    def realness(self, x, **t):
        return self.sign * self.raw(x, **t)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def discriminator_from_component(comp: Component) -> DiscriminatorField:
    """The field of a ``discriminator`` component (a network read through its config, or an analytic oracle)."""
    if comp.role != "discriminator":
        raise UsageError(f"{comp.ref} is a {comp.role} checkpoint, not a discriminator")
    if isinstance(comp.module, DiscriminatorField):
        return comp.module
    cfg = comp.config
    return NetDiscriminator(comp.module, output=cfg.get("output", "logit"), loss=cfg.get("loss", "vanilla"),
                            time=cfg.get("time"), real=cfg.get("real", "high"),
                            data_shape=tuple(cfg.get("data", {}).get("shape") or ()) or None)
