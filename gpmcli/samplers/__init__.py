"""Samplers: each ``--model`` kind combines fields with weights and integrates them.

A kind registers a :class:`SamplerSpec` whose ``build(bundle, params)`` returns a :class:`Sampler`: an object with the
data shape, the fully resolved parameters (for ``run.json``) and ``__call__(noise) -> SampleResult`` that produces one
batch, drawing every random number from the per-sample :class:`~gpmcli.noise.BatchNoise`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.base import Bundle
from gpmcli.noise import BatchNoise
from gpmcli.plugins import import_all


@dataclass
class SampleResult:
    x: torch.Tensor  # (B, *data_shape), float32, in the data range
    nfe: int  # network evaluations per sample
    trajectory: list[torch.Tensor] | None = None  # frames (B, *data_shape) along the flow, when asked for
    diagnostics: dict[str, Any] = field(default_factory=dict)


class Sampler(Protocol):
    data_shape: tuple[int, ...]
    data_range: tuple[float, float] | None
    resolved: dict[str, Any]

    def __call__(self, noise: BatchNoise, *, trajectory: bool = False) -> SampleResult: ...


@dataclass
class SamplerSpec:
    name: str
    roles: tuple[str, ...]  # component roles the kind needs
    build: Callable[[Bundle, dict[str, Any]], Sampler]
    help: str = ""


KINDS: dict[str, SamplerSpec] = {}
ALL_KINDS = ("edm", "pc", "ode", "ancestral", "langevin", "discr-flow", "diffflow", "gan", "score-gan", "ddls")


def register_kind(spec: SamplerSpec) -> SamplerSpec:
    KINDS[spec.name] = spec
    return spec


def get_kind(name: str) -> SamplerSpec:
    import_all(__name__, __path__)
    if name not in KINDS:
        if name in ALL_KINDS:
            raise UsageError(f"--model {name}: not available yet")
        raise UsageError(f"unknown --model {name!r}; choose one of {', '.join(ALL_KINDS)}")
    return KINDS[name]


def param(params: dict[str, Any], key: str, default: Any, resolved: dict[str, Any] | None = None) -> Any:
    """``params[key]`` if the user gave it, else ``default``; records the value in ``resolved``."""
    v = params.get(key)
    v = default if v is None else v
    if resolved is not None:
        resolved[key] = v
    return v
