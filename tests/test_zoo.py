"""The model zoo end to end: the stand-in Hub serves random-weight replicas of the public repositories under their real
names (published config and key layout, reduced width: ``tests/replicas.py``); every zoo bundle pulls, converts once,
caches the conversion and samples with each of its kinds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

import replicas  # noqa: E402
from hubserver import HubServer  # noqa: E402

from gpmcli.registry import Registry  # noqa: E402

ZOO = {name: spec for name, spec in Registry.load().bundles.items() if spec.components.get("score")
       and spec.components["score"].convert == "diffusers"}
SIZE = {"google/ddpm-cifar10-32": 32}  # the 256-px twins run at 64 px (same key layout, 16x fewer pixels)
# per kind: flags that keep the run to a few network evaluations (VP ladders need N > beta_max = 20)
FAST = {"ancestral": ["--steps", 21], "pc": ["--steps", 3, "--snr", 0.1], "ode": ["--rtol", 0.1, "--atol", 0.1],
        "edm": ["--steps", 2], "langevin": ["--steps", 2, "--corrector-steps", 1]}


@pytest.fixture(scope="module")
def zoo_hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zoo")
    mp = pytest.MonkeyPatch()
    with HubServer(lifetime=600) as hub:
        twins, commits = {}, {}
        for repo in replicas.REPOS:
            files, unet = replicas.replica_files(repo, width_div=8)
            cfg = json.loads(files["config.json"])
            cfg["sample_size"] = SIZE.get(repo, 64)
            files["config.json"] = json.dumps(cfg).encode()
            twins[repo] = unet
            commits[repo] = hub.add_revision(repo, files)
        mp.setenv("HF_ENDPOINT", hub.url)
        mp.setenv("HF_HUB_CACHE", str(tmp / "hf"))
        mp.setenv("GPM_CACHE", str(tmp / "gpm"))
        mp.delenv("HF_HUB_OFFLINE", raising=False)
        hub.twins, hub.commits, hub.tmp = twins, commits, tmp
        yield hub
    mp.undo()


def test_zoo_lists_the_hub_bundles_with_source_license_and_pin_status(zoo_hub, cli):
    code, out, err = cli("models", "list", "--json")
    assert code == 0, err
    zoo = {b["name"]: b for b in json.loads(out)["bundles"] if b.get("source", "").startswith("https://huggingface")}
    assert {"cifar10-ddpm", "celebahq-ncsnpp", "church-ddpm", "celebahq-ddpm"} <= set(zoo)
    for b in zoo.values():
        assert b["license"] and b["kinds"] and b["published"]
        for c in b["components"].values():
            assert c["pin"] == "unpinned" and c["unpinned"]
    everything = {b["name"]: b for b in json.loads(out)["bundles"] if b.get("published")}
    assert {"edm-cifar10-32x32-uncond-vp", "cifar10-sngan"} <= set(everything) and len(everything) >= 6
    for b in everything.values():  # every zoo bundle: source, license, kinds and a pin status per component
        assert b["source"] and b["license"] and b["kinds"]
        assert all(c["pin"] in ("pinned", "unpinned") for c in b["components"].values())
    code, out, _ = cli("models", "list")
    assert code == 0 and "unpinned" in out


@pytest.mark.parametrize("bundle", sorted(ZOO))
def test_bundle_pulls_converts_and_samples_every_kind(zoo_hub, cli, bundle, tmp_path):
    from PIL import Image

    spec = ZOO[bundle]
    repo = spec.components["score"].ref[3:]
    code, out, err = cli("models", "pull", bundle, "--json")
    assert code == 0, err
    rec = json.loads(out)[0]
    assert rec["resolved"]["commit"] == zoo_hub.commits[repo] and len(rec["resolved"]["sha256"]) == 64
    # the conversion is the replica network, exactly
    from gpmcli.checkpoint import load_checkpoint

    comp = load_checkpoint(rec["path"])
    size = SIZE.get(repo, 64)
    x, t = torch.randn(1, 3, size, size), torch.tensor([5.0])
    with torch.no_grad():
        assert torch.equal(comp.module(x, t), zoo_hub.twins[repo](x, t).sample)
    for kind in spec.info["kinds"]:
        out_dir = tmp_path / kind
        fast = list(FAST[kind])
        if kind == "pc" and spec.params.get("pc", {}).get("sde") == "vp":
            fast[1] = 21
        code, _, err = cli("-q", "sample", "--model", kind, "-c", bundle, "-n", 2, "--seed", 3, *fast,
                           "--format", "npz,png", "-o", out_dir)
        assert code == 0, f"{kind}: {err}"
        s = np.load(out_dir / "samples.npz")["samples"]
        assert s.shape == (2, 3, size, size) and np.isfinite(s).all(), kind
        pngs = sorted(out_dir.rglob("*.png"))
        assert pngs, kind
        im = Image.open(pngs[0])
        assert im.size == (size, size) and im.mode == "RGB"
        run = json.loads((out_dir / "run.json").read_text())
        assert run["data_range"] == ([0.0, 1.0] if "ncsnpp" in repo else [-1.0, 1.0])
        assert run["components"]["score"]["resolved"]["commit"] == zoo_hub.commits[repo]


def test_conversion_is_cached_and_reused_offline(zoo_hub, cli, tmp_path, monkeypatch):
    code, out, err = cli("models", "pull", "cifar10-ddpm", "--json")
    assert code == 0, err
    path = json.loads(out)[0]["path"]
    before = (zoo_hub.tmp / "gpm").rglob("model.safetensors")
    stamp = {p: p.stat().st_mtime_ns for p in before}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = cli("-q", "sample", "--model", "edm", "-c", "cifar10-ddpm", "-n", 1, "--steps", 2, "--format",
                       "npz", "-o", tmp_path / "o")
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in (zoo_hub.tmp / "gpm").rglob("model.safetensors")} == stamp
    assert str(zoo_hub.commits["google/ddpm-cifar10-32"]) in path
    code, out, err = cli("models", "verify", "cifar10-ddpm", "--json")  # offline: the cached conversion is checked
    assert code == 0 and json.loads(out)[0]["status"] == "ok", out + err


def test_unknown_repository_offline_exits_3(cli, hub_server, monkeypatch, tmp_path):
    monkeypatch.setenv("GPM_CACHE", str(tmp_path / "gpm"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = cli("-q", "sample", "--model", "edm", "-c", "cifar10-ddpm", "-n", 1, "--steps", 2,
                       "-o", tmp_path / "o")
    assert code == 3 and "google/ddpm-cifar10-32" in err
