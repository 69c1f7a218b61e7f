"""Predictor-corrector samplers (Song et al. 2021, ALGORITHMS.md section 3): kinds ``pc`` and ``ancestral``.

Grid ``t_i = linspace(1, eps, N)``, ladder level ``l = N - 1 - i``. Per step: corrector (``--corrector-steps`` times)
then predictor (``--pc-order corrector-first``, the reference implementation's order) or the reverse
(``predictor-first``, the paper's Algorithm 1). The output is the last update's noise-free mean ("denoise", no
extra network evaluation). Every explicit step is :func:`gpmcli.samplers.integrate.em_step`.

Scores are evaluated at the continuous marginal of ``t_i`` (Euler-Maruyama, reverse diffusion, correctors) as in the
reference; the ancestral predictor evaluates them at its own discrete ladder level, which makes the VP ancestral
sampler exactly DDPM's ancestral loop (with variance beta_i) for an eps network trained on the same ladder.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.base import Bundle
from gpmcli.fields.sde import SDE_NAMES, SDE, VESDE, VPSDE, make_sde
from gpmcli.noise import BatchNoise
from gpmcli.samplers import SampleResult, SamplerSpec, param, register_kind
from gpmcli.samplers.integrate import em_step
from gpmcli.samplers.scorekit import (Frames, PhaseTimer, ScoreSamplerBase, check_choice, check_positive, flat_norm,
                                      per_sample)

PREDICTORS = ("euler-maruyama", "reverse-diffusion", "ancestral", "none")
CORRECTORS = ("langevin", "ald", "none")


@functools.lru_cache(maxsize=None)
def _chi_mean(d: int) -> float:
    """E||xi|| for xi ~ N(0, I_d): sqrt(2) Gamma((d + 1) / 2) / Gamma(d / 2)."""
    return math.sqrt(2.0) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


class PCSampler(ScoreSamplerBase):
    def __init__(self, bundle: Bundle, params: dict[str, Any], *, kind: str = "pc"):
        super().__init__(bundle, params)
        r = self.resolved
        self.kind = kind
        if kind == "ancestral":
            defaults = {"sde": "vp", "predictor": "ancestral", "corrector": "none"}
            if params.get("predictor") not in (None, "ancestral"):
                raise UsageError("--model ancestral uses the ancestral predictor; use --model pc for other predictors")
        else:
            defaults = {"sde": "ve", "predictor": "reverse-diffusion", "corrector": "langevin"}
        sde_name = check_choice("sde", param(params, "sde", defaults["sde"], r), SDE_NAMES)
        n = int(check_positive("steps", param(params, "steps", 1000, r)))
        self.predictor = check_choice("predictor", param(params, "predictor", defaults["predictor"], r), PREDICTORS)
        self.corrector = check_choice("corrector", param(params, "corrector", defaults["corrector"], r), CORRECTORS)
        self.snr = float(check_positive("snr", param(params, "snr", 0.16, r)))
        self.corrector_steps = int(check_positive("corrector-steps", param(params, "corrector_steps", 1, r)))
        self.order = check_choice("pc-order", param(params, "pc_order", "corrector-first", r),
                                  ("corrector-first", "predictor-first"))
        self.snr_norm = check_choice("snr-norm", param(params, "snr_norm", "sample", r), ("sample", "batch"))
        # DDPM's two reverse variances and its x0 clipping (ancestral VP only); a converted diffusers DDPM says which
        # its scheduler used (parameterization.ddpm), so that gpm reproduces its pipeline
        ddpm = (self.component.config.get("parameterization") or {}).get("ddpm") or {}
        self.variance, self.clip_x0 = "large", False
        if self.predictor == "ancestral" and sde_name == "vp":
            self.variance = check_choice("variance", param(params, "variance", "small" if ddpm.get(
                "variance_type") == "fixed_small" else "large", r), ("large", "small"))
            self.clip_x0 = bool(param(params, "clip_x0", bool(ddpm.get("clip_sample", False)), r))
        if self.predictor == "none" and self.corrector == "none":
            raise UsageError("--predictor none and --corrector none leave nothing to do")
        smin, smax = params.get("sigma_min"), params.get("sigma_max")
        if sde_name != "ve" and (smin is not None or smax is not None):
            raise UsageError("--sigma-min/--sigma-max apply to --sde ve only")
        self.sde: SDE = make_sde(sde_name, n, self.den, sigma_min=smin, sigma_max=smax, config=self.component.config)
        if self.predictor == "ancestral" and sde_name == "subvp":
            raise UsageError("the ancestral predictor is defined for --sde ve and vp only")
        r.update({k: v for k, v in self.sde.describe().items() if k not in ("sde",)})
        r["steps"] = n
        per_step = (self.corrector_steps if self.corrector != "none" else 0) + (self.predictor != "none")
        self.nfe = n * per_step

    # -- predictors ---------------------------------------------------------------------------------------------
    def _predict(self, x, t: float, lvl: int, noise: BatchNoise):
        sde, den, n = self.sde, self.den, self.sde.N
        p = self.predictor
        if p == "none":
            return x, x
        xi = noise.randn(self.data_shape, dtype=x.dtype)
        if p == "euler-maruyama":
            dt = 1.0 / n
            drift = sde.reverse_drift(den, x, t)
            return em_step(x, drift, -dt, float(sde.g(t)) * math.sqrt(dt), xi)
        if p == "reverse-diffusion":
            s = sde.score(den, x, t)
            if isinstance(sde, VESDE):
                sig = float(sde.discrete_sigmas[lvl])
                adj = float(sde.discrete_sigmas[lvl - 1]) if lvl > 0 else 0.0
                g2 = sig**2 - adj**2
                return em_step(x, g2 * s, 1.0, math.sqrt(g2), xi)
            if type(sde) is VPSDE:
                beta = float(sde.discrete_betas[lvl])
                drift = (1.0 - math.sqrt(1.0 - beta)) * x + beta * s  # -f_i + G_i^2 s with f_i = (sqrt(a_i) - 1) x
                return em_step(x, drift, 1.0, math.sqrt(beta), xi)
            # sub-VP: the generic discretisation f_i = f dt, G_i = g sqrt(dt)
            dt = 1.0 / n
            g2 = float(sde.g2(t))
            drift = -sde.f(x, t) + g2 * s
            return em_step(x, drift, dt, math.sqrt(g2 * dt), xi)
        # ancestral
        m, sd = sde.discrete_marginal(lvl)
        s = sde.score_ms(den, x, m, sd)
        if isinstance(sde, VESDE):
            sig = float(sde.discrete_sigmas[lvl])
            adj = float(sde.discrete_sigmas[lvl - 1]) if lvl > 0 else 0.0
            std = math.sqrt(adj**2 * (sig**2 - adj**2) / sig**2)
            return em_step(x, (sig**2 - adj**2) * s, 1.0, std, xi)
        beta = float(sde.discrete_betas[lvl])
        if self.variance == "large" and not self.clip_x0:
            drift = (x + beta * s) / math.sqrt(1.0 - beta) - x
            return em_step(x, drift, 1.0, math.sqrt(beta), xi)
        # DDPM posterior q(x_{i-1} | x_i, x0_hat): mean from the (clipped) x0 estimate, variance beta or beta-tilde
        ac = m * m
        ac_prev = float(sde.alphas_cumprod[lvl - 1]) if lvl > 0 else 1.0
        x0 = (x + sd * sd * s) / m
        if self.clip_x0:
            lo, hi = self.data_range or (-1.0, 1.0)
            x0 = x0.clamp(lo, hi)
        mean = (math.sqrt(ac_prev) * beta / (1 - ac)) * x0 + (math.sqrt(1 - beta) * (1 - ac_prev) / (1 - ac)) * x
        var = beta if self.variance == "large" else max((1 - ac_prev) / (1 - ac) * beta, 1e-20)
        return em_step(x, mean - x, 1.0, math.sqrt(var), xi)

    # -- correctors ---------------------------------------------------------------------------------------------
    # Per-sample step sizes (``--snr-norm sample``). The reference's eps = 2 alpha (r ||xi|| / ||s||)^2 with
    # batch-averaged norms is one step size per level. Taken literally per sample it is biased in low dimension in
    # two ways. Measured with the exact score, N = 2,000, 1,000 steps, by the mean squared distance of a sample to its
    # nearest mode (exact samples 0.49 on the 2-D pentagon, 6.06 on the 16-D test mixture; batch norms 0.51 / 6.25;
    # `python scripts/pc_snr_check.py --target pentagon|mix16`, mean of its two seeds):
    #  1. ||xi|| of the very noise added in the step makes the noise sqrt(2c) ||xi|| xi, whose per-coordinate
    #     variance is (D + 2) / D times 2 E[eps] (2x in 2-D). We use E||xi|| (the chi_D mean) instead.
    #  2. ||s(x)|| at the current position: a step size that depends on x makes Langevin sample p / eps(x) rather
    #     than p (the Ito term grad eps is missing), and 1 / ||s|| is heavy-tailed in low dimension (s -> 0 at mode
    #     centres and between modes). Decoupling the noise alone leaves 1.01 / 6.96. We average the norm along the
    #     sample's own trajectory instead: a running mean of (std(t) ||s||)^2 over ~W = ceil(SNR_SPAN / D) score
    #     evaluations (W = 400 in 2-D, 50 at D = 16; W = 1, the literal rule, from D = 800 on - images), started at
    #     D, its exact value under the prior. Pentagon 0.50, mixture 6.23: as close as the batch rule.
    # Each sample still depends on its own noise only. The ratio stays capped at sqrt(1 + std(t)^2) (unit-scale data).
    SNR_SPAN = 800

    def _langevin_ratio(self, s, xi, std: float, run: dict):
        gn = flat_norm(s)
        if self.snr_norm == "batch":  # the reference: batch means of the samples' norms
            nn_ = flat_norm(xi)
            gn, nn_ = gn.mean().expand_as(gn), nn_.mean().expand_as(nn_)
            # a score that vanishes in float32 (D(x, sigma) == x at tiny sigma) gives no step, not an inf one
            return torch.where(gn > 0, nn_ / gn.clamp_min(torch.finfo(gn.dtype).tiny), torch.zeros_like(gn))
        d = xi[0].numel()
        mean_noise_norm = _chi_mean(d)
        beta = 1.0 - 1.0 / math.ceil(self.SNR_SPAN / d)
        # a vanished score (float32 underflow at tiny std) says nothing about the running mean, and gives no step
        sq = run["sq_norm"]
        sq = run["sq_norm"] = torch.where(gn > 0, beta * sq + (1.0 - beta) * (std * gn) ** 2, sq)
        ratio = torch.where(gn > 0, mean_noise_norm * std / sq.sqrt(), torch.zeros_like(gn))
        return ratio.clamp_max(math.sqrt(1.0 + std**2))

    def _correct(self, x, t: float, lvl: int, noise: BatchNoise, run: dict):
        sde, den = self.sde, self.den
        if self.corrector == "none":
            return x, x
        alpha = 1.0 if isinstance(sde, VESDE) else float(sde.alphas[lvl])
        std = float(sde.marginal(t)[1])
        x_mean = x
        for _ in range(self.corrector_steps):
            s = sde.score(den, x, t)
            xi = noise.randn(self.data_shape, dtype=x.dtype)
            if self.corrector == "langevin":
                eps = per_sample(2 * alpha * (self.snr * self._langevin_ratio(s, xi, std, run)) ** 2, x)
            else:  # ald: NCSN step size from the marginal std
                eps = 2 * alpha * (self.snr * std) ** 2
            x, x_mean = em_step(x, s, eps, torch.sqrt(torch.as_tensor(2 * eps, dtype=x.dtype, device=x.device)), xi)
        return x, x_mean

    def __call__(self, noise: BatchNoise, *, trajectory: bool = False) -> SampleResult:
        timer = PhaseTimer(noise.device)
        sde = self.sde
        x = noise.randn(self.data_shape, dtype=self.dtype) * sde.prior_std
        # running mean of (std(t) ||s||)^2 per sample (see _langevin_ratio), started at its prior value D
        run = {"sq_norm": torch.full((x.shape[0],), float(x[0].numel()), dtype=x.dtype, device=x.device)}
        frames = Frames(trajectory, sde.N)
        frames.add(x, force=True)
        x_mean = x
        timer.mark("init")
        with torch.no_grad():
            for i, t in enumerate(sde.timesteps().tolist()):
                lvl = sde.N - 1 - i
                if self.order == "corrector-first":
                    x, x_mean = self._correct(x, t, lvl, noise, run)
                    x, x_mean = self._predict(x, t, lvl, noise)
                else:
                    x, x_mean = self._predict(x, t, lvl, noise)
                    x, x_mean = self._correct(x, t, lvl, noise, run)
                if i < sde.N - 1:
                    frames.add(x, i + 1)
        frames.add(x_mean, force=True)
        timer.mark("loop")
        return SampleResult(self.finish(x_mean), self.nfe, frames.frames, {"phase_seconds": timer.phases})


def _build_pc(bundle, params):
    return PCSampler(bundle, params, kind="pc")


def _build_ancestral(bundle, params):
    return PCSampler(bundle, params, kind="ancestral")


register_kind(SamplerSpec("pc", ("score",), _build_pc,
                          "Predictor-corrector sampler for the VE / VP / sub-VP SDEs (Song et al. 2021)."))
register_kind(SamplerSpec("ancestral", ("score",), _build_ancestral,
                          "Ancestral sampling (DDPM for --sde vp, the default; NCSN-style for --sde ve)."))
