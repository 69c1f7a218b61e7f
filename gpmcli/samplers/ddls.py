"""``--model ddls``: Discriminator Driven Latent Sampling (Che et al. 2020; docs/algorithms.md#7-ddls).

Langevin dynamics in a GAN's latent space on ``E(z) = 1/2 |z|^2 - d(G(z))``:
``z <- z - (eps/2) grad E(z) + sqrt(eps) xi`` (the shared :func:`~gpmcli.integrate.em_step` with drift
``-grad E``, dt ``eps/2``, noise scale ``sqrt(eps)``), output ``G(z_N)``; :func:`ddls_chain` is the loop. In the general form
``z <- z - eta grad E + sigma xi`` the chain samples ``exp(-E / T)`` with ``T = sigma^2 / (2 eta)``; DDLS's step has
``T = 1``, which run.json reports. ``--mala`` adds a Metropolis-Hastings accept/reject (exact ``exp(-E)`` for any step
size) and reports the acceptance rate. Diagnostics at 10 points of the chain: mean ``d(G(z))``, mean ``|z|^2``, mean
``|grad E|``.

Calibration check: DDLS targets the data only when ``d = log q/p_g`` for this generator, and then
``E_{z ~ N(0, I)} exp(d(G(z))) = 1``. The chain's starting latents are exactly such draws, so every batch reports
``log_mean_exp_d_start`` (log of the mean of ``exp d`` over its starting points) at no extra cost; when it lies outside
``[-log 20, log 20]`` on a batch of at least 16 samples, the sampler warns once (one line) that the discriminator is
visibly uncalibrated (e.g. a raw GAN discriminator whose logit on the generator's own samples is about -12, or a WGAN
critic whose scores are offset) and names the command that calibrates it.
"""

from __future__ import annotations

import logging
import math

import torch

from gpmcli.fields.base import Bundle
from gpmcli.fields.discriminator import discriminator_from_component
from gpmcli.fields.latent import GeneratorMap, LatentEnergy, latent_shape_of, range_map
from gpmcli.noise import BatchNoise
from gpmcli.integrate import em_step
from gpmcli.samplers import SampleResult, SamplerSpec, param, register_kind, uses
from gpmcli.samplers.scorekit import normal
from gpmcli.samplers.trajectory import frames_of, recorder

log = logging.getLogger("gpm")

CALIBRATION_LIMIT = math.log(20.0)  # |log mean exp d(G(z))| above this: visibly uncalibrated
CALIBRATION_MIN_BATCH = 16


def log_mean_exp(d: torch.Tensor) -> float:
    """``log mean exp d`` (float64, stable)."""
    d = d.double().reshape(-1)
    return float(torch.logsumexp(d, 0) - math.log(d.numel()))


def _sqnorm(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).pow(2).sum(1)


class DDLSSampler:
    def __init__(self, energy: LatentEnergy, *, step: float, n_steps: int, mala: bool, data_range, resolved,
                 n_reports: int = 10):
        self.energy, self.step, self.n_steps, self.mala = energy, float(step), int(n_steps), bool(mala)
        self.latent_shape = energy.generator.latent_shape
        self.data_shape, self.data_range, self.resolved = energy.generator.data_shape, data_range, resolved
        self.n_reports = n_reports
        self.warned = False
        self.generator_ref, self.discriminator_ref = "GENERATOR", "DISCRIMINATOR"

    def check_calibration(self, d0: torch.Tensor) -> float:
        """``log mean exp d`` over the starting points (generator samples); warns once when it is far from 0."""
        lme = log_mean_exp(d0)
        if not self.warned and d0.numel() >= CALIBRATION_MIN_BATCH and abs(lme) > CALIBRATION_LIMIT:
            self.warned = True
            log.warning(f"warning: the discriminator is not calibrated for this generator (log mean exp d(G(z)) = "
                        f"{lme:.1f} on {d0.numel()} of its samples, mean d {float(d0.mean()):.1f}; a log density "
                        "ratio gives about 0), so DDLS will seek modes; calibrate it with gpm train discriminator "
                        f"--for ddls --generator {self.generator_ref} --init {self.discriminator_ref} --train last "
                        "--data DATA -o DIR")
        return lme

    def __call__(self, noise: BatchNoise, *, trajectory: bool = False) -> SampleResult:
        rec = recorder(trajectory, self.n_steps, transform=self.energy.generator)
        with torch.inference_mode():
            z = noise.randn(*self.latent_shape)
            z, diag = ddls_chain(self.energy, z, self.n_steps, self.step, noise, rec, mala=self.mala,
                                 n_reports=self.n_reports, on_start=self.check_calibration)
            x = self.energy.generator(z)
        return SampleResult(x, self.n_steps + 1, frames_of(rec), diag)


def ddls_chain(energy: LatentEnergy, z: torch.Tensor, n: int, eps: float, noise: BatchNoise | None = None,
               callback=None, *, mala: bool = False, n_reports: int = 10, on_start=None):
    """``n`` Langevin steps ``z <- z - (eps/2) grad E(z) + sqrt(eps) xi`` on ``energy`` (MALA accept/reject when
    ``mala``). Returns ``(z_n, diagnostics)``; ``on_start(d0)`` sees the starting realness (calibration check)."""
    every = max(1, n // n_reports)
    rows = []
    e, g, d = energy.energy_grad(z)
    d0 = d
    lme0 = on_start(d0) if on_start is not None else log_mean_exp(d0)
    accepted = torch.zeros(z.shape[0], device=z.device)
    if callback is not None:
        callback({"i": 0, "x": z})
    for i in range(n):
        xi = normal(noise, z)
        zp, _ = em_step(z, -g, eps / 2, math.sqrt(eps), xi)
        ep, gp, dp = energy.energy_grad(zp)
        if mala:
            # log q(z | z') - log q(z' | z) for the Langevin proposal q(z'|z) = N(z - eps/2 grad E(z), eps I)
            fwd = -0.5 * _sqnorm(xi)
            bwd = -_sqnorm(z - zp + 0.5 * eps * gp) / (2 * eps)
            log_alpha = (e - ep) + bwd - fwd
            u = noise.rand(dtype=z.dtype) if noise is not None else torch.rand(z.shape[0], dtype=z.dtype)
            acc = torch.log(u) < log_alpha
            accepted += acc.to(accepted.dtype)
            m = acc.reshape(-1, *([1] * (z.ndim - 1)))
            z, g = torch.where(m, zp, z), torch.where(m, gp, g)
            e, d = torch.where(acc, ep, e), torch.where(acc, dp, d)
        else:
            z, e, g, d = zp, ep, gp, dp
        if i % every == every - 1 or i == n - 1:
            rows.append(torch.stack([torch.tensor(float(i + 1), device=z.device), d.mean(), _sqnorm(z).mean(),
                                     _sqnorm(g).sqrt().mean()]))
        if callback is not None:
            callback({"i": i + 1, "x": z, "final": i == n - 1})
    diag = {"mean_d_start": float(d0.mean()), "mean_d_end": float(d.mean()), "log_mean_exp_d_start": lme0}
    if rows:
        table = torch.stack(rows).tolist()
        diag["every"] = [{"step": int(r[0]), "mean_d": r[1], "mean_z2": r[2], "mean_grad_norm": r[3]}
                         for r in table]
    if mala:
        diag["acceptance_rate"] = float(accepted.mean()) / max(n, 1)
    return z, diag


def build(bundle: Bundle, params: dict) -> DDLSSampler:
    gen_c, disc_c = bundle["generator"], bundle["discriminator"]
    lat = latent_shape_of(gen_c)
    gen = GeneratorMap(gen_c.module, lat, gen_c.data_shape)
    disc = discriminator_from_component(disc_c)
    to_disc = range_map(gen_c.data_range, disc_c.data_range)
    energy = LatentEnergy(gen, disc, to_disc)
    resolved: dict = {}
    params = SPEC.resolve(params)  # typed and checked
    eps = float(param(params, "ddls_step", 0.01, resolved))
    steps = int(param(params, "ddls_steps", 1000, resolved))
    mala = bool(param(params, "mala", False, resolved))
    # general Langevin form z <- z - eta grad E + sigma xi with eta = eps/2, sigma = sqrt(eps)
    resolved.update(temperature=eps / (2 * (eps / 2)), temperature_formula="T = sigma^2 / (2 eta)",
                    energy="E(z) = 1/2 |z|^2 - d(G(z))", d=f"realness of a {disc_c.config.get('output', 'logit')} "
                    "discriminator (pre-sigmoid logit or raw critic score)", latent_shape=list(lat),
                    generator_to_discriminator_range=list(to_disc) if to_disc else None)
    sampler = DDLSSampler(energy, step=eps, n_steps=steps, mala=mala, data_range=gen_c.data_range, resolved=resolved)
    from pathlib import Path

    def shown(c):  # a reference the command line takes: the component's path, else the bundle it came from
        return c.ref if c.ref and Path(c.ref).exists() else (bundle.name or c.ref)

    sampler.generator_ref, sampler.discriminator_ref = shown(gen_c), shown(disc_c)
    return sampler


SPEC = register_kind(SamplerSpec("ddls", ("generator", "discriminator"), build,
                                 "DDLS: Langevin in a GAN's latent space on E(z) = |z|^2/2 - d(G(z))",
                                 uses("ddls_step", "ddls_steps", "mala")))
