"""Probability-flow ODE sampler (Song et al. 2021; docs/algorithms.md#probability-flow-ode): kind ``ode``.

:func:`ode_sample` is the loop (a library user calls it with their own particles and sigma range).

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
from gpmcli.fields.sde import make_sde
from gpmcli.noise import BatchNoise
from gpmcli.fields.base import expand_sigma
from gpmcli.samplers import SampleResult, SamplerSpec, register_kind, uses
from gpmcli.samplers.scorekit import PhaseTimer, ScoreSamplerBase
from gpmcli.samplers.trajectory import frames_of, recorder

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
    f1 = fn(x + expand_sigma(direction * h0, x) * f0, t + direction * h0)
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
        hx = expand_sigma(hs, x)
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
        a = expand_sigma(accept, x).bool()
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


def ode_sample(denoiser, x: torch.Tensor, sigma_start: float, sigma_end: float, noise=None,
               callback: Callable[[dict], None] | None = None, *, rtol: float = 1e-5, atol: float = 1e-5):
    """Integrate ``dx/du = x - D(x, e^u)`` (u = ln sigma) from ``sigma_start`` to ``sigma_end`` with :func:`dopri45`,
    then denoise once (Tweedie, ``D(x, sigma_end)``). ``x``: particles in sigma-space (``x_t / m(t)``). Returns
    ``(x0, nfe)`` with ``nfe`` each sample's number of evaluations. The ODE draws no noise (``noise`` is unused)."""
    if callback is not None:
        callback({"i": 0, "x": x})

    def drift(z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return z - denoiser(z, torch.exp(u).to(z.dtype))

    on_step = (lambda z, k: callback({"i": k, "x": z})) if callback is not None else None
    x, nfe = dopri45(drift, x, math.log(sigma_start), math.log(sigma_end), rtol, atol, on_step=on_step)
    x = denoiser(x, torch.full((x.shape[0],), sigma_end, dtype=x.dtype, device=x.device))
    if callback is not None:
        callback({"i": -1, "x": x, "final": True})
    return x, nfe + 1


class ODESampler(ScoreSamplerBase):
    def __call__(self, noise: BatchNoise, *, trajectory: bool = False) -> SampleResult:
        timer = PhaseTimer(noise.device)
        sde = self.sde
        m1, s1 = (float(v) for v in sde.marginal(sde.T))
        me, se = (float(v) for v in sde.marginal(sde.eps))
        x = noise.randn(self.data_shape).to(self.dtype) * (sde.prior_std / m1)  # x~ = x_1 / m(1)
        rec = recorder(trajectory, 1)
        timer.mark("init")
        with torch.no_grad():
            x, nfe = ode_sample(self.den, x, s1 / m1, se / me, noise, rec, rtol=self.rtol, atol=self.atol)
        timer.mark("solve")
        diag = {"phase_seconds": timer.phases, "nfe_mean": float(nfe.double().mean()), "nfe_min": int(nfe.min()),
                "nfe_max": int(nfe.max())}
        return SampleResult(self.finish(x), int(nfe.max()), frames_of(rec), diag)


def build(bundle: Bundle, params: dict[str, Any]) -> ODESampler:
    s = ODESampler(bundle, params)
    o = SPEC.resolve(params)
    r = s.resolved = {k: o[k] for k in ("sde", "rtol", "atol")}
    s.rtol, s.atol = o["rtol"], o["atol"]
    smin, smax = o["sigma_min"], o["sigma_max"]
    if o["sde"] != "ve" and (smin is not None or smax is not None):
        raise UsageError("--sigma-min/--sigma-max apply to --sde ve only")
    if o["steps"] is not None:
        raise UsageError("--model ode is adaptive; use --rtol/--atol instead of --steps")
    s.sde = make_sde(o["sde"], 1000, s.den, sigma_min=smin, sigma_max=smax, config=s.component.config)
    r.update({k: v for k, v in s.sde.describe().items() if k not in ("sde", "N")})
    r["solver"] = "dopri5 (per-sample adaptive)"
    return s


SPEC = register_kind(SamplerSpec("ode", ("score",), build,
                                 "Probability-flow ODE with adaptive Dormand-Prince RK45 (Song et al. 2021).",
                                 uses(sde="ve", rtol=1e-5, atol=1e-5, sigma_min=None, sigma_max=None, steps=None)))
