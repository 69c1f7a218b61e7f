"""What every converter shares: options, JSON helpers, strict loading, provenance, writing the checkpoint."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from gpmcli.checkpoint import CONFIG, WEIGHTS, atomic_write_text, model_card, read_config, save_checkpoint
from gpmcli.checkpoint import sha256_file  # noqa: F401  (re-exported to the converters)
from gpmcli.errors import IntegrityError, UsageError
from gpmcli.safeload import load_weights, state_dict_of
from gpmcli.usercode import USER_ARCH


@dataclass
class Options:
    """Everything ``gpm convert`` passes to a format's converter (each format reads what it needs)."""

    role: str | None = None
    module: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    keep_sigmoid: bool = False
    ema: bool = True
    key: str | None = None
    license: str | None = None
    source: str | None = None
    trust_pickle: bool = False
    force: bool = False


@dataclass
class Converted:
    out: Path
    config: dict[str, Any]
    module: nn.Module


def source_file(src: str | Path) -> Path:
    p = Path(src)
    if not p.is_file():
        raise UsageError(f"source file not found: {p}")
    return p


def parse_json(text: str | None, what: str) -> dict[str, Any]:
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return dict(text)
    try:
        v = json.loads(text)
    except ValueError as e:
        raise UsageError(f"{what}: not valid JSON ({e})") from None
    if not isinstance(v, dict):
        raise UsageError(f"{what}: expected a JSON object, got {type(v).__name__}")
    return v


def deep_update(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = v
    return out


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``module`` requiring identical keys and shapes (one clear error otherwise)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'…' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{'…' if len(unexpected) > 3 else ''}")
        if bad:
            k = bad[0]
            parts.append(f"shape of {k}: file {tuple(state[k].shape)} vs architecture {tuple(own[k].shape)}")
        raise UsageError(f"{what}: weights do not fit the architecture ({'; '.join(parts)}); check --kwargs / --from")
    module.load_state_dict(state, strict=True)


def provenance(src: Path | str, digest: str | None, license: str | None, source: str | None, fmt: str,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    prov = {"source": source or str(src), "license": license or "unknown", "sha256": digest,
            "file": Path(str(src)).name, "converted_from": fmt}
    prov.update(extra or {})
    return prov


def card(config: dict[str, Any], fmt: str, src_name: str) -> str:
    """The converted checkpoint's model card: where it came from, under which license, what it is."""
    prov = config["provenance"]
    lines = [f"# {config['role']} network converted from {src_name}", "",
             f"Converted with `gpm convert --from {fmt}` from `{prov.get('source') or src_name}`.", "",
             f"- License: {prov.get('license', 'unknown')} (the original's; check it before redistributing)",
             f"- Original file sha256: `{prov.get('sha256')}`",
             f"- Architecture: `{config['arch']['name']}` {json.dumps(config['arch'].get('kwargs', {}))}"]
    if config["role"] == "discriminator":
        lines.append(f"- Output: `{config['output']}` (loss `{config['loss']}`)")
    if config["role"] == "generator":
        lines.append(f"- Latent: {json.dumps(config['latent'])}")
    if config["role"] == "score":
        lines.append(f"- Parameterization: {json.dumps(config['parameterization'])}")
    if config.get("features"):
        lines.append(f"- Features: {json.dumps(config['features'])}")
    d = config.get("data", {})
    lines.append(f"- Data: shape {d.get('shape')}, range {d.get('range')}, dataset {d.get('dataset')}")
    if config["arch"]["name"] == USER_ARCH:
        lines += ["", f"The architecture is the Python file `{config['arch']['kwargs']['file']}` in this folder; "
                  "loading the checkpoint runs it (gpm asks for `--trust-pickle`)."]
    return model_card(config, "\n".join(lines) + "\n")


def read_state(src: Path, trust_pickle: bool, key: str | None = None) -> tuple[Any, dict[str, torch.Tensor]]:
    obj = load_weights(src, trust_pickle=trust_pickle)
    if isinstance(obj, nn.Module):  # only reachable with --trust-pickle (a pickled whole module)
        obj = obj.state_dict()
    return obj, state_dict_of(obj, key)


def strip_prefix(sd: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def write(out: Path, module: nn.Module, arch: dict[str, Any], role: str, role_cfg: dict[str, Any],
          provenance: dict[str, Any], fmt: str, src_name: str, user_file: Path | None = None,
          force: bool = False) -> Converted:
    """Write the checkpoint directory ``out`` (safetensors + config + card) and check the stored tensors."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: exists and is not a directory")
    if out.is_dir() and (out / WEIGHTS).exists() and not force:
        raise UsageError(f"-o {out}: already holds a checkpoint; pass --force to overwrite")
    config = {"role": role, "arch": arch, **role_cfg, "provenance": provenance, "metrics": {}}
    if user_file is not None:
        out.mkdir(parents=True, exist_ok=True)
        dst = out / arch["kwargs"]["file"]
        if dst.resolve() != user_file.resolve():
            shutil.copyfile(user_file, dst)
    save_checkpoint(out, module, config, card=None)
    # the card needs the final config (with gpm_format); rewrite it with the converter's text
    config = read_config(out)
    atomic_write_text(out / "README.md", card(config, fmt, src_name))
    # round trip: the stored tensors must equal the converted module's
    stored = load_file(str(out / WEIGHTS))
    for k, v in module.state_dict().items():
        if not torch.equal(stored[k], v.detach().cpu()):
            raise IntegrityError(f"{out}: stored tensor {k} differs from the converted one")
    assert (out / CONFIG).is_file()
    return Converted(out, config, module)
