"""EDM sampler (Karras et al. 2022, Algorithm 2; ALGORITHMS.md section 3): kind ``edm``.

Deterministic Heun (or Euler) steps on the rho-schedule in sigma-space, with optional churn
(``--churn --s-min --s-max --s-noise``). ``x_0 = sigma_0 xi``; NFE = 2N - 1 for Heun (no correction at sigma = 0),
N for Euler. The sigma range defaults to the score checkpoint's ``sigma_min``/``sigma_max``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.base import Bundle
from gpmcli.noise import BatchNoise
from gpmcli.samplers import SampleResult, SamplerSpec, param, register_kind
from gpmcli.samplers.integrate import edm_sigmas, em_step
from gpmcli.samplers.scorekit import Frames, PhaseTimer, ScoreSamplerBase, check_choice, check_positive


class EDMSampler(ScoreSamplerBase):
    def __init__(self, bundle: Bundle, params: dict[str, Any]):
        super().__init__(bundle, params)
        r = self.resolved
        self.n = int(check_positive("steps", param(params, "steps", 18, r)))
        self.solver = check_choice("solver", param(params, "solver", "heun", r), ("heun", "euler"))
        self.rho = float(check_positive("rho", param(params, "rho", 7.0, r)))
        self.sigma_min = float(check_positive("sigma-min", param(params, "sigma_min", self.den.sigma_min, r)))
        self.sigma_max = float(check_positive("sigma-max", param(params, "sigma_max", self.den.sigma_max, r)))
        if self.sigma_min >= self.sigma_max:
            raise UsageError(f"--sigma-min ({self.sigma_min}) must be below --sigma-max ({self.sigma_max})")
        self.churn = float(check_positive("churn", param(params, "churn", 0.0, r), strict=False))
        self.s_min = float(check_positive("s-min", param(params, "s_min", 0.0, r), strict=False))
        self.s_max = float(param(params, "s_max", math.inf, r))
        self.s_noise = float(check_positive("s-noise", param(params, "s_noise", 1.0, r), strict=False))
        self.sigmas = edm_sigmas(self.n, self.sigma_min, self.sigma_max, self.rho).tolist()
        self.nfe = 2 * self.n - 1 if self.solver == "heun" else self.n

    def _d(self, x, sigma: float):
        return (x - self.den.denoise(x, sigma).to(x.dtype)) / sigma

    def __call__(self, noise: BatchNoise, *, trajectory: bool = False) -> SampleResult:
        timer = PhaseTimer(noise.device)
        sig = self.sigmas
        x = noise.randn(self.data_shape).to(self.dtype) * sig[0]
        frames = Frames(trajectory, self.n)
        frames.add(x, force=True)
        gamma_max = min(self.churn / self.n, math.sqrt(2) - 1)
        timer.mark("init")
        with torch.no_grad():
            for i in range(self.n):
                s_cur, s_next = sig[i], sig[i + 1]
                gamma = gamma_max if self.churn > 0 and self.s_min <= s_cur <= self.s_max else 0.0
                s_hat = s_cur * (1 + gamma)
                if gamma > 0:
                    xi = noise.randn(self.data_shape).to(self.dtype)
                    x, _ = em_step(x, 0.0, 0.0, math.sqrt(s_hat**2 - s_cur**2) * self.s_noise, xi)
                d = self._d(x, s_hat)
                x_next, _ = em_step(x, d, s_next - s_hat)
                if self.solver == "heun" and s_next > 0:
                    d2 = self._d(x_next, s_next)
                    x_next, _ = em_step(x, 0.5 * (d + d2), s_next - s_hat)
                x = x_next
                frames.add(x, i + 1)
        timer.mark("loop")
        return SampleResult(self.finish(x), self.nfe, frames.frames, {"phase_seconds": timer.phases})


register_kind(SamplerSpec("edm", ("score",), EDMSampler, "EDM Heun/Euler sampler with churn (Karras et al. 2022)."))
