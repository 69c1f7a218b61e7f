"""EMA weights: score_sde's ``ema.shadow_params`` (an unnamed list in parameter order) and named EMA state dicts."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gpmcli.errors import UsageError


def apply_ema(net: nn.Module, ckpt: dict[str, Any]) -> None:
    """Copy score_sde's ``ema.shadow_params`` (an unnamed list in parameter order) into ``net``'s parameters."""
    e = ckpt.get("ema")
    shadow = e.get("shadow_params") if isinstance(e, dict) else None
    if not isinstance(shadow, (list, tuple)):
        raise UsageError("the checkpoint has no ema.shadow_params; pass --no-ema to use the raw weights")
    params = [p for p in net.parameters() if p.requires_grad]
    if len(shadow) != len(params):
        raise UsageError(f"ema.shadow_params has {len(shadow)} tensors but the architecture has {len(params)} "
                         "trainable parameters; wrong --module/--kwargs?")
    with torch.no_grad():
        for i, (p, s) in enumerate(zip(params, shadow)):
            if tuple(p.shape) != tuple(s.shape):
                raise UsageError(f"ema.shadow_params[{i}] has shape {tuple(s.shape)}, parameter {i} of the "
                                 f"architecture {tuple(p.shape)}")
            p.copy_(s)
