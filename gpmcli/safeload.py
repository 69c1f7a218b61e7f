"""Loading foreign weight files without running their code.

``.safetensors`` is read directly. ``.pth/.pt/.ckpt/.bin`` go through ``torch.load(weights_only=True)`` with a narrow
allow-list of harmless globals; a file that needs anything else is refused with :class:`UnsafeFileError` (exit 5)
naming the offending global, unless the caller passes ``trust_pickle=True``.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path
from typing import Any

import torch

from gpmcli.errors import UnsafeFileError, UsageError

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".pkl", ".tar")


def _allowed_globals() -> list[Any]:
    allowed: list[Any] = [argparse.Namespace, collections.OrderedDict, set, frozenset, slice, range, complex]
    try:
        import numpy as np

        allowed += [np.dtype, np.ndarray]
        core = getattr(np, "_core", None) or getattr(np, "core")
        allowed += [core.multiarray.scalar, core.multiarray._reconstruct]
        allowed += [type(np.dtype(t)) for t in ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                                                 "uint8", "bool")]
    except Exception:  # pragma: no cover - numpy is a dependency, but stay robust across versions
        pass
    return allowed


def load_weights(path: str | Path, *, trust_pickle: bool = False, map_location: str = "cpu") -> Any:
    """The object stored in a weight file (usually a state dict), loaded safely."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"weight file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device=map_location)
        except Exception as e:
            raise UsageError(f"{p}: not a readable safetensors file ({e})") from None
    if trust_pickle:
        return torch.load(str(p), map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return torch.load(str(p), map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError (or RuntimeError on older versions)
        msg = str(e)
        m = re.search(r"(?:Unsupported global: GLOBAL|global) ([\w\.]+)", msg)
        if m or "weights_only" in msg.lower() or "Weights only load failed" in msg:
            what = m.group(1) if m else "an object that needs code to rebuild"
            raise UnsafeFileError(f"{p}: refused to unpickle {what}; loading it would run code from the file. "
                                  "Re-run with --trust-pickle only if you trust its source") from None
        raise UsageError(f"{p}: cannot read as a torch weight file ({msg.splitlines()[0] if msg else e})") from None


def state_dict_of(obj: Any, key: str | None = None) -> dict[str, torch.Tensor]:
    """Find the tensor dict in a loaded checkpoint object (``obj[key]``, ``state_dict``, ``model``, or ``obj``)."""
    if key is not None:
        for part in key.split("."):
            if not isinstance(obj, dict) or part not in obj:
                raise UsageError(f"no entry {key!r} in the weight file")
            obj = obj[part]
    elif isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for k in ("state_dict", "model_state_dict", "model", "net", "ema"):
            if isinstance(obj.get(k), dict):
                obj = obj[k]
                break
    if not isinstance(obj, dict):
        raise UsageError("the weight file holds no state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UsageError("the weight file holds no tensors")
    return tensors
