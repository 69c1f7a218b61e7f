"""Role metadata of a converted network (what ``config.json`` says besides the architecture)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from gpmcli.checkpoint import ROLES
from gpmcli.errors import UsageError


def _default_latent(module: nn.Module) -> int | None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            return m.in_features
        if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
            return m.in_channels
    return None


def _final_range(module: nn.Module) -> list[float] | None:
    last = [m for m in module.modules() if not list(m.children())]
    if last and isinstance(last[-1], nn.Tanh):
        return [-1.0, 1.0]
    if last and isinstance(last[-1], nn.Sigmoid):
        return [0.0, 1.0]
    return None


def role_config(role: str, module: nn.Module, meta: dict[str, Any], *, where: str = "--meta") -> dict[str, Any]:
    """Role data + ``data`` for ``role`` from user metadata, with defaults where they are safe to infer."""
    if role not in ROLES:
        raise UsageError(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    meta = copy.deepcopy(meta)
    data = dict(meta.pop("data", {}) or {})
    cfg: dict[str, Any] = {}
    if role == "score":
        p = dict(meta.pop("parameterization", {}) or {})
        if not p.get("type"):
            raise UsageError(f"a score network needs its parameterization (edm|score|eps|x0): {where} / "
                             "--parameterization")
        cfg["parameterization"] = p
        if not data.get("shape"):
            raise UsageError(f"a score network needs its data shape: {where} / --data-shape C,H,W")
    elif role == "generator":
        lat = dict(meta.pop("latent", {}) or {})
        if not lat.get("dim"):
            dim = _default_latent(module)
            if dim is None:
                raise UsageError(f"cannot infer the generator's latent dimension; give it ({where} / --latent-dim)")
            lat["dim"] = dim
        lat.setdefault("distribution", "normal")
        lat.setdefault("shape", [int(lat["dim"])])
        cfg["latent"] = lat
        if not data.get("shape") or "range" not in data:
            p = next(module.parameters(), None)
            with torch.no_grad():
                z = torch.zeros(1, *lat["shape"], device=p.device if p is not None else "cpu")
                was = module.training
                module.eval()
                try:
                    y = module(z)
                except Exception as e:
                    raise UsageError(f"the generator does not accept z of shape {list(z.shape)}: "
                                     f"{type(e).__name__}: {e}; set latent shape") from None
                finally:
                    module.train(was)
            data.setdefault("shape", list(y.shape[1:]))
            data.setdefault("range", _final_range(module))
    elif role == "discriminator":
        cfg["output"] = meta.pop("output", "logit")
        if cfg["output"] not in ("logit", "prob", "critic"):
            raise UsageError(f"discriminator output must be logit|prob|critic, not {cfg['output']!r}")
        cfg["loss"] = meta.pop("loss", "ipm" if cfg["output"] == "critic" else "vanilla")
        cfg["time"] = meta.pop("time", None)
    elif role in ("classifier", "features"):
        if "features" in meta:
            cfg["features"] = meta.pop("features")
    cfg.update(meta)
    data.setdefault("range", None)
    data.setdefault("dataset", None)
    cfg["data"] = data
    return cfg
