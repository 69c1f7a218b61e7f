"""A bundle name from ``checkpoints/registry.toml``: several networks by role, each a component reference."""

from __future__ import annotations

from typing import Any

from gpmcli.errors import DownloadError, RoleMismatchError, UsageError
from gpmcli.refs.base import Ref


class BundleRef(Ref):
    kind = "bundle"
    source = "bundle"

    @property
    def spec(self):
        return self.registry.bundles[self.value]

    def components(self) -> dict[str, Ref]:
        """Role -> the component's reference (pinned by the registry)."""
        from gpmcli.refs import parse_component

        return {role: parse_component(c.ref, base=self.registry.root, sha256=c.sha256, convert=c.convert)
                for role, c in self.spec.components.items()}

    def load(self, *, device="cpu", trust_pickle: bool = False):
        from gpmcli.fields.base import Bundle
        from gpmcli.samplers import check_params  # the bundle's params.KIND tables, typed and checked

        comps = {role: r.component(role, device=device) for role, r in self.components().items()}
        return Bundle(self.value, comps, params={k: check_params(k, v, f"bundle {self.value!r}")
                                                 for k, v in self.spec.params.items()})

    def component(self, role: str | None = None, *, device="cpu", trust_pickle: bool = False):
        comps = self.components()
        if role is None and len(comps) == 1:
            role = next(iter(comps))
        if role not in comps:
            has = ", ".join(comps) or "nothing"
            raise RoleMismatchError(f"bundle {self.value!r} has no {role or 'single network'} (it has {has})",
                                    ref=self.value, role=has, needed=role)
        return comps[role].component(role, device=device)

    def verify(self) -> list[dict[str, Any]]:
        return [{**rec, "role": role} for role, r in self.components().items() for rec in r.verify()]

    def pull(self, *, force: bool = False) -> list[dict[str, Any]]:
        out = []
        for role, r in self.components().items():
            for rec in r.pull(force=force):
                rec["role"] = role
                if r.convert:
                    rec["pin"] = self.spec.components[role].pin
                out.append(rec)
        return out

    def info(self, *, trust_pickle: bool = False) -> dict[str, Any]:
        spec, reg = self.spec, self.registry
        comps = {}
        for role, r in self.components().items():
            c = spec.components[role]
            entry: dict[str, Any] = {"ref": c.ref, "sha256": c.sha256, "source": r.source}
            try:
                if c.convert:
                    entry.update(convert=c.convert, pin=c.pin, unpinned=c.unpinned)
                sub = r.cached_info()
                if c.convert and sub.get("role") is None:
                    sub["role"] = role
                entry.update({k: sub.get(k) for k in ("role", "arch", "parameters", "path", "config") if k in sub})
            except (DownloadError, UsageError) as e:
                entry["error"] = str(e)
            comps[role] = entry
        return {"kind": "bundle", "name": self.value, "description": spec.description, **spec.info,
                "default_for": sorted(k for k, v in reg.defaults.items() if v == self.value), "components": comps}

    def _verify(self) -> dict[str, Any]:  # pragma: no cover - verify() is per component
        raise NotImplementedError
