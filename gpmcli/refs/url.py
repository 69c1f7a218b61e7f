"""``url:https://...``: a weight file published outside the Hub. Only a registry component can name one, with the
``convert`` format that turns it into a gpm checkpoint on first use (:class:`gpmcli.refs.converted.ConvertedRef`);
a user converts such a file with ``gpm convert`` instead."""

from __future__ import annotations

from typing import Any

from gpmcli.errors import BadReferenceError, UsageError
from gpmcli.refs.base import Ref


class UrlRef(Ref):
    kind = source = "url"

    @classmethod
    def parse(cls, text: str, **kw: Any) -> "UrlRef":
        if not kw.get("pinned"):
            from gpmcli.refs import FORMS

            raise BadReferenceError(f"{text}: url: references are registry components converted on first use; "
                                    f"download the file and run `gpm convert` on it, or give {FORMS}",
                                    ref=text, forms=FORMS)
        if not text[4:].startswith(("https://", "http://")):
            raise UsageError(f"{text}: a url: reference needs an http(s) address")
        return cls(text, text, **kw)

    def _file(self):
        from gpmcli.fetch import cache_dir

        return cache_dir() / self.value.rsplit("/", 1)[-1]

    def _load(self, *, device, trust_pickle: bool):
        raise UsageError(f"{self.value}: a file at a URL is loaded through its `convert = FORMAT` (registry.toml)")

    def _verify(self) -> dict[str, Any]:
        from gpmcli.hashing import sha256_file

        path = self._file()
        if not path.is_file():
            return {"status": "missing", "detail": f"{path} not found (`gpm models pull`)"}
        digest = sha256_file(path)
        ok = not self.sha256 or digest == self.sha256.lower()
        return {"status": "ok" if ok else "mismatch", "path": str(path), "sha256": digest,
                "detail": None if ok else f"sha256 {digest} != pinned {self.sha256}"}

    def _pull(self, force: bool) -> dict[str, Any]:
        from gpmcli.fetch import download_url
        from gpmcli.hashing import sha256_file

        path = download_url(self.value[4:], sha256=self.sha256)
        return {"path": str(path), "sha256": sha256_file(path)}

    def info(self, *, trust_pickle: bool = False) -> dict[str, Any]:
        path = self._file()
        if not path.is_file():
            return {"path": None, "note": "not downloaded yet (`gpm models pull`)"}
        from gpmcli.describe import weight_file_info

        return weight_file_info(path, trust_pickle=trust_pickle)
