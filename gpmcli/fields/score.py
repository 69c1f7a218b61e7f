"""Data-score fields from any parameterisation, reduced to one denoiser ``D(x, sigma)`` (docs/algorithms.md#1-score-parameterisations).

A score checkpoint's config says how its network's output maps to a denoiser::

    "parameterization": {"type": "edm", "sigma_data": 0.5, "sigma_min": 0.002, "sigma_max": 80}

Network calling convention for every type: ``net(x_in, c_noise) -> output`` of x's shape. ``c_noise`` is what the
network was trained with, set by ``"noise_cond"``: ``"sigma"`` (default for ``score``), ``"log_sigma"``, ``"edm"``
(``ln(sigma)/4``, default for ``x0``) or, for ``eps``, the (fractional) training timestep ``t(sigma)``.

    {"type": "score", "sigma_min": 0.01, "sigma_max": 50, "noise_cond": "sigma"}          # D = x + sigma^2 s
    {"type": "x0", "sigma_min": 0.002, "sigma_max": 80, "noise_cond": "edm"}              # D = x0_hat
    {"type": "eps", "schedule": {"kind": "linear", "beta_start": 1e-4, "beta_end": 0.02,
                                 "num_train_timesteps": 1000}}                            # D = x - sigma eps_hat
"""

from __future__ import annotations

import torch
from torch import nn

from gpmcli.errors import UsageError
from gpmcli.fields.base import Component, Denoiser, expand_sigma
from gpmcli.fields.schedules import alphas_cumprod_from_schedule


class EDMDenoiser(Denoiser):
    """EDM preconditioning: ``D = c_skip x + c_out F(c_in x, c_noise)``, ``c_noise = ln(sigma) / 4``."""

    def __init__(self, net: nn.Module, sigma_data: float = 0.5, sigma_min: float = 0.002, sigma_max: float = 80.0):
        super().__init__()
        self.net = net
        self.sigma_data, self.sigma_min, self.sigma_max = float(sigma_data), float(sigma_min), float(sigma_max)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = expand_sigma(sigma, x)
        sd2 = self.sigma_data**2
        c_skip = sd2 / (s**2 + sd2)
        c_out = s * self.sigma_data / torch.sqrt(s**2 + sd2)
        c_in = 1.0 / torch.sqrt(s**2 + sd2)
        c_noise = torch.log(sigma.to(x.dtype)) / 4
        return c_skip * x + c_out * self.net(c_in * x, c_noise).to(x.dtype)


def _noise_cond(kind: str, sigma: torch.Tensor) -> torch.Tensor:
    if kind == "sigma":
        return sigma
    if kind == "log_sigma":
        return torch.log(sigma)
    if kind == "edm":
        return torch.log(sigma) / 4
    raise UsageError(f"unknown noise_cond {kind!r}: sigma, log_sigma or edm")


class ScoreDenoiser(Denoiser):
    """VE score network ``s(x, c(sigma))``: ``D = x + sigma^2 s``."""

    def __init__(self, net: nn.Module, sigma_min: float = 0.01, sigma_max: float = 50.0, sigma_data: float = 0.5,
                 noise_cond: str = "sigma"):
        super().__init__()
        self.net, self.noise_cond = net, noise_cond
        self.sigma_min, self.sigma_max, self.sigma_data = float(sigma_min), float(sigma_max), float(sigma_data)

    def forward(self, x, sigma):
        s = expand_sigma(sigma, x)
        return x + s**2 * self.net(x, _noise_cond(self.noise_cond, sigma.to(x.dtype))).to(x.dtype)


class X0Denoiser(Denoiser):
    """Network predicting clean data directly: ``D = net(x, c(sigma))``."""

    def __init__(self, net: nn.Module, sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = 0.5,
                 noise_cond: str = "edm"):
        super().__init__()
        self.net, self.noise_cond = net, noise_cond
        self.sigma_min, self.sigma_max, self.sigma_data = float(sigma_min), float(sigma_max), float(sigma_data)

    def forward(self, x, sigma):
        return self.net(x, _noise_cond(self.noise_cond, sigma.to(x.dtype))).to(x.dtype)


class EpsDenoiser(Denoiser):
    """DDPM epsilon network on a discrete ``alpha_bar`` schedule, seen in sigma-space.

    ``sigma_k = sqrt((1 - abar_k) / abar_k)``; a noise level ``sigma`` maps to the fractional timestep ``t(sigma)`` by
    linear interpolation of k against ``ln sigma_k`` (clamped to the trained range). With ``abar = 1 / (1 + sigma^2)``:
    ``D(x, sigma) = x - sigma eps_hat(sqrt(abar) x, t(sigma))``.
    """

    def __init__(self, net: nn.Module, alphas_cumprod: torch.Tensor, sigma_data: float = 0.5):
        super().__init__()
        self.net = net
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        log_sig = 0.5 * (torch.log1p(-ac) - torch.log(ac))
        self.register_buffer("log_sigmas", log_sig, persistent=False)
        self.sigma_min, self.sigma_max = float(log_sig[0].exp()), float(log_sig[-1].exp())
        self.sigma_data = float(sigma_data)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional training timestep for each sigma (float64)."""
        ls = self.log_sigmas
        if ls.device != sigma.device:
            ls = self.log_sigmas = ls.to(sigma.device)
        lsig = torch.minimum(torch.maximum(torch.log(sigma.to(torch.float64)), ls[0]), ls[-1])
        hi = torch.searchsorted(ls, lsig).clamp(1, len(ls) - 1)
        lo = hi - 1
        w = (lsig - ls[lo]) / (ls[hi] - ls[lo])
        return lo.to(torch.float64) + w

    def forward(self, x, sigma):
        s = expand_sigma(sigma, x)
        t = self.timestep(sigma)
        c_in = 1.0 / torch.sqrt(1.0 + s**2)
        eps = self.net(c_in * x, t.to(x.dtype)).to(x.dtype)
        return x - s * eps


class DiffusersUNet(nn.Module):
    """Adapter: ``net(x, t)`` returning a tensor, for a diffusers model whose forward returns ``.sample``."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x, t):
        out = self.unet(x, t)
        return getattr(out, "sample", out[0] if isinstance(out, tuple) else out)


def schedule_from_diffusers(scheduler_config: dict) -> dict:
    """A gpm ``schedule`` dict from a diffusers scheduler config (DDPM/DDIM ``beta_schedule`` names)."""
    cfg = dict(scheduler_config)
    if cfg.get("trained_betas") is not None:
        betas = torch.as_tensor(cfg["trained_betas"], dtype=torch.float64)
        return {"kind": "alphas_cumprod", "alphas_cumprod": torch.cumprod(1 - betas, 0).tolist()}
    kind = cfg.get("beta_schedule", "linear")
    if kind not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        raise UsageError(f"diffusers beta_schedule {kind!r} is not supported")
    if cfg.get("prediction_type", "epsilon") != "epsilon":
        raise UsageError(f"diffusers prediction_type {cfg.get('prediction_type')!r}: only 'epsilon' is supported")
    return {"kind": kind, "beta_start": float(cfg.get("beta_start", 1e-4)), "beta_end": float(cfg.get("beta_end", 0.02)),
            "num_train_timesteps": int(cfg.get("num_train_timesteps", 1000))}


def eps_component(net: nn.Module, scheduler_config: dict, *, data_shape, data_range=(-1.0, 1.0),
                  dataset: str | None = None, ref: str = "diffusers", arch: dict | None = None,
                  provenance: dict | None = None) -> Component:
    """A ``score`` Component (``eps`` parameterisation) from an epsilon network and a diffusers scheduler config.

    ``net`` is called as ``net(x, t)``; a diffusers ``UNet2DModel`` is wrapped so that it returns a tensor. The
    config carries the schedule, so ``denoiser_from_component`` turns it into a sigma-space denoiser.
    """
    if not isinstance(net, DiffusersUNet) and net.__class__.__module__.startswith("diffusers"):
        net = DiffusersUNet(net)
    schedule = schedule_from_diffusers(scheduler_config)
    ac = alphas_cumprod_from_schedule(schedule)
    log_sig = 0.5 * (torch.log1p(-ac) - torch.log(ac))
    config = {
        "gpm_format": 1, "role": "score",
        "arch": arch or {"name": type(net).__name__, "kwargs": {}},
        "parameterization": {"type": "eps", "schedule": schedule, "sigma_min": float(log_sig[0].exp()),
                             "sigma_max": float(log_sig[-1].exp()), "sigma_data": 0.5},
        "data": {"shape": list(data_shape), "range": list(data_range) if data_range else None, "dataset": dataset},
        "provenance": provenance or {"source": ref},
    }
    return Component(role="score", module=net, config=config, ref=ref)


def denoiser_from_component(comp: Component) -> Denoiser:
    """The denoiser of a ``score`` component, whatever its parameterisation."""
    if comp.role != "score":
        raise UsageError(f"{comp.ref} is a {comp.role} checkpoint, not a score network")
    if isinstance(comp.module, Denoiser):
        return comp.module
    p = comp.config.get("parameterization", {})
    kind = p.get("type")
    if kind == "edm":
        return EDMDenoiser(comp.module, p.get("sigma_data", 0.5), p.get("sigma_min", 0.002), p.get("sigma_max", 80.0))
    if kind == "score":
        return ScoreDenoiser(comp.module, p.get("sigma_min", 0.01), p.get("sigma_max", 50.0), p.get("sigma_data", 0.5),
                             p.get("noise_cond", "sigma"))
    if kind == "x0":
        return X0Denoiser(comp.module, p.get("sigma_min", 0.002), p.get("sigma_max", 80.0), p.get("sigma_data", 0.5),
                          p.get("noise_cond", "edm"))
    if kind == "eps":
        return EpsDenoiser(comp.module, alphas_cumprod_from_schedule(p.get("schedule")), p.get("sigma_data", 0.5))
    if kind == "analytic":
        raise UsageError(f"{comp.ref}: analytic score without an analytic module")
    raise UsageError(f"{comp.ref}: unsupported score parameterization {kind!r}")
