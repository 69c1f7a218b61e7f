"""Plain-URL downloads into gpm's cache (weights published outside the Hugging Face Hub: pytorch-fid's Inception
weights, NVlabs' EDM pickles).

``download_url(url, name)`` returns ``$GPM_CACHE/downloads/NAME`` (default ``~/.cache/gpm``), downloading it once: a
progress bar on a terminal, sha256 computed while streaming and checked (a full hash, or a prefix as in
torch.hub's ``NAME-<sha256 prefix>.pth`` convention), the file appearing only when complete and verified. A cached file
is re-verified on use. Offline (``HF_HUB_OFFLINE=1`` or ``GPM_OFFLINE=1``) or without network, a missing file is a
:class:`DownloadError` (exit 3) that names the file, the URL and the folder to put it in; a hash mismatch is an
:class:`IntegrityError` (exit 4) and nothing is kept.

``GPM_MIRROR="PREFIX=REPLACEMENT[;...]"`` rewrites URLs (a local mirror, or the stand-in server of the tests).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from gpmcli.errors import DownloadError, IntegrityError, UsageError


def cache_dir() -> Path:
    from gpmcli.zoo import gpm_cache_dir

    return gpm_cache_dir() / "downloads"


def offline() -> bool:
    return any((os.environ.get(k) or "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "GPM_OFFLINE"))


def mirrored(url: str) -> str:
    for rule in filter(None, (os.environ.get("GPM_MIRROR") or "").split(";")):
        prefix, sep, repl = rule.partition("=")
        if not sep:
            raise UsageError(f"GPM_MIRROR: {rule!r} is not PREFIX=REPLACEMENT")
        if url.startswith(prefix):
            return repl + url[len(prefix):]
    return url


def _check(digest: str, sha256: str | None, what: str) -> None:
    if sha256 and not digest.startswith(sha256.lower()):
        raise IntegrityError(f"{what}: sha256 {digest[:12]}… does not match the expected {sha256[:12]}…")


def download_url(url: str, name: str | None = None, *, sha256: str | None = None, hint: str = "") -> Path:
    """The cached file for ``url`` (downloaded and verified on first use). ``sha256``: full hash or a prefix."""
    from gpmcli.checkpoint import atomic_open, sha256_file

    name = name or url.rsplit("/", 1)[-1]
    dest = cache_dir() / name
    where = f"put {name} (from {url}) into {dest.parent}" + (f"; {hint}" if hint else "")
    if dest.is_file():
        try:
            _check(sha256_file(dest), sha256, str(dest))
        except IntegrityError as e:
            raise IntegrityError(f"{e}; delete it to download it again") from None
        return dest
    if offline():
        raise DownloadError(f"offline and {name} is not in gpm's cache: {where}")
    src = mirrored(url)
    from urllib.error import URLError
    from urllib.request import Request, urlopen

    h = hashlib.sha256()
    try:
        with urlopen(Request(src, headers={"User-Agent": "gpm"}), timeout=30) as r, \
                atomic_open(dest, durable=True) as f:
            total = int(r.headers.get("Content-Length") or 0)
            with _progress(name, total) as advance:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    h.update(chunk)
                    advance(len(chunk))
            _check(h.hexdigest(), sha256, f"{name} downloaded from {src}")
    except IntegrityError:
        raise
    except (URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"could not download {name} from {src} ({reason}): {where}") from None
    return dest


class _progress:
    """A rich progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, name: str, total: int):
        self.name, self.total, self.bar = name, total, None

    def __enter__(self):
        if sys.stderr.isatty():
            from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

            self.bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                                TransferSpeedColumn(), transient=True)
            self.bar.start()
            task = self.bar.add_task(f"downloading {self.name}", total=self.total or None)
            return lambda n: self.bar.advance(task, n)
        return lambda n: None

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
