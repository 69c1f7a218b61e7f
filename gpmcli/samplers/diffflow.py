"""``--model diffflow``: DiffFlow (Zhang et al. 2023) in the explicit form of docs/algorithms.md#5-diffflow.

    dx = [f + (beta - gamma + lam^2/2) s + (gamma - lam^2/2) grad d] dt + lam dW,   lam(t) = l * sqrt(2 gamma(t))

with ``s`` the data score and ``grad d`` the logistic discriminator's log-density-ratio gradient. The Fokker-Planck
velocity does not contain ``lam``: the particle marginals are the same for every ``l`` (Marginal Preserving
Property). Two families, one loop each (:func:`diffflow_ve`, :func:`diffflow_kl`) of one step each
(:func:`diffflow_ve_step`, :func:`diffflow_kl_step`), both the Euler-Maruyama step :func:`gpmcli.integrate.em_step`
that the PC predictors (:meth:`gpmcli.fields.sde.VESDE.reverse_diffusion_step`) take, with a DiffFlow drift:

- ``ve``: ``x <- x + 1/2 D [(1 + l^2) s + (1 - l^2) grad d] + l sqrt(D) xi``, ``D = sigma_k^2 - sigma_{k+1}^2``.
  ``l = 1`` is the VE reverse-diffusion predictor, ``l = 0`` the probability-flow Euler step plus ``1/2 D grad d``.
- ``kl``: ``x <- x + eta_k [(1 - l^2) grad d + l^2 s] + l sqrt(2 eta_k) xi``. ``l = 0`` is a noise-annealed
  Discriminator Flow, ``l = 1`` annealed Langevin.

The last step returns its noise-free mean (no extra network evaluation), as the PC sampler's denoising step does.
``--disc-weight w`` multiplies the discriminator term (``w = 1``, the default, is the equation above; ``w > 1`` is
Discriminator Guidance's weight, which trades the Marginal Preserving Property for a stronger correction of an
imperfect score).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.base import Bundle
from gpmcli.fields.discriminator import DiscriminatorField, discriminator_from_component
from gpmcli.fields.score import denoiser_from_component
from gpmcli.noise import BatchNoise
from gpmcli.fields.schedules import edm_sigmas
from gpmcli.integrate import em_step
from gpmcli.samplers import SampleResult, SamplerSpec, param, register_kind, uses
from gpmcli.samplers.scorekit import normal
from gpmcli.samplers.trajectory import frames_of, recorder

log = logging.getLogger("gpm")

DEFAULT_STEPS = 200
DEFAULT_KL_ETA = 0.1  # kl family: eta_k = eta * sigma_k^2 (the NCSN step scaling) unless the config lists etas


def diffflow_ve_step(x, score, grad_d, delta: float, lam: float, xi=None, w: float = 1.0):
    """One ``ve`` DiffFlow step from sigma_k to sigma_{k+1} (``delta = sigma_k^2 - sigma_{k+1}^2``).

    ``x + 1/2 delta [(1 + l^2) s + w (1 - l^2) grad d] + l sqrt(delta) xi``; ``grad_d`` may be None when ``l = 1``.
    Returns ``(x_new, x_mean)``."""
    drift = 0.5 * (1.0 + lam**2) * score
    if grad_d is not None and lam != 1.0:
        drift = drift + 0.5 * w * (1.0 - lam**2) * grad_d
    return em_step(x, drift, delta, lam * math.sqrt(delta), xi)


def diffflow_kl_step(x, score, grad_d, eta: float, lam: float, xi=None, w: float = 1.0):
    """One ``kl`` DiffFlow step: ``x + eta [w (1 - l^2) grad d + l^2 s] + l sqrt(2 eta) xi``. Returns
    ``(x_new, x_mean)``."""
    drift = lam**2 * score
    if grad_d is not None and lam != 1.0:
        drift = drift + w * (1.0 - lam**2) * grad_d
    return em_step(x, drift, eta, lam * math.sqrt(2.0 * eta), xi)


def _flow(denoiser, disc, x, sigmas, n: int, step, noise, callback, lam: float, w: float = 1.0):
    """The loop both families share: ``step(k, x, s, grad_d, xi) -> (x, x_mean)`` at level ``sigmas[k]``."""
    use_d = lam != 1.0 and w != 0.0
    x_mean, nfe = x, 0
    if callback is not None:
        callback({"i": 0, "x": x})
    for k in range(n):
        sigma, last = sigmas[k], k == n - 1
        s = denoiser.score(x, sigma)
        g = disc.grad(x, k=k, n=n, sigma=sigma)[1] if use_d else None
        nfe += 1 + int(use_d)
        xi = normal(noise, x) if (lam > 0 and not last) else None  # the last step returns its noise-free mean
        x, x_mean = step(k, x, s, g, xi)
        if callback is not None:
            callback({"i": k + 1, "x": x_mean if last else x, "sigma": sigma, "final": last})
    return x_mean, nfe


def diffflow_ve(denoiser, disc, x: torch.Tensor, sigmas: Sequence[float], noise: BatchNoise | None = None,
                callback: Callable[[dict], None] | None = None, *, lam: float = 0.5, w: float = 1.0):
    """The ``ve`` family from ``x`` (prior draw, std ``sigmas[0]``) down the decreasing ``sigmas`` (ending in 0).
    Returns ``(x, nfe)``."""
    return _flow(denoiser, disc, x, sigmas, len(sigmas) - 1, lambda k, x, s, g, xi: diffflow_ve_step(
        x, s, g, sigmas[k] ** 2 - sigmas[k + 1] ** 2, lam, xi, w), noise, callback, lam, w)


def diffflow_kl(denoiser, disc, x: torch.Tensor, sigmas: Sequence[float], etas: Sequence[float],
                noise: BatchNoise | None = None, callback: Callable[[dict], None] | None = None, *,
                lam: float = 0.5, w: float = 1.0):
    """The ``kl`` family: one step of size ``etas[k]`` at each level ``sigmas[k]``. Returns ``(x, nfe)``."""
    return _flow(denoiser, disc, x, sigmas, len(etas), lambda k, x, s, g, xi: diffflow_kl_step(
        x, s, g, etas[k], lam, xi, w), noise, callback, lam, w)


class DiffFlowSampler:
    """Integrates DiffFlow on a fixed noise grid. ``init(noise)`` draws the starting particles (replaceable)."""

    def __init__(self, denoiser, disc: DiscriminatorField, *, family: str, lam: float, sigmas: list[float],
                 etas: list[float] | None, data_shape, data_range, prior_std: float, resolved: dict, w: float = 1.0):
        self.denoiser, self.disc, self.family, self.lam, self.w = denoiser, disc, family, float(lam), float(w)
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
        snaps = set(snapshot_steps or ()) - {0}
        rec = recorder(trajectory or bool(snaps), self.n_steps, at=snaps or None)
        with torch.inference_mode():
            x = self.init(noise)
            if self.family == "ve":
                x, nfe = diffflow_ve(self.denoiser, self.disc, x, self.sigmas, noise, rec, lam=self.lam, w=self.w)
            else:
                x, nfe = diffflow_kl(self.denoiser, self.disc, x, self.sigmas, self.etas, noise, rec, lam=self.lam,
                                     w=self.w)
        return SampleResult(x, nfe, frames_of(rec))


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
    params = SPEC.resolve(params)  # typed and checked; the defaults below come from the checkpoints
    family = param(params, "family", tcfg.get("family") or "ve", resolved)
    if tcfg.get("family") and tcfg["family"] != family:
        log.warning(f"warning: the discriminator was trained for the {tcfg['family']} family, sampling with {family}")
    lam = float(param(params, "lambda", 0.5, resolved))
    w = float(param(params, "disc_weight", 1.0, resolved))
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
            etas = [eta * s**2 for s in sigmas]
            resolved["eta_k"] = "eta * sigma_k^2"
        grid = sigmas
        prior = float(tcfg.get("prior_std") or 1.0)
    resolved.update(family=family, prior_std=prior, denoise_last_step=True)
    shape = score_c.data_shape or disc_c.data_shape
    return DiffFlowSampler(den, disc, family=family, lam=lam, sigmas=grid, etas=etas, data_shape=shape,
                           data_range=score_c.data_range, prior_std=prior, resolved=resolved, w=w)


SPEC = register_kind(SamplerSpec(
    "diffflow", ("score", "discriminator"), build,
    "DiffFlow: data score + logistic discriminator, --lambda from GAN-like (0) to diffusion (1)",
    uses("family", "lambda", "disc_weight", "steps", "sigma_min", "sigma_max", "rho", "eta")))
