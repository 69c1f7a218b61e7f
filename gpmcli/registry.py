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
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


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
            if not isinstance(body, dict):
                raise UsageError(f"{path}: [bundles.{name}] must be a table")
            spec = BundleSpec(name, description=str(body.get("description", "")))
            for role, v in body.items():
                if role in ("description", "notes", "license"):
                    continue
                if role == "params":  # [bundles.NAME.params.KIND]: sampler defaults for --model KIND
                    if not isinstance(v, dict) or not all(isinstance(t, dict) for t in v.values()):
                        raise UsageError(f"{path}: bundles.{name}.params must hold one table per --model kind")
                    spec.params = {str(k): dict(t) for k, t in v.items()}
                    continue
                if isinstance(v, str):
                    spec.components[role] = ComponentSpec(role, v)
                elif isinstance(v, dict) and isinstance(v.get("ref"), str):
                    spec.components[role] = ComponentSpec(role, v["ref"], v.get("sha256"))
                else:
                    raise UsageError(f"{path}: bundles.{name}.{role} must be a reference string or "
                                     "{ ref = ..., sha256 = ... }")
            bundles[name] = spec
        defaults = {str(k): str(v) for k, v in data.get("defaults", {}).items()}
        return cls(bundles, defaults, root)

    def default_bundle(self, kind: str) -> str:
        if kind not in self.defaults:
            raise UsageError(f"no default bundle for --model {kind}; pass --checkpoint")
        return self.defaults[kind]

    def problems(self) -> list[str]:
        """What is wrong with the registry itself: unpinned Hub components, missing local checkpoints, defaults that
        name no bundle. (Checked by the test suite, so every bundle added stays reproducible.)"""
        from gpmcli.hub import parse_hf_ref

        out = []
        for kind, name in self.defaults.items():
            if name not in self.bundles:
                out.append(f"default for --model {kind} names no bundle: {name!r}")
        for name, spec in self.bundles.items():
            for role, c in spec.components.items():
                where = f"bundles.{name}.{role}"
                if c.ref.startswith("hf:"):
                    try:
                        r = parse_hf_ref(c.ref)
                    except UsageError as e:
                        out.append(f"{where}: {e}")
                        continue
                    if not r.revision:
                        out.append(f"{where}: {c.ref} has no pinned @REV")
                    if not c.sha256 or len(c.sha256) != 64:
                        out.append(f"{where}: {c.ref} has no sha256 of model.safetensors")
                elif c.ref.startswith("toy:"):
                    continue
                else:
                    p = Path(c.ref) if Path(c.ref).is_absolute() else self.root / c.ref
                    if not (p / "model.safetensors").is_file() or not (p / "config.json").is_file():
                        out.append(f"{where}: {c.ref} is not a checkpoint directory under {self.root}")
        return out


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
        return Bundle(ref, comps, params={k: dict(v) for k, v in spec.params.items()})
    comp = load_component(ref, device=device, trust_pickle=trust_pickle)
    return Bundle(ref, {comp.role: comp})
