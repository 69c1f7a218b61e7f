"""VE, VP and sub-VP SDEs (Song et al. 2021; docs/algorithms.md#2-sdes) on top of a sigma-space denoiser.

Every SDE here has a Gaussian perturbation kernel ``x_t = m(t) x0 + s(t) z``. In sigma-space that is
``x_t / m(t) = x0 + sigma(t) z`` with ``sigma(t) = s(t) / m(t)``, so the score of the SDE's marginal is obtained from
any :class:`~gpmcli.fields.base.Denoiser` (whatever network parameterisation produced it) as

    grad log p_t(x) = (m(t) D(x / m(t), sigma(t)) - x) / s(t)^2.

This is the map that lets a VE/EDM model run in VP samplers and a VP (DDPM) model in sigma-space samplers.
Time coefficients are computed in float64 and cast to the state's dtype.

Each SDE also carries its discretisation for the PC sampler (:func:`gpmcli.samplers.pc.pc_sample`): predictor steps
:meth:`SDE.euler_maruyama_step`, :meth:`SDE.reverse_diffusion_step`, :meth:`SDE.ancestral_step` and the corrector
weight :meth:`SDE.corrector_alpha` (docs/algorithms.md#pc-sampler). Every step is :func:`gpmcli.integrate.em_step`
and returns ``(x, x_mean)``.
"""

from __future__ import annotations

import math

import torch

from gpmcli.errors import UsageError
from gpmcli.fields import schedules
from gpmcli.fields.base import Denoiser, expand_sigma
from gpmcli.fields.sde_base import SDE, _t64
from gpmcli.integrate import em_step


class VESDE(SDE):
    """``sigma(t) = smin (smax/smin)^t``, ``f = 0``, ``g = sigma(t) sqrt(2 ln(smax/smin))``."""

    name = "ve"
    eps = 1e-5

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, n: int = 1000):
        super().__init__(n)
        if not 0 < sigma_min < sigma_max:
            raise UsageError(f"VE SDE needs 0 < sigma_min < sigma_max (got {sigma_min}, {sigma_max})")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)
        self.discrete_sigmas = schedules.ve_discrete_sigmas(sigma_min, sigma_max, self.N)

    def marginal(self, t):
        t = _t64(t)
        s = self.sigma_min * torch.exp(t * self._log_ratio)
        return torch.ones_like(s), s

    def t_of_sigma(self, sigma):
        return torch.log(_t64(sigma) / self.sigma_min) / self._log_ratio

    def f(self, x, t):
        return torch.zeros_like(x)

    def g2(self, t):
        s = self.marginal(t)[1]
        return s**2 * 2 * self._log_ratio

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def discrete_marginal(self, i: int):
        return 1.0, float(self.discrete_sigmas[i])

    def reverse_diffusion_step(self, den, x, t, lvl, xi):
        """``f_i = 0``, ``G_i^2 = sigma_i^2 - sigma_{i-1}^2`` (sigma_{-1} = 0): Song et al. (2021) Algorithm 2, lines 3-5."""
        sig = float(self.discrete_sigmas[lvl])
        adj = float(self.discrete_sigmas[lvl - 1]) if lvl > 0 else 0.0
        g2 = sig**2 - adj**2
        return em_step(x, g2 * self.score(den, x, t), 1.0, math.sqrt(g2), xi)

    def ancestral_step(self, den, x, lvl, xi, **ddpm):
        """NCSN's ancestral step: mean ``x + (sigma_i^2 - sigma_{i-1}^2) s``, std
        ``sqrt(sigma_{i-1}^2 (sigma_i^2 - sigma_{i-1}^2) / sigma_i^2)``, score at the level's own marginal."""
        m, sd = self.discrete_marginal(lvl)
        s = self.score_ms(den, x, m, sd)
        sig = float(self.discrete_sigmas[lvl])
        adj = float(self.discrete_sigmas[lvl - 1]) if lvl > 0 else 0.0
        std = math.sqrt(adj**2 * (sig**2 - adj**2) / sig**2)
        return em_step(x, (sig**2 - adj**2) * s, 1.0, std, xi)

    def corrector_alpha(self, lvl):
        return 1.0

    def describe(self):
        return {"sde": "ve", "sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "N": self.N, "eps": self.eps}


class VPSDE(SDE):
    """``beta(t) = b0 + t (b1 - b0)``, ``f = -beta x / 2``, ``g = sqrt(beta)``; ladder ``beta_i = linspace(b0/N, b1/N)``."""

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, n: int = 1000):
        super().__init__(n)
        if not 0 < beta_min < beta_max:
            raise UsageError(f"VP SDE needs 0 < beta_min < beta_max (got {beta_min}, {beta_max})")
        self.beta_0, self.beta_1 = float(beta_min), float(beta_max)
        if self.beta_1 / self.N >= 1.0:
            raise UsageError(f"VP ladder with N = {self.N} has beta_N = beta_max / N >= 1; use --steps > {self.beta_1:g}")
        self.discrete_betas = schedules.vp_discrete_betas(beta_min, beta_max, self.N)
        self.alphas = 1.0 - self.discrete_betas
        self.alphas_cumprod = schedules.alphas_cumprod(self.discrete_betas)

    def _log_mean(self, t):
        t = _t64(t)
        return -0.25 * t**2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def beta(self, t):
        return self.beta_0 + _t64(t) * (self.beta_1 - self.beta_0)

    def marginal(self, t):
        lm = self._log_mean(t)
        return torch.exp(lm), torch.sqrt(-torch.expm1(2 * lm))

    def t_of_sigma(self, sigma):
        # sigma^2 = e^{-2 lm} - 1  ->  (b1-b0)/2 t^2 + b0 t - ln(1 + sigma^2) = 0
        c = torch.log1p(_t64(sigma) ** 2)
        a = 0.5 * (self.beta_1 - self.beta_0)
        return (-self.beta_0 + torch.sqrt(self.beta_0**2 + 4 * a * c)) / (2 * a)

    def f(self, x, t):
        return -0.5 * expand_sigma(self.beta(t), x) * x

    def g2(self, t):
        return self.beta(t)

    @property
    def prior_std(self) -> float:
        return 1.0

    def discrete_marginal(self, i: int):
        a = float(self.alphas_cumprod[i])
        return math.sqrt(a), math.sqrt(1.0 - a)

    def reverse_diffusion_step(self, den, x, t, lvl, xi):
        """``f_i = (sqrt(alpha_i) - 1) x``, ``G_i = sqrt(beta_i)``: Song et al. (2021) Algorithm 3, lines 3-5."""
        beta = float(self.discrete_betas[lvl])
        drift = (1.0 - math.sqrt(1.0 - beta)) * x + beta * self.score(den, x, t)  # -f_i + G_i^2 s
        return em_step(x, drift, 1.0, math.sqrt(beta), xi)

    def ancestral_step(self, den, x, lvl, xi, variance: str = "large", clip_x0: bool = False, data_range=None):
        """DDPM's ancestral step: ``(x + beta_i s) / sqrt(1 - beta_i)`` with variance beta_i; ``variance="small"``
        (beta-tilde) or ``clip_x0`` use the posterior ``q(x_{i-1} | x_i, x0_hat)`` with the (clipped) x0 estimate."""
        m, sd = self.discrete_marginal(lvl)
        s = self.score_ms(den, x, m, sd)
        beta = float(self.discrete_betas[lvl])
        if variance == "large" and not clip_x0:
            return em_step(x, (x + beta * s) / math.sqrt(1.0 - beta) - x, 1.0, math.sqrt(beta), xi)
        ac = m * m
        ac_prev = float(self.alphas_cumprod[lvl - 1]) if lvl > 0 else 1.0
        x0 = (x + sd * sd * s) / m
        if clip_x0:
            lo, hi = data_range or (-1.0, 1.0)
            x0 = x0.clamp(lo, hi)
        mean = (math.sqrt(ac_prev) * beta / (1 - ac)) * x0 + (math.sqrt(1 - beta) * (1 - ac_prev) / (1 - ac)) * x
        var = beta if variance == "large" else max((1 - ac_prev) / (1 - ac) * beta, 1e-20)
        return em_step(x, mean - x, 1.0, math.sqrt(var), xi)

    def describe(self):
        return {"sde": "vp", "beta_min": self.beta_0, "beta_max": self.beta_1, "N": self.N, "eps": self.eps}


class SubVPSDE(VPSDE):
    """Drift as VP, ``g^2 = beta(t) (1 - e^{-2 b0 t - (b1-b0) t^2})``, std ``1 - e^{2 lm}``."""

    name = "subvp"

    def marginal(self, t):
        lm = self._log_mean(t)
        return torch.exp(lm), -torch.expm1(2 * lm)

    def t_of_sigma(self, sigma):
        # sigma = (1 - a^2) / a with a = e^{lm}:  a = (-sigma + sqrt(sigma^2 + 4)) / 2
        sig = _t64(sigma)
        a = (-sig + torch.sqrt(sig**2 + 4)) / 2
        c = -torch.log(a)  # = -lm = a2 t^2 + b0/2 t
        a2 = 0.25 * (self.beta_1 - self.beta_0)
        return (-0.5 * self.beta_0 + torch.sqrt(0.25 * self.beta_0**2 + 4 * a2 * c)) / (2 * a2)

    def g2(self, t):
        t = _t64(t)
        return self.beta(t) * -torch.expm1(-2 * self.beta_0 * t - (self.beta_1 - self.beta_0) * t**2)

    def discrete_marginal(self, i: int):
        raise UsageError("the sub-VP SDE has no discrete ladder; use --predictor euler-maruyama or reverse-diffusion")

    reverse_diffusion_step = SDE.reverse_diffusion_step  # no discrete ladder: the generic discretisation
    ancestral_step = SDE.ancestral_step

    def describe(self):
        return {"sde": "subvp", "beta_min": self.beta_0, "beta_max": self.beta_1, "N": self.N, "eps": self.eps}


SDE_NAMES = ("ve", "vp", "subvp")


def ve_sigma_max_of(den) -> float:
    """The VE samplers' default top level: 50 clipped to the denoiser's trained range, or the analytic target's own
    (scaled with its extent, :class:`gpmcli.fields.toy.GaussianMixture`)."""
    own = getattr(den, "ve_sigma_max", None)
    return float(own) if own else min(50.0, getattr(den, "sigma_max", 50.0))


def make_sde(name: str, n: int, den: Denoiser | None = None, *, sigma_min: float | None = None,
             sigma_max: float | None = None, config: dict | None = None) -> SDE:
    """The SDE ``name`` with N levels. VE takes its sigma range from the flags, else from the network's trained range
    when its parameterization says it is a VE network (``"sde": "ve"``, e.g. a converted ScoreSdeVe model), else from
    [0.01, 50] clipped to the denoiser's trained range (an analytic target scales the 50 with its extent). VP/sub-VP
    take beta_min/beta_max from a linear DDPM schedule in the score config when
    there is one (score_sde convention: b0 = N_train beta_start, b1 = N_train beta_end), else (0.1, 20)."""
    if name == "ve":
        if ((config or {}).get("parameterization") or {}).get("sde") == "ve":  # a VE network: its own trained range
            lo = sigma_min if sigma_min is not None else getattr(den, "sigma_min", 0.01)
            hi = sigma_max if sigma_max is not None else getattr(den, "sigma_max", 50.0)
            return VESDE(lo, hi, n)
        lo = sigma_min if sigma_min is not None else max(0.01, getattr(den, "sigma_min", 0.01))
        hi = sigma_max if sigma_max is not None else ve_sigma_max_of(den)
        return VESDE(lo, hi, n)
    if name in ("vp", "subvp"):
        b0, b1 = 0.1, 20.0
        sched = ((config or {}).get("parameterization") or {}).get("schedule") or {}
        if isinstance(sched, dict) and sched.get("kind", "linear") == "linear" and "beta_start" in sched:
            t_train = int(sched.get("num_train_timesteps", 1000))
            b0, b1 = float(sched["beta_start"]) * t_train, float(sched["beta_end"]) * t_train
        return (VPSDE if name == "vp" else SubVPSDE)(b0, b1, n)
    raise UsageError(f"--sde {name!r}: choose one of {', '.join(SDE_NAMES)}")
