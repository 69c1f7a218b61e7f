"""Samplers: each ``--model`` kind combines fields with weights and integrates them.

Every sampling loop is a plain function in the shape ``loop(field, x, sigmas_or_grid, noise, callback=None, ...)``
that a library user can call with their own starting particles and grid (:func:`gpmcli.samplers.edm.edm_sample`,
:func:`gpmcli.samplers.pc.pc_sample`, :func:`gpmcli.samplers.diffflow.diffflow_ve`, ...). A kind registers a
:class:`SamplerSpec` whose ``build(bundle, params)`` parses the options it declares and returns a :class:`Sampler`:
an object with the data shape, the fully resolved parameters (for ``run.json``) and ``__call__(noise) ->
SampleResult`` that draws the starting particles and calls the loop, every random number from the per-sample
:class:`~gpmcli.noise.BatchNoise`. How to add a kind: docs/samplers.md.

This module imports no torch (the CLI reads the option declarations at start-up).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gpmcli.errors import UsageError
from gpmcli.plugins import import_all
from gpmcli.samplers.options import OPTIONS, SamplerOption, register_option, uses  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    import torch

    from gpmcli.fields.base import Bundle
    from gpmcli.noise import BatchNoise


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
    """A ``--model`` kind: the component roles it needs, its ``build`` and the options it reads.

    ``options`` (see :func:`gpmcli.samplers.options.uses`) is the single declaration of what the kind accepts (``()``:
    nothing); a kind that leaves it None accepts any ``params`` and reports what it used in ``resolved``."""

    name: str
    roles: tuple[str, ...]  # component roles the kind needs
    build: Callable[[Bundle, dict[str, Any]], Sampler]
    help: str = ""
    options: tuple[SamplerOption, ...] | None = None

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options or ())

    def unused(self, params: dict[str, Any] | None) -> list[str]:
        """Names given (not None) in ``params`` that this kind does not declare (none when it declares nothing)."""
        if self.options is None:
            return []
        known = set(self.option_names)
        return sorted(k for k, v in (params or {}).items() if v is not None and k not in known)

    def resolve(self, params: dict[str, Any] | None, **defaults: Any) -> dict[str, Any]:
        """Every declared option's typed, validated value: ``params`` where given, else ``defaults`` (values only
        known once the checkpoint is loaded, e.g. its sigma range), else the declared default (may be None)."""
        params = params or {}
        out = {}
        for o in self.options or ():
            v = params.get(o.name)
            out[o.name] = o.check(defaults.get(o.name, o.default) if v is None else v)
        return out


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


def check_params(kind: str, params: dict[str, Any] | None, where: str | None = None) -> dict[str, Any]:
    """Check ``params`` against the options ``--model kind`` declares and return them typed (None values dropped).

    ``where`` names a registry bundle (its ``params.KIND`` table); without it the values are command-line flags. A
    name the kind does not read, a wrong type, a choice or range violation or a non-finite number is one
    :class:`~gpmcli.errors.UsageError` line."""
    try:
        spec = get_kind(kind)
    except UsageError as e:
        raise UsageError(f"{where}: params.{kind}: {e}" if where else str(e)) from None
    given = {k: v for k, v in (params or {}).items() if v is not None}
    unused = spec.unused(given)
    if unused:
        if where:
            raise UsageError(f"{where}: params.{kind} sets {', '.join(unused)}, which --model {kind} does not read")
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        raise UsageError(f"--model {kind} does not use {flags} (see `gpm sample --help` for what each option applies "
                         "to)")
    by_name = {o.name: o for o in spec.options or ()}
    try:
        return {k: (by_name[k].check(v) if k in by_name else v) for k, v in given.items()}
    except UsageError as e:
        raise UsageError(f"{where}: params.{kind}: {e}" if where else str(e)) from None


def param(params: dict[str, Any], key: str, default: Any, resolved: dict[str, Any] | None = None) -> Any:
    """``params[key]`` if the user gave it, else ``default``; records the value in ``resolved`` (for kinds that
    declare no options)."""
    v = params.get(key)
    v = default if v is None else v
    if resolved is not None:
        resolved[key] = v
    return v
