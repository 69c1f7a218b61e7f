"""Network architectures, rebuilt from a checkpoint's ``config["arch"] = {"name": ..., "kwargs": {...}}``.

Each architecture module registers its classes with :func:`register_arch`; :func:`build_arch` rebuilds one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from gpmcli.errors import UsageError
from gpmcli.plugins import import_all

ARCHS: dict[str, Callable[..., nn.Module]] = {}


def register_arch(name: str):
    def deco(cls):
        if name in ARCHS and ARCHS[name] is not cls:
            raise RuntimeError(f"architecture {name!r} registered twice")
        ARCHS[name] = cls
        cls.arch_name = name
        return cls

    return deco


def build_arch(arch: dict[str, Any]) -> nn.Module:
    _import_all()
    name = arch.get("name")
    if name not in ARCHS:
        raise UsageError(f"unknown architecture {name!r} in checkpoint config; known: {', '.join(sorted(ARCHS))}")
    try:
        return ARCHS[name](**arch.get("kwargs", {}))
    except TypeError as e:
        raise UsageError(f"architecture {name!r}: bad constructor arguments in config ({e})") from None


def arch_config(module: nn.Module, **kwargs: Any) -> dict[str, Any]:
    return {"name": type(module).arch_name, "kwargs": kwargs}


def _import_all() -> None:
    """Import every architecture module so that their registrations run."""
    import_all(__name__, __path__)
