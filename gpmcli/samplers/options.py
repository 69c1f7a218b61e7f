"""Typed sampler options, declared once (no torch import: the CLI builds ``gpm sample``'s flags from this module).

:data:`OPTIONS` holds every option a sampler kind may read: its name (``params`` key; the flag is ``--name`` with
``-`` for ``_``), type, help text, choices and range. A kind lists the options it reads on its
:class:`~gpmcli.samplers.SamplerSpec` (``options=uses("steps", "rho", ...)``, with the kind's own defaults); from these
declarations derive ``gpm sample``'s flags (:func:`cli_options`), the refusal of a flag the chosen kind does not read,
the registry's ``params.KIND`` checks (:func:`gpmcli.samplers.check_params`) and the typed, validated values a kind
records in ``run.json`` (:meth:`gpmcli.samplers.SamplerSpec.resolve`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from gpmcli.errors import UsageError
from gpmcli.opts import Opt

SAMPLER_PANEL = "Sampler options (used by the kinds they apply to)"


@dataclass
class SamplerOption(Opt):
    """A sampler option: :class:`gpmcli.train.Opt` (name, type, default, help, choices) plus its valid range.

    ``minimum``: lowest allowed value (``exclusive``: the value must exceed it); numbers must be finite unless
    ``finite`` is False (a default may still be infinite, e.g. EDM's ``s_max``). ``cli``: False for options only a
    registry bundle (``params.KIND``) or the Python API sets."""

    minimum: float | None = None
    exclusive: bool = False
    finite: bool = True
    cli: bool = True

    def with_default(self, default: Any) -> SamplerOption:
        return dataclasses.replace(self, default=default)

    def check(self, value: Any) -> Any:
        """The value as this option's type, or one clear :class:`UsageError` line."""
        if value is None:
            return None
        flag = self.flag
        if self.type is bool:
            if not isinstance(value, bool):
                raise UsageError(f"{flag} takes true or false, not {value!r}")
            return value
        if self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                try:
                    value = self.type(value)
                except (TypeError, ValueError):
                    raise UsageError(f"{flag} takes a {self.type.__name__}, not {value!r}") from None
            if isinstance(value, float) and not math.isfinite(value):
                if self.finite or math.isnan(value):
                    raise UsageError(f"{flag} must be a finite number, not {value}")
                return value
            if self.type is int and value != int(value):
                raise UsageError(f"{flag} takes an integer, not {value!r}")
            value = self.type(value)
            if self.minimum is not None and (value <= self.minimum if self.exclusive else value < self.minimum):
                raise UsageError(f"{flag} must be {'>' if self.exclusive else '>='} {self.minimum:g} (got {value})")
            return value
        value = self.type(value)
        if self.choices and value not in self.choices:
            alts = " or ".join(self.choices) if len(self.choices) == 2 else "one of " + ", ".join(self.choices)
            raise UsageError(f"{flag} must be {alts}, not {value!r}")
        return value


def _positive(name, type_=float, help="", **kw) -> SamplerOption:
    return SamplerOption(name, type_, None, help, minimum=0, exclusive=True, **kw)


def _nonneg(name, type_=float, help="", **kw) -> SamplerOption:
    return SamplerOption(name, type_, None, help, minimum=0, **kw)


_ALL = [
    _positive("steps", int, "Number of steps (kind default if omitted)."),
    _nonneg("lambda", float, "DiffFlow noise weight l >= 0 (0: deterministic, 1: score dynamics)."),
    _nonneg("disc_weight", float, "DiffFlow: scale of the discriminator term (1, the default: the theory's "
            "weight; >1 strengthens the correction, as Discriminator Guidance's w)."),
    SamplerOption("family", str, None, "DiffFlow family: ve|kl.", ("ve", "kl")),
    SamplerOption("sde", str, None, "ve|vp|subvp for pc/ode/ancestral.", ("ve", "vp", "subvp")),
    SamplerOption("predictor", str, None, "euler-maruyama|reverse-diffusion|ancestral|none.",
                  ("euler-maruyama", "reverse-diffusion", "ancestral", "none")),
    SamplerOption("corrector", str, None, "langevin|ald|none.", ("langevin", "ald", "none")),
    _positive("snr", float, "Corrector target signal-to-noise ratio."),
    _positive("corrector_steps", int),
    SamplerOption("pc_order", str, None, "corrector-first (reference code) | predictor-first (paper).",
                  ("corrector-first", "predictor-first")),
    SamplerOption("snr_norm", str, None, "sample (default) | batch.", ("sample", "batch")),
    _positive("rtol"),
    _positive("atol"),
    SamplerOption("solver", str, None, "EDM: heun|euler.", ("heun", "euler")),
    _positive("rho"),
    _positive("sigma_min"),
    _positive("sigma_max"),
    _nonneg("churn", float, "EDM S_churn."),
    _nonneg("s_min"),
    SamplerOption("s_max", float, None, finite=False),
    _nonneg("s_noise"),
    _positive("step_lr", float, "Annealed Langevin step size."),
    _positive("eta", float, "Discriminator Flow step size (must match training)."),
    _positive("ddls_step", float, "DDLS step size epsilon."),
    _nonneg("ddls_steps", int, "DDLS number of steps."),
    SamplerOption("mala", bool, None, "DDLS: Metropolis-adjusted chain (reports the acceptance rate); default: the "
                  "bundle's setting, else off."),
    # set by a registry bundle or a converted checkpoint, not on the command line
    SamplerOption("variance", str, None, "DDPM reverse variance (ancestral VP).", ("large", "small"), cli=False),
    SamplerOption("clip_x0", bool, None, "DDPM: clip the x0 estimate to the data range (ancestral VP).", cli=False),
]
OPTIONS: dict[str, SamplerOption] = {o.name: o for o in _ALL}


def register_option(opt: SamplerOption) -> SamplerOption:
    """Declare an option a new kind introduces, from the kind's own module: the API and registry ``params`` accept it
    then. ``gpm sample`` builds its flags from this module alone (it starts without importing the kinds), so an
    option that needs a command-line flag is an entry of ``_ALL`` above instead."""
    if opt.name in OPTIONS and OPTIONS[opt.name] != opt:
        raise ValueError(f"sampler option {opt.name!r} is already declared differently")
    OPTIONS[opt.name] = opt
    return opt


def uses(*names: str, **defaults: Any) -> tuple[SamplerOption, ...]:
    """The catalogue options ``names`` (and the keys of ``defaults``) with this kind's defaults, e.g.
    ``uses("sigma_min", steps=18, solver="heun")``."""
    out = []
    for name in (*names, *defaults):
        if name not in OPTIONS:
            raise KeyError(f"no sampler option {name!r}; declare it with register_option")
        out.append(OPTIONS[name].with_default(defaults.get(name)))
    return tuple(out)


def cli_options() -> list[SamplerOption]:
    """The options ``gpm sample`` offers as flags, in help order."""
    return [o for o in OPTIONS.values() if o.cli]
