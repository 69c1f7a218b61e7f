"""A registry component in a foreign format (``hf:...`` or ``url:...`` with ``convert = FORMAT``): downloaded,
converted once with ``gpm convert``'s converter and cached (:mod:`gpmcli.zoo`); later uses load the cached copy."""

from __future__ import annotations

from typing import Any

from gpmcli.errors import IntegrityError
from gpmcli.refs.base import Ref, check_role


class ConvertedRef(Ref):
    kind = "converted"

    @property
    def source(self) -> str:  # type: ignore[override]
        return "url" if self.value.startswith("url:") else "hf"

    def _cached(self):
        from gpmcli.zoo import cached_conversion

        return cached_conversion(self.value, self.convert)

    def component(self, role: str | None = None, *, device="cpu", trust_pickle: bool = False):
        from gpmcli.checkpoint import load_checkpoint
        from gpmcli.zoo import converted_component

        sha = self.sha256
        path = converted_component(self.value, self.convert, sha256=None if self.convert == "diffusers" else sha)
        comp = load_checkpoint(path, ref=self.value, device=device)
        got = (comp.config.get("provenance", {}).get("resolved") or {}).get("sha256")
        if sha and got != sha.lower():
            raise IntegrityError(f"{self.value}: the converted weight file has sha256 {str(got)[:12]}…, the registry "
                                 f"pins {sha[:12]}…; the revision changed or the cache is corrupt: delete {path}")
        check_role(comp, role, self.value, verb="converts to")
        return comp

    def _verify(self) -> dict[str, Any]:
        from gpmcli.describe import check_header
        from gpmcli.hashing import sha256_file

        path = self._cached()
        if path is None:
            return {"status": "missing", "detail": "not converted yet (`gpm models pull`)"}
        rec = {"status": "ok", "path": str(path), "sha256": sha256_file(path / "model.safetensors")}
        check_header(path / "model.safetensors", path)
        return rec

    def _pull(self, force: bool) -> dict[str, Any]:
        comp = self.component(None)
        return {"path": str(comp.path), "sha256": comp.sha256, "convert": self.convert,
                "resolved": comp.config.get("provenance", {}).get("resolved")}

    def info(self, *, trust_pickle: bool = False) -> dict[str, Any]:
        from gpmcli.describe import checkpoint_info

        done = self._cached()
        return (checkpoint_info(done, ref=self.value) if done else
                {"role": None, "path": None, "note": "not converted yet (`gpm models pull`)"})

    def available(self, cache_dir=None) -> bool:
        return self._cached() is not None
