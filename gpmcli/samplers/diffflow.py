"""``--model diffflow``: DiffFlow (Zhang et al. 2023) in the explicit form of ALGORITHMS.md section 5.

    dx = [f + (beta - gamma + lam^2/2) s + (gamma - lam^2/2) grad d] dt + lam dW,   lam(t) = l * sqrt(2 gamma(t))

with ``s`` the data score and ``grad d`` the logistic discriminator's log-density-ratio gradient. The Fokker-Planck
velocity does not contain ``lam``: the particle marginals are the same for every ``l`` (Marginal Preserving
Property). Two families, one step each (:func:`diffflow_ve_step`, :func:`diffflow_kl_step`), both the shared
Euler-Maruyama step :func:`~gpmcli.samplers.integrate.em_step` with a DiffFlow drift:

- ``ve``: ``x <- x + 1/2 D [(1 + l^2) s + (1 - l^2) grad d] + l sqrt(D) xi``, ``D = sigma_k^2 - sigma_{k+1}^2``.
  ``l = 1`` is the VE reverse-diffusion predictor, ``l = 0`` the probability-flow Euler step plus ``1/2 D grad d``.
- ``kl``: ``x <- x + eta_k [(1 - l^2) grad d + l^2 s] + l sqrt(2 eta_k) xi``. ``l = 0`` is a noise-annealed
  Discriminator Flow, ``l = 1`` annealed Langevin.

The last step returns its noise-free mean (no extra network evaluation), as the PC sampler's denoising step does.
"""

from __future__ import annotations

import logging
import math

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.base import Bundle
from gpmcli.fields.discriminator import DiscriminatorField, discriminator_from_component
from gpmcli.fields.score import denoiser_from_component
from gpmcli.noise import BatchNoise
from gpmcli.samplers import SampleResult, SamplerSpec, param, register_kind
from gpmcli.samplers.integrate import edm_sigmas, em_step

log = logging.getLogger("gpm")

DEFAULT_STEPS = 200
DEFAULT_KL_ETA = 0.1  # kl family: eta_k = eta * sigma_k^2 (the NCSN step scaling) unless the config lists etas


def diffflow_ve_step(x, score, grad_d, delta: float, lam: float, xi=None):
    """One ``ve`` DiffFlow step from sigma_k to sigma_{k+1} (``delta = sigma_k^2 - sigma_{k+1}^2``).

    ``x + 1/2 delta [(1 + l^2) s + (1 - l^2) grad d] + l sqrt(delta) xi``; ``grad_d`` may be None when ``l = 1``.
    Returns ``(x_new, x_mean)``."""
    drift = 0.5 * (1.0 + lam**2) * score
    if grad_d is not None and lam != 1.0:
        drift = drift + 0.5 * (1.0 - lam**2) * grad_d
    return em_step(x, drift, delta, lam * math.sqrt(delta), xi)


def diffflow_kl_step(x, score, grad_d, eta: float, lam: float, xi=None):
    """One ``kl`` DiffFlow step: ``x + eta [(1 - l^2) grad d + l^2 s] + l sqrt(2 eta) xi``. Returns ``(x_new, x_mean)``."""
    drift = lam**2 * score
    if grad_d is not None and lam != 1.0:
        drift = drift + (1.0 - lam**2) * grad_d
    return em_step(x, drift, eta, lam * math.sqrt(2.0 * eta), xi)


class DiffFlowSampler:
    """Integrates DiffFlow on a fixed noise grid. ``init(noise)`` draws the starting particles (replaceable)."""

    def __init__(self, denoiser, disc: DiscriminatorField, *, family: str, lam: float, sigmas: list[float],
                 etas: list[float] | None, data_shape, data_range, prior_std: float, resolved: dict):
        self.denoiser, self.disc, self.family, self.lam = denoiser, disc, family, float(lam)
        self.sigmas, self.etas = [float(s) for s in sigmas], etas
        self.data_shape, self.data_range, self.prior_std = tuple(data_shape), data_range, float(prior_std)
        self.resolved = resolved

    @property
    def n_steps(self) -> int:
        return len(self.etas) if self.family == "kl" else len(self.sigmas) - 1

    def init(self, noise: BatchNoise) -> torch.Tensor:
        return self.prior_std * noise.randn(*self.data_shape)

    def __call__(self, noise: BatchNoise, *, trajectory: bool = False,
                 snapshot_steps: tuple[int, ...] | None = None) -> SampleResult:
        """Run the flow. ``snapshot_steps``: return, as the trajectory, the particles after exactly those numbers of
        steps (for tests of intermediate marginals) instead of evenly spaced frames."""
        n, lam, use_d = self.n_steps, self.lam, self.lam != 1.0
        every = max(1, n // 60)
        frames, nfe = [], 0
        snaps = set(snapshot_steps or ())
        with torch.inference_mode():
            x = self.init(noise)
            x_mean = x
            if trajectory and not snaps:
                frames.append(x)
            for k in range(n):
                sigma = self.sigmas[k]
                last = k == n - 1
                s = self.denoiser.score(x, sigma)
                g = self.disc.grad(x, k=k, n=n, sigma=sigma)[1] if use_d else None
                nfe += 1 + int(use_d)
                xi = noise.randn(*self.data_shape, dtype=x.dtype) if (lam > 0 and not last) else None
                if self.family == "ve":
                    x, x_mean = diffflow_ve_step(x, s, g, sigma**2 - self.sigmas[k + 1] ** 2, lam, xi)
                else:
                    x, x_mean = diffflow_kl_step(x, s, g, self.etas[k], lam, xi)
                if snaps:
                    if k + 1 in snaps:
                        frames.append(x_mean if last else x)
                elif trajectory and (k % every == every - 1 or last):
                    frames.append(x_mean if last else x)
        return SampleResult(x_mean, nfe, frames if (trajectory or snaps) else None)


def _grid(params, resolved, den, tcfg) -> list[float]:
    """The noise grid: the discriminator's training grid when it has one and nothing overrides it, else the EDM
    rho-schedule on the score checkpoint's sigma range."""
    cfg_sigmas = [float(v) for v in (tcfg.get("sigmas") or []) if float(v) > 0]  # a trailing 0 is implied
    overrides = [k for k in ("steps", "sigma_min", "sigma_max", "rho") if params.get(k) is not None]
    if cfg_sigmas and not overrides:
        resolved.update(steps=len(cfg_sigmas), grid="discriminator config")
        return cfg_sigmas
    if cfg_sigmas:
        log.warning(f"warning: --{overrides[0].replace('_', '-')} replaces the noise grid the discriminator was "
                    "trained on; its ratio estimate is only meaningful on that grid")
    steps = int(param(params, "steps", int(tcfg.get("n_steps") or DEFAULT_STEPS), resolved))
    if steps < 1:
        raise UsageError("--steps must be >= 1")
    smin = float(param(params, "sigma_min", den.sigma_min, resolved))
    smax = float(param(params, "sigma_max", den.sigma_max, resolved))
    rho = float(param(params, "rho", 7.0, resolved))
    if not 0 < smin < smax:
        raise UsageError("--sigma-min must be positive and below --sigma-max")
    resolved["grid"] = "edm rho-schedule"
    return edm_sigmas(steps, smin, smax, rho, append_zero=False).tolist()


def build(bundle: Bundle, params: dict) -> DiffFlowSampler:
    score_c, disc_c = bundle["score"], bundle["discriminator"]
    den = denoiser_from_component(score_c)
    disc = discriminator_from_component(disc_c)
    tcfg = dict(disc_c.config.get("time") or {})
    resolved: dict = {}
    family = param(params, "family", tcfg.get("family") or "ve", resolved)
    if family not in ("ve", "kl"):
        raise UsageError(f"--family must be ve or kl, not {family!r}")
    if tcfg.get("family") and tcfg["family"] != family:
        log.warning(f"warning: the discriminator was trained for the {tcfg['family']} family, sampling with {family}")
    lam = float(param(params, "lambda", 0.5, resolved))
    if lam < 0:
        raise UsageError("--lambda must be >= 0")
    if disc.loss != "vanilla" and lam != 1.0:
        log.warning(f"warning: DiffFlow reads grad d as a log density ratio, which needs the logistic (vanilla) loss; "
                    f"this discriminator was trained with {disc.loss}")
    sigmas = _grid(params, resolved, den, tcfg)
    resolved["sigmas"] = [float(s) for s in sigmas]
    resolved["lambda_t"] = "l * sqrt(2 gamma(t))"
    etas = None
    if family == "ve":
        grid = sigmas + [0.0]
        prior = float(tcfg.get("prior_std") or grid[0])
    else:
        cfg_etas = tcfg.get("etas")
        if cfg_etas and params.get("eta") is None and len(cfg_etas) == len(sigmas):
            etas = [float(e) for e in cfg_etas]
            resolved.update(eta="per step", eta_k="discriminator config")
        else:
            eta = float(param(params, "eta", tcfg.get("eta") or DEFAULT_KL_ETA, resolved))
            if eta <= 0:
                raise UsageError("--eta must be positive")
            etas = [eta * s**2 for s in sigmas]
            resolved["eta_k"] = "eta * sigma_k^2"
        grid = sigmas
        prior = float(tcfg.get("prior_std") or 1.0)
    resolved.update(family=family, prior_std=prior, denoise_last_step=True)
    shape = score_c.data_shape or disc_c.data_shape
    return DiffFlowSampler(den, disc, family=family, lam=lam, sigmas=grid, etas=etas, data_shape=shape,
                           data_range=score_c.data_range, prior_std=prior, resolved=resolved)


register_kind(SamplerSpec("diffflow", ("score", "discriminator"), build,
                          "DiffFlow: data score + logistic discriminator, --lambda from GAN-like (0) to diffusion (1)"))
