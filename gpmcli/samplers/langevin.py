"""Annealed Langevin dynamics (NCSN, Song & Ermon 2019; ALGORITHMS.md section 3): kind ``langevin``.

Levels ``sigma_1 > ... > sigma_L`` geometric (``--steps`` = L, ``--sigma-max``/``--sigma-min``, default the score
checkpoint's range clipped to [0.01, 50]); at level c, ``--corrector-steps`` times
``x <- x + a_c s(x, sigma_c) + sqrt(2 a_c) xi`` with ``a_c = step_lr (sigma_c / sigma_L)^2``; then the final denoising
step ``x <- x + sigma_L^2 s(x, sigma_L)``. NFE = L * n_steps_each + 1. Initial particles: N(0, sigma_1^2 I).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.base import Bundle
from gpmcli.noise import BatchNoise
from gpmcli.samplers import SampleResult, SamplerSpec, param, register_kind
from gpmcli.fields.sde import ve_sigma_max_of
from gpmcli.samplers.integrate import em_step
from gpmcli.samplers.scorekit import Frames, PhaseTimer, ScoreSamplerBase, check_positive


class AnnealedLangevin(ScoreSamplerBase):
    def __init__(self, bundle: Bundle, params: dict[str, Any]):
        super().__init__(bundle, params)
        r = self.resolved
        self.levels = int(check_positive("steps", param(params, "steps", 100, r)))
        self.n_each = int(check_positive("corrector-steps", param(params, "corrector_steps", 5, r)))
        smin = float(check_positive("sigma-min", param(params, "sigma_min", max(0.01, self.den.sigma_min), r)))
        smax = float(check_positive("sigma-max", param(params, "sigma_max", ve_sigma_max_of(self.den), r)))
        if smin >= smax:
            raise UsageError(f"--sigma-min ({smin}) must be below --sigma-max ({smax})")
        self.step_lr = float(check_positive("step-lr", param(params, "step_lr", 2e-5, r)))
        if self.levels == 1:
            self.sigmas = [smin]
        else:
            self.sigmas = [math.exp(math.log(smax) + k / (self.levels - 1) * (math.log(smin) - math.log(smax)))
                           for k in range(self.levels)]
        r["step_ratio"] = self.step_lr / smin**2  # a_c / sigma_c^2, the same at every level
        self.nfe = self.levels * self.n_each + 1

    def __call__(self, noise: BatchNoise, *, trajectory: bool = False) -> SampleResult:
        timer = PhaseTimer(noise.device)
        sig_l = self.sigmas[-1]
        x = noise.randn(self.data_shape).to(self.dtype) * self.sigmas[0]
        frames = Frames(trajectory, self.levels)
        frames.add(x, force=True)
        timer.mark("init")
        with torch.no_grad():
            for c, sig in enumerate(self.sigmas):
                a = self.step_lr * (sig / sig_l) ** 2
                for _ in range(self.n_each):
                    xi = noise.randn(self.data_shape).to(self.dtype)
                    x, _ = em_step(x, self.den.score(x, sig).to(x.dtype), a, math.sqrt(2 * a), xi)
                frames.add(x, c + 1)
            timer.mark("loop")
            x, _ = em_step(x, self.den.score(x, sig_l).to(x.dtype), sig_l**2)
            frames.add(x, force=True)
            timer.mark("denoise")
        return SampleResult(self.finish(x), self.nfe, frames.frames, {"phase_seconds": timer.phases})


register_kind(SamplerSpec("langevin", ("score",), AnnealedLangevin,
                          "Annealed Langevin dynamics over a geometric noise ladder (NCSN)."))
