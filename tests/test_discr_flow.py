"""Discriminator fields (ALGORITHMS.md section 4: output and loss conventions, gradients under inference mode) and
the Discriminator Flow sampler."""

import json
import logging

import pytest
import torch
import torch.nn.functional as F

from gpmcli.checkpoint import save_checkpoint
from gpmcli.fields.base import Bundle, Component
from gpmcli.fields.discriminator import NetDiscriminator, discriminator_from_component, prob_to_logit
from gpmcli.fields.oracle import oracle_component
from gpmcli.fields.toy import load_toy
from gpmcli.nets.mlp import MLP
from gpmcli.noise import BatchNoise
from gpmcli.samplers.discr_flow import build

from _onethread import one_thread  # noqa: F401

# particle loss c(u) of each GAN loss (section 4); the velocity is -grad_x c(f(x))
C_OF = {"vanilla": lambda u: F.softplus(-u), "ipm": lambda u: u, "hinge": lambda u: -u}


def mlp(seed, cond):
    torch.manual_seed(seed)
    return MLP(in_dim=3, out_dim=1, hidden=16, depth=2, conditional=cond).eval()


@pytest.mark.parametrize("loss", ["vanilla", "ipm", "hinge"])
def test_velocity_is_minus_grad_of_particle_loss(loss):
    net = mlp(0, True)
    # GPM's IPM discriminators are low on real data: their config says so, and v = -grad f exactly as in section 4
    disc = NetDiscriminator(net, loss=loss, time={"kind": "flow-time", "n_steps": 8},
                            real="low" if loss == "ipm" else "high")
    x = torch.randn(10, 3)
    t = torch.full((10,), 3 / 8)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(C_OF[loss](net(xg, t)).sum(), xg)
    _, v = disc.velocity(x, k=3, n=8)
    torch.testing.assert_close(v, -g)


@pytest.mark.parametrize("mode", ["inference", "no_grad", "plain"])
def test_per_sample_gradients_under_inference_mode(mode):
    net = mlp(1, False)
    disc = NetDiscriminator(net)
    x = torch.randn(6, 3)
    expect = torch.stack([torch.autograd.functional.jacobian(lambda r: net(r[None])[0, 0], x[i]) for i in range(6)])
    ctx = {"inference": torch.inference_mode, "no_grad": torch.no_grad, "plain": torch.enable_grad}[mode]
    with ctx():
        xin = x.clone()  # an inference tensor in inference mode
        r, g = disc.grad(xin)
    torch.testing.assert_close(g, expect)
    torch.testing.assert_close(r, net(x)[:, 0].detach())


def test_prob_output_becomes_a_clamped_logit():
    p = torch.tensor([0.0, 1e-9, 0.25, 0.5, 1.0])
    lg = prob_to_logit(p)
    assert torch.isfinite(lg).all()
    assert lg[2] == pytest.approx(torch.logit(torch.tensor(0.25)).item(), abs=1e-6) and lg[3] == 0
    net = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Sigmoid())
    disc = NetDiscriminator(net, output="prob")
    x = torch.randn(4, 3) * 100  # saturated sigmoid: the visible last Sigmoid is skipped, the logit stays exact
    torch.testing.assert_close(disc.realness(x), net[0](x)[:, 0])
    with pytest.raises(Exception):
        NetDiscriminator(net, output="probability")


GAUSS = load_toy("gaussian")


def gauss_kl(x, gm):
    """KL(N(m, C) || target) of the particles' Gaussian fit (target Gaussian)."""
    x = x.double()
    m, c = x.mean(0), torch.cov(x.T)
    s, mu = gm.covariance(), gm.mean()
    si = torch.linalg.inv(s)
    d = mu - m
    return 0.5 * float(torch.trace(si @ c) + d @ si @ d - 2 + torch.logdet(s) - torch.logdet(c))


def test_oracle_flow_moves_gaussian_to_target():
    """With the exact ratio d = log q - log p_fit (vanilla loss), the flow z += (eta/N) sigmoid(-d) grad d takes N(0, I)
    to the target Gaussian: KL(particles || target) drops from 1.2 to under 2% of it (N = 40, eta = 8, M = 2000)."""
    oracle = oracle_component(GAUSS, fit="gaussian", sigma=0.0, time={"kind": "flow-time", "n_steps": 40, "eta": 8.0})
    s = build(Bundle("o", {"discriminator": oracle}), {})
    assert s.n_steps == 40 and s.eta == 8.0
    noise = BatchNoise(0, range(2000))
    x0 = BatchNoise(0, range(2000)).randn(2)
    res = s(noise, trajectory=True)
    k0, k1 = gauss_kl(x0, GAUSS), gauss_kl(res.x, GAUSS)
    assert k0 > 1.0 and k1 < 0.02 * k0, (k0, k1)
    assert torch.equal(res.trajectory[0], x0)
    assert res.diagnostics["mean_realness"][-1] > res.diagnostics["mean_realness"][0]


def saved_flow_disc(tmp_path, n_steps=6, eta=2.0, loss="ipm"):
    net = mlp(2, True)
    cfg = {"role": "discriminator", "output": "critic", "loss": loss, "real": "low",
           "arch": {"name": "mlp", "kwargs": {"in_dim": 3, "out_dim": 1, "hidden": 16, "depth": 2, "conditional": True}},
           "time": {"kind": "flow-time", "n_steps": n_steps, "eta": eta}, "data": {"shape": [3], "range": None}}
    save_checkpoint(tmp_path / "flowd", net, cfg)
    return net, cfg


def test_flow_steps_and_batch_invariance(tmp_path):
    """z_{k+1} = z_k + (eta/N) v(z_k, k/N) with v = -grad f (IPM, low on real), z_0 ~ N(0, I); any batch size."""
    net, cfg = saved_flow_disc(tmp_path)
    from gpmcli.checkpoint import load_checkpoint

    comp = load_checkpoint(tmp_path / "flowd")
    s = build(Bundle("f", {"discriminator": comp}), {})
    full = s(BatchNoise(1, range(9))).x
    parts = torch.cat([s(BatchNoise(1, i)).x for i in ([0, 1, 2, 3], [4, 5, 6, 7, 8])])
    assert (full - parts).abs().max() <= 1e-5
    z = BatchNoise(1, range(9)).randn(3)
    for k in range(6):
        zg = z.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(zg, torch.full((9,), k / 6)).sum(), zg)
        z = z - (2.0 / 6) * g
    torch.testing.assert_close(full, z.detach(), rtol=1e-5, atol=1e-5)


def test_overriding_steps_or_eta_warns(tmp_path, caplog):
    saved_flow_disc(tmp_path)
    from gpmcli.checkpoint import load_checkpoint

    comp = load_checkpoint(tmp_path / "flowd")
    with caplog.at_level(logging.WARNING, logger="gpm"):
        s = build(Bundle("f", {"discriminator": comp}), {"steps": 12})
    assert s.n_steps == 12 and s.eta == 2.0 and "trained with" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gpm"):
        build(Bundle("f", {"discriminator": comp}), {"steps": 6, "eta": 2.0})
    assert caplog.text == ""


def test_cli_discr_flow(tmp_path, monkeypatch, cli):
    saved_flow_disc(tmp_path)
    (tmp_path / "registry.toml").write_text('[defaults]\n"discr-flow" = "fl"\n[bundles.fl]\ndiscriminator = "flowd"\n')
    monkeypatch.setenv("GPM_CHECKPOINTS", str(tmp_path))
    code, _, _ = cli("sample", "--model", "discr-flow", "-n", "5", "-o", tmp_path / "out")
    assert code == 0
    info = json.loads((tmp_path / "out/run.json").read_text())
    assert info["params"]["steps"] == 6 and info["params"]["eta"] == 2.0 and info["nfe_per_sample"] == 6


def test_component_wrapping_reads_config():
    net = mlp(3, False)
    comp = Component("discriminator", net, {"output": "critic", "loss": "hinge", "time": None}, "c")
    d = discriminator_from_component(comp)
    assert isinstance(d, NetDiscriminator) and d.loss == "hinge" and d.sign == 1.0
    with pytest.raises(Exception):
        discriminator_from_component(Component("generator", net, {}, "g"))
