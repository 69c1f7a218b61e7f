"""gpm convert: every preset reproduces the original network exactly; score_sde EMA; diffusers; safe loading.

The original architectures are re-declared here from the SOURCE.txt descriptions (plain nn.Sequential), loaded with
torch.load(weights_only=True) and compared with the converted checkpoint loaded through gpm.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from gpmcli.checkpoint import load_checkpoint, read_config
from clitools import gpm  # noqa: E402

torch.manual_seed(0)


pytestmark = pytest.mark.usefixtures("one_thread")


def original(path: Path) -> dict:
    return torch.load(str(path), map_location="cpu", weights_only=True)


def fixed_images(n=16, lo=-1.0, hi=1.0, size=28, seed=1):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(n, 1, size, size, generator=g)


# ---------------------------------------------------------------------------------------------------------------
# originals, re-declared from SOURCE.txt


def csinva_mlp_g():
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 784), nn.Tanh())


def csinva_mlp_d():
    return nn.Sequential(nn.Linear(784, 256), nn.LeakyReLU(0.2), nn.Linear(256, 256), nn.LeakyReLU(0.2),
                         nn.Linear(256, 1), nn.Sigmoid())


class RyhanG(nn.Module):
    def __init__(self):
        super().__init__()
        blk = lambda i, o, k, s: nn.Sequential(nn.ConvTranspose2d(i, o, k, stride=s), nn.BatchNorm2d(o), nn.ReLU())  # noqa
        self.gen = nn.Sequential(blk(64, 256, 3, 2), blk(256, 128, 4, 1), blk(128, 64, 3, 2),
                                 nn.Sequential(nn.ConvTranspose2d(64, 1, 4, stride=2), nn.Tanh()))

    def forward(self, z):
        return self.gen(z.view(len(z), 64, 1, 1))


class RyhanCritic(nn.Module):
    def __init__(self):
        super().__init__()
        blk = lambda i, o: nn.Sequential(nn.Conv2d(i, o, 4, stride=2), nn.BatchNorm2d(o), nn.LeakyReLU(0.2))  # noqa
        self.crit = nn.Sequential(blk(1, 64), blk(64, 128), nn.Sequential(nn.Conv2d(128, 1, 4, stride=2)))

    def forward(self, x):
        return self.crit(x).view(len(x), -1)


class CsinvaLeNet(nn.Module):
    def __init__(self):
        super().__init__()
        from collections import OrderedDict as OD

        self.convnet = nn.Sequential(OD([("c1", nn.Conv2d(1, 6, 5)), ("r1", nn.ReLU()), ("s2", nn.MaxPool2d(2)),
                                         ("c3", nn.Conv2d(6, 16, 5)), ("r3", nn.ReLU()), ("s4", nn.MaxPool2d(2)),
                                         ("c5", nn.Conv2d(16, 120, 5)), ("r5", nn.ReLU())]))
        self.fc = nn.Sequential(OD([("f6", nn.Linear(120, 84)), ("r6", nn.ReLU()), ("f7", nn.Linear(84, 10)),
                                    ("sig7", nn.LogSoftmax(dim=-1))]))

    def forward(self, x):
        return self.fc(self.convnet(x).view(x.size(0), -1))


class CsinvaDCGAND(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = csinva_dcgan_d_main()

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


def csinva_dcgan_d_main():
    return nn.Sequential(nn.Conv2d(1, 64, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
                         nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
                         nn.Conv2d(128, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.LeakyReLU(0.2),
                         nn.Conv2d(256, 1, 4, 2, 1, bias=False), nn.Sigmoid())


def load_orig(net: nn.Module, path: Path) -> nn.Module:
    net.load_state_dict(original(path), strict=True)
    return net.eval()


# ---------------------------------------------------------------------------------------------------------------
# the five real assets


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from tests.conftest import ASSETS

    if not ASSETS.is_dir():
        pytest.skip(f"shared assets not found at {ASSETS}")
    out = tmp_path_factory.mktemp("conv")
    jobs = {
        "mlp-g": ("csinva-mnist-gan-mlp/G--300.ckpt", "csinva-mlp-gan-g", []),
        "mlp-d": ("csinva-mnist-gan-mlp/D--300.ckpt", "csinva-mlp-gan-d", []),
        "mlp-d-prob": ("csinva-mnist-gan-mlp/D--300.ckpt", "csinva-mlp-gan-d", ["--keep-sigmoid"]),
        "wgan-g": ("ryhan-mnist-wgangp/generator.pth", "ryhan-wgangp-g", []),
        "wgan-c": ("ryhan-mnist-wgangp/critic.pth", "ryhan-wgangp-critic", []),
        "lenet": ("csinva-mnist-lenet/lenet_epoch=12_test_acc=0.991.pth", "csinva-lenet", []),
        "dcgan-d": ("csinva-mnist-dcgan-netD/netD_epoch_99.pth", "csinva-dcgan-d", []),
        "dcgan-d-prob": ("csinva-mnist-dcgan-netD/netD_epoch_99.pth", "csinva-dcgan-d", ["--keep-sigmoid"]),
    }
    for name, (src, fmt, extra) in jobs.items():
        assert gpm("-q", "convert", ASSETS / src, "--from", fmt, "-o", out / name, *extra) == 0, name
    return ASSETS, out


def test_mlp_gan_generator_exact(converted):
    assets, out = converted
    ref = load_orig(csinva_mlp_g(), assets / "csinva-mnist-gan-mlp/G--300.ckpt")
    comp = load_checkpoint(out / "mlp-g")
    z = torch.randn(32, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(comp.module(z), ref(z).view(-1, 1, 28, 28))
    cfg = comp.config
    assert cfg["role"] == "generator" and cfg["latent"]["dim"] == 64 and cfg["data"]["shape"] == [1, 28, 28]
    assert cfg["data"]["range"] == [-1.0, 1.0]
    assert cfg["provenance"]["sha256"] == "3163c6503c144d35fe44bb0247bbc61cd8e49c50ea3d84c1b7c080dc18fbf84c"
    assert cfg["provenance"]["license"] == "MIT"


def test_mlp_gan_discriminator_logit_and_prob_exact(converted):
    assets, out = converted
    ref = load_orig(csinva_mlp_d(), assets / "csinva-mnist-gan-mlp/D--300.ckpt")
    x = fixed_images()
    logit = load_checkpoint(out / "mlp-d")
    prob = load_checkpoint(out / "mlp-d-prob")
    with torch.no_grad():
        p_ref = ref(x.view(len(x), -1))
        assert torch.equal(prob.module(x), p_ref)
        assert torch.equal(torch.sigmoid(logit.module(x)), p_ref)
        assert torch.equal(logit.module(x), ref[:-1](x.view(len(x), -1)))  # the pre-sigmoid output
    assert logit.config["output"] == "logit" and prob.config["output"] == "prob"
    assert logit.config["loss"] == "vanilla" and logit.config["time"] is None


def test_wgangp_generator_and_critic_exact(converted):
    assets, out = converted
    g_ref = load_orig(RyhanG(), assets / "ryhan-mnist-wgangp/generator.pth")
    c_ref = load_orig(RyhanCritic(), assets / "ryhan-mnist-wgangp/critic.pth")
    g, c = load_checkpoint(out / "wgan-g"), load_checkpoint(out / "wgan-c")
    z = torch.randn(16, 64, generator=torch.Generator().manual_seed(4))
    x = fixed_images()
    with torch.no_grad():
        assert torch.equal(g.module(z), g_ref(z))
        assert torch.equal(c.module(x), c_ref(x))
        # and on generated digits (the critic's working domain)
        assert torch.equal(c.module(g_ref(z)), c_ref(g_ref(z)))
    assert c.config["output"] == "critic" and c.config["loss"] == "ipm"
    assert g.config["latent"] == {"dim": 64, "distribution": "normal", "shape": [64]}


def test_lenet_exact_with_features(converted):
    assets, out = converted
    ref = load_orig(CsinvaLeNet(), assets / "csinva-mnist-lenet/lenet_epoch=12_test_acc=0.991.pth")
    comp = load_checkpoint(out / "lenet")
    x = fixed_images(lo=0.0, size=32)
    with torch.no_grad():
        assert torch.equal(comp.module(x), ref(x))
        f_ref = ref.fc.r6(ref.fc.f6(ref.convnet(x).view(len(x), -1)))
        assert torch.equal(comp.module.features(x), f_ref)
    cfg = comp.config
    assert cfg["role"] == "classifier" and cfg["features"]["dim"] == 84 and cfg["features"]["layer"] == "f6"
    assert cfg["data"]["shape"] == [1, 32, 32] and cfg["data"]["range"] == [0.0, 1.0]


def test_csinva_dcgan_discriminator_exact_and_range(converted):
    assets, out = converted
    ref = load_orig(CsinvaDCGAND(), assets / "csinva-mnist-dcgan-netD/netD_epoch_99.pth")
    x = fixed_images(lo=0.0)
    logit, prob = load_checkpoint(out / "dcgan-d"), load_checkpoint(out / "dcgan-d-prob")
    with torch.no_grad():
        p_ref = ref(x)
        assert torch.equal(prob.module(x), p_ref)
        assert torch.equal(torch.sigmoid(logit.module(x)), p_ref)
    assert logit.config["data"]["range"] == [0.0, 1.0] and logit.config["output"] == "logit"


def test_shipped_checkpoints_match_a_fresh_conversion(converted):
    """checkpoints/ holds what scripts/convert_assets.sh makes from the assets (same tensors, same config)."""
    from safetensors.torch import load_file

    root = Path(__file__).resolve().parent.parent / "checkpoints"
    _, out = converted
    for shipped, fresh in [("mnist-mlp-gan/generator", "mlp-g"), ("mnist-mlp-gan/discriminator", "mlp-d"),
                           ("mnist-wgangp/generator", "wgan-g"), ("mnist-wgangp/critic", "wgan-c"),
                           ("mnist-lenet", "lenet"), ("mnist-dcgan-netd", "dcgan-d")]:
        a, b = load_file(str(root / shipped / "model.safetensors")), load_file(str(out / fresh / "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), shipped
        assert read_config(root / shipped) == read_config(out / fresh), shipped


def test_registry_bundles_and_defaults():
    from gpmcli.registry import Registry, load_bundle

    from gpmcli.samplers import get_kind

    reg = Registry.load()
    for kind, name in reg.defaults.items():  # every default bundle has the roles its sampler needs
        assert set(get_kind(kind).roles) <= set(reg.bundles[name].components), (kind, name)
    b = load_bundle("mnist-wgangp", registry=reg)
    assert b["generator"].role == "generator" and b["discriminator"].config["output"] == "critic"
    assert load_bundle("mnist-mlp-gan", registry=reg)["discriminator"].config["output"] == "logit"
    assert load_bundle("mnist-lenet", registry=reg)["classifier"].config["features"]["dim"] == 84


# ---------------------------------------------------------------------------------------------------------------
# pytorch/examples DCGAN of any width (64x64, random weights, independent reference)


def ptex_dcgan(nz, ngf, ndf, nc):
    G = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
    D = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())
    for m in list(G.modules()) + list(D.modules()):  # non-trivial BatchNorm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    return G.eval(), D.eval()


def test_pytorch_examples_dcgan_any_width(tmp_path):
    G, D = ptex_dcgan(nz=16, ngf=4, ndf=6, nc=3)
    torch.save({f"main.{k}": v for k, v in G.state_dict().items()}, tmp_path / "netG.pth")
    torch.save({f"main.{k}": v for k, v in D.state_dict().items()}, tmp_path / "netD.pth")
    assert gpm("-q", "convert", tmp_path / "netG.pth", "--from", "dcgan-g", "-o", tmp_path / "g") == 0
    assert gpm("-q", "convert", tmp_path / "netD.pth", "--from", "dcgan-d", "-o", tmp_path / "d") == 0
    g, d = load_checkpoint(tmp_path / "g"), load_checkpoint(tmp_path / "d")
    z = torch.randn(5, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        x = G(z[:, :, None, None])
        assert torch.equal(g.module(z), x)
        assert torch.equal(torch.sigmoid(d.module(x)), D(x).view(-1, 1).squeeze(1))
    assert g.config["data"]["shape"] == [3, 64, 64] and g.config["latent"]["dim"] == 16
    assert d.config["data"]["shape"] == [3, 64, 64] and d.config["output"] == "logit"


def test_preset_rejects_wrong_file(tmp_path, assets):
    rc = gpm("-q", "convert", assets / "ryhan-mnist-wgangp/critic.pth", "--from", "csinva-mlp-gan-d",
             "-o", tmp_path / "x")
    assert rc == 2 and not (tmp_path / "x" / "model.safetensors").exists()


# ---------------------------------------------------------------------------------------------------------------
# user modules: state-dict and score-sde

NET_PY = textwrap.dedent('''
    import torch
    from torch import nn

    class TinyScore(nn.Module):
        """f(x, c_noise) for 2-D data."""
        def __init__(self, dim=2, hidden=16):
            super().__init__()
            self.inp = nn.Linear(dim + 1, hidden)
            self.out = nn.Linear(hidden, dim)
            self.register_buffer("scale", torch.tensor(1.5))
        def forward(self, x, c):
            c = torch.as_tensor(c, dtype=x.dtype).reshape(-1, 1).expand(x.shape[0], 1)
            return self.scale * self.out(torch.tanh(self.inp(torch.cat([x, c], 1))))
''')


@pytest.fixture
def user_net(tmp_path):
    p = tmp_path / "tiny_net.py"
    p.write_text(NET_PY)
    return p


def _tiny(user_net, **kw):
    from gpmcli.convert import instantiate

    return instantiate(user_net, "TinyScore", kw)


def test_score_sde_applies_ema(tmp_path, user_net):
    net = _tiny(user_net, hidden=8)
    params = [p.detach().clone() for p in net.parameters()]
    shadow = [p * 0.5 + 0.25 for p in params]  # what the EMA would hold
    ckpt = {"model": {f"module.{k}": v for k, v in net.state_dict().items()},
            "ema": {"decay": 0.999, "num_updates": 7, "shadow_params": shadow},
            "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4, "params": [0, 1, 2, 3]}]}, "step": 1234}
    torch.save(ckpt, tmp_path / "checkpoint_5.pth")
    common = ["--module", f"{user_net}:TinyScore", "--kwargs", '{"hidden": 8}', "--parameterization", "edm",
              "--data-shape", "2"]
    assert gpm("-q", "convert", tmp_path / "checkpoint_5.pth", "--from", "score-sde", "-o", tmp_path / "ema",
               *common) == 0
    assert gpm("-q", "convert", tmp_path / "checkpoint_5.pth", "--from", "score-sde", "--no-ema",
               "-o", tmp_path / "raw", *common) == 0
    ema = load_checkpoint(tmp_path / "ema", trust_code=True)
    raw = load_checkpoint(tmp_path / "raw", trust_code=True)
    # manual EMA: parameters replaced, in order, by the shadow list; buffers from the model
    manual = _tiny(user_net, hidden=8)
    manual.load_state_dict(net.state_dict())
    with torch.no_grad():
        for p, s in zip(manual.parameters(), shadow):
            p.copy_(s)
    for (k, v), (k2, v2) in zip(ema.module.state_dict().items(), manual.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    for v, v2 in zip(raw.module.state_dict().values(), net.state_dict().values()):
        assert torch.equal(v, v2)
    x = torch.randn(4, 2)
    with torch.no_grad():
        assert torch.equal(ema.module(x, torch.full((4,), 0.3)), manual(x, torch.full((4,), 0.3)))
    cfg = ema.config
    assert cfg["arch"]["name"] == "user-module" and (tmp_path / "ema" / "tiny_net.py").is_file()
    assert cfg["provenance"]["step"] == 1234 and cfg["provenance"]["ema"] is True
    assert cfg["parameterization"] == {"type": "edm"} and cfg["data"]["shape"] == [2]


def test_score_sde_shadow_count_mismatch_is_usage_error(tmp_path, user_net):
    net = _tiny(user_net)
    ckpt = {"model": net.state_dict(), "ema": {"shadow_params": [p.detach() for p in net.parameters()][:-1]},
            "step": 1}
    torch.save(ckpt, tmp_path / "c.pth")
    rc = gpm("-q", "convert", tmp_path / "c.pth", "--from", "score-sde", "--module", f"{user_net}:TinyScore",
             "--parameterization", "edm", "--data-shape", "2", "-o", tmp_path / "o")
    assert rc == 2 and not (tmp_path / "o").exists()


def test_user_module_checkpoint_needs_trust(tmp_path, user_net):
    net = _tiny(user_net)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    assert gpm("-q", "convert", tmp_path / "w.pt", "--from", "state-dict", "--module", f"{user_net}:TinyScore",
               "--role", "score", "--parameterization", "score", "--data-shape", "2", "-o", tmp_path / "ck") == 0
    from gpmcli.errors import UnsafeFileError
    from gpmcli.registry import load_component

    with pytest.raises(UnsafeFileError):
        load_component(str(tmp_path / "ck"))
    comp = load_component(str(tmp_path / "ck"), trust_pickle=True)
    for v, v2 in zip(comp.module.state_dict().values(), net.state_dict().values()):
        assert torch.equal(v, v2)
    # the stored source is integrity-checked
    (tmp_path / "ck" / "tiny_net.py").write_text(NET_PY + "\n# edited\n")
    from gpmcli.errors import IntegrityError

    with pytest.raises(IntegrityError):
        load_component(str(tmp_path / "ck"), trust_pickle=True)


def test_state_dict_missing_metadata_is_usage_error(tmp_path, user_net):
    torch.save(_tiny(user_net).state_dict(), tmp_path / "w.pt")
    rc = gpm("-q", "convert", tmp_path / "w.pt", "--from", "state-dict", "--module", f"{user_net}:TinyScore",
             "--role", "score", "--data-shape", "2", "-o", tmp_path / "ck")  # no --parameterization
    assert rc == 2 and not (tmp_path / "ck").exists()


# ---------------------------------------------------------------------------------------------------------------
# safe loading


class _Payload:
    """A pickled object whose class must be imported (i.e. code) to unpickle it."""

    def __reduce__(self):
        return (print, ("payload ran",))


def test_pickled_code_refused_unless_trusted(tmp_path, capsys):
    sd = csinva_mlp_d()[:-1].state_dict()
    torch.save({**sd, "extra": _Payload()}, tmp_path / "D.ckpt")
    rc = gpm("-q", "convert", tmp_path / "D.ckpt", "--from", "csinva-mlp-gan-d", "-o", tmp_path / "o")
    err = capsys.readouterr()
    assert rc == 5 and "payload ran" not in err.out and "--trust-pickle" in err.err
    assert not (tmp_path / "o").exists()
    rc = gpm("-q", "convert", tmp_path / "D.ckpt", "--from", "csinva-mlp-gan-d", "-o", tmp_path / "o",
             "--trust-pickle")
    assert rc == 0 and "payload ran" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------
# diffusers


def test_diffusers_unet_repo(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 16), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D")).eval()
    sched = diffusers.DDPMScheduler(num_train_timesteps=50, beta_start=1e-3, beta_end=0.05, beta_schedule="linear")
    repo = tmp_path / "repo"
    unet.save_pretrained(repo / "unet")
    sched.save_pretrained(repo / "scheduler")
    assert gpm("-q", "convert", repo, "--from", "diffusers", "-o", tmp_path / "ck") == 0
    comp = load_checkpoint(tmp_path / "ck")
    x = torch.randn(3, 1, 8, 8)
    t = torch.tensor([0, 17, 49])
    with torch.no_grad():
        assert torch.equal(comp.module(x, t), unet(x, t).sample)
    p = comp.config["parameterization"]
    assert p["type"] == "eps" and p["schedule"]["num_train_timesteps"] == 50
    assert torch.allclose(torch.tensor(p["schedule"]["alphas_cumprod"], dtype=torch.float64), sched.alphas_cumprod.double(), atol=1e-6)
    assert comp.config["data"]["shape"] == [1, 8, 8] and comp.config["data"]["range"] == [-1.0, 1.0]
    assert read_config(tmp_path / "ck")["arch"]["name"] == "diffusers-unet2d"


def test_cosine_schedule_matches_diffusers():
    diffusers = pytest.importorskip("diffusers")
    from gpmcli.convert import parameterization_from_scheduler

    s = diffusers.DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
    p = parameterization_from_scheduler(dict(s.config))
    assert torch.allclose(torch.tensor(p["schedule"]["alphas_cumprod"], dtype=torch.float64), s.alphas_cumprod.double(), atol=1e-5)
