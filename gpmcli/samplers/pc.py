"""Predictor-corrector samplers (Song et al. 2021; docs/algorithms.md#pc-sampler): kinds ``pc`` and ``ancestral``.

:func:`pc_sample` is the loop. Grid ``t_i = linspace(1, eps, N)``, ladder level ``l = N - 1 - i``. Per step:
corrector (``--corrector-steps`` times) then predictor (``--pc-order corrector-first``, the reference
implementation's order) or the reverse (``predictor-first``, the paper's Algorithm 1). The output is the last
update's noise-free mean ("denoise", no extra network evaluation). The predictors are step methods of the SDE
(:mod:`gpmcli.fields.sde`), every step :func:`gpmcli.integrate.em_step`.

Scores are evaluated at the continuous marginal of ``t_i`` (Euler-Maruyama, reverse diffusion, correctors) as in the
reference; the ancestral predictor evaluates them at its own discrete ladder level, which makes the VP ancestral
sampler exactly DDPM's ancestral loop (with variance beta_i) for an eps network trained on the same ladder.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.base import expand_sigma
from gpmcli.fields.sde import SDE, make_sde
from gpmcli.integrate import em_step
from gpmcli.noise import BatchNoise
from gpmcli.samplers import SampleResult, SamplerSpec, register_kind, uses
from gpmcli.samplers.scorekit import PhaseTimer, ScoreSamplerBase, flat_norm, normal
from gpmcli.samplers.trajectory import frames_of, recorder

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


@functools.lru_cache(maxsize=None)
def _chi_mean(d: int) -> float:
    """E||xi|| for xi ~ N(0, I_d): sqrt(2) Gamma((d + 1) / 2) / Gamma(d / 2)."""
    return math.sqrt(2.0) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


def langevin_ratio(s, xi, std: float, run: dict, snr_norm: str = "sample", snr_span: int = SNR_SPAN):
    """``||xi|| / ||s||`` of the Langevin corrector's step size, per sample (see the notes above ``SNR_SPAN``)."""
    gn = flat_norm(s)
    if snr_norm == "batch":  # the reference: batch means of the samples' norms
        nn_ = flat_norm(xi)
        gn, nn_ = gn.mean().expand_as(gn), nn_.mean().expand_as(nn_)
        # a score that vanishes in float32 (D(x, sigma) == x at tiny sigma) gives no step, not an inf one
        return torch.where(gn > 0, nn_ / gn.clamp_min(torch.finfo(gn.dtype).tiny), torch.zeros_like(gn))
    d = xi[0].numel()
    beta = 1.0 - 1.0 / math.ceil(snr_span / d)
    # a vanished score (float32 underflow at tiny std) says nothing about the running mean, and gives no step
    sq = run["sq_norm"]
    sq = run["sq_norm"] = torch.where(gn > 0, beta * sq + (1.0 - beta) * (std * gn) ** 2, sq)
    ratio = torch.where(gn > 0, _chi_mean(d) * std / sq.sqrt(), torch.zeros_like(gn))
    return ratio.clamp_max(math.sqrt(1.0 + std**2))


def pc_sample(denoiser, x: torch.Tensor, sde: SDE, noise: BatchNoise | None = None,
              callback: Callable[[dict], None] | None = None, *, predictor: str = "reverse-diffusion",
              corrector: str = "langevin", snr: float = 0.16, corrector_steps: int = 1,
              order: str = "corrector-first", snr_norm: str = "sample", snr_span: int = SNR_SPAN,
              **ancestral) -> torch.Tensor:
    """Song et al. (2021) Algorithm 1 from ``x = x_N`` (a prior draw) on ``sde``'s grid; returns the last noise-free
    mean. ``ancestral``: ``variance``, ``clip_x0``, ``data_range`` of the VP ancestral (DDPM) predictor."""
    n = sde.N
    # running mean of (std(t) ||s||)^2 per sample (see langevin_ratio), started at its prior value D
    run = {"sq_norm": torch.full((x.shape[0],), float(x[0].numel()), dtype=x.dtype, device=x.device)}

    def predict(x, t, lvl):  # Alg. 1 line 3: x_i <- Predictor(x_{i+1})
        if predictor == "none":
            return x, x
        xi = normal(noise, x)
        if predictor == "euler-maruyama":
            return sde.euler_maruyama_step(denoiser, x, t, lvl, xi)
        if predictor == "reverse-diffusion":
            return sde.reverse_diffusion_step(denoiser, x, t, lvl, xi)
        return sde.ancestral_step(denoiser, x, lvl, xi, **ancestral)

    def correct(x, t, lvl):  # Alg. 1 lines 4-5: M times x_i <- Corrector(x_i); Alg. 4 (VE) / 5 (VP) lines 3-7
        if corrector == "none":
            return x, x
        alpha, std = sde.corrector_alpha(lvl), float(sde.marginal(t)[1])
        x_mean = x
        for _ in range(corrector_steps):
            g = sde.score(denoiser, x, t)  # g <- s(x_i^{j-1}, t_i)
            z = normal(noise, x)  # z ~ N(0, I)
            if corrector == "langevin":  # eps <- 2 alpha_i (r ||z|| / ||g||)^2
                eps = expand_sigma(2 * alpha * (snr * langevin_ratio(g, z, std, run, snr_norm, snr_span)) ** 2, x)
            else:  # ald: NCSN's step size from the marginal std, eps <- 2 alpha_i (r sigma_t)^2
                eps = 2 * alpha * (snr * std) ** 2
            # x_i^j <- x_i^{j-1} + eps g + sqrt(2 eps) z
            x, x_mean = em_step(x, g, eps, torch.sqrt(torch.as_tensor(2 * eps, dtype=x.dtype, device=x.device)), z)
        return x, x_mean

    x_mean = x
    if callback is not None:
        callback({"i": 0, "x": x})
    for i, t in enumerate(sde.timesteps().tolist()):  # Alg. 1 line 2: for i = N - 1 to 0
        lvl = n - 1 - i
        if order == "corrector-first":
            x, x_mean = correct(x, t, lvl)
            x, x_mean = predict(x, t, lvl)
        else:
            x, x_mean = predict(x, t, lvl)
            x, x_mean = correct(x, t, lvl)
        if callback is not None:
            last = i == n - 1
            callback({"i": i + 1, "x": x_mean if last else x, "t": t, "final": last})
    return x_mean  # Alg. 1 line 6: return x_0 (its noise-free mean)


def ancestral_sample(denoiser, x: torch.Tensor, sde: SDE, noise: BatchNoise | None = None,
                     callback: Callable[[dict], None] | None = None, **ddpm) -> torch.Tensor:
    """Ancestral sampling (DDPM on a VP SDE, NCSN's on a VE SDE): :func:`pc_sample` with the ancestral predictor and
    no corrector. ``ddpm``: ``variance`` ("large" | "small"), ``clip_x0``, ``data_range``."""
    return pc_sample(denoiser, x, sde, noise, callback, predictor="ancestral", corrector="none", **ddpm)


class PCSampler(ScoreSamplerBase):
    SNR_SPAN = SNR_SPAN  # the running-mean span of the per-sample step sizes (scripts/pc_snr_check.py varies it)

    def __call__(self, noise: BatchNoise, *, trajectory: bool = False) -> SampleResult:
        timer = PhaseTimer(noise.device)
        o = self.opts
        x = noise.randn(self.data_shape, dtype=self.dtype) * self.sde.prior_std
        rec = recorder(trajectory, self.sde.N)
        timer.mark("init")
        with torch.no_grad():
            x = pc_sample(self.den, x, self.sde, noise, rec, predictor=o["predictor"], corrector=o["corrector"],
                          snr=o["snr"], corrector_steps=o["corrector_steps"], order=o["pc_order"],
                          snr_norm=o["snr_norm"], snr_span=self.SNR_SPAN, **self.ancestral)
        timer.mark("loop")
        return SampleResult(self.finish(x), self.nfe, frames_of(rec), {"phase_seconds": timer.phases})


def build(bundle, params, *, kind: str = "pc") -> PCSampler:
    s = PCSampler(bundle, params)
    if kind == "ancestral" and params.get("predictor") not in (None, "ancestral"):
        raise UsageError("--model ancestral uses the ancestral predictor; use --model pc for other predictors")
    # DDPM's two reverse variances and its x0 clipping (ancestral VP only); a converted diffusers DDPM says which its
    # scheduler used (parameterization.ddpm), so that gpm reproduces its pipeline
    ddpm = (s.component.config.get("parameterization") or {}).get("ddpm") or {}
    o = s.opts = KINDS_HERE[kind].resolve(params, clip_x0=bool(ddpm.get("clip_sample", False)),
                                          variance="small" if ddpm.get("variance_type") == "fixed_small" else "large")
    r = s.resolved = {k: o[k] for k in ("sde", "steps", "predictor", "corrector", "snr", "corrector_steps",
                                        "pc_order", "snr_norm")}
    ancestral_vp = o["predictor"] == "ancestral" and o["sde"] == "vp"
    s.ancestral = {"variance": o["variance"] if ancestral_vp else "large",
                   "clip_x0": o["clip_x0"] if ancestral_vp else False, "data_range": s.data_range}
    if ancestral_vp:
        r.update(variance=o["variance"], clip_x0=o["clip_x0"])
    if o["predictor"] == "none" and o["corrector"] == "none":
        raise UsageError("--predictor none and --corrector none leave nothing to do")
    if o["sde"] != "ve" and (o["sigma_min"] is not None or o["sigma_max"] is not None):
        raise UsageError("--sigma-min/--sigma-max apply to --sde ve only")
    s.sde = make_sde(o["sde"], o["steps"], s.den, sigma_min=o["sigma_min"], sigma_max=o["sigma_max"],
                     config=s.component.config)
    if o["predictor"] == "ancestral" and o["sde"] == "subvp":
        raise UsageError("the ancestral predictor is defined for --sde ve and vp only")
    r.update({k: v for k, v in s.sde.describe().items() if k not in ("sde",)})
    r["steps"] = o["steps"]
    per_step = (o["corrector_steps"] if o["corrector"] != "none" else 0) + (o["predictor"] != "none")
    s.nfe = o["steps"] * per_step
    return s


_PC_OPTS = dict(steps=1000, snr=0.16, corrector_steps=1, pc_order="corrector-first", snr_norm="sample",
                sigma_min=None, sigma_max=None, variance=None, clip_x0=None)
KINDS_HERE = {
    "pc": register_kind(SamplerSpec(
        "pc", ("score",), functools.partial(build, kind="pc"),
        "Predictor-corrector sampler for the VE / VP / sub-VP SDEs (Song et al. 2021).",
        uses(sde="ve", predictor="reverse-diffusion", corrector="langevin", **_PC_OPTS))),
    "ancestral": register_kind(SamplerSpec(
        "ancestral", ("score",), functools.partial(build, kind="ancestral"),
        "Ancestral sampling (DDPM for --sde vp, the default; NCSN-style for --sde ve).",
        uses(sde="vp", predictor="ancestral", corrector="none", **_PC_OPTS))),
}
