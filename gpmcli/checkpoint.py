"""The gpm checkpoint format: one directory = one network.

``model.safetensors`` (weights; header metadata ``{"format": "pt", "gpm.config": <config.json>}``), ``config.json`` and
a model card ``README.md``. See docs/interfaces.md#checkpoint-format.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from collections.abc import Iterator
from typing import Any, BinaryIO

import torch
from torch import nn

from gpmcli.errors import IntegrityError, UsageError
from gpmcli.hashing import sha256_file  # noqa: F401  (imported from here by many modules)
from gpmcli.fields.base import Component

GPM_FORMAT = 1
ROLES = ("score", "discriminator", "generator", "classifier", "features")
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, *, durable: bool = False) -> Iterator[BinaryIO]:
    """A binary file handle whose content appears under ``path`` only when the block ends without error.

    It writes to a hidden temp file (``.NAME.*.tmp``) in the same folder, flushes it to disk and renames it over
    ``path``: readers see the old file or the complete new one, never a truncated one, even if the process is
    killed. ``durable=True`` also fsyncs before the rename (survives power loss; slower)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename: never a truncated file."""
    with atomic_open(path, durable=durable) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, durable: bool = False) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def model_card(config: dict[str, Any], body: str = "") -> str:
    """A Hub model card with YAML front matter (``library_name: gpm``, license, tags, datasets)."""
    prov = config.get("provenance", {})
    lic = str(prov.get("license", "other")).split()[0].lower() if prov.get("license") else "other"
    dataset = config.get("data", {}).get("dataset")
    tags = ["gpm", config.get("role", "model")]
    lines = ["---", "library_name: gpm", f"license: {lic}", "tags:"] + [f"  - {t}" for t in tags]
    if dataset:
        lines += ["datasets:", f"  - {dataset}"]
    lines += ["---", ""]
    if not body:
        body = f"# {config.get('role', 'model')} checkpoint\n\nArchitecture `{config.get('arch', {}).get('name')}`.\n"
    return "\n".join(lines) + body


def check_shapes(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """One line naming the first tensor whose shape differs between ``state`` and ``module`` (and how many differ),
    instead of PyTorch's list of every size mismatch."""
    own = module.state_dict()
    bad = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if bad:
        k = bad[0]
        raise UsageError(f"{what}: {k} has shape {list(state[k].shape)} in the file but "
                         f"{list(own[k].shape)} in the architecture ({len(bad)} of {len(own)} tensors differ in shape)")


def save_checkpoint(out_dir: str | os.PathLike, module: nn.Module, config: dict[str, Any], card: str | None = None) -> Path:
    """Write a checkpoint directory. ``config`` must hold at least ``role`` and ``arch``."""
    from safetensors.torch import save

    out = Path(out_dir)
    config = {"gpm_format": GPM_FORMAT, **config}
    if config.get("role") not in ROLES:
        raise UsageError(f"checkpoint role must be one of {', '.join(ROLES)}, not {config.get('role')!r}")
    if "arch" not in config:
        raise UsageError("checkpoint config needs 'arch' (name + constructor kwargs)")
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    cfg_text = json.dumps(config, indent=2, sort_keys=False)
    blob = save(state, metadata={"format": "pt", "gpm.config": cfg_text})
    atomic_write_bytes(out / WEIGHTS, blob, durable=True)
    atomic_write_text(out / CONFIG, cfg_text + "\n")
    atomic_write_text(out / CARD, card if card is not None else model_card(config))
    return out


def read_config(ckpt_dir: str | os.PathLike) -> dict[str, Any]:
    p = Path(ckpt_dir) / CONFIG
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise UsageError(f"{ckpt_dir} is not a gpm checkpoint (no {CONFIG})") from None
    except ValueError as e:
        raise UsageError(f"{p}: invalid JSON ({e})") from None


def load_checkpoint(ckpt_dir: str | os.PathLike, *, ref: str | None = None, expected_sha256: str | None = None,
                    device: str | torch.device = "cpu", trust_code: bool = False) -> Component:
    """Load a checkpoint directory into a :class:`Component` (network rebuilt from its config, eval mode)."""
    from safetensors.torch import load_file

    from gpmcli.nets import build_arch

    d = Path(ckpt_dir)
    wpath = d / WEIGHTS
    if not wpath.is_file():
        raise UsageError(f"{d} is not a gpm checkpoint (no {WEIGHTS})")
    digest = sha256_file(wpath)
    if expected_sha256 and digest != expected_sha256.lower():
        raise IntegrityError(f"{wpath}: sha256 {digest[:12]}… does not match the expected {expected_sha256[:12]}…; "
                             "delete it and pull again")
    config = read_config(d)
    if config.get("gpm_format", 0) > GPM_FORMAT:
        raise UsageError(f"{d}: checkpoint format {config['gpm_format']} is newer than this gpm understands; upgrade gpm")
    if config["arch"].get("name") == "user-module":  # architecture shipped as a Python file (gpm convert --module)
        from gpmcli.usercode import build_user_module

        module = build_user_module(config["arch"], d, trust_code=trust_code)
    else:
        module = build_arch(config["arch"])
    try:
        state = load_file(str(wpath), device=str(device))
    except Exception as e:  # safetensors raises its own error types
        raise IntegrityError(f"{wpath}: not a readable safetensors file ({e})") from None
    check_shapes(module, state, f"{d}: weights do not fit architecture {config['arch'].get('name')!r}")
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UsageError(f"{d}: weights do not fit architecture {config['arch'].get('name')!r} "
                         f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    module.to(device).eval()
    return Component(role=config["role"], module=module, config=config, ref=ref or str(d), path=d, sha256=digest)
