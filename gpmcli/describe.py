"""What a checkpoint folder or a weight file holds (tensors, shapes, config), read without running pickled code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gpmcli.errors import UsageError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")


def _collect_tensors(obj: Any, prefix: str, out: dict, other: dict, depth: int = 0) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        out[prefix or "<tensor>"] = obj
    elif isinstance(obj, dict) and depth < 8:
        for k, v in obj.items():
            _collect_tensors(v, f"{prefix}.{k}" if prefix else str(k), out, other, depth + 1)
    elif isinstance(obj, (list, tuple)) and depth < 8 and any(isinstance(v, (torch.Tensor, dict)) for v in obj):
        for i, v in enumerate(obj):
            _collect_tensors(v, f"{prefix}.{i}" if prefix else str(i), out, other, depth + 1)
    else:
        r = repr(obj)
        other[prefix or "<object>"] = r if len(r) <= 80 else r[:77] + "..."


def weight_file_info(path: str | Path, *, trust_pickle: bool = False) -> dict[str, Any]:
    """Tensors (name, shape, dtype, parameter count) of a weight file, read without running pickled code."""
    from gpmcli.checkpoint import sha256_file

    p = Path(path)
    tensors: list[dict[str, Any]] = []
    other: dict[str, str] = {}
    metadata = None
    if p.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as f:
                metadata = f.metadata()
                for k in f.keys():
                    sl = f.get_slice(k)
                    shape = list(sl.get_shape())
                    n = 1
                    for s in shape:
                        n *= s
                    tensors.append({"name": k, "shape": shape, "dtype": str(sl.get_dtype()), "numel": n})
        except Exception as e:
            raise UsageError(f"{p}: not a readable safetensors file ({e})") from None
    else:
        from gpmcli.safeload import load_weights

        obj = load_weights(p, trust_pickle=trust_pickle)
        found: dict = {}
        _collect_tensors(obj, "", found, other)
        tensors = [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""),
                    "numel": int(v.numel())} for k, v in found.items()]
    info = {"kind": "weights", "path": str(p), "format": "safetensors" if p.suffix == ".safetensors" else "pickle",
            "sha256": sha256_file(p), "size": p.stat().st_size, "tensors": tensors,
            "parameters": int(sum(t["numel"] for t in tensors))}
    if other:
        info["other"] = other
    if metadata:
        info["metadata"] = {k: (v if len(v) <= 200 else v[:197] + "...") for k, v in metadata.items()}
    return info


def checkpoint_info(path: str | Path, ref: str | None = None) -> dict[str, Any]:
    """A gpm checkpoint directory: its config and the tensors of ``model.safetensors``."""
    from gpmcli.checkpoint import read_config

    d = Path(path)
    if not (d / "model.safetensors").is_file():
        weights = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.suffix in WEIGHT_SUFFIXES)[:20]
        hint = f" (weight files inside: {', '.join(weights)}; pass one of them)" if weights else ""
        raise UsageError(f"{d} is not a gpm checkpoint (no model.safetensors){hint}")
    config = read_config(d)
    w = weight_file_info(d / "model.safetensors")
    w.pop("metadata", None)
    return {"kind": "checkpoint", "ref": ref or str(d), "path": str(d), "role": config.get("role"),
            "arch": config.get("arch"), "config": config, "sha256": w["sha256"], "parameters": w["parameters"],
            "tensors": w["tensors"]}


def check_header(weights: Path, ckpt_dir: Path) -> None:
    """The config in the safetensors header must agree with ``config.json``."""
    from safetensors import safe_open

    from gpmcli.checkpoint import read_config

    try:
        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise UsageError(f"{weights}: unreadable safetensors header ({e})") from None
    if "gpm.config" in meta:
        head, cfg = json.loads(meta["gpm.config"]), read_config(ckpt_dir)
        for key in ("role", "arch"):
            if head.get(key) != cfg.get(key):
                raise UsageError(f"{ckpt_dir}: config.json {key!r} differs from the config stored in model.safetensors")
