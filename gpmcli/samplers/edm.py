"""EDM sampler (Karras et al. 2022, Algorithm 2; docs/algorithms.md#edm-sampler): kind ``edm``.

:func:`edm_sample` is the loop: deterministic Heun (or Euler) steps on a sigma ladder, with optional churn. The kind
takes the rho-ladder (:func:`gpmcli.fields.schedules.edm_sigmas`) on the score checkpoint's ``sigma_min``/
``sigma_max`` and starts at ``x_0 = sigma_0 xi``; NFE = 2N - 1 for Heun (no correction at sigma = 0), N for Euler.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.schedules import edm_sigmas
from gpmcli.noise import BatchNoise
from gpmcli.samplers import SampleResult, SamplerSpec, register_kind, uses
from gpmcli.samplers.scorekit import PhaseTimer, ScoreSamplerBase, normal
from gpmcli.samplers.trajectory import frames_of, recorder


def edm_sample(denoiser: Callable, x: torch.Tensor, sigmas: Sequence[float], noise: BatchNoise | None = None,
               callback: Callable[[dict], None] | None = None, *, solver: str = "heun", churn: float = 0.0,
               s_min: float = 0.0, s_max: float = math.inf, s_noise: float = 1.0) -> torch.Tensor:
    """Karras et al. (2022) Algorithm 2 from ``x = x_0`` (already scaled by ``sigmas[0]``) along the decreasing
    ``sigmas`` (last one usually 0). ``denoiser(x, sigma)`` is ``D``; ``solver="euler"`` drops the 2nd-order
    correction. ``noise`` supplies the churn draws (only used when ``churn > 0``)."""
    n = len(sigmas) - 1
    gamma_max = min(churn / n, math.sqrt(2) - 1)
    if callback is not None:
        callback({"i": 0, "x": x, "sigma": sigmas[0]})
    for i in range(n):  # 2: for i in {0, ..., N-1}
        s_cur, s_next = sigmas[i], sigmas[i + 1]
        # 3: gamma_i = min(S_churn / N, sqrt(2) - 1) if t_i in [S_tmin, S_tmax] else 0
        gamma = gamma_max if churn > 0 and s_min <= s_cur <= s_max else 0.0
        # 5: t_hat = t_i + gamma_i t_i
        s_hat = s_cur * (1 + gamma)
        if gamma > 0:
            # 4: eps_i ~ N(0, S_noise^2 I);  6: x_hat = x_i + sqrt(t_hat^2 - t_i^2) eps_i
            x = x + math.sqrt(s_hat**2 - s_cur**2) * s_noise * normal(noise, x)
        # 7: d_i = (x_hat - D(x_hat; t_hat)) / t_hat
        d = (x - denoiser.denoise(x, s_hat).to(x.dtype)) / s_hat
        # 8: x_{i+1} = x_hat + (t_{i+1} - t_hat) d_i
        x_next = x + d * (s_next - s_hat)
        if solver == "heun" and s_next > 0:  # 9: if t_{i+1} != 0
            # 10: d'_i = (x_{i+1} - D(x_{i+1}; t_{i+1})) / t_{i+1}
            d2 = (x_next - denoiser.denoise(x_next, s_next).to(x.dtype)) / s_next
            # 11: x_{i+1} = x_hat + (t_{i+1} - t_hat) (d_i / 2 + d'_i / 2)
            x_next = x + (0.5 * (d + d2)) * (s_next - s_hat)
        x = x_next
        if callback is not None:
            callback({"i": i + 1, "x": x, "sigma": s_next})
    return x  # 12: return x_N


class EDMSampler(ScoreSamplerBase):
    def __call__(self, noise: BatchNoise, *, trajectory: bool = False) -> SampleResult:
        timer = PhaseTimer(noise.device)
        r = self.resolved
        x = noise.randn(self.data_shape).to(self.dtype) * self.sigmas[0]
        rec = recorder(trajectory, self.n)
        timer.mark("init")
        with torch.no_grad():
            x = edm_sample(self.den, x, self.sigmas, noise, rec, solver=r["solver"], churn=r["churn"],
                           s_min=r["s_min"], s_max=r["s_max"], s_noise=r["s_noise"])
        timer.mark("loop")
        return SampleResult(self.finish(x), self.nfe, frames_of(rec), {"phase_seconds": timer.phases})


def build(bundle, params) -> EDMSampler:
    s = EDMSampler(bundle, params)
    r = s.resolved = SPEC.resolve(params, sigma_min=s.den.sigma_min, sigma_max=s.den.sigma_max)
    if r["sigma_min"] >= r["sigma_max"]:
        raise UsageError(f"--sigma-min ({r['sigma_min']}) must be below --sigma-max ({r['sigma_max']})")
    s.n = r["steps"]
    s.sigmas = edm_sigmas(s.n, r["sigma_min"], r["sigma_max"], r["rho"]).tolist()
    s.nfe = 2 * s.n - 1 if r["solver"] == "heun" else s.n
    return s


SPEC = register_kind(SamplerSpec(
    "edm", ("score",), build, "EDM Heun/Euler sampler with churn (Karras et al. 2022).",
    uses(steps=18, solver="heun", rho=7.0, sigma_min=None, sigma_max=None, churn=0.0, s_min=0.0, s_max=math.inf,
         s_noise=1.0)))
