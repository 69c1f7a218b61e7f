"""``--from score-sde``: score_sde_pytorch checkpoint dicts (``model`` with a ``module.`` prefix, ``ema.shadow_params``
an unnamed list in parameter order) + the user's architecture; the EMA weights are applied unless ``--no-ema``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gpmcli.convert.common import Converted, Options, load_strict, source_file, strip_prefix
from gpmcli.convert.ema import apply_ema
from gpmcli.convert.user import user_arch, write_user
from gpmcli.errors import UsageError
from gpmcli.safeload import load_weights


def convert_score_sde(src: str | Path, out: str | Path, fmt: str, opts: Options) -> Converted:
    srcp = source_file(src)
    net, path, cls = user_arch(opts, fmt)
    obj = load_weights(srcp, trust_pickle=opts.trust_pickle)
    if not isinstance(obj, dict) or "model" not in obj:
        raise UsageError(f"{srcp.name}: not a score_sde checkpoint (no 'model' entry)")
    sd = strip_prefix({k: v for k, v in obj["model"].items() if isinstance(v, torch.Tensor)})
    load_strict(net, sd, srcp.name)
    extra: dict[str, Any] = {"step": int(obj["step"]) if obj.get("step") is not None else None}
    if opts.ema:
        apply_ema(net, obj)
    extra["ema"] = bool(opts.ema)
    return write_user(out, net, path, cls, srcp, fmt, opts.role or "score", opts, extra)
