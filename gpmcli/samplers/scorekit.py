"""Shared pieces of the score-based kinds (pc, ancestral, ode, edm, langevin): field set-up, noise draws, timing."""

from __future__ import annotations

import time
from typing import Any

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.base import Bundle, Denoiser
from gpmcli.fields.score import denoiser_from_component


class ScoreSamplerBase:
    """Holds the denoiser of the bundle's ``score`` component, the data shape/range and the resolved parameters (the
    kind's ``build`` fills in ``resolved`` and its grid)."""

    def __init__(self, bundle: Bundle, params: dict[str, Any] | None = None):
        comp = bundle.get("score")
        if comp is None:
            raise UsageError(f"bundle {bundle.name!r} has no score network")
        self.component = comp
        self.den: Denoiser = denoiser_from_component(comp)
        self.data_shape = tuple(comp.data_shape)
        if not self.data_shape:
            raise UsageError(f"{comp.ref}: config has no data.shape")
        self.data_range = comp.data_range
        self.params = params or {}
        self.resolved: dict[str, Any] = {}
        self.dtype = torch.float32  # particle state (measured against float64 in benchmarks/samplers.py)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32)


def normal(noise, x: torch.Tensor) -> torch.Tensor:
    """A standard normal draw shaped like ``x`` (in its dtype): from ``noise`` (a :class:`~gpmcli.noise.BatchNoise`,
    one stream per sample) or, when ``noise`` is None, from torch's global generator (library use)."""
    if noise is None:
        return torch.randn_like(x)
    return noise.randn(*x.shape[1:], dtype=x.dtype)


class PhaseTimer:
    """Wall time per phase (``init``, ``loop``, ``denoise``) for run.json diagnostics; syncs CUDA at phase ends only."""

    def __init__(self, device: torch.device):
        self.device = device
        self.t = time.perf_counter()
        self.phases: dict[str, float] = {}

    def mark(self, name: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.t
        self.t = now


def flat_norm(v: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(v.reshape(v.shape[0], -1), dim=1)
