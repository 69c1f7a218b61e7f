"""A typed command-line option (``--NAME VALUE``): the one declaration that `gpm train`'s role options and `gpm
sample`'s sampler options (:mod:`gpmcli.samplers.options`) build on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpmcli.errors import UsageError


@dataclass
class Opt:
    """A role-specific option ``--NAME VALUE`` (``type`` bool: a flag). ``choices`` restricts the values."""

    name: str
    type: Callable = str
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw: str) -> Any:
        if self.type is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise UsageError(f"{self.flag} takes true or false, not {raw!r}")
        if self.type in (list, tuple):
            try:
                return [int(v) for v in raw.replace(" ", "").split(",") if v != ""]
            except ValueError:
                raise UsageError(f"{self.flag} takes comma-separated integers, not {raw!r}") from None
        try:
            v = self.type(raw)
        except (TypeError, ValueError):
            raise UsageError(f"{self.flag} takes a {getattr(self.type, '__name__', 'value')}, not {raw!r}") from None
        if self.choices and v not in self.choices:
            raise UsageError(f"{self.flag} must be one of {', '.join(self.choices)}, not {raw!r}")
        return v
