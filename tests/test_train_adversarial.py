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
from gpmcli.train.adversarial import (STATE_FILE, discriminator_loss, fit, gradient_penalty, loss_a, loss_b,
                                      loss_c, particle_loss)
from gpmcli.train.discr_flow import DiscrFlowTrainer
from gpmcli.train.gan import GANTrainer
from gpmcli.train.score_gan import ScoreGANTrainer, generator_loss, rho_sigmas, score_gan_direction
from gpmcli.train.sources import ToySource

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

def _df(loss="vanilla", **kw):
    kw = {"n_steps": 5, "eta": 2.0, "batch": 32, "width": 16, "depth": 2, **kw}
    return DiscrFlowTrainer(ToySource("pentagon"), loss=loss, seed=1, **kw)


@pytest.mark.parametrize("loss", ["vanilla", "ipm", "hinge"])
def test_training_flow_is_minus_grad_of_particle_loss_and_the_samplers_flow(loss, tmp_path):
    """The trajectories the discriminator trains on follow z_{k+1} = z_k - (eta/N) grad_z c(f(z, k/N)), and the
    exported checkpoint makes gpm's discr-flow sampler reproduce them (same N, eta, velocity convention)."""
    tr = _df(loss)
    fit(tr, 3, tmp_path / "d")
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
    noise = BatchNoise(3, range(7))
    res = s(noise, trajectory=True)
    z0 = BatchNoise(3, range(7)).randn(2)
    torch.testing.assert_close(torch.stack(res.trajectory[:5]), tr.simulate(z0), atol=1e-5, rtol=1e-5)


def test_discr_flow_pool_refresh_and_gp_recorded(tmp_path):
    tr = _df("ipm", refresh_every=3, pool=64, gp=0.04)
    calls = []
    orig = tr.simulate
    tr.simulate = lambda z: calls.append(z.shape[0]) or orig(z)
    fit(tr, 7, tmp_path / "d")
    assert calls == [64, 64, 64]  # iterations 0, 3, 6
    cfg = load_checkpoint(tmp_path / "d").config
    assert cfg["training"]["refresh_every"] == 3 and cfg["training"]["gp"] == 0.04
    assert cfg["training"]["iterations"] == 7 and cfg["time"]["kind"] == "flow-time"


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
    s = rho_sigmas(u, 0.1, 10.0, 3.0)
    torch.testing.assert_close(s[[0, 2]], torch.tensor([10.0, 0.1]))
    assert s[1] == pytest.approx((10 ** (1 / 3) / 2 + 0.1 ** (1 / 3) / 2) ** 3, rel=1e-6)


def test_score_gan_generator_step_follows_the_field():
    """One generator step of a translation-only generator g(z) = b moves b along the batch-mean of
    sigma (w_data s_data - w_gen s_gen) (Adam's first step: lr * sign)."""
    tr = ScoreGANTrainer(ToySource("pentagon"), load_toy("pentagon"), score_ref="toy:pentagon", latent=2, batch=64,
                         width=8, depth=1, seed=0, lr=1e-3)
    lin = torch.nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.copy_(torch.tensor([0.2, -1.0]))
    lin.weight.requires_grad_(False)
    tr.G = lin
    tr.modules["generator"] = lin
    tr.optims["generator"] = torch.optim.Adam([lin.bias], lr=1e-3)
    rng_state = tr.rng.get_state()
    tr.step()  # denoiser step, then the generator step (score_steps = 1)
    b1 = lin.bias.detach().clone()
    # replay the generator step's draws: denoiser step consumed latents, sigmas and eps
    tr.rng.set_state(rng_state)
    tr.randn(64, 2), tr.rand(64), tr.randn(64, 2)
    tr.randn(64, 2)
    sigma = tr.sigmas(64)
    xn = torch.tensor([0.2, -1.0]) + sigma[:, None] * tr.randn(64, 2)
    tr.Dgen.eval()
    with torch.no_grad():
        d = score_gan_direction(xn, sigma, tr.Dgen(xn, sigma), tr.Ddata(xn, sigma))
    expect = torch.tensor([0.2, -1.0]) - 1e-3 * torch.sign(d.mean(0))
    torch.testing.assert_close(b1, expect, atol=1e-6, rtol=0)


# ---- resume, round trip, sampling ---------------------------------------------------------------------------------

def _trainers():
    return {
        "gan": lambda: GANTrainer(ToySource("pentagon"), latent=3, batch=16, width=8, depth=2, seed=2, gp=0.1),
        "discr-flow": lambda: _df("vanilla", refresh_every=2, pool=24),
        "score-gan": lambda: ScoreGANTrainer(ToySource("pentagon"), load_toy("pentagon"), score_ref="toy:pentagon",
                                             latent=3, batch=16, width=8, depth=2, score_steps=2, seed=2),
    }


@pytest.mark.parametrize("role", ["gan", "discr-flow", "score-gan"])
def test_resume_equals_uninterrupted(role, tmp_path):
    make = _trainers()[role]
    a = make()
    fit(a, 6, tmp_path / "a")
    b = make()
    fit(b, 3, tmp_path / "b")
    assert (tmp_path / "b" / STATE_FILE).is_file()
    c = make()
    fit(c, 6, tmp_path / "b", resume=True)
    assert c.iteration == 6
    for name, m in a.modules.items():
        for (k, va), vc in zip(m.state_dict().items(), c.modules[name].state_dict().values()):
            assert torch.equal(va, vc), (name, k)
    with pytest.raises(Exception, match="no train_state"):
        fit(make(), 6, tmp_path / "empty", resume=True)


@pytest.mark.parametrize("kind", ["gan", "ddls", "score-gan"])
def test_generator_checkpoints_sample_through_the_samplers(kind, tmp_path):
    role = "score-gan" if kind == "score-gan" else "gan"
    tr = _trainers()[role]()
    fit(tr, 2, tmp_path / "m")
    gdir = tmp_path / "m" / "generator" if role == "gan" else tmp_path / "m"
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
        tr.G.eval()
        torch.testing.assert_close(x, tr.G(z).detach())
