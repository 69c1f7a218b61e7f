"""Hub downloads against the stand-in server: pins, cache reuse, offline mode, integrity, each kind of 404."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hub_fixtures import files_of_dir
from gpmcli.checkpoint import save_checkpoint, sha256_file
from gpmcli.nets.mlp import MLP

ARCH = {"name": "mlp", "kwargs": {"in_dim": 2, "out_dim": 2, "hidden": 8, "depth": 1}}


def _checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    net = MLP(**ARCH["kwargs"])
    return save_checkpoint(path, net, {"role": "score", "arch": ARCH, "parameterization": {"type": "edm"},
                                       "data": {"shape": [2], "range": None, "dataset": "toy"}})


@pytest.fixture
def repo(hub_server, tmp_path):
    """org/tiny: tag v1 = weights A; main = weights B at the root and weights A again under sub/."""
    a, b = _checkpoint(tmp_path / "a", 1), _checkpoint(tmp_path / "b", 2)
    c1 = hub_server.add_revision("org/tiny", files_of_dir(a), branch=None, tags=("v1",))
    c2 = hub_server.add_revision("org/tiny", {**files_of_dir(b), **files_of_dir(a, "sub")}, branch="main")
    return {"server": hub_server, "v1": c1, "main": c2, "sha_a": sha256_file(a / "model.safetensors"),
            "sha_b": sha256_file(b / "model.safetensors"), "a": a, "b": b}


def _weights(d: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(d) / "model.safetensors"))


def _same(x: dict, y: dict) -> bool:
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _blob(path: Path) -> Path:
    return Path(os.path.realpath(path))


def test_pull_latest_and_load(cli, repo):
    code, out, err = cli("models", "pull", "hf:org/tiny")
    assert code == 0, err
    from gpmcli.hub import download_checkpoint
    from gpmcli.registry import load_component

    d = download_checkpoint("hf:org/tiny")
    assert d.name == repo["main"]  # snapshot of the commit main points to
    assert _same(_weights(d), _weights(repo["b"]))
    comp = load_component("hf:org/tiny/sub", "score")
    assert comp.sha256 == repo["sha_a"] and comp.config["role"] == "score"
    assert _same(comp.module.state_dict(), _weights(repo["a"]))


@pytest.mark.parametrize("rev", ["v1", "commit"])
def test_pull_pinned_revision(cli, repo, rev):
    rev = repo["v1"] if rev == "commit" else rev
    code, out, err = cli("models", "pull", f"org/tiny@{rev}")
    assert code == 0, err
    from gpmcli.hub import download_checkpoint

    d = download_checkpoint(f"hf:org/tiny@{rev}", expected_sha256=repo["sha_a"])
    assert d.name == repo["v1"]
    assert _same(_weights(d), _weights(repo["a"]))


def test_offline_reuse_and_offline_uncached(cli, repo, monkeypatch):
    from gpmcli.registry import load_component

    assert cli("models", "pull", "hf:org/tiny@v1")[0] == 0
    n_requests = len(repo["server"].requests)
    repo["server"].stop()  # no network at all from here on
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    comp = load_component("hf:org/tiny@v1", "score")
    assert _same(comp.module.state_dict(), _weights(repo["a"]))
    code, out, err = cli("models", "info", "hf:org/tiny@v1", "--json")
    assert code == 0 and '"sha256": "%s"' % repo["sha_a"] in out
    assert len(repo["server"].requests) == n_requests
    code, _, err = cli("models", "info", "hf:org/tiny@main")  # never pulled
    assert code == 3 and "offline" in err and "not in the cache" in err


def test_server_down_falls_back_to_cache_or_fails(cli, repo):
    assert cli("models", "pull", "hf:org/tiny")[0] == 0
    repo["server"].stop()
    from gpmcli.hub import download_checkpoint

    assert download_checkpoint("hf:org/tiny").name == repo["main"]  # cached branch: reused
    n = len(repo["server"].requests)
    assert download_checkpoint(f"hf:org/tiny@{repo['main']}").name == repo["main"]  # pinned commit: no network
    assert len(repo["server"].requests) == n
    code, _, err = cli("models", "info", "hf:org/tiny@v1")  # not cached
    assert code == 3 and "cannot reach" in err
    code, _, err = cli("models", "pull", "org/other")
    assert code == 3 and "cannot reach" in err


def test_corrupted_cached_blob_is_detected(cli, repo):
    assert cli("models", "pull", "hf:org/tiny")[0] == 0
    from gpmcli.hub import download_checkpoint

    w = download_checkpoint("hf:org/tiny") / "model.safetensors"
    blob = _blob(w)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0x01  # same size: huggingface_hub's own size check cannot see it
    blob.write_bytes(bytes(data))
    for args in (("models", "pull", "hf:org/tiny"), ("models", "info", "hf:org/tiny")):
        code, _, err = cli(*args)
        assert code == 4, (args, err)
        assert "corrupt" in err
    code, _, err = cli("models", "pull", "hf:org/tiny", "--force")
    assert code == 0, err
    assert sha256_file(w) == repo["sha_b"]


def _registry(tmp_path: Path, monkeypatch, ref: str, sha: str) -> None:
    root = tmp_path / "ckpts"
    root.mkdir()
    (root / "registry.toml").write_text(
        "[defaults]\nedm = \"tiny\"\n\n[bundles.tiny]\ndescription = \"test\"\n"
        f"score = {{ ref = \"{ref}\", sha256 = \"{sha}\" }}\n")
    monkeypatch.setenv("GPM_CHECKPOINTS", str(root))


def test_bundle_pull_and_verify_with_pinned_sha(cli, repo, tmp_path, monkeypatch):
    _registry(tmp_path, monkeypatch, f"hf:org/tiny@{repo['v1']}", repo["sha_a"])
    code, _, err = cli("models", "verify", "tiny")
    assert code == 3 and "not in the cache" in err  # nothing pulled yet
    code, out, _ = cli("models", "list", "--json")
    assert code == 0 and '"available": false' in out and '"edm"' in out
    assert cli("models", "pull", "tiny")[0] == 0
    code, out, err = cli("models", "verify", "tiny")
    assert code == 0 and "ok" in out
    code, out, _ = cli("models", "list", "--json")
    assert '"available": true' in out and "org/tiny" in out
    blob = _blob(Path(repo["server"].cache_dir) / "models--org--tiny" / "snapshots" / repo["v1"] / "model.safetensors")
    blob.write_bytes(blob.read_bytes()[:-1] + b"\0")
    code, out, err = cli("models", "verify", "tiny")
    assert code == 4 and "mismatch" in out


def test_pinned_sha_differs_from_served_file(cli, repo, tmp_path, monkeypatch):
    _registry(tmp_path, monkeypatch, "hf:org/tiny", repo["sha_a"])  # main serves weights B
    code, _, err = cli("models", "pull", "tiny")
    assert code == 4 and "pinned" in err


@pytest.mark.parametrize("args, words", [
    (("models", "pull", "org/nothere"), "repository org/nothere not found"),
    (("models", "info", "hf:org/nothere"), "repository org/nothere not found"),
    (("models", "pull", "org/tiny@v9"), "revision 'v9' not found"),
    (("models", "info", "hf:org/tiny@v9"), "revision 'v9' not found"),
    (("models", "info", "hf:org/tiny/nosub"), "model.safetensors not found"),
    (("models", "info", "hf:org/tiny@v1/sub"), "model.safetensors not found"),
])
def test_not_found_kinds_exit_3(cli, repo, args, words):
    code, out, err = cli(*args)
    assert code == 3, err
    assert words in err and "Traceback" not in err


def test_bad_reference_is_usage_error(cli, repo):
    code, _, err = cli("models", "info", "hf:not a repo")
    assert code == 2 and "hf:ORG/NAME" in err


def test_ref_parsing():
    from gpmcli.hub import parse_hf_ref

    r = parse_hf_ref("hf:org/name@v1.0/unet/sub")
    assert (r.repo_id, r.revision, r.subfolder) == ("org/name", "v1.0", "unet/sub")
    r = parse_hf_ref("hf:org/name/unet")
    assert (r.repo_id, r.revision, r.subfolder) == ("org/name", None, "unet")
    assert str(parse_hf_ref("hf:o/n@abc/s")) == "hf:o/n@abc/s"
    from gpmcli.errors import UsageError

    for bad in ("hf:org", "hf:org/name/../x", "hf:/name"):
        with pytest.raises(UsageError):
            parse_hf_ref(bad)


def test_any_file_and_whole_repo(hub_server, tmp_path):
    """Repositories that are not gpm checkpoints (e.g. feature-extractor weights, diffusers folders)."""
    import hashlib

    from gpmcli.errors import IntegrityError
    from gpmcli.hub import download_file, download_repo

    weights, cfg = os.urandom(3000), b'{"_class_name": "UNet2DModel"}'
    hub_server.add_revision("org/feat", {"pt_inception.pth": weights, "unet/config.json": cfg,
                                         "unet/diffusion_pytorch_model.safetensors": weights[::-1]})
    sha = hashlib.sha256(weights).hexdigest()
    p = download_file("hf:org/feat", "pt_inception.pth", expected_sha256=sha)
    assert p.read_bytes() == weights
    with pytest.raises(IntegrityError):
        download_file("hf:org/feat", "pt_inception.pth", expected_sha256="0" * 64)
    d = download_repo("hf:org/feat/unet")
    assert (d / "config.json").read_bytes() == cfg and d.name == "unet"
    full = download_repo("hf:org/feat")
    assert {q.relative_to(full).as_posix() for q in full.rglob("*") if q.is_file()} == {
        "pt_inception.pth", "unet/config.json", "unet/diffusion_pytorch_model.safetensors"}


def test_user_module_checkpoint_from_hub_brings_its_code(cli, hub_server, tmp_path):
    """A checkpoint converted with --module carries its .py file; a Hub pull fetches and verifies it too, and using
    it still needs --trust-pickle (exit 5 without). A served file that differs from the config's sha256 is exit 4."""
    import json

    from test_convert_byo import SCORE_PY

    from gpmcli.convert import instantiate

    (tmp_path / "net.py").write_text(SCORE_PY)
    torch.manual_seed(0)
    torch.save(instantiate(tmp_path / "net.py", "Net", {}).state_dict(), tmp_path / "w.pt")
    meta = {"parameterization": {"type": "edm", "sigma_data": 1.0, "sigma_min": 0.01, "sigma_max": 10.0},
            "data": {"shape": [2]}}
    code, _, err = cli("-q", "convert", tmp_path / "w.pt", "--from", "state-dict", "--module",
                       f"{tmp_path}/net.py:Net", "--role", "score", "--meta", json.dumps(meta), "-o", tmp_path / "ck")
    assert code == 0, err
    files = files_of_dir(tmp_path / "ck")
    assert "net.py" in files
    hub_server.add_revision("org/usermod", files, branch="main")
    tampered = dict(files, **{"net.py": files["net.py"] + b"\n# changed\n"})
    hub_server.add_revision("org/usermod-bad", tampered, branch="main")

    common = ["-q", "sample", "--model", "edm", "-n", "4", "--steps", "4", "--format", "npz"]
    assert cli(*common, "--checkpoint", "hf:org/usermod", "-o", tmp_path / "no")[0] == 5
    code, _, err = cli(*common, "--checkpoint", "hf:org/usermod", "--trust-pickle", "-o", tmp_path / "hub")
    assert code == 0, err
    assert cli(*common, "--checkpoint", tmp_path / "ck", "--trust-pickle", "-o", tmp_path / "local")[0] == 0
    a = np.load(tmp_path / "hub" / "samples.npz")["samples"]
    b = np.load(tmp_path / "local" / "samples.npz")["samples"]
    assert a.shape == (4, 2) and np.array_equal(a, b)
    assert cli(*common, "--checkpoint", "hf:org/usermod-bad", "--trust-pickle", "-o", tmp_path / "bad")[0] == 4
