"""What the local Hugging Face cache holds (for ``gpm models list``), without network access."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gpmcli.errors import DownloadError
from gpmcli.hub import CHECKPOINT_FILES, _hf_download, hub_cache_dir, hub_endpoint, parse_hf_ref


def is_cached(ref: str, *, cache_dir: str | os.PathLike | None = None) -> bool:
    """Whether the checkpoint at ``ref`` is in the cache (its files are present; not hashed)."""
    r = parse_hf_ref(ref)
    ep, cache = hub_endpoint(), hub_cache_dir(cache_dir)
    try:  # presence only (no hashing): listing must stay fast; `gpm models verify` hashes
        for f in CHECKPOINT_FILES:
            _hf_download(r, f, endpoint=ep, cache=cache, offline=True, force=False)
        return True
    except DownloadError:
        return False


def cache_contents(cache_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Model repositories in the Hugging Face cache: id, revisions (commit, refs), files and size on disk."""
    from huggingface_hub import scan_cache_dir

    cache = hub_cache_dir(cache_dir)
    if not cache.is_dir():
        return []
    try:
        info = scan_cache_dir(cache)
    except Exception:  # an unreadable or foreign cache folder: report nothing rather than fail a listing
        return []
    out = []
    for repo in sorted(info.repos, key=lambda r: (r.repo_type, r.repo_id)):
        revs = []
        for rev in sorted(repo.revisions, key=lambda v: v.commit_hash):
            files = sorted(f.file_path.relative_to(rev.snapshot_path).as_posix() for f in rev.files)
            revs.append({"commit": rev.commit_hash, "refs": sorted(rev.refs), "files": files,
                         "gpm_checkpoints": sorted(str(Path(f).parent) for f in files
                                                   if Path(f).name == "model.safetensors"
                                                   and (Path(f).parent / "config.json").as_posix() in files),
                         "size_on_disk": rev.size_on_disk})
        out.append({"repo_id": repo.repo_id, "repo_type": repo.repo_type, "size_on_disk": repo.size_on_disk,
                    "path": str(repo.repo_path), "revisions": revs})
    return out
