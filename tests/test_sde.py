"""VE / VP / sub-VP SDEs: marginals solve the moment ODE of the forward SDE, sigma maps invert, scores are exact."""

import math

import pytest
import torch

from gpmcli.fields.sde import SubVPSDE, VESDE, VPSDE, make_sde
from gpmcli.fields.toy import GaussianMixture

SDES = [VESDE(0.01, 50.0, 100), VPSDE(0.1, 20.0, 100), SubVPSDE(0.1, 20.0, 100)]


@pytest.mark.parametrize("sde", SDES, ids=lambda s: s.name)
def test_marginal_moments_solve_the_forward_sde(sde):
    """For dx = -a(t) x dt + g dw (f linear): dm/dt = f_coef m and d(s^2)/dt = 2 f_coef s^2 + g^2."""
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    m, s = sde.marginal(t)
    mp, sp = sde.marginal(t + h)
    mm, sm = sde.marginal(t - h)
    one = torch.ones(1, 1, dtype=torch.float64)
    fcoef = torch.stack([sde.f(one, ti)[0, 0] for ti in t])
    assert torch.allclose((mp - mm) / (2 * h), fcoef * m, rtol=1e-6, atol=1e-8)
    assert torch.allclose((sp**2 - sm**2) / (2 * h), 2 * fcoef * s**2 + sde.g2(t), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("sde", SDES, ids=lambda s: s.name)
def test_sigma_time_map_inverts(sde):
    t = torch.linspace(1e-3, 1.0, 50, dtype=torch.float64)
    assert torch.allclose(sde.t_of_sigma(sde.sigma(t)), t, atol=1e-10)


@pytest.mark.parametrize("sde", SDES, ids=lambda s: s.name)
def test_score_of_marginal_is_exact(sde):
    """p_t = sum_k w_k N(m mu_k, m^2 S_k + s^2 I): compare the SDE score built from the sigma-space denoiser."""
    gm = GaussianMixture([1.0, 3.0], [[1.0, -2.0], [-1.5, 0.5]], [0.3, 0.05])
    for t in (0.01, 0.3, 0.9):
        m, s = (v.item() for v in sde.marginal(t))
        direct = GaussianMixture(gm.weights, m * gm.means, m**2 * gm.covs + s**2 * torch.eye(2, dtype=torch.float64))
        x = direct.sample(32, torch.Generator().manual_seed(0))
        assert torch.allclose(sde.score(gm, x, t), direct.score(x, 0.0), rtol=1e-8, atol=1e-8)


def test_discrete_ladders():
    ve, vp = VESDE(0.01, 50.0, 10), VPSDE(0.1, 20.0, 1000)
    assert ve.discrete_sigmas[0].item() == pytest.approx(0.01) and ve.discrete_sigmas[-1].item() == pytest.approx(50.0)
    assert torch.allclose(vp.discrete_betas, torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64))
    # the DDPM ladder approximates the continuous VP marginal
    m, s = vp.discrete_marginal(999)
    assert m == pytest.approx(vp.marginal(1.0)[0].item(), rel=0.05)


def test_make_sde_reads_a_linear_ddpm_schedule():
    cfg = {"parameterization": {"type": "eps", "schedule": {"kind": "linear", "beta_start": 1e-4, "beta_end": 0.02,
                                                            "num_train_timesteps": 1000}}}
    sde = make_sde("vp", 1000, None, config=cfg)
    assert sde.beta_0 == pytest.approx(0.1) and sde.beta_1 == pytest.approx(20.0)
    gm = GaussianMixture([1.0], [[0.0]], [1.0])
    gm.sigma_min, gm.sigma_max = 0.002, 10.0
    ve = make_sde("ve", 100, gm)
    assert (ve.sigma_min, ve.sigma_max) == (0.01, 10.0)
    assert math.isclose(ve.prior_std, 10.0)
