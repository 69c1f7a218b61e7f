"""``--from state-dict``: any state dict + the user's own architecture (``--module FILE.py:Class``), and networks used
straight from a module + weights without converting (``gpm sample --module ... --weights ...``).

The architecture file is copied into the checkpoint directory (arch ``user-module``), so the checkpoint is
self-contained; loading it runs that file, so gpm asks for ``--trust-pickle`` (:mod:`gpmcli.usercode`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from gpmcli.convert.common import (Converted, Options, load_strict, parse_json, provenance, read_state, sha256_file,
                                   source_file, strip_prefix, write)
from gpmcli.convert.ema import apply_ema
from gpmcli.convert.roles import ROLES, role_config
from gpmcli.errors import UsageError
from gpmcli.fields.base import Component
from gpmcli.safeload import load_weights, state_dict_of
from gpmcli.usercode import USER_ARCH, instantiate, parse_module_spec


def user_arch(opts: Options, fmt: str) -> tuple[nn.Module, Path, str]:
    """The user's architecture from ``--module FILE.py:Class [--kwargs JSON]``."""
    if not opts.module:
        raise UsageError(f"--from {fmt} needs the architecture: --module FILE.py:Class [--kwargs JSON]")
    path, cls = parse_module_spec(opts.module)
    return instantiate(path, cls, opts.kwargs), path, cls


def write_user(out: str | Path, net: nn.Module, path: Path, cls: str, srcp: Path, fmt: str, role: str,
               opts: Options, extra: dict[str, Any] | None = None) -> Converted:
    """Write a ``user-module`` checkpoint: the weights, the role metadata and a copy of the architecture file."""
    net.eval()
    role_cfg = role_config(role, net, opts.meta, where="--meta")
    arch = {"name": USER_ARCH, "kwargs": {"file": path.name, "class": cls, "kwargs": opts.kwargs,
                                          "sha256": sha256_file(path)}}
    prov = provenance(srcp, sha256_file(srcp), opts.license, opts.source, fmt, extra)
    return write(Path(out), net, arch, role, role_cfg, prov, fmt, srcp.name, user_file=path, force=opts.force)


def convert_state_dict(src: str | Path, out: str | Path, fmt: str, opts: Options) -> Converted:
    if not opts.module:
        raise UsageError(f"--from {fmt} needs the architecture: --module FILE.py:Class [--kwargs JSON]")
    if not opts.role:
        raise UsageError(f"--from {fmt} needs --role ({'|'.join(ROLES)})")
    srcp = source_file(src)
    net, path, cls = user_arch(opts, fmt)
    _, sd = read_state(srcp, opts.trust_pickle, opts.key)
    load_strict(net, strip_prefix(sd), srcp.name)
    return write_user(out, net, path, cls, srcp, fmt, opts.role, opts)


# ----------------------------------------------------------------------------------------------------------------
# bring your own network without converting


def component_from_module(module: str, weights: str, role: str, *, kwargs: dict[str, Any] | None = None,
                          meta: dict[str, Any] | None = None, trust_pickle: bool = False, key: str | None = None,
                          device: str | torch.device = "cpu") -> Component:
    """A :class:`Component` from the user's ``FILE.py:Class`` and a weight file, as a converted checkpoint would load.

    ``meta`` holds the role data in config.json form (``parameterization``, ``latent``, ``output``, ``loss``,
    ``time``, ``features``, ``data``). score_sde checkpoint dicts are recognised (EMA applied).
    """
    kwargs = dict(kwargs or {})
    path, cls = parse_module_spec(module)
    net = instantiate(path, cls, kwargs)
    wpath = Path(weights)
    obj = load_weights(wpath, trust_pickle=trust_pickle)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict) and key is None and isinstance(obj.get("model"), dict) and "ema" in obj:
        load_strict(net, strip_prefix(state_dict_of(obj["model"])), wpath.name)
        if isinstance(obj["ema"], dict) and "shadow_params" in obj["ema"]:
            apply_ema(net, obj)
    else:
        load_strict(net, strip_prefix(state_dict_of(obj, key)), wpath.name)
    net.to(device).eval()
    role_cfg = role_config(role, net, dict(meta or {}), where=f"--meta {role}=JSON")
    digest = sha256_file(wpath)
    config = {"gpm_format": 1, "role": role,
              "arch": {"name": USER_ARCH, "kwargs": {"file": str(path.resolve()), "class": cls, "kwargs": kwargs,
                                                    "sha256": sha256_file(path)}},
              **role_cfg,
              "provenance": {"source": str(wpath.resolve()), "license": "unknown", "sha256": digest}, "metrics": {}}
    return Component(role=role, module=net, config=config, ref=f"{path.name}:{cls}+{wpath.name}", path=None,
                     sha256=digest)


def _split_role(value: str, default_role: str | None, flag: str) -> tuple[str, str]:
    head, sep, rest = value.partition("=")
    if sep and head in ROLES:
        return head, rest
    if default_role is None:
        raise UsageError(f"{flag} {value!r}: say which role it is for ({flag} ROLE=..., or --role ROLE)")
    if default_role not in ROLES:
        raise UsageError(f"--role must be one of {', '.join(ROLES)}, not {default_role!r}")
    return default_role, value


def module_options(modules: list[str] | None, weights: list[str] | None, kwargs: list[str] | None,
                   meta: list[str] | None, role: str | None) -> dict[str, dict[str, Any]]:
    """Parse ``gpm sample``'s ``--module/--weights/--kwargs/--meta [ROLE=]VALUE`` (each repeatable) by role.

    Returns ``{role: {"module", "weights", "kwargs", "meta"}}`` for :func:`gpmcli.api.resolve_bundle`.
    """
    out: dict[str, dict[str, Any]] = {}
    for flag, values, field in (("--module", modules, "module"), ("--weights", weights, "weights"),
                                ("--kwargs", kwargs, "kwargs"), ("--meta", meta, "meta")):
        for v in values or []:
            r, val = _split_role(v, role, flag)
            entry = out.setdefault(r, {})
            if field in entry:
                raise UsageError(f"{flag} given twice for role {r}")
            entry[field] = parse_json(val, f"{flag} {r}") if field in ("kwargs", "meta") else val
    for r, e in out.items():
        if "module" not in e or "weights" not in e:
            raise UsageError(f"role {r}: --module and --weights go together (got only "
                             f"{', '.join('--' + k for k in e)})")
    return out
