"""File digests read in chunks (a leaf module: checkpoints, downloads and the Hub cache all hash files this way)."""

from __future__ import annotations

import hashlib
import os


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", *, prefix: bytes = b"",
                chunk: int = 1 << 20) -> str:
    """Hex digest of ``prefix`` followed by the file's bytes, read ``chunk`` bytes at a time."""
    h = hashlib.new(algorithm, prefix)
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    return file_digest(path, "sha256")


def git_blob_sha1(path: str | os.PathLike) -> str:
    """The git object id of the file (what the Hub announces as the ETag of a file not stored in LFS)."""
    return file_digest(path, "sha1", prefix=b"blob %d\0" % os.path.getsize(path))
