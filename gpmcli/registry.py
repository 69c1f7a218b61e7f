"""The bundle registry (``checkpoints/registry.toml``): bundles of components by role, their sampler defaults and
which bundle each ``--model`` kind uses. References to checkpoints are read by :mod:`gpmcli.refs`; ``load_bundle``
and ``load_component`` here are the library entry points over it.
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
    convert: str | None = None  # a foreign Hub repository converted on first use (gpmcli.zoo)
    unpinned: str | None = None  # why a Hub reference has no pinned commit (said by `gpm models list`)

    @property
    def pin(self) -> str:
        """``pinned`` (commit + sha256), ``unpinned`` or ``local``."""
        if self.ref.startswith("url:"):
            return "pinned" if self.sha256 and len(self.sha256) == 64 and not self.unpinned else "unpinned"
        if not self.ref.startswith("hf:"):
            return "local"
        rev = self.ref[3:].partition("@")[2].split("/")[0]
        return "pinned" if len(rev) == 40 and not self.unpinned else "unpinned"


@dataclass
class BundleSpec:
    name: str
    description: str = ""
    components: dict[str, ComponentSpec] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # license, source, kinds, published (zoo bundles)


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
                if role in ("description", "notes", "license", "source", "kinds", "published"):
                    if role != "description":
                        spec.info[role] = v
                    continue
                if role == "params":  # [bundles.NAME.params.KIND]: sampler defaults for --model KIND
                    if not isinstance(v, dict) or not all(isinstance(t, dict) for t in v.values()):
                        raise UsageError(f"{path}: bundles.{name}.params must hold one table per --model kind")
                    spec.params = {str(k): dict(t) for k, t in v.items()}
                    continue
                if isinstance(v, str):
                    spec.components[role] = ComponentSpec(role, v)
                elif isinstance(v, dict) and isinstance(v.get("ref"), str):
                    spec.components[role] = ComponentSpec(role, v["ref"], v.get("sha256"), v.get("convert"),
                                                          v.get("unpinned"))
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
        from gpmcli.refs import parse_component

        out = []
        for kind, name in self.defaults.items():
            if name not in self.bundles:
                out.append(f"default for --model {kind} names no bundle: {name!r}")
        for name, spec in self.bundles.items():
            for role, c in spec.components.items():
                where = f"bundles.{name}.{role}"
                try:
                    r = parse_component(c.ref, base=self.root, sha256=c.sha256, convert=c.convert)
                except UsageError as e:
                    out.append(f"{where}: {e}")
                    continue
                if r.kind == "converted":  # a foreign repository or file, converted on first use
                    from gpmcli.convert import FORMATS

                    if c.convert not in FORMATS:
                        out.append(f"{where}: convert = {c.convert!r} is not a gpm convert format")
                    if c.pin == "unpinned" and not c.unpinned:
                        out.append(f"{where}: {c.ref} is not pinned to a commit and does not say why (unpinned = ...)")
                elif r.kind == "hf":
                    if not r.hf.revision:
                        out.append(f"{where}: {c.ref} has no pinned @REV")
                    if not c.sha256 or len(c.sha256) != 64:
                        out.append(f"{where}: {c.ref} has no sha256 of model.safetensors")
                elif r.kind == "path":
                    p = r.path
                    if not (p / "model.safetensors").is_file() or not (p / "config.json").is_file():
                        out.append(f"{where}: {c.ref} is not a checkpoint directory under {self.root}")
        return out


def load_component(ref: str, role: str | None = None, *, sha256: str | None = None, device="cpu",
                   trust_pickle: bool = False, base: Path | None = None, convert: str | None = None) -> Component:
    """Load the network of role ``role`` that ``ref`` names (any form :func:`gpmcli.refs.parse_ref` takes; a
    bundle's component of that role). ``sha256``/``base``/``convert``: ``ref`` is a registry component (pinned
    weights, a folder relative to ``base``, a foreign format converted once, see :mod:`gpmcli.zoo`)."""
    from gpmcli.refs import parse_component, parse_ref

    if sha256 is not None or base is not None or convert is not None:
        r = parse_component(ref, base=base, sha256=sha256, convert=convert)
    else:
        r = parse_ref(ref)
    return r.component(role, device=device, trust_pickle=trust_pickle)


def load_bundle(ref: str, *, registry: Registry | None = None, device="cpu", trust_pickle: bool = False) -> Bundle:
    """A registry bundle, or any other reference :func:`gpmcli.refs.parse_ref` takes (a bundle of one)."""
    from gpmcli.refs import parse_ref

    return parse_ref(ref, registry=registry).load(device=device, trust_pickle=trust_pickle)
