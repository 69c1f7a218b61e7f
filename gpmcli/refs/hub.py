"""``hf:ORG/NAME[@REV][/SUBFOLDER]``: a gpm checkpoint in a Hugging Face Hub repository (sha256-verified)."""

from __future__ import annotations

from typing import Any

from gpmcli.refs.base import Ref


class HubRef(Ref):
    kind = source = "hf"

    @classmethod
    def parse(cls, text: str, **kw: Any) -> "HubRef":
        from gpmcli.hub import parse_hf_ref

        return cls(text, str(parse_hf_ref(text)), **kw)

    @property
    def hf(self):
        """The :class:`gpmcli.hub.HfRef` (repository, revision, subfolder)."""
        from gpmcli.hub import parse_hf_ref

        return parse_hf_ref(self.value)

    def _download(self, **kw: Any):
        from gpmcli.hub import download_checkpoint

        return download_checkpoint(self.name, expected_sha256=self.sha256, **kw)

    def _load(self, *, device, trust_pickle: bool):
        from gpmcli.checkpoint import load_checkpoint

        return load_checkpoint(self._download(), ref=self.name, expected_sha256=self.sha256, device=device,
                               trust_code=trust_pickle)

    def _verify(self) -> dict[str, Any]:
        from gpmcli.hashing import sha256_file

        path = self._download(offline=True)
        return {"status": "ok", "path": str(path), "sha256": sha256_file(path / "model.safetensors")}

    def _pull(self, force: bool) -> dict[str, Any]:
        from gpmcli.hashing import sha256_file

        if self.pinned:  # a registry component: its checkpoint files, the weights against the pinned sha256
            path = self._download(force=force)
            return {"path": str(path), "sha256": sha256_file(path / "model.safetensors")}
        from gpmcli.hub import download_repo

        path = download_repo(self.value, force=force)
        return {"path": str(path), "files": sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                                                    if p.is_file())}

    def info(self, *, trust_pickle: bool = False) -> dict[str, Any]:
        from gpmcli.describe import checkpoint_info

        return checkpoint_info(self._download(), ref=self.value)

    def cached_info(self) -> dict[str, Any]:
        from gpmcli.describe import checkpoint_info
        from gpmcli.errors import DownloadError

        try:
            return checkpoint_info(self._download(offline=True), ref=self.name)
        except DownloadError:
            return {"path": None, "note": "not downloaded yet (`gpm models pull`)"}

    def available(self, cache_dir=None) -> bool:
        from gpmcli.hubcache import is_cached

        return is_cached(self.name, cache_dir=cache_dir)
