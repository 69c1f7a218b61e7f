"""The SDE base class: the Gaussian-kernel interface every SDE of :mod:`gpmcli.fields.sde` implements, the scores it
gives a sigma-space denoiser, and the generic PC discretisation (docs/algorithms.md#2-sdes, #pc-sampler)."""

from __future__ import annotations

import math

import torch

from gpmcli.errors import UsageError
from gpmcli.fields import schedules
from gpmcli.fields.base import Denoiser, expand_sigma
from gpmcli.integrate import em_step


def _t64(t, like: torch.Tensor | None = None) -> torch.Tensor:
    dev = like.device if like is not None else None
    return torch.as_tensor(t, dtype=torch.float64, device=dev)


class SDE:
    """Forward SDE ``dx = f(x, t) dt + g(t) dw`` on t in [0, T = 1] with a Gaussian kernel."""

    name = "sde"
    T = 1.0
    eps = 1e-3

    def __init__(self, n: int = 1000):
        if n < 1:
            raise UsageError("--steps must be >= 1")
        self.N = int(n)

    # -- kernel ---------------------------------------------------------------------------------------------------
    def marginal(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        """``(m(t), s(t))``: mean coefficient and std of ``x_t | x0`` (float64)."""
        raise NotImplementedError

    def sigma(self, t) -> torch.Tensor:
        """Noise level in sigma-space, ``s(t) / m(t)``."""
        m, s = self.marginal(t)
        return s / m

    def t_of_sigma(self, sigma) -> torch.Tensor:
        raise NotImplementedError

    def f(self, x: torch.Tensor, t) -> torch.Tensor:
        raise NotImplementedError

    def g2(self, t) -> torch.Tensor:
        raise NotImplementedError

    def g(self, t) -> torch.Tensor:
        return torch.sqrt(self.g2(t))

    @property
    def prior_std(self) -> float:
        raise NotImplementedError

    # -- fields ---------------------------------------------------------------------------------------------------
    def score(self, den: Denoiser, x: torch.Tensor, t) -> torch.Tensor:
        """``grad log p_t(x)`` from a sigma-space denoiser (t scalar or (B,))."""
        m, s = self.marginal(_t64(t, x))
        return self.score_ms(den, x, m, s)

    @staticmethod
    def score_ms(den: Denoiser, x: torch.Tensor, m, s) -> torch.Tensor:
        """Score of ``x = m x0 + s z`` given the kernel coefficients (float64 scalars or (B,) tensors)."""
        m, s = _t64(m, x), _t64(s, x)
        d = SDE.denoise_ms(den, x, m, s)
        return (expand_sigma(m, x) * d - x) / expand_sigma(s, x) ** 2

    @staticmethod
    def denoise_ms(den: Denoiser, x: torch.Tensor, m, s) -> torch.Tensor:
        """Tweedie's posterior mean ``E[x0 | x_t = x]``."""
        m, s = _t64(m, x), _t64(s, x)
        sig = (s / m)
        if sig.ndim == 0:
            sig = sig.expand(x.shape[0])
        return den(x / expand_sigma(m, x), sig.to(x.dtype))

    def reverse_drift(self, den: Denoiser, x: torch.Tensor, t, probability_flow: bool = False) -> torch.Tensor:
        """``f - g^2 s`` (reverse SDE) or ``f - g^2 s / 2`` (probability-flow ODE), per unit forward time."""
        t = _t64(t, x)
        w = 0.5 if probability_flow else 1.0
        return self.f(x, t) - w * expand_sigma(self.g2(t), x) * self.score(den, x, t)

    # -- discrete ladder ------------------------------------------------------------------------------------------
    def discrete_marginal(self, i: int) -> tuple[float, float]:
        """Kernel ``(m_i, s_i)`` of level ``i`` (0 = least noise) of the N-level ladder."""
        raise NotImplementedError

    def timesteps(self, device=None) -> torch.Tensor:
        """The reverse-time grid ``linspace(T, eps, N)`` (float64)."""
        return schedules.sde_timesteps(self.T, self.eps, self.N, device)

    def describe(self) -> dict:
        raise NotImplementedError

    # -- PC discretisation (level ``lvl`` = N - 1 - i at grid time t_i) --------------------------------------------
    def euler_maruyama_step(self, den: Denoiser, x, t: float, lvl: int, xi):
        """``x_mean = x - (f - g^2 s) dt``, ``x = x_mean + g sqrt(dt) xi`` with ``dt = 1/N``."""
        dt = 1.0 / self.N
        return em_step(x, self.reverse_drift(den, x, t), -dt, float(self.g(t)) * math.sqrt(dt), xi)

    def reverse_diffusion_step(self, den: Denoiser, x, t: float, lvl: int, xi):
        """The generic discretisation ``f_i = f dt``, ``G_i = g sqrt(dt)``: ``x_mean = x - f_i + G_i^2 s``."""
        dt = 1.0 / self.N
        g2 = float(self.g2(t))
        return em_step(x, -self.f(x, t) + g2 * self.score(den, x, t), dt, math.sqrt(g2 * dt), xi)

    def ancestral_step(self, den: Denoiser, x, lvl: int, xi, **ddpm):
        raise UsageError("the ancestral predictor is defined for --sde ve and vp only")

    def corrector_alpha(self, lvl: int) -> float:
        """``alpha_i`` of the Langevin corrector's step size ``2 alpha_i (r ||xi|| / ||s||)^2``."""
        return float(self.alphas[lvl])
