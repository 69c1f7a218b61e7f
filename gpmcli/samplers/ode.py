"""Probability-flow ODE sampler (Song et al. 2021; ALGORITHMS.md section 3): kind ``ode``.

``dx/dt = f(x, t) - g(t)^2 grad log p_t(x) / 2`` integrated from t = 1 to eps. gpm integrates it after the exact
change of variables ``x~ = x / m(t)``, ``u = ln sigma(t)`` (sigma(t) = s(t)/m(t)), where it reads

    dx~/du = x~ - D(x~, e^u),

the same ODE for VE, VP and sub-VP (the SDE fixes only the end points sigma(1), sigma(eps) and the prior). In t the
VP/sub-VP right-hand side has a 1/sqrt(t) singularity at t -> 0 (sigma(t) ~ sqrt(beta_0 t)) that fools the embedded
error estimate (measured: 1.2e-3 error against the closed-form Gaussian flow at rtol = atol = 1e-5 when integrating in
t, 1e-5 in ln sigma). The solver is an adaptive Dormand-Prince RK45
(5th-order solution, embedded 4th-order error estimate, FSAL) written in torch. The solver runs on the particles'
device; each sample has its own step size and its own accept/reject decision, so a sample's path never depends on
the rest of its batch. The only host round trip per step is the "all samples finished?" check. Error norm and step
control follow the usual RK45 recipe (RMS of err / (atol + rtol max(|x|, |x_new|)), safety 0.9, factor in [0.2, 10]).
A final Tweedie denoising step ``E[x0 | x_eps]`` costs one more evaluation. Reported NFE counts every evaluation.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from gpmcli.errors import NumericalError, UsageError
from gpmcli.fields.base import Bundle
from gpmcli.fields.sde import SDE_NAMES, make_sde
from gpmcli.noise import BatchNoise
from gpmcli.samplers import SampleResult, SamplerSpec, param, register_kind
from gpmcli.samplers.scorekit import Frames, PhaseTimer, ScoreSamplerBase, check_choice, check_positive

# Dormand-Prince 5(4) tableau
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
# b5 - b4 (the 7th stage is f at the new point, FSAL)
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)


def _bc(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


def _rms(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape[0], -1).pow(2).mean(1).sqrt()


def dopri45(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, t0: float, t1: float,
            rtol: float = 1e-5, atol: float = 1e-5, max_steps: int = 10000, on_step=None):
    """Integrate ``dx/dt = fn(x, t)`` (t: (B,) float64) from t0 to t1 with per-sample adaptive steps.

    Returns ``(x(t1), nfe)`` with ``nfe`` a (B,) tensor of evaluations that each sample's own path needed.
    """
    b = x.shape[0]
    dev = x.device
    direction = 1.0 if t1 > t0 else -1.0
    t = torch.full((b,), float(t0), dtype=torch.float64, device=dev)
    t_end = torch.full_like(t, float(t1))
    nfe = torch.zeros(b, dtype=torch.long, device=dev)

    # initial step size (Hairer, Norsett & Wanner, II.4), per sample
    f0 = fn(x, t)
    scale = atol + rtol * x.abs()
    d0, d1 = _rms(x / scale), _rms(f0 / scale)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1).to(torch.float64)
    h0 = torch.minimum(h0, (t_end - t).abs())
    f1 = fn(x + _bc(direction * h0, x) * f0, t + direction * h0)
    d2 = (_rms((f1 - f0) / scale) / h0.to(x.dtype)).to(torch.float64)
    dmax = torch.maximum(d1.to(torch.float64), d2)
    h1 = torch.where(dmax <= 1e-15, torch.maximum(torch.full_like(h0, 1e-6), h0 * 1e-3), (0.01 / dmax) ** 0.2)
    h = torch.minimum(torch.minimum(100 * h0, h1), (t_end - t).abs())
    nfe += 2
    k1 = f0

    done = torch.zeros(b, dtype=torch.bool, device=dev)
    steps = 0
    while True:
        steps += 1
        if steps > max_steps:
            raise NumericalError(f"ODE solver did not finish in {max_steps} steps; loosen --rtol/--atol")
        hs = direction * torch.where(done, torch.zeros_like(h), torch.minimum(h, (t_end - t).abs()))
        hx = _bc(hs, x)
        ks = [k1]
        for i in range(1, 6):
            dx = sum(a * k for a, k in zip(_A[i], ks) if a != 0.0)
            ks.append(fn(x + hx * dx, t + _C[i] * hs))
        x_new = x + hx * sum(bb * k for bb, k in zip(_B, ks) if bb != 0.0)
        k7 = fn(x_new, t + hs)
        ks.append(k7)
        err = hx * sum(e * k for e, k in zip(_E, ks) if e != 0.0)
        sc = atol + rtol * torch.maximum(x.abs(), x_new.abs())
        en = _rms(err / sc).to(torch.float64)
        active = ~done
        nfe += 6 * active.long()
        finite = torch.isfinite(en)
        accept = active & finite & (en <= 1.0)
        factor = torch.where(en == 0, torch.full_like(en, 10.0), 0.9 * en.clamp_min(1e-10) ** -0.2)
        factor = torch.where(accept, factor.clamp(0.2, 10.0), factor.clamp(0.2, 1.0))
        factor = torch.where(finite, factor, torch.full_like(factor, 0.2))
        a = _bc(accept, x).bool()
        x = torch.where(a, x_new, x)
        k1 = torch.where(a, k7, k1)
        t = torch.where(accept, t + hs, t)
        reached = accept & ((t_end - t) * direction <= 1e-12 * max(1.0, abs(t1)))
        t = torch.where(reached, t_end, t)
        done = done | reached
        h = torch.where(active, h * factor, h)
        if on_step is not None:
            on_step(x, steps)
        if bool(done.all()):  # the one host round trip per step
            break
    return x, nfe


class ODESampler(ScoreSamplerBase):
    def __init__(self, bundle: Bundle, params: dict[str, Any]):
        super().__init__(bundle, params)
        r = self.resolved
        sde_name = check_choice("sde", param(params, "sde", "ve", r), SDE_NAMES)
        self.rtol = float(check_positive("rtol", param(params, "rtol", 1e-5, r)))
        self.atol = float(check_positive("atol", param(params, "atol", 1e-5, r)))
        smin, smax = params.get("sigma_min"), params.get("sigma_max")
        if sde_name != "ve" and (smin is not None or smax is not None):
            raise UsageError("--sigma-min/--sigma-max apply to --sde ve only")
        if params.get("steps") is not None:
            raise UsageError("--model ode is adaptive; use --rtol/--atol instead of --steps")
        self.sde = make_sde(sde_name, 1000, self.den, sigma_min=smin, sigma_max=smax, config=self.component.config)
        r.update({k: v for k, v in self.sde.describe().items() if k not in ("sde", "N")})
        r["solver"] = "dopri5 (per-sample adaptive)"

    def drift(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``dx~/du`` in sigma-space, u = ln sigma (u: (B,) float64)."""
        return x - self.den(x, torch.exp(u).to(x.dtype))

    def __call__(self, noise: BatchNoise, *, trajectory: bool = False) -> SampleResult:
        timer = PhaseTimer(noise.device)
        sde = self.sde
        m1, s1 = (float(v) for v in sde.marginal(sde.T))
        me, se = (float(v) for v in sde.marginal(sde.eps))
        x = noise.randn(self.data_shape).to(self.dtype) * (sde.prior_std / m1)  # x~ = x_1 / m(1)
        frames = Frames(trajectory, 1)
        frames.add(x, force=True)
        timer.mark("init")
        with torch.no_grad():
            x, nfe = dopri45(self.drift, x, math.log(s1 / m1), math.log(se / me), self.rtol, self.atol,
                             on_step=(lambda z, k: frames.add(z, force=True)) if trajectory else None)
            timer.mark("solve")
            x = self.den(x, torch.full((x.shape[0],), se / me, dtype=x.dtype, device=x.device))
            frames.add(x, force=True)
            timer.mark("denoise")
        nfe = nfe + 1
        diag = {"phase_seconds": timer.phases, "nfe_mean": float(nfe.double().mean()), "nfe_min": int(nfe.min()),
                "nfe_max": int(nfe.max())}
        return SampleResult(self.finish(x), int(nfe.max()), frames.frames, diag)


register_kind(SamplerSpec("ode", ("score",), ODESampler,
                          "Probability-flow ODE with adaptive Dormand-Prince RK45 (Song et al. 2021)."))
