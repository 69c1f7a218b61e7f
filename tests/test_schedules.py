"""The noise schedules of gpmcli.fields.schedules against independent references: diffusers' schedulers (a test-only
dependency; they compute in float32, hence the tolerances), the EDM paper's closed form and properties that follow
from the definitions (geometric ratios, the cosine schedule's alpha_bar(t) = f(t) / f(0), the VP ladder's limit)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gpmcli.errors import UsageError
from gpmcli.fields import schedules
from gpmcli.fields.sde import VPSDE

diffusers = pytest.importorskip("diffusers")


@pytest.mark.parametrize("kind,b0,b1", [("linear", 1e-4, 0.02), ("scaled_linear", 0.00085, 0.012),
                                        ("squaredcos_cap_v2", 1e-4, 0.02)])
@pytest.mark.parametrize("steps", [1000, 50])
def test_ddpm_betas_match_diffusers(kind, b0, b1, steps):
    ref = diffusers.DDPMScheduler(num_train_timesteps=steps, beta_schedule=kind, beta_start=b0, beta_end=b1)
    betas = schedules.ddpm_betas(kind, steps, b0, b1)
    ac = schedules.alphas_cumprod(betas)
    assert betas.dtype == torch.float64 and betas.shape == (steps,)
    np.testing.assert_allclose(betas.numpy(), ref.betas.double().numpy(), rtol=2e-6, atol=1e-9)
    np.testing.assert_allclose(ac.numpy(), ref.alphas_cumprod.double().numpy(), rtol=1e-4, atol=1e-7)
    # a checkpoint's schedule object gives the same alpha_bar, named or explicit
    named = schedules.alphas_cumprod_from_schedule({"kind": kind, "beta_start": b0, "beta_end": b1,
                                                    "num_train_timesteps": steps})
    explicit = schedules.alphas_cumprod_from_schedule({"alphas_cumprod": ac.tolist()})
    assert torch.equal(named, ac) and torch.equal(explicit, ac)


def test_cosine_schedule_is_the_closed_form_alpha_bar():
    """Nichol & Dhariwal: alpha_bar(k) = f((k+1)/T) / f(0) wherever the 0.999 cap is not reached."""
    t, s = 1000, 0.008
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    ac = schedules.alphas_cumprod(schedules.ddpm_betas("cosine", t))
    betas = schedules.cosine_betas(t)
    uncapped = int((betas < 0.999).sum())
    assert 900 < uncapped < t  # the cap bites only at the very end
    want = torch.tensor([f((k + 1) / t) / f(0) for k in range(uncapped)], dtype=torch.float64)
    torch.testing.assert_close(ac[:uncapped], want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n,smin,smax,rho", [(10, 0.002, 80.0, 7.0), (18, 0.002, 80.0, 7.0), (40, 0.05, 3.0, 3.0)])
def test_edm_rho_ladder(n, smin, smax, rho):
    s = schedules.edm_sigmas(n, smin, smax, rho)
    assert s.shape == (n + 1,) and s[-1] == 0
    assert s[0].item() == pytest.approx(smax, rel=1e-12) and s[n - 1].item() == pytest.approx(smin, rel=1e-12)
    assert bool((s[1:] < s[:-1]).all())
    # the EDM paper's eq. (5), term by term
    i = np.arange(n)
    closed = (smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    np.testing.assert_allclose(s[:-1].numpy(), closed, rtol=1e-12)
    # diffusers' EDM scheduler (Karras sigmas, final sigma 0) in float32
    ref = diffusers.EDMEulerScheduler(sigma_min=smin, sigma_max=smax, rho=rho)
    ref.set_timesteps(n)
    np.testing.assert_allclose(s.numpy(), ref.sigmas.double().numpy(), rtol=1e-5, atol=1e-8)
    assert not schedules.edm_sigmas(n, smin, smax, rho, append_zero=False).eq(0).any()


def test_geometric_ladders():
    smin, smax, n = 0.01, 50.0, 30
    ve = schedules.ve_discrete_sigmas(smin, smax, n)
    closed = smin * (smax / smin) ** (np.arange(n) / (n - 1))
    np.testing.assert_allclose(ve.numpy(), closed, rtol=1e-12)
    ref = diffusers.ScoreSdeVeScheduler(num_train_timesteps=n, sigma_min=smin, sigma_max=smax)
    ref.set_sigmas(n)
    np.testing.assert_allclose(ve.numpy(), ref.discrete_sigmas.double().numpy(), rtol=1e-5)
    down = schedules.geometric(smax, smin, n)  # NCSN's levels: decreasing, constant ratio
    np.testing.assert_allclose(down, closed[::-1], rtol=1e-12)
    ratios = np.array(down[1:]) / np.array(down[:-1])
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)
    assert schedules.geometric(smax, smin, 1) == [smin]


def test_vp_ladder_tends_to_the_continuous_marginal():
    """prod(1 - beta_i) over the N-level ladder -> exp(-integral of beta) = m(1)^2 of the VP SDE as N grows."""
    b0, b1 = 0.1, 20.0
    sde = VPSDE(b0, b1, 1000)
    m1 = float(sde.marginal(1.0)[0])
    betas = schedules.vp_discrete_betas(b0, b1, 100_000)
    assert betas[0].item() == pytest.approx(b0 / 1e5) and betas[-1].item() == pytest.approx(b1 / 1e5)
    assert float(schedules.alphas_cumprod(betas)[-1]) == pytest.approx(m1**2, rel=2e-3)
    assert torch.equal(sde.discrete_betas, schedules.vp_discrete_betas(b0, b1, 1000))
    t = schedules.sde_timesteps(1.0, 1e-3, 5)
    assert t[0] == 1.0 and t[-1] == pytest.approx(1e-3) and bool((t[1:] < t[:-1]).all())


def test_unknown_schedule_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown beta schedule"):
        schedules.ddpm_betas("quadratic", 10)
    with pytest.raises(UsageError, match="unknown eps schedule kind"):
        schedules.alphas_cumprod_from_schedule({"kind": "quadratic"})
