"""``--from diffusers``: a diffusers ``UNet2DModel`` repository (a local folder or ``hf:ORG/NAME[@REV]``).

The folder holds ``unet/`` + ``scheduler/`` (a pipeline) or the UNet's files at its root (the 2022 ``google/ddpm-*``
and ``google/ncsnpp-*`` layout, with ``scheduler_config.json`` next to ``config.json``). The parameterisation comes
from the scheduler config (:mod:`gpmcli.convert.schedulers`).

Weights: ``diffusion_pytorch_model.safetensors``, else the older ``diffusion_pytorch_model.bin`` (a plain state dict,
read without running pickled code). Repositories saved before diffusers 0.14 name their attention projections
``query``/``key``/``value``/``proj_attn``; they are renamed to today's ``to_q``/``to_k``/``to_v``/``to_out.0`` as
diffusers itself does when it loads them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from gpmcli.convert.common import Converted, Options, deep_update, load_strict, provenance, sha256_file, write
from gpmcli.convert.schedulers import data_range_from_scheduler, parameterization_from_scheduler
from gpmcli.errors import UsageError

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
_OLD_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_OLD_KEY = re.compile(r"^(?P<head>.*\battentions\.\d+)\.(?P<name>query|key|value|proj_attn)\.(?P<tail>weight|bias)$")


def rename_old_attention(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Old attention parameter names (``...attentions.N.query.weight``) -> today's (``...attentions.N.to_q.weight``)."""
    out = {}
    for k, v in sd.items():
        m = _OLD_KEY.match(k)
        out[f"{m['head']}.{_OLD_ATTENTION[m['name']]}.{m['tail']}" if m else k] = v
    return out


def _hub_folder(src: str) -> tuple[Path, str, dict[str, Any]]:
    """Download the repository's configs and the UNet's weights (safetensors if the repository has them, else the
    ``.bin``), pinned to the commit the first request resolved. Returns (folder, origin, resolved)."""
    from gpmcli.hub import download_repo, parse_hf_ref

    r = parse_hf_ref(src)
    root = Path(download_repo(src, allow_patterns=["*.json", "*.md"]))
    snap = root if not r.subfolder else root.parents[len(Path(r.subfolder).parts) - 1]
    commit = snap.name if re.fullmatch(r"[0-9a-f]{40}", snap.name) else r.revision
    pinned = f"hf:{r.repo_id}@{commit}" + (f"/{r.subfolder}" if r.subfolder else "")
    unet = "unet/" if (root / "unet" / "config.json").is_file() else ""
    root = Path(download_repo(pinned, allow_patterns=["*.json", "*.md", f"{unet}*.safetensors"]))
    if not any((root / unet / w).is_file() for w in WEIGHT_FILES):
        root = Path(download_repo(pinned, allow_patterns=["*.json", "*.md", f"{unet}*.bin"]))
    return root, src, {"repo": r.repo_id, "revision": r.revision, "commit": commit}


def diffusers_folder(src: str) -> tuple[Path, str, dict[str, Any]]:
    if src.startswith("hf:"):
        return _hub_folder(src)
    p = Path(src)
    if not p.is_dir():
        raise UsageError(f"--from diffusers expects a folder or hf:ORG/NAME[@REV], not {src}")
    return p, str(p.resolve()), {}


def read_unet(unet_dir: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], Path]:
    """(config kwargs, state dict with today's names, weight file) of a UNet2DModel folder."""
    from gpmcli.safeload import load_weights

    cfg_path = unet_dir / "config.json"
    ucfg = json.loads(cfg_path.read_text())
    if ucfg.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise UsageError(f"{cfg_path}: a {ucfg.get('_class_name')}, only UNet2DModel is supported")
    wfile = next((unet_dir / w for w in WEIGHT_FILES if (unet_dir / w).is_file()), None)
    if wfile is None:
        raise UsageError(f"{unet_dir}: no {' or '.join(WEIGHT_FILES)}")
    sd = load_weights(wfile)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UsageError(f"{wfile}: not a state dict of tensors")
    return {k: v for k, v in ucfg.items() if not k.startswith("_")}, rename_old_attention(sd), wfile


def convert_diffusers(src: str | Path, out: str | Path, fmt: str = "diffusers", opts: Options | None = None
                      ) -> Converted:
    """A diffusers UNet2DModel repo (folder with ``unet/`` + ``scheduler/``, or a bare UNet folder)."""
    opts = opts or Options()
    try:
        import diffusers  # noqa: F401
    except ImportError:
        raise UsageError("--from diffusers needs the optional dependency: pip install 'gpm[diffusers]'") from None
    root, origin, resolved = diffusers_folder(str(src))
    unet_dir = root / "unet" if (root / "unet" / "config.json").is_file() else root
    if not (unet_dir / "config.json").is_file():
        raise UsageError(f"{root}: no unet/config.json or config.json")
    unet_kwargs, sd, wfile = read_unet(unet_dir)
    from gpmcli.nets.foreign import DiffusersUNet2D

    net = DiffusersUNet2D(config=unet_kwargs)
    load_strict(net.unet, sd, wfile.name)
    net.eval()

    sched_path = next((p for p in (root / "scheduler" / "scheduler_config.json", root / "scheduler_config.json")
                       if p.is_file()), None)
    if sched_path is None and "parameterization" not in opts.meta:
        raise UsageError(f"{root}: no scheduler/scheduler_config.json; give the parameterization with --meta")
    scfg = json.loads(sched_path.read_text()) if sched_path is not None else None
    param = parameterization_from_scheduler(scfg) if scfg is not None else {}
    size = unet_kwargs.get("sample_size", 32)
    size = [int(size), int(size)] if isinstance(size, int) else [int(v) for v in size]
    cfg = {"parameterization": param,
           "data": {"shape": [int(unet_kwargs.get("in_channels", 3)), *size], "range": data_range_from_scheduler(scfg),
                    "dataset": None}}
    cfg = deep_update(cfg, opts.meta)
    extra = {"scheduler": scfg, "weights_file": wfile.name}
    if resolved:
        extra["resolved"] = {**resolved, "sha256": sha256_file(wfile)}
    prov = provenance(wfile, sha256_file(wfile), opts.license, opts.source or origin, fmt, extra)
    return write(Path(out), net, {"name": "diffusers-unet2d", "kwargs": {"config": unet_kwargs}}, "score", cfg,
                 prov, fmt, origin, force=opts.force)
