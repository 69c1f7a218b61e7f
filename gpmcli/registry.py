"""Checkpoint references and the bundle registry (``checkpoints/registry.toml``).

A reference is a registry bundle name, a local checkpoint directory, ``hf:ORG/NAME[@REV][/SUBFOLDER]`` or an analytic
target ``toy:NAME`` / ``toy:PATH.json``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from gpmcli.errors import UsageError
from gpmcli.fields.base import Bundle, Component


def checkpoints_dir() -> Path:
    """``$GPM_CHECKPOINTS`` or the ``checkpoints/`` folder of the source tree."""
    env = os.environ.get("GPM_CHECKPOINTS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "checkpoints"


@dataclass
class ComponentSpec:
    role: str
    ref: str
    sha256: str | None = None


@dataclass
class BundleSpec:
    name: str
    description: str = ""
    components: dict[str, ComponentSpec] = field(default_factory=dict)


@dataclass
class Registry:
    bundles: dict[str, BundleSpec]
    defaults: dict[str, str]
    root: Path

    @classmethod
    def load(cls, root: Path | None = None) -> "Registry":
        root = root or checkpoints_dir()
        path = root / "registry.toml"
        if not path.is_file():
            return cls({}, {}, root)
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"{path}: invalid TOML ({e})") from None
        bundles = {}
        for name, body in data.get("bundles", {}).items():
            spec = BundleSpec(name, description=body.get("description", ""))
            for role, v in body.items():
                if role == "description":
                    continue
                if isinstance(v, str):
                    spec.components[role] = ComponentSpec(role, v)
                else:
                    spec.components[role] = ComponentSpec(role, v["ref"], v.get("sha256"))
            bundles[name] = spec
        return cls(bundles, dict(data.get("defaults", {})), root)

    def default_bundle(self, kind: str) -> str:
        if kind not in self.defaults:
            raise UsageError(f"no default bundle for --model {kind}; pass --checkpoint")
        return self.defaults[kind]


def load_component(ref: str, role: str | None = None, *, sha256: str | None = None, device="cpu",
                   trust_pickle: bool = False, base: Path | None = None) -> Component:
    """Resolve one component reference (not a bundle) and load it."""
    from gpmcli.checkpoint import load_checkpoint

    if ref.startswith("toy:"):
        from gpmcli.fields.toy import load_toy, toy_config

        gm = load_toy(ref[4:])
        return Component(role="score", module=gm.to(device), config=toy_config(gm, ref), ref=ref)
    if ref.startswith("hf:"):
        from gpmcli.hub import download_checkpoint

        path = download_checkpoint(ref, expected_sha256=sha256)
        comp = load_checkpoint(path, ref=ref, expected_sha256=sha256, device=device, trust_code=trust_pickle)
    else:
        p = Path(ref)
        if not p.is_absolute() and base is not None and not p.exists():
            p = base / p
        if not p.exists():
            raise UsageError(f"checkpoint not found: {ref} (not a registry name, directory, hf: or toy: reference)")
        comp = load_checkpoint(p, ref=ref, expected_sha256=sha256, device=device, trust_code=trust_pickle)
    if role is not None and comp.role != role and not (role == "features" and comp.role == "classifier"):
        raise UsageError(f"{ref} is a {comp.role} checkpoint, but a {role} is needed here")
    return comp


def load_bundle(ref: str, *, registry: Registry | None = None, device="cpu", trust_pickle: bool = False) -> Bundle:
    """A registry bundle name, or a single component reference (a bundle of one)."""
    registry = registry or Registry.load()
    if ref in registry.bundles:
        spec = registry.bundles[ref]
        comps = {role: load_component(c.ref, role, sha256=c.sha256, device=device, base=registry.root)
                 for role, c in spec.components.items()}
        return Bundle(ref, comps)
    comp = load_component(ref, device=device, trust_pickle=trust_pickle)
    return Bundle(ref, {comp.role: comp})
