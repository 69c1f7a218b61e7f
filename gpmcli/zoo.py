"""Registry components that are foreign Hub repositories, converted on first use (the model zoo).

A registry component ``{ ref = "hf:ORG/NAME[@REV]", convert = "FORMAT" }`` names a repository in its own format
(a diffusers pipeline, ...); ``ref = "url:https://..."`` a single file published outside the Hub (downloaded by
:mod:`gpmcli.fetch`, keyed by its sha256). On first use gpm downloads it (files verified as every Hub download), converts it with
``gpm convert --from FORMAT`` and caches the converted checkpoint under
``$GPM_CACHE/converted/ORG--NAME/COMMIT/FORMAT`` (default ``~/.cache/gpm``), keyed by the commit the revision
resolved to: a later use, online or offline, loads the cached conversion. The original files stay in the Hugging Face
cache. The converted checkpoint's provenance records the repository, the commit and the sha256 of the weight file
(``provenance.resolved``), and ``run.json`` copies it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from gpmcli.errors import DownloadError

_HEX40 = re.compile(r"^[0-9a-f]{40}$")


def gpm_cache_dir() -> Path:
    """``$GPM_CACHE``, else ``$XDG_CACHE_HOME/gpm``, else ``~/.cache/gpm``."""
    if os.environ.get("GPM_CACHE"):
        return Path(os.environ["GPM_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpm"


def converted_dir(repo_id: str, commit: str, fmt: str) -> Path:
    return gpm_cache_dir() / "converted" / repo_id.replace("/", "--") / commit / fmt


def resolve_commit(ref: str) -> str:
    """The commit ``ref``'s revision points at (a pinned commit as is; else the Hub's answer, or the cached ref when
    offline). Fetches the repository's small config files on the way."""
    from gpmcli.hub import download_repo, parse_hf_ref

    r = parse_hf_ref(ref)
    if r.revision and _HEX40.match(r.revision):
        return r.revision
    root = Path(download_repo(f"hf:{r.repo_id}" + (f"@{r.revision}" if r.revision else ""),
                              allow_patterns=["*.json"]))
    if not _HEX40.match(root.name):
        raise DownloadError(f"{ref}: could not tell which commit the revision resolved to ({root})")
    return root.name


def cached_conversion(ref: str, fmt: str) -> Path | None:
    """The cached converted checkpoint of ``ref`` if there is one (no network)."""
    from gpmcli.hub import parse_hf_ref

    if ref.startswith("url:"):
        from gpmcli.checkpoint import sha256_file
        from gpmcli.fetch import cache_dir

        f = cache_dir() / ref.rsplit("/", 1)[-1]
        d = gpm_cache_dir() / "converted" / "url" / sha256_file(f)[:16] / fmt if f.is_file() else None
        return d if d is not None and (d / "model.safetensors").is_file() else None

    r = parse_hf_ref(ref)
    try:
        commit = resolve_commit(ref) if (r.revision and _HEX40.match(r.revision)) else None
    except DownloadError:
        commit = None
    if commit is None:
        from gpmcli.hub import hub_cache_dir

        refs = hub_cache_dir() / f"models--{r.repo_id.replace('/', '--')}" / "refs" / (r.revision or "main")
        commit = refs.read_text().strip() if refs.is_file() else None
    if commit is None:
        return None
    d = converted_dir(r.repo_id, commit, fmt)
    if fmt != "diffusers":  # one converted folder per source file hash
        d = next((p for p in sorted(d.glob("*")) if (p / "model.safetensors").is_file()), d)
    return d if (d / "model.safetensors").is_file() else None


def _url_component(url: str, fmt: str, sha256: str | None, license: str | None, force: bool) -> Path:
    """A file published at a plain URL (``url:https://...``): downloaded once (:mod:`gpmcli.fetch`), converted once,
    keyed by the file's sha256."""
    from gpmcli.checkpoint import sha256_file
    from gpmcli.fetch import download_url

    src = download_url(url, sha256=sha256)
    digest = sha256_file(src)
    out = gpm_cache_dir() / "converted" / "url" / digest[:16] / fmt
    return _convert_once(src, out, fmt, license, url, {"url": url, "sha256": digest}, force)


def _hub_file_component(ref: str, fmt: str, sha256: str | None, license: str | None, force: bool) -> Path:
    from gpmcli.checkpoint import sha256_file
    from gpmcli.hub import download_file, parse_hf_ref

    r = parse_hf_ref(ref)
    if not r.subfolder:
        raise DownloadError(f"{ref}: --from {fmt} converts one file; name it (hf:ORG/NAME[@REV]/PATH/TO/FILE)")
    path = download_file(f"hf:{r.repo_id}" + (f"@{r.revision}" if r.revision else ""), r.subfolder,
                         expected_sha256=sha256)
    snap = Path(os.path.abspath(path)).parents[len(Path(r.subfolder).parts) - 1]
    commit = snap.name if _HEX40.match(snap.name) else (r.revision or "unknown")
    out = converted_dir(r.repo_id, commit, fmt) / sha256_file(path)[:16]
    return _convert_once(path, out, fmt, license, f"hf:{r.repo_id}@{commit}/{r.subfolder}",
                         {"repo": r.repo_id, "revision": r.revision, "commit": commit, "file": r.subfolder,
                          "sha256": sha256_file(path)}, force)


def _convert_once(src, out: Path, fmt: str, license: str | None, source: str, resolved: dict | None,
                  force: bool) -> Path:
    """Convert ``src`` into the cache folder ``out`` unless a complete conversion is there (or ``force``): written to
    a temporary sibling, stamped with what was resolved, then published atomically."""
    from gpmcli.convert import convert

    if (out / "model.safetensors").is_file() and (out / "config.json").is_file() and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        convert(src, tmp, fmt, license=license, source=source, force=True)
        if resolved:
            _add_resolved(tmp, resolved)
        _publish(tmp, out, replace=force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _publish(tmp: Path, out: Path, replace: bool = False) -> None:
    """Move a finished conversion into place: readers see none or a complete one. When several processes convert
    at once (``accelerate launch``), the first to finish wins and the others keep its result."""
    if replace and out.exists():
        shutil.rmtree(out)
    if (out / "model.safetensors").is_file():
        return
    if out.exists() and not any(out.iterdir()):
        out.rmdir()
    try:
        os.replace(tmp, out)
    except OSError:
        if not (out / "model.safetensors").is_file():
            raise


def _add_resolved(ckpt: Path, resolved: dict) -> None:
    """Record what a URL resolved to in the converted checkpoint's provenance (config.json and weights header)."""
    from gpmcli.checkpoint import load_checkpoint, save_checkpoint

    comp = load_checkpoint(ckpt)
    cfg = {k: v for k, v in comp.config.items() if k != "gpm_format"}
    cfg["provenance"] = {**cfg.get("provenance", {}), "resolved": resolved}
    card = (ckpt / "README.md").read_text() if (ckpt / "README.md").is_file() else None
    save_checkpoint(ckpt, comp.module, cfg, card=card)


def converted_component(ref: str, fmt: str, *, license: str | None = None, force: bool = False,
                        sha256: str | None = None) -> Path:
    """Download ``ref`` (format ``fmt``), convert it once, and return the cached gpm checkpoint directory."""
    from gpmcli.hub import parse_hf_ref

    if ref.startswith("url:"):
        return _url_component(ref[4:], fmt, sha256, license, force)
    if fmt != "diffusers":  # a single weight file in a Hub repository: hf:ORG/NAME[@REV]/PATH/TO/FILE
        return _hub_file_component(ref, fmt, sha256, license, force)

    r = parse_hf_ref(ref)
    commit = resolve_commit(ref)
    out = converted_dir(r.repo_id, commit, fmt)
    pinned = f"hf:{r.repo_id}@{commit}" + (f"/{r.subfolder}" if r.subfolder else "")
    return _convert_once(pinned, out, fmt, license, pinned, None, force)
