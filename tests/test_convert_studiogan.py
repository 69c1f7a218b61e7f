"""``--from studiogan-g`` / ``studiogan-d`` and the ``cifar10-sngan`` bundle, on replicas with StudioGAN's CIFAR-10
SNGAN key layout (the discriminator's spectral norm applied by torch itself, so that folding it is checked against
torch's own eval-mode computation)."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import torch

from gpmcli.nets.studiogan import StudioGANDiscriminator, StudioGANGenerator

G_FILE = "model=G-best-weights-step=88000.pth"
D_FILE = "model=D-best-weights-step=88000.pth"


def replica_g(seed=0, channels=32, z_dim=16):
    torch.manual_seed(seed)
    g = StudioGANGenerator(z_dim=z_dim, channels=channels, num_classes=10)
    with torch.no_grad():  # non-trivial BN statistics and class embeddings, as after training
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
            if isinstance(m, torch.nn.Embedding):
                m.weight.normal_(0, 0.2)
    return g.eval()


def replica_d(seed=0, channels=32):
    """StudioGAN's D layout: every conv, linear and embedding under torch.nn.utils.spectral_norm(eps=1e-6)."""
    torch.manual_seed(seed)
    d = StudioGANDiscriminator(channels=channels, num_classes=10)
    for name, m in list(d.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding)):
                setattr(m, child_name, torch.nn.utils.spectral_norm(child, eps=1e-6))
    d.train()
    with torch.no_grad():  # a few power iterations, as training leaves them
        for _ in range(3):
            d.forward_all(torch.randn(2, 3, 32, 32))
    return d.eval()


def _file(sd) -> bytes:
    buf = io.BytesIO()
    torch.save({"state_dict": sd, "step": 88000, "best_fid": 20.0}, buf)
    return buf.getvalue()


def test_generator_preset_exact_with_uniform_label_policy(tmp_path, cli):
    from scipy.stats import norm

    from gpmcli.checkpoint import load_checkpoint

    g = replica_g()
    (tmp_path / G_FILE).write_bytes(_file(g.state_dict()))
    code, _, err = cli("-q", "convert", tmp_path / G_FILE, "--from", "studiogan-g", "-o", tmp_path / "g")
    assert code == 0, err
    comp = load_checkpoint(tmp_path / "g")
    assert comp.config["latent"]["shape"] == [17] and comp.config["data"]["range"] == [-1.0, 1.0]
    z = torch.randn(64, 17, generator=torch.Generator().manual_seed(1))
    y = torch.as_tensor(np.floor(norm.cdf(z[:, 16].numpy()) * 10), dtype=torch.long)
    with torch.no_grad():
        assert torch.equal(comp.module(z), g(z, y))
    assert len(set(y.tolist())) >= 6  # the last coordinate spreads the classes


def test_discriminator_preset_folds_spectral_norm_and_marginalises_labels(tmp_path, cli):
    from gpmcli.checkpoint import load_checkpoint

    d = replica_d()
    sd = d.state_dict()
    assert any(k.endswith("weight_orig") for k in sd) and "embedding.weight_u" in sd
    (tmp_path / D_FILE).write_bytes(_file(sd))
    code, _, err = cli("-q", "convert", tmp_path / D_FILE, "--from", "studiogan-d", "-o", tmp_path / "d")
    assert code == 0, err
    comp = load_checkpoint(tmp_path / "d")
    assert comp.config["output"] == "logit"
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        ref_all = d.forward_all(x)  # torch's spectral norm, eval mode
        ours_all = comp.module.forward_all(x)
        assert torch.allclose(ours_all, ref_all, rtol=1e-5, atol=1e-5)
        marginal = torch.logsumexp(ref_all, 1) - math.log(10)
        assert torch.allclose(comp.module(x), marginal, rtol=1e-5, atol=1e-5)


def test_cifar10_sngan_bundle_from_the_stand_in_hub(hub_server, cli, tmp_path, monkeypatch):
    from gpmcli.registry import Registry

    spec = Registry.load().bundles["cifar10-sngan"]
    folder = spec.components["generator"].ref.split("/", 2)[2].rsplit("/", 1)[0]
    hub_server.add_revision("Mingguksky/PyTorch-StudioGAN", {f"{folder}/{G_FILE}": _file(replica_g().state_dict()),
                                                            f"{folder}/{D_FILE}": _file(replica_d().state_dict())})
    monkeypatch.setenv("GPM_CACHE", str(tmp_path / "gpm"))
    code, out, err = cli("models", "pull", "cifar10-sngan", "--json")
    assert code == 0, err
    assert {r["role"] for r in json.loads(out)} == {"generator", "discriminator"}
    fast = {"gan": [], "ddls": ["--ddls-steps", 2]}
    for kind in spec.info["kinds"]:
        code, _, err = cli("-q", "sample", "--model", kind, "-c", "cifar10-sngan", "-n", 2, *fast[kind],
                           "--format", "npz", "-o", tmp_path / kind)
        assert code == 0, f"{kind}: {err}"
        x = np.load(tmp_path / kind / "samples.npz")["samples"]
        assert x.shape == (2, 3, 32, 32) and np.abs(x).max() <= 1.0 + 1e-6
