"""An existing checkpoint folder or weight file (a registry component's folder is relative to the registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpmcli.errors import IntegrityError, UsageError
from gpmcli.refs.base import Ref


class PathRef(Ref):
    kind = "path"
    source = "local"

    @property
    def path(self) -> Path:
        p = Path(self.value)
        if self.base is not None and not p.is_absolute() and not p.exists():
            p = self.base / p
        return p

    def _load(self, *, device, trust_pickle: bool):
        from gpmcli.checkpoint import load_checkpoint

        p = self.path
        if not p.exists():
            raise UsageError(f"checkpoint not found: {self.text} (not a registry name, directory, hf: or toy: "
                             "reference)")
        return load_checkpoint(p, ref=self.text, expected_sha256=self.sha256, device=device, trust_code=trust_pickle)

    def _verify(self) -> dict[str, Any]:
        from gpmcli.describe import check_header
        from gpmcli.hashing import sha256_file

        path = self.path
        w = path / "model.safetensors"
        if not w.is_file():
            return {"status": "missing", "detail": f"{w} not found"}
        digest = sha256_file(w)
        if self.sha256 and digest != self.sha256.lower():
            return {"path": str(path), "sha256": digest, "status": "mismatch",
                    "detail": f"sha256 {digest} != pinned {self.sha256}"}
        check_header(w, path)
        return {"path": str(path), "sha256": digest, "status": "ok",
                "detail": None if self.sha256 else "no pinned sha256; header read"}

    def verify(self) -> list[dict[str, Any]]:
        if not self.pinned and not self.path.is_dir():
            raise UsageError(f"{self.text}: a single file has no pinned sha256 to verify against; `gpm models verify` "
                             "takes a bundle, a checkpoint folder or a Hub reference")
        return super().verify()

    def _pull(self, force: bool) -> dict[str, Any]:
        if not self.pinned:
            return {"path": self.value, "note": "a local file or folder: nothing to download"}
        from gpmcli.hashing import sha256_file

        w = self.path / "model.safetensors"
        if not w.is_file():
            raise UsageError(f"checkpoint {self.text} is missing from {self.base or Path.cwd()}")
        digest = sha256_file(w)
        if self.sha256 and digest != self.sha256.lower():
            raise IntegrityError(f"{w}: sha256 {digest[:12]}… does not match the pinned {self.sha256[:12]}…")
        return {"path": str(self.path), "sha256": digest}

    def info(self, *, trust_pickle: bool = False) -> dict[str, Any]:
        from gpmcli.describe import WEIGHT_SUFFIXES, checkpoint_info, weight_file_info

        p = self.path
        if p.is_file():
            if p.suffix not in WEIGHT_SUFFIXES + (".pkl", ".tar"):
                raise UsageError(f"{p}: not a weight file ({', '.join(WEIGHT_SUFFIXES)})")
            return weight_file_info(p, trust_pickle=trust_pickle)
        return checkpoint_info(p, ref=self.text)

    def available(self, cache_dir=None) -> bool:
        return (self.path / "model.safetensors").is_file()
