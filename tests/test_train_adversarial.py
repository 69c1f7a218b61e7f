"""gpm train gan | discriminator --for discr-flow | score-gan: losses against closed forms, the training flow against
the sampler's, the Score GAN generator gradient against exact scores, resume = uninterrupted, and checkpoints that
sample through the real samplers."""

import math

import pytest
import torch

from gpmcli.checkpoint import load_checkpoint
from gpmcli.fields.base import Bundle
from gpmcli.fields.toy import GaussianMixture, load_toy
from gpmcli.noise import BatchNoise
from gpmcli.samplers import get_kind

from gpmcli.train.adversarial import (discriminator_loss, gradient_penalty, loss_a, loss_b, loss_c,
                                      particle_loss)
from gpmcli.train import get_role, train
from gpmcli.train.common import STATE_FILE, Loop, TrainOptions
from gpmcli.fields.schedules import rho_interp
from gpmcli.train.score_gan import generator_loss, score_gan_direction

from _onethread import one_thread  # noqa: F401


def _log_normal(x, m, s):
    return -0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)


def test_vanilla_discriminator_optimum_is_the_log_density_ratio():
    """A quadratic discriminator f(x) = a x^2 + b x + c trained with the vanilla loss on N(1, 0.5^2) (real) vs N(0, 1)
    (fake) converges to log q/p, whose coefficients are known in closed form (a = -1.5, b = 4, c = log 2 - 2)."""
    g = torch.Generator().manual_seed(0)
    real = 1 + 0.5 * torch.randn(40000, generator=g, dtype=torch.float64)
    fake = torch.randn(40000, generator=g, dtype=torch.float64)
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    f = lambda x: w[0] * x**2 + w[1] * x + w[2]  # noqa: E731
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = discriminator_loss("vanilla", f(fake), f(real))
        loss.backward()
        return loss

    opt.step(closure)
    x = torch.linspace(-0.5, 2.0, 11, dtype=torch.float64)
    exact = _log_normal(x, 1.0, 0.5) - _log_normal(x, 0.0, 1.0)
    torch.testing.assert_close(f(x).detach(), exact, atol=0.12, rtol=0.05)
    torch.testing.assert_close(w.detach(), torch.tensor([-1.5, 4.0, math.log(2) - 2], dtype=torch.float64),
                               atol=0.1, rtol=0.05)


@pytest.mark.parametrize("loss,expect", [
    # pointwise optimum of q * (-b(u)) + p * a(u) at density values q = 0.3, p = 0.1
    ("vanilla", math.log(3.0)),  # log q/p
    ("hinge", 1.0),  # +1 where q > p
])
def test_pointwise_optimum(loss, expect):
    u = torch.linspace(-4, 4, 8001, dtype=torch.float64)
    q, p = 0.3, 0.1
    risk = q * (-loss_b(loss, u)) + p * loss_a(loss, u)
    assert float(u[risk.argmin()]) == pytest.approx(expect, abs=2e-3)


def test_ipm_loss_orientation_and_generator_losses():
    """IPM: the discriminator loss mean f(real) - mean f(fake) (f low on real); generators minimise c(f):
    softplus(-f) (non-saturating), f (IPM), -f (hinge)."""
    fr, ff = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0])
    assert float(discriminator_loss("ipm", ff, fr)) == pytest.approx(2.0 - (-1.0))
    assert float(particle_loss("vanilla", ff)) == pytest.approx(float(torch.nn.functional.softplus(-ff).mean()))
    assert float(particle_loss("ipm", ff)) == pytest.approx(-1.0)
    assert float(particle_loss("hinge", ff)) == pytest.approx(1.0)
    with pytest.raises(Exception):
        particle_loss("wasserstein", ff)


def test_gradient_penalty_of_a_linear_critic():
    """f(x) = w.x has |grad f| = |w| everywhere: GP = (|w| - center)^2 exactly."""
    w = torch.tensor([3.0, 4.0], requires_grad=True)
    real, fake = torch.randn(5, 2), torch.randn(5, 2)
    gp = gradient_penalty(lambda x: x @ w, real, fake, torch.rand(5), center=1.0)
    assert float(gp.detach()) == pytest.approx(16.0)
    (gw,) = torch.autograd.grad(gp, w)  # differentiable in the network: d/dw (|w| - 1)^2 = 2 (|w| - 1) w / |w|
    torch.testing.assert_close(gw, 2 * 4.0 * w.detach() / 5.0)


# ---- Discriminator Flow -----------------------------------------------------------------------------------------------

DF_ARGS = {"flow_steps": 5, "eta": 2.0, "width": 16, "depth": 2}


def loop(key, out, steps=3, batch=32, args=None, **opts):
    """A training loop (not yet run) for role ``key`` on the pentagon, with its trainer reachable as ``.trainer``."""
    from gpmcli.data import load_dataset
    from gpmcli.train import get_role

    spec = get_role(key)
    full = {o.name: o.default for o in spec.options}
    full.update(args or {})
    return Loop(spec.trainer, key, full, load_dataset("pentagon"),
                TrainOptions(steps=steps, batch_size=batch, seed=1, device="cpu", **opts), out)


@pytest.mark.parametrize("loss", ["vanilla", "ipm", "hinge"])
def test_training_flow_is_minus_grad_of_particle_loss_and_the_samplers_flow(loss, tmp_path):
    """The trajectories the discriminator trains on follow z_{k+1} = z_k - (eta/N) grad_z c(f(z, k/N)), and the
    exported checkpoint makes gpm's discr-flow sampler reproduce them (same N, eta, velocity convention)."""
    lp = loop("discriminator:discr-flow", tmp_path / "d", args={**DF_ARGS, "loss": loss})
    lp.run()
    tr = lp.trainer
    tr.D.eval()
    z0 = torch.randn(7, 2)
    traj = tr.simulate(z0)
    assert traj.shape == (5, 7, 2) and torch.equal(traj[0], z0)
    for k in range(4):
        z = traj[k].clone().requires_grad_(True)
        t = torch.full((7,), k / 5)
        (g,) = torch.autograd.grad(loss_c(loss, tr.D(z, t).reshape(-1)).sum(), z)
        torch.testing.assert_close(traj[k + 1], traj[k] - 2.0 / 5 * g, atol=1e-6, rtol=1e-5)
    comp = load_checkpoint(tmp_path / "d")
    assert comp.config["time"]["n_steps"] == 5 and comp.config["time"]["eta"] == 2.0
    assert comp.config["loss"] == loss and comp.config["real"] == ("low" if loss == "ipm" else "high")
    s = get_kind("discr-flow").build(Bundle("d", {"discriminator": comp}), {})
    res = s(BatchNoise(3, range(7)), trajectory=True)
    z0 = BatchNoise(3, range(7)).randn(2)
    torch.testing.assert_close(torch.stack(res.trajectory[:5]), tr.simulate(z0), atol=1e-5, rtol=1e-5)


def test_discr_flow_pool_refresh_and_gp_recorded(tmp_path):
    lp = loop("discriminator:discr-flow", tmp_path / "d", steps=7,
              args={**DF_ARGS, "loss": "ipm", "refresh_every": 3, "pool": 64, "gp": 0.04})
    calls = []
    orig = lp.trainer.simulate
    lp.trainer.simulate = lambda z: calls.append(z.shape[0]) or orig(z)
    lp.run()
    assert calls == [64, 64, 64]  # steps 0, 3, 6
    cfg = load_checkpoint(tmp_path / "d").config
    assert cfg["time"]["refresh_every"] == 3 and cfg["time"]["pool"] == 64
    assert cfg["training"]["role_options"]["gp"] == 0.04 and cfg["training"]["steps"] == 7


def test_time_conditioned_image_discriminator_flows(tmp_path):
    """The image discriminator of the MNIST Discriminator Flow: per-sample values (no batch statistics) that depend on
    the flow time, and a checkpoint the sampler reads."""
    from gpmcli.data import TensorDataset

    x = torch.rand(64, 1, 8, 8) * 2 - 1
    spec = get_role("discriminator:discr-flow")
    full = {o.name: o.default for o in spec.options}
    full.update(flow_steps=3, eta=1.0, width=4)
    lp = Loop(spec.trainer, "discriminator:discr-flow", full, TensorDataset(x, "rand8"),
              TrainOptions(steps=2, batch_size=8, device="cpu"), tmp_path / "img")
    lp.run()
    d = lp.trainer.D.eval()
    t = torch.full((5,), 0.5)
    torch.testing.assert_close(d(x[:5], t)[:2], d(x[:2], t[:2]))
    assert not torch.allclose(d(x[:5], t), d(x[:5], torch.zeros(5)))
    comp = load_checkpoint(tmp_path / "img")
    out = get_kind("discr-flow").build(Bundle("i", {"discriminator": comp}), {})(BatchNoise(0, range(3))).x
    assert out.shape == (3, 1, 8, 8) and torch.isfinite(out).all()


# ---- Score GAN --------------------------------------------------------------------------------------------------------

def test_score_gan_direction_is_the_score_difference():
    """With exact denoisers of two Gaussian mixtures, the per-sample gradient of the generator loss is
    sigma (w_gen s_gen - w_data s_data) / B."""
    data, gen = load_toy("pentagon"), GaussianMixture([1.0, 2.0], [[0.0, 0.0], [1.0, -1.0]], [0.3, 0.7])
    x = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 5.0, 10.0], dtype=torch.float64)
    with torch.no_grad():
        d = score_gan_direction(x, sigma, gen(x, sigma), data(x, sigma), w_gen=0.7, w_data=1.3)
    exact = sigma[:, None] * (0.7 * gen.score(x.detach(), sigma) - 1.3 * data.score(x.detach(), sigma))
    torch.testing.assert_close(d, exact)
    (g,) = torch.autograd.grad(generator_loss(x, d), x)
    torch.testing.assert_close(g, exact / 6)


def test_rho_schedule_endpoints_and_order():
    u = torch.tensor([0.0, 0.5, 1.0])
    s = rho_interp(u, 0.1, 10.0, 3.0)
    torch.testing.assert_close(s[[0, 2]], torch.tensor([10.0, 0.1]))
    assert s[1] == pytest.approx((10 ** (1 / 3) / 2 + 0.1 ** (1 / 3) / 2) ** 3, rel=1e-6)


def test_score_gan_generator_step_follows_the_field(tmp_path):
    """One generator step of a translation-only generator g(z) = b moves b along the batch mean of
    sigma (w_data s_data - w_gen s_gen), evaluated at the step's own draws (Adam's first step: lr * sign)."""
    lp = loop("score-gan", tmp_path / "s", steps=1, batch=64, lr=1e-3,
              args={"score": "toy:pentagon", "latent": 2, "width": 8, "depth": 1, "gen_width": 8})
    tr = lp.trainer
    lin = torch.nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.copy_(torch.tensor([0.2, -1.0]))
    lin.weight.requires_grad_(False)
    tr.G = lin
    tr.opt_g = torch.optim.Adam([lin.bias], lr=1e-3)
    tr.ctx.step = 0
    tr.train_step(torch.zeros(64, 2))  # denoiser step, then the generator step (score_steps = 1)
    # replay the step's draws: denoiser step (latents, sigmas, eps), then the generator step's
    g = tr.ctx.generator()
    torch.randn(64, 2, generator=g), torch.rand(64, generator=g), torch.randn(64, 2, generator=g)
    torch.randn(64, 2, generator=g)
    sigma = rho_interp(torch.rand(64, generator=g), 0.1, 10.0, 3.0)
    xn = torch.tensor([0.2, -1.0]) + sigma[:, None] * torch.randn(64, 2, generator=g)
    tr.Dgen.eval()
    with torch.no_grad():
        d = score_gan_direction(xn, sigma, tr.Dgen(xn, sigma), tr.Ddata(xn, sigma))
    expect = torch.tensor([0.2, -1.0]) - 1e-3 * torch.sign(d.mean(0))
    torch.testing.assert_close(lin.bias.detach(), expect, atol=1e-6, rtol=0)


# ---- resume, round trip, sampling ---------------------------------------------------------------------------------

ROLES = {
    "gan": ("gan", None, {"latent": 3, "width": 8, "depth": 2, "gp": 0.1}),
    "discr-flow": ("discriminator", "discr-flow", {**DF_ARGS, "refresh_every": 2, "pool": 24}),
    "score-gan": ("score-gan", None, {"score": "toy:pentagon", "latent": 3, "width": 8, "depth": 2, "gen_width": 8,
                                      "score_steps": 2}),
}


def _weights(d):
    from safetensors.torch import load_file

    return load_file(str(d / "model.safetensors"))


@pytest.mark.parametrize("name", ["gan", "discr-flow", "score-gan"])
def test_resume_equals_uninterrupted(name, tmp_path):
    role, target, args = ROLES[name]
    kw = dict(target=target, args=args, batch_size=16, seed=2, device="cpu")
    train(role, "pentagon", tmp_path / "a", steps=6, **kw)
    train(role, "pentagon", tmp_path / "b", steps=3, **kw)
    assert (tmp_path / "b" / STATE_FILE).is_file()
    train(role, "pentagon", tmp_path / "b", steps=6, resume=True, **kw)
    sub = "generator" if name == "gan" else ""
    wa, wb = _weights(tmp_path / "a" / sub), _weights(tmp_path / "b" / sub)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    sa = torch.load(tmp_path / "a" / STATE_FILE, weights_only=True)
    sb = torch.load(tmp_path / "b" / STATE_FILE, weights_only=True)
    for m in sa["modules"]:  # every trained network, also those not exported (discriminator, online denoiser)
        assert all(torch.equal(v, sb["modules"][m][k]) for k, v in sa["modules"][m].items()), m


@pytest.mark.parametrize("kind", ["gan", "ddls", "score-gan"])
def test_generator_checkpoints_sample_through_the_samplers(kind, tmp_path):
    name = "score-gan" if kind == "score-gan" else "gan"
    role, target, args = ROLES[name]
    lp = loop(role, tmp_path / "m", steps=2, batch=16, args=args)
    lp.run()
    gdir = tmp_path / "m" / "generator" if name == "gan" else tmp_path / "m"
    gen = load_checkpoint(gdir)
    assert gen.config["latent"] == {"dim": 3, "distribution": "normal"}
    comps = {"generator": gen}
    if kind == "ddls":
        comps["discriminator"] = load_checkpoint(tmp_path / "m" / "discriminator")
        assert comps["discriminator"].config["output"] == "logit" and comps["discriminator"].config["time"] is None
    s = get_kind(kind).build(Bundle("m", comps), {"ddls_steps": 3} if kind == "ddls" else {})
    x = s(BatchNoise(0, range(5))).x
    assert x.shape == (5, 2)
    if kind != "ddls":  # one pass x = G(z) with the trained weights, generator in eval mode
        z = BatchNoise(0, range(5)).randn(3)
        lp.trainer.G.eval()
        torch.testing.assert_close(x, lp.trainer.G(z).detach())


def test_cli_trains_each_role_and_samples_it(cli, tmp_path):
    """gpm train ... -o DIR, then gpm sample --model KIND on what it wrote (gan, ddls, discr-flow, score-gan)."""
    import numpy as np

    runs = {
        "gan": ["gan", "--latent", "3", "--width", "8", "--depth", "1"],
        "df": ["discriminator", "--for", "discr-flow", "--flow-steps", "4", "--eta", "2", "--width", "8"],
        "sg": ["score-gan", "--score", "toy:pentagon", "--latent", "3", "--width", "8", "--gen-width", "8"],
    }
    for name, args in runs.items():
        code, _, err = cli("train", args[0], "--data", "pentagon", "-o", tmp_path / name, "--steps", "2", "-b", "8",
                           "--device", "cpu", *args[1:])
        assert code == 0, err
    samples = {
        "gan": ["--checkpoint", tmp_path / "gan" / "generator"],
        "ddls": ["--generator", tmp_path / "gan" / "generator", "--discriminator", tmp_path / "gan" / "discriminator",
                 "--ddls-steps", "2"],
        "discr-flow": ["--checkpoint", tmp_path / "df"],
        "score-gan": ["--checkpoint", tmp_path / "sg"],
    }
    for kind, args in samples.items():
        out = tmp_path / f"s-{kind}"
        code, _, err = cli("sample", "--model", kind, *args, "-n", "4", "-o", out, "--device", "cpu")
        assert code == 0, (kind, err)
        x = np.load(out / "samples.npz")["samples"]
        assert x.shape == (4, 2) and np.isfinite(x).all()
    cfg = load_checkpoint(tmp_path / "df").config
    assert cfg["provenance"]["command"] and cfg["time"]["n_steps"] == 4 and cfg["loss"] == "vanilla"


@pytest.mark.parametrize("args,msg", [
    (["score-gan"], "--score"),
    (["gan", "--loss", "wasserstein"], "--loss"),
    (["discriminator", "--for", "discr-flow", "--eta", "0"], "--eta"),
    (["score-gan", "--score", "toy:gaussian", "--sigma-min", "5", "--sigma-max", "1"], "--sigma-min"),
])
def test_cli_bad_role_options_exit_2(cli, tmp_path, args, msg):
    code, _, err = cli("train", args[0], "--data", "pentagon", "-o", tmp_path / "x", "--steps", "1", *args[1:])
    assert code == 2 and msg in err, err


# ---- DDLS calibration (gpm train discriminator --for ddls) ----------------------------------------------------------

def _linear_generator(path, weight: float, bias: float):
    """A 1-d generator x = w z + b (z ~ N(0, 1)), i.e. N(b, w^2), saved as a gpm checkpoint."""
    from gpmcli.checkpoint import save_checkpoint
    from gpmcli.nets.mlp import MLP

    g = MLP(in_dim=1, out_dim=1, depth=0, conditional=False)
    with torch.no_grad():
        g.net[0].weight.fill_(weight)
        g.net[0].bias.fill_(bias)
    save_checkpoint(path, g, {"role": "generator", "arch": {"name": "mlp", "kwargs": {
        "in_dim": 1, "out_dim": 1, "depth": 0, "conditional": False}}, "latent": {"dim": 1, "distribution": "normal"},
        "data": {"shape": [1], "range": None}})


def test_ddls_calibration_learns_the_log_ratio_to_the_frozen_generator(tmp_path):
    """Data N(1, 0.5^2), frozen generator N(0, 1): the calibrated logit approaches log q/p_g (closed form) where both
    densities have mass, the generator is untouched, and the checkpoint reads as a DDLS logit discriminator."""
    from gpmcli.data import TensorDataset

    _linear_generator(tmp_path / "g", 1.0, 0.0)
    real = 1 + 0.5 * torch.randn(20000, 1, generator=torch.Generator().manual_seed(0))
    spec = get_role("discriminator:ddls")
    full = {o.name: o.default for o in spec.options}
    full.update(generator=str(tmp_path / "g"), width=32, depth=2)
    lp = Loop(spec.trainer, "discriminator:ddls", full, TensorDataset(real, "n(1,.25)", data_range=None),
              TrainOptions(steps=1500, batch_size=512, lr=3e-3, seed=0, device="cpu", ema=0.99), tmp_path / "d")
    lp.run()
    comp = load_checkpoint(tmp_path / "d")
    assert comp.config["output"] == "logit" and comp.config["time"] is None and comp.config["loss"] == "vanilla"
    assert comp.config["calibrated_for"]["generator"] == str(tmp_path / "g")
    x = torch.linspace(0.0, 1.8, 10)
    exact = _log_normal(x, 1.0, 0.5) - _log_normal(x, 0.0, 1.0)
    with torch.no_grad():
        d = comp.module.eval()(x[:, None]).reshape(-1)
    assert (d - exact).abs().max() < 0.35, (d, exact)
    assert float(lp.trainer.G.net.net[0].weight) == 1.0  # frozen


def test_ddls_calibration_bad_input(cli, tmp_path):
    _linear_generator(tmp_path / "g", 1.0, 0.0)
    code, _, err = cli("train", "discriminator", "--for", "ddls", "--data", "pentagon", "-o", tmp_path / "x",
                       "--steps", "1")
    assert code == 2 and "--generator" in err
    code, _, err = cli("train", "discriminator", "--for", "ddls", "--data", "pentagon", "-o", tmp_path / "x",
                       "--steps", "1", "--generator", tmp_path / "g")
    assert code == 2 and "shape [1]" in err  # a 1-d generator against 2-d data
    assert not (tmp_path / "x" / "model.safetensors").exists()
