"""The sampling loops are plain functions a library user calls with their own particles, grid and noise source.

On a Gaussian target N(mu, s^2 I) with its exact denoiser each loop must return samples with mean mu and std s
(within Monte-Carlo error plus the loop's discretisation error), with ``noise=None`` (torch's generator) as well as
with per-sample streams; a BatchNoise run must equal the registered kind's output bit for bit."""

from __future__ import annotations

import pytest
import torch

from gpmcli.fields.base import Bundle, Component
from gpmcli.fields.schedules import edm_sigmas, geometric
from gpmcli.fields.sde import make_sde
from gpmcli.fields.toy import GaussianMixture, toy_config
from gpmcli.noise import BatchNoise
from gpmcli.samplers import get_kind
from gpmcli.samplers.edm import edm_sample
from gpmcli.samplers.langevin import annealed_langevin
from gpmcli.samplers.ode import ode_sample
from gpmcli.samplers.pc import ancestral_sample, pc_sample
from gpmcli.samplers.trajectory import Trajectory

from _onethread import one_thread  # noqa: F401

MU, S, N = torch.tensor([1.0, -0.5]), 0.7, 4000


@pytest.fixture(scope="module")
def gauss():
    return GaussianMixture([1.0], [MU.tolist()], [(S**2 * torch.eye(2)).tolist()], name="gauss")


def _check(x, tol_std=0.05):
    x = x.double()
    assert torch.allclose(x.mean(0), MU.double(), atol=5 * S / N**0.5 + 0.02)
    assert torch.allclose(x.std(0), torch.full((2,), S, dtype=torch.float64), rtol=tol_std)


def test_edm_sample_on_a_users_own_particles_and_grid(gauss):
    torch.manual_seed(0)
    sigmas = edm_sigmas(30, 0.002, 20.0).tolist()
    rec = Trajectory(30)
    with torch.no_grad():
        x = edm_sample(gauss, torch.randn(N, 2) * sigmas[0], sigmas, None, rec)
        _check(x)
        churned = edm_sample(gauss, torch.randn(N, 2) * sigmas[0], sigmas, None, churn=10.0, s_min=0.05, s_max=10.0)
        _check(churned)
    assert len(rec.frames) == 31 and torch.equal(rec.frames[-1], x)


def test_pc_ancestral_ode_and_langevin_loops(gauss):
    torch.manual_seed(1)
    with torch.no_grad():
        ve = make_sde("ve", 300, gauss, sigma_min=0.01, sigma_max=20.0)
        _check(pc_sample(gauss, torch.randn(N, 2) * ve.prior_std, ve))
        vp = make_sde("vp", 300)
        _check(ancestral_sample(gauss, torch.randn(N, 2), vp))
        m1, s1 = (float(v) for v in vp.marginal(1.0))
        me, se = (float(v) for v in vp.marginal(vp.eps))
        x, nfe = ode_sample(gauss, torch.randn(N, 2) / m1, s1 / m1, se / me, rtol=1e-4, atol=1e-4)
        _check(x)
        assert int(nfe.min()) > 1
        levels = geometric(20.0, 0.01, 40)
        _check(annealed_langevin(gauss, torch.randn(N, 2) * levels[0], levels, n_each=20, step_lr=2e-5))


def test_the_kind_is_its_loop(gauss):
    """``gpm sample --model edm`` is edm_sample on the kind's grid with the same per-sample streams, bit for bit."""
    b = Bundle("g", {"score": Component("score", gauss, toy_config(gauss, "toy"), "toy")})
    kind = get_kind("edm").build(b, {"steps": 12, "churn": 5.0})
    got = kind(BatchNoise(7, range(16))).x
    noise = BatchNoise(7, range(16))
    with torch.no_grad():
        x = noise.randn(2) * kind.sigmas[0]
        want = edm_sample(gauss, x, kind.sigmas, noise, churn=5.0)
    assert torch.equal(got, want)
