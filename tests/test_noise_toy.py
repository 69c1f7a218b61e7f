import math

import torch

from gpmcli.fields.toy import GaussianMixture, load_toy
from gpmcli.noise import BatchNoise, sample_seed


def test_rows_do_not_depend_on_batch_composition():
    full = BatchNoise(7, range(20)).randn(3, 4)
    part = BatchNoise(7, [3, 11, 19]).randn(3, 4)
    assert torch.equal(full[[3, 11, 19]], part)
    assert not torch.equal(full[0], full[1])


def test_seeds_differ_across_runs_and_indices():
    seeds = {sample_seed(s, i) for s in range(5) for i in range(200)}
    assert len(seeds) == 1000


def test_mixture_score_is_gradient_of_log_density():
    gm = load_toy("pentagon")
    x = (torch.randn(64, 2, dtype=torch.float64) * 3).requires_grad_(True)
    for sigma in (0.01, 0.5, 5.0):
        (g,) = torch.autograd.grad(gm.log_prob(x, sigma).sum(), x)
        torch.testing.assert_close(gm.score(x.detach(), sigma), g, rtol=1e-9, atol=1e-9)


def test_single_gaussian_denoiser_closed_form():
    # x = x0 + sigma eps with x0 ~ N(m, C): E[x0|x] = m + C (C + s^2 I)^-1 (x - m)
    m = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    a = torch.randn(3, 3, dtype=torch.float64)
    c = a @ a.T + 0.1 * torch.eye(3, dtype=torch.float64)
    gm = GaussianMixture([1.0], [m.tolist()], [c.tolist()])
    x = torch.randn(10, 3, dtype=torch.float64)
    s = 0.8
    expect = m + (c @ torch.linalg.solve(c + s**2 * torch.eye(3, dtype=torch.float64), (x - m).T)).T
    torch.testing.assert_close(gm(x, torch.full((10,), s, dtype=torch.float64)), expect)


def test_exact_samples_have_target_moments():
    gm = load_toy("gaussian")
    xs = gm.sample(200_000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(xs.mean(0), gm.mean(), atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(xs.T), gm.covariance(), atol=0.02, rtol=0)
    assert math.isclose(float(gm.sigma_data) ** 2 * 2, float((xs**2).sum(1).mean()), rel_tol=0.02)
