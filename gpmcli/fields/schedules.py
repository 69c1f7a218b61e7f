"""Noise schedules as data: every sigma ladder, time grid and DDPM beta schedule gpm uses, in one place.

Each function returns plain numbers (a float64 tensor or a list); samplers, SDEs, converters and trainers take their
grids from here and never rebuild one by hand. See docs/algorithms.md#2-sdes and #3-score-based-samplers.

- :func:`edm_sigmas`: the EDM rho-ladder (Karras et al. 2022, eq. 5), optionally followed by 0; :func:`rho_interp`
  the same curve at any fractions.
- :func:`geometric`: a geometric ladder from ``start`` to ``end`` (NCSN's annealed Langevin levels).
- :func:`ve_discrete_sigmas`, :func:`vp_discrete_betas`, :func:`sde_timesteps`: the N-level ladders and reverse-time
  grid of the VE / VP / sub-VP SDEs (score_sde conventions).
- :func:`ddpm_betas` (``linear``, ``scaled_linear``, ``squaredcos_cap_v2``/``cosine``), :func:`alphas_cumprod` and
  :func:`alphas_cumprod_from_schedule` (a checkpoint's ``schedule`` object, explicit ``alphas_cumprod`` included).
"""

from __future__ import annotations

import math

import torch

from gpmcli.errors import UsageError

DDPM_BETA_KINDS = ("linear", "scaled_linear", "squaredcos_cap_v2", "cosine")


def edm_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
               device: torch.device | str = "cpu", append_zero: bool = True) -> torch.Tensor:
    """Karras et al. (2022) ladder: ``(smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho``, i = 0..n-1,
    followed by 0 when ``append_zero`` (float64, decreasing)."""
    i = torch.arange(n, dtype=torch.float64, device=device)
    s = rho_interp(i / max(n - 1, 1), sigma_min, sigma_max, rho)
    if append_zero:
        s = torch.cat([s, s.new_zeros(1)])
    return s


def rho_interp(u, sigma_min: float, sigma_max: float, rho: float = 7.0):
    """The rho-ladder at fractions ``u`` in [0, 1] (0: sigma_max, 1: sigma_min), e.g. random training noise levels:
    ``(smax^(1/rho) + u (smin^(1/rho) - smax^(1/rho)))^rho``."""
    inv = 1.0 / rho
    return (sigma_max**inv + u * (sigma_min**inv - sigma_max**inv)) ** rho


def geometric(start: float, end: float, n: int) -> list[float]:
    """``n`` levels from ``start`` to ``end`` with a constant ratio: ``exp(ln start + k/(n-1) (ln end - ln start))``
    (a single level is ``end``)."""
    if n == 1:
        return [float(end)]
    return [math.exp(math.log(start) + k / (n - 1) * (math.log(end) - math.log(start))) for k in range(n)]


def ve_discrete_sigmas(sigma_min: float, sigma_max: float, n: int) -> torch.Tensor:
    """The VE SDE's N-level ladder, increasing from sigma_min to sigma_max (``exp(linspace(ln smin, ln smax, N))``,
    float64)."""
    return torch.exp(torch.linspace(math.log(sigma_min), math.log(sigma_max), n, dtype=torch.float64))


def vp_discrete_betas(beta_min: float, beta_max: float, n: int) -> torch.Tensor:
    """The VP SDE's N-level ladder ``beta_i = linspace(beta_min / N, beta_max / N, N)`` (float64)."""
    return torch.linspace(beta_min / n, beta_max / n, n, dtype=torch.float64)


def sde_timesteps(t_end: float, eps: float, n: int, device=None) -> torch.Tensor:
    """The reverse-time grid ``linspace(T, eps, N)`` the PC samplers walk (float64)."""
    return torch.linspace(t_end, eps, n, dtype=torch.float64, device=device)


def cosine_betas(n: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: ``beta_i = min(1 - f((i+1)/n) / f(i/n), max_beta)``,
    ``f(u) = cos((u + s) / (1 + s) pi / 2)^2`` (diffusers' ``squaredcos_cap_v2``)."""
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return torch.tensor([min(1 - f((i + 1) / n) / f(i / n), max_beta) for i in range(n)], dtype=torch.float64)


def ddpm_betas(kind: str, n: int, beta_start: float = 1e-4, beta_end: float = 0.02, s: float = 0.008) -> torch.Tensor:
    """The ``n`` DDPM betas of a named schedule (float64): ``linear`` (linspace of beta), ``scaled_linear`` (linspace
    of sqrt(beta), squared) or ``squaredcos_cap_v2`` / ``cosine`` (:func:`cosine_betas`)."""
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, n, dtype=torch.float64)
    if kind == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float64) ** 2
    if kind in ("squaredcos_cap_v2", "cosine"):
        return cosine_betas(n, s)
    raise UsageError(f"unknown beta schedule {kind!r}: {', '.join(DDPM_BETA_KINDS)}")


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """``alpha_bar_k = prod_{j <= k} (1 - beta_j)``."""
    return torch.cumprod(1.0 - betas, 0)


def alphas_cumprod_from_schedule(schedule: dict) -> torch.Tensor:
    """Discrete DDPM ``alpha_bar_k`` (k = 0..T-1, float64) from a checkpoint config's ``schedule`` object: explicit
    ``alphas_cumprod`` (or ``kind = "alphas_cumprod"`` with ``values``), else a named beta schedule."""
    if not isinstance(schedule, dict):
        raise UsageError("eps parameterization needs a 'schedule' object")
    if "alphas_cumprod" in schedule or schedule.get("kind") == "alphas_cumprod":
        ac = torch.as_tensor(schedule.get("alphas_cumprod", schedule.get("values")), dtype=torch.float64)
    else:
        kind = schedule.get("kind", "linear")
        if kind not in DDPM_BETA_KINDS:
            raise UsageError(f"unknown eps schedule kind {kind!r}: linear, scaled_linear, cosine or alphas_cumprod")
        b0, b1 = float(schedule.get("beta_start", 1e-4)), float(schedule.get("beta_end", 0.02))
        betas = ddpm_betas(kind, int(schedule.get("num_train_timesteps", 1000)), b0, b1, float(schedule.get("s", 0.008)))
        ac = alphas_cumprod(betas)
    if ac.ndim != 1 or len(ac) < 2 or not bool(((ac > 0) & (ac < 1)).all()) or not bool((ac[1:] < ac[:-1]).all()):
        raise UsageError("eps schedule: alphas_cumprod must be a decreasing sequence in (0, 1)")
    return ac
