"""Shared pieces of the score-based kinds (pc, ancestral, ode, edm, langevin): field set-up, frames, phase timing."""

from __future__ import annotations

import time
from typing import Any

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.base import Bundle, Denoiser
from gpmcli.fields.score import denoiser_from_component


class ScoreSamplerBase:
    """Holds the denoiser of the bundle's ``score`` component, the data shape/range and the resolved parameters."""

    def __init__(self, bundle: Bundle, params: dict[str, Any]):
        comp = bundle.get("score")
        if comp is None:
            raise UsageError(f"bundle {bundle.name!r} has no score network")
        self.component = comp
        self.den: Denoiser = denoiser_from_component(comp)
        self.data_shape = tuple(comp.data_shape)
        if not self.data_shape:
            raise UsageError(f"{comp.ref}: config has no data.shape")
        self.data_range = comp.data_range
        self.params = params
        self.resolved: dict[str, Any] = {}
        self.dtype = torch.float32  # particle state (measured against float64 in benchmarks/samplers.py)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32)


class Frames:
    """Keeps at most ~``max_frames`` snapshots of the particles (every k-th step, plus the first and last)."""

    def __init__(self, enabled: bool, n_steps: int, max_frames: int = 60):
        self.enabled = enabled
        self.every = max(1, n_steps // max_frames)
        self.frames: list[torch.Tensor] | None = [] if enabled else None

    def add(self, x: torch.Tensor, step: int | None = None, force: bool = False) -> None:
        if self.enabled and (force or step is None or step % self.every == 0):
            self.frames.append(x.detach().to(torch.float32).clone())


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


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise UsageError(f"--{name} {value!r}: choose one of {', '.join(choices)}")
    return value


def check_positive(name: str, value, strict: bool = True):
    if value is None:
        return value
    if (strict and not value > 0) or (not strict and not value >= 0):
        raise UsageError(f"--{name} must be {'>' if strict else '>='} 0 (got {value})")
    return value


def per_sample(v: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """A scalar or (B,) value as (B, 1, ..., 1) in x's dtype/device."""
    v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    if v.ndim == 0:
        v = v.expand(x.shape[0])
    return v.reshape(-1, *([1] * (x.ndim - 1)))


def flat_norm(v: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(v.reshape(v.shape[0], -1), dim=1)
