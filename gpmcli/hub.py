"""Hugging Face Hub downloads (pinned revisions, cache reuse, sha256 verified by gpm)."""

from __future__ import annotations

from pathlib import Path

from gpmcli.errors import NotAvailableError


def download_checkpoint(ref: str, *, expected_sha256: str | None = None, force: bool = False) -> Path:
    raise NotAvailableError("hf: references are not available yet")
