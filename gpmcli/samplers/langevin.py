"""Annealed Langevin dynamics (NCSN, Song & Ermon 2019; docs/algorithms.md#annealed-langevin): kind ``langevin``.

:func:`annealed_langevin` is the loop. Levels ``sigma_1 > ... > sigma_L`` geometric (``--steps`` = L,
``--sigma-max``/``--sigma-min``, default the score checkpoint's range clipped to [0.01, 50]); at level c,
``--corrector-steps`` times ``x <- x + a_c s(x, sigma_c) + sqrt(2 a_c) xi`` with ``a_c = step_lr (sigma_c /
sigma_L)^2``; then the final denoising step ``x <- x + sigma_L^2 s(x, sigma_L)``. NFE = L * n_steps_each + 1.
Initial particles: N(0, sigma_1^2 I).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.schedules import geometric
from gpmcli.fields.sde import ve_sigma_max_of
from gpmcli.integrate import em_step
from gpmcli.noise import BatchNoise
from gpmcli.samplers import SampleResult, SamplerSpec, register_kind, uses
from gpmcli.samplers.scorekit import PhaseTimer, ScoreSamplerBase, normal
from gpmcli.samplers.trajectory import frames_of, recorder


def annealed_langevin(denoiser, x: torch.Tensor, sigmas: Sequence[float], noise: BatchNoise | None = None,
                      callback: Callable[[dict], None] | None = None, *, n_each: int = 5,
                      step_lr: float = 2e-5) -> torch.Tensor:
    """NCSN's annealed Langevin dynamics over the decreasing levels ``sigmas``, then one denoising step."""
    sig_l = sigmas[-1]
    if callback is not None:
        callback({"i": 0, "x": x})
    for c, sig in enumerate(sigmas):
        a = step_lr * (sig / sig_l) ** 2  # a_c = step_lr (sigma_c / sigma_L)^2
        for _ in range(n_each):  # x <- x + a_c s(x, sigma_c) + sqrt(2 a_c) xi
            xi = normal(noise, x)
            x, _ = em_step(x, denoiser.score(x, sig).to(x.dtype), a, math.sqrt(2 * a), xi)
        if callback is not None:
            callback({"i": c + 1, "x": x, "sigma": sig})
    x, _ = em_step(x, denoiser.score(x, sig_l).to(x.dtype), sig_l**2)  # x <- x + sigma_L^2 s(x, sigma_L)
    if callback is not None:
        callback({"i": -1, "x": x, "final": True})
    return x


class AnnealedLangevin(ScoreSamplerBase):
    def __call__(self, noise: BatchNoise, *, trajectory: bool = False) -> SampleResult:
        timer = PhaseTimer(noise.device)
        x = noise.randn(self.data_shape).to(self.dtype) * self.sigmas[0]
        rec = recorder(trajectory, self.levels)
        timer.mark("init")
        with torch.no_grad():
            x = annealed_langevin(self.den, x, self.sigmas, noise, rec, n_each=self.n_each, step_lr=self.step_lr)
        timer.mark("loop")
        return SampleResult(self.finish(x), self.nfe, frames_of(rec), {"phase_seconds": timer.phases})


def build(bundle, params) -> AnnealedLangevin:
    s = AnnealedLangevin(bundle, params)
    o = SPEC.resolve(params, sigma_min=max(0.01, s.den.sigma_min), sigma_max=ve_sigma_max_of(s.den))
    s.resolved = r = dict(o)
    s.levels, s.n_each, s.step_lr = o["steps"], o["corrector_steps"], o["step_lr"]
    smin, smax = o["sigma_min"], o["sigma_max"]
    if smin >= smax:
        raise UsageError(f"--sigma-min ({smin}) must be below --sigma-max ({smax})")
    s.sigmas = geometric(smax, smin, s.levels)
    r["step_ratio"] = s.step_lr / smin**2  # a_c / sigma_c^2, the same at every level
    s.nfe = s.levels * s.n_each + 1
    return s


SPEC = register_kind(SamplerSpec("langevin", ("score",), build,
                                 "Annealed Langevin dynamics over a geometric noise ladder (NCSN).",
                                 uses(steps=100, corrector_steps=5, sigma_min=None, sigma_max=None, step_lr=2e-5)))
