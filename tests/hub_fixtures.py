"""Pytest fixtures around the stand-in Hub server (``tests/hubserver.py``); loaded by ``conftest.py``.

``hub_server`` starts a server, points ``HF_ENDPOINT`` at it and ``HF_HUB_CACHE`` at a fresh folder (gpm reads both
at call time), and clears ``HF_HUB_OFFLINE``. Add content with ``hub_server.add_revision(repo, files, branch=...,
tags=...)``; ``files_of_dir(path, prefix)`` turns a checkpoint (or any) directory into such a file map.
"""

from __future__ import annotations

import pytest

from hubserver import HubServer, files_of_dir  # noqa: F401  (re-exported for test modules)


@pytest.fixture
def hub_server(tmp_path, monkeypatch):
    with HubServer(lifetime=120) as server:
        cache = tmp_path / "hf-cache"
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        server.cache_dir = cache
        yield server
