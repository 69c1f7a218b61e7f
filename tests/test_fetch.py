"""FID without manual downloads: the Inception weights are fetched once (from a stand-in server here), verified,
cached and reused; offline or unreachable and uncached is exit 3 naming the file and where to put it."""

from __future__ import annotations

import hashlib

import pytest

from gpmcli.errors import DownloadError, IntegrityError

RELEASE = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
CONTENT = b"stand-in inception weights " * 1000


@pytest.fixture
def weights_server(hub_server, monkeypatch, tmp_path):
    """The stand-in server holds the release file; GPM_MIRROR sends the release URL there."""
    from gpmcli.metrics import weights

    hub_server.add_revision("mseitzer/pytorch-fid", {weights.INCEPTION_FILE: CONTENT})
    monkeypatch.setenv("GPM_MIRROR", f"{RELEASE}={hub_server.url}/mseitzer/pytorch-fid/resolve/main/")
    monkeypatch.setenv("GPM_CACHE", str(tmp_path / "gpm"))
    monkeypatch.delenv("GPM_INCEPTION_WEIGHTS", raising=False)
    # the stand-in file is not the real one: expect its own hash prefix (the real one is 6726825d...)
    monkeypatch.setattr(weights, "INCEPTION_SHA256_PREFIX", hashlib.sha256(CONTENT).hexdigest()[:8])
    return hub_server


def _gets(server):
    return [p for m, p in server.requests if m == "GET" and p.endswith(".pth")]


def test_fetched_once_verified_cached_and_reused(weights_server, tmp_path):
    from gpmcli.metrics.features import resolve_weights_file

    p = resolve_weights_file(None)
    assert p == tmp_path / "gpm" / "downloads" / "pt_inception-2015-12-05-6726825d.pth"
    assert p.read_bytes() == CONTENT and len(_gets(weights_server)) == 1
    assert resolve_weights_file(None) == p and len(_gets(weights_server)) == 1  # reused, no second download
    assert [q.name for q in p.parent.iterdir()] == [p.name]  # no temp files left


def test_wrong_content_is_refused_and_not_kept(weights_server, monkeypatch, tmp_path):
    from gpmcli.metrics import weights
    from gpmcli.metrics.features import resolve_weights_file

    monkeypatch.setattr(weights, "INCEPTION_SHA256_PREFIX", "6726825d")  # the real file's: the stand-in differs
    with pytest.raises(IntegrityError, match="6726825d"):
        resolve_weights_file(None)
    assert not (tmp_path / "gpm" / "downloads").exists() or not list((tmp_path / "gpm" / "downloads").iterdir())


def test_corrupt_cached_file_is_refused(weights_server, tmp_path):
    from gpmcli.metrics.features import resolve_weights_file

    p = resolve_weights_file(None)
    p.write_bytes(b"truncated")
    with pytest.raises(IntegrityError, match="delete it"):
        resolve_weights_file(None)


def test_offline_and_uncached_exits_3_naming_the_file(cli, tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    monkeypatch.setenv("GPM_CACHE", str(tmp_path / "gpm"))
    monkeypatch.delenv("GPM_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(d / f"{i}.png")
    code, _, err = cli("stats", d, "-o", tmp_path / "s.npz")
    assert code == 3, err
    assert "pt_inception-2015-12-05-6726825d.pth" in err and str(tmp_path / "gpm" / "downloads") in err
    assert not (tmp_path / "s.npz").exists()


def test_unreachable_server_exits_3(monkeypatch, tmp_path):
    import socket

    from gpmcli.fetch import download_url

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    monkeypatch.setenv("GPM_CACHE", str(tmp_path / "gpm"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("GPM_MIRROR", f"https://example.org/=http://127.0.0.1:{port}/")
    with pytest.raises(DownloadError, match="w.pth.*put w.pth"):
        download_url("https://example.org/w.pth")
