"""``--model discr-flow``: GPM's Discriminator Flow, a "GAN without a generator" (docs/algorithms.md#4-discriminator-flow).

Particles start at ``z_0 ~ N(0, I)`` in data shape and follow the velocity of a time-conditioned discriminator:
``z_{k+1} = z_k + (eta / N) v(z_k, k / N)``, ``v = -grad c(f)`` of its loss (vanilla ``sigmoid(-f) grad f``, IPM
``-grad f``, hinge ``grad f``). ``N`` and ``eta`` must equal training's: they come from the checkpoint's
``time`` config; ``--steps``/``--eta`` override them with a warning. :func:`discriminator_flow` is the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.base import Bundle
from gpmcli.fields.discriminator import DiscriminatorField, discriminator_from_component
from gpmcli.noise import BatchNoise
from gpmcli.integrate import em_step
from gpmcli.samplers import SampleResult, SamplerSpec, register_kind, uses
from gpmcli.samplers.trajectory import frames_of, recorder

log = logging.getLogger("gpm")


def discriminator_flow(disc: DiscriminatorField, z: torch.Tensor, n_steps: int, eta: float,
                       callback: Callable[[dict], None] | None = None, *, reports: int = 60):
    """``z_{k+1} = z_k + (eta / N) v(z_k, k / N)`` for k = 0..N-1. Returns ``(z_N, mean_realness)``: the mean
    realness ``r`` over the batch at about ``reports`` evenly spaced steps (a (R,) tensor, on z's device)."""
    n, dt = n_steps, eta / n_steps
    every = max(1, n // reports)
    mean_r = []
    if callback is not None:
        callback({"i": 0, "x": z})
    for k in range(n):
        r, v = disc.velocity(z, k=k, n=n)
        z, _ = em_step(z, v, dt)
        if k % every == 0 or k == n - 1:
            mean_r.append(r.mean())
        if callback is not None:
            callback({"i": k + 1, "x": z, "final": k == n - 1})
    return z, (torch.stack(mean_r) if mean_r else None)


class DiscriminatorFlowSampler:
    def __init__(self, disc: DiscriminatorField, *, n_steps: int, eta: float, data_shape, data_range, resolved):
        self.disc, self.n_steps, self.eta = disc, int(n_steps), float(eta)
        self.data_shape, self.data_range, self.resolved = tuple(data_shape), data_range, resolved

    def init(self, noise: BatchNoise) -> torch.Tensor:
        return noise.randn(*self.data_shape)

    def __call__(self, noise: BatchNoise, *, trajectory: bool = False) -> SampleResult:
        rec = recorder(trajectory, self.n_steps)
        with torch.inference_mode():
            z, mean_r = discriminator_flow(self.disc, self.init(noise), self.n_steps, self.eta, rec)
        diag = {"mean_realness": [round(float(v), 6) for v in mean_r.tolist()]} if mean_r is not None else {}
        return SampleResult(z, self.n_steps, frames_of(rec), diag)


def build(bundle: Bundle, params: dict) -> DiscriminatorFlowSampler:
    comp = bundle["discriminator"]
    disc = discriminator_from_component(comp)
    tcfg = dict(comp.config.get("time") or {})
    if (tcfg.get("kind") or "flow-time") != "flow-time":
        raise UsageError(f"{comp.ref}: Discriminator Flow needs a flow-time discriminator (its time kind is "
                         f"{tcfg.get('kind')!r})")
    resolved: dict = {}
    params = SPEC.resolve(params)  # typed and checked; the defaults are the training values
    for key, opt in (("n_steps", "steps"), ("eta", "eta")):
        given, trained = params.get(opt), tcfg.get(key)
        if given is not None and trained is not None and float(given) != float(trained):
            log.warning(f"warning: --{opt} {given} differs from the {trained} the discriminator was trained with; "
                        "the flow is only meaningful with the training values")
        value = given if given is not None else trained
        if value is None:
            raise UsageError(f"{comp.ref}: the discriminator config has no time.{key}; pass --{opt}")
        resolved[opt] = value
    n_steps, eta = int(resolved["steps"]), float(resolved["eta"])
    if n_steps < 1 or eta <= 0:  # a checkpoint's own values
        raise UsageError(f"{comp.ref}: time.n_steps must be >= 1 and time.eta positive")
    resolved.update(loss=disc.loss, velocity={"vanilla": "sigmoid(-f) grad f", "ipm": "-grad f (f low on real)",
                                              "hinge": "grad f"}[disc.loss], prior="N(0, I)")
    return DiscriminatorFlowSampler(disc, n_steps=n_steps, eta=eta, data_shape=comp.data_shape,
                                    data_range=comp.data_range, resolved=resolved)


SPEC = register_kind(SamplerSpec("discr-flow", ("discriminator",), build,
                                 "Discriminator Flow: particles follow a time-conditioned discriminator's gradient",
                                 uses("steps", "eta")))
