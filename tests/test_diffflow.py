"""DiffFlow (ALGORITHMS.md section 5): the Marginal Preserving Property with exact scores and oracle ratios, the
special cases l = 1 (VE reverse diffusion) and l = 0 (probability-flow Euler + 1/2 D grad d), batch invariance.

MPP tests draw their noise from one shared generator (``FastNoise``) so that tens of thousands of particles run in
seconds; per-sample streams are exercised by the batch-invariance test.
"""

import math

import pytest
import torch

from gpmcli.fields.base import Bundle, Component
from gpmcli.fields.discriminator import NetDiscriminator
from gpmcli.fields.oracle import oracle_component
from gpmcli.fields.toy import GaussianMixture, load_toy, toy_config
from gpmcli.nets.mlp import MLP
from gpmcli.noise import BatchNoise
from gpmcli.samplers.diffflow import build
from gpmcli.fields.schedules import edm_sigmas

from _onethread import one_thread  # noqa: F401

LAMS = (0.0, 0.5, 1.0)


class FastNoise:
    """One generator for the whole ensemble (tests of marginals only)."""

    def __init__(self, n, seed=0):
        self.n, self.g = n, torch.Generator().manual_seed(seed)

    def randn(self, *shape, dtype=torch.float32):
        return torch.randn((self.n, *shape), generator=self.g).to(dtype)


def toy_bundle(gm, disc):
    return Bundle("t", {"score": Component("score", gm, toy_config(gm, "toy"), "toy"), "discriminator": disc})


def sampler(bundle, lam, family, steps, smax, prior, eta=0.1):
    s = build(bundle, {"lambda": lam, "family": family, "steps": steps, "sigma_max": smax, "sigma_min": 0.01,
                       "eta": eta})
    s.prior_std = prior  # a prior unlike q_sigma_max, so that the ratio (and grad d) matters
    return s


# ---- Gaussian target: the particle law stays Gaussian, its moments follow an exact recursion -------------------------
GAUSS = load_toy("gaussian")  # mean (1, -0.5), covariance [[1, 0.6], [0.6, 0.5]]
MU, S = GAUSS.mean(), GAUSS.covariance()
I2 = torch.eye(2, dtype=torch.float64)


def moment_recursion(family, lam, steps, smax, prior, eta=0.1, smin=0.01, stops=()):
    """Mean and covariance of the particles under the DiffFlow step with the exact ratio, written independently:
    grad d = s - grad log p with s = -P (x - mu), grad log p = -C^-1 (x - m) (all linear, so x stays Gaussian)."""
    sig = edm_sigmas(steps, smin, smax, 7.0).tolist()
    m, c = torch.zeros(2, dtype=torch.float64), prior**2 * I2
    out = {}
    for k in range(steps):
        p, ci = torch.linalg.inv(S + sig[k] ** 2 * I2), torch.linalg.inv(c)
        h = 0.5 * (sig[k] ** 2 - sig[k + 1] ** 2) if family == "ve" else eta * sig[k] ** 2
        # ve: x + h[(1+l2) s + (1-l2) grad d] = x + h[2 s + (1-l2) C^-1 (x-m)], noise l2 * 2h
        # kl: x + h[(1-l2) grad d + l2 s] = x + h[s + (1-l2) C^-1 (x-m)],        noise l2 * 2h
        a = 2 * h if family == "ve" else h
        b = I2 - a * p + h * (1 - lam**2) * ci
        m = m - a * p @ (m - MU)
        c = b @ c @ b.T + (0.0 if k == steps - 1 else 2 * h * lam**2) * I2
        if k + 1 in stops:
            out[k + 1] = (m.clone(), c.clone())
    return out


@pytest.mark.parametrize("family", ["ve", "kl"])
def test_mpp_recursion_converges_to_one_marginal_for_every_lambda(family):
    """The discrete moment maps for l in {0, 0.5, 1} differ by O(1/N) and agree as the grid is refined (MPP in the
    continuous-time limit), while the same flow without the discriminator term ends elsewhere."""
    gaps = []
    for n in (200, 800, 3200):
        covs = [moment_recursion(family, lam, n, 5.0, 1.0, stops=(n,))[n][1] for lam in LAMS]
        gaps.append(max(float((c - covs[0]).abs().max() / covs[0].abs().max()) for c in covs))
    assert gaps[2] < 0.002 and gaps[1] < gaps[0] / 3 and gaps[2] < gaps[1] / 3, gaps


@pytest.mark.parametrize("family", ["ve", "kl"])
def test_mpp_gaussian_particles(family):
    """Particles (M = 12000, N = 200 steps, sigma in [0.01, 5], prior N(0, I)) at steps 10 (while the flow is still
    correcting the prior: the most sensitive point) and N/2, and at the end:
    (1) each l's mean/covariance equals the exact discrete recursion within 4 Monte-Carlo standard errors;
    (2) the three l agree with each other within 4 MC standard errors plus the grid's own discretisation gap
        (the recursions' spread: about 1.5% at N = 200, see the test above for its convergence)."""
    m_particles, n = 12000, 200
    oracle = oracle_component(GAUSS, fit="gaussian")
    stops = (10, n // 2, n)
    got, rec = {}, {}
    for lam in LAMS:
        res = sampler(toy_bundle(GAUSS, oracle), lam, family, n, 5.0, 1.0)(FastNoise(m_particles, 1),
                                                                             snapshot_steps=stops)
        assert res.nfe == n * (1 if lam == 1.0 else 2)
        rec[lam] = moment_recursion(family, lam, n, 5.0, 1.0, stops=stops)
        for stop, x in zip(stops, res.trajectory):
            x = x.double()
            m_exp, c_exp = rec[lam][stop]
            sd = torch.sqrt(torch.diagonal(c_exp))
            assert torch.all((x.mean(0) - m_exp).abs() < 4 * sd / math.sqrt(m_particles)), (lam, stop)
            var_rel = torch.diagonal(torch.cov(x.T)) / torch.diagonal(c_exp) - 1
            assert torch.all(var_rel.abs() < 4 * math.sqrt(2 / m_particles)), (lam, stop, var_rel)
            got[(lam, stop)] = x
    for stop in stops:
        disc_gap = max(float((torch.diagonal(rec[lam][stop][1]) / torch.diagonal(rec[0.0][stop][1]) - 1).abs().max())
                       for lam in LAMS)
        tol = 4 * math.sqrt(2 * 2 / m_particles) + disc_gap
        v0 = got[(0.0, stop)].var(0)
        for lam in (0.5, 1.0):
            assert torch.all((got[(lam, stop)].var(0) / v0 - 1).abs() < tol), (family, lam, stop)
    # power: without the discriminator term (l = 0 flow on the score alone) the end variance is far off
    c_no_d = moment_recursion_without_d(family, n)
    assert float((torch.diagonal(c_no_d) / got[(0.0, n)].var(0) - 1).abs().max()) > 0.2


def moment_recursion_without_d(family, steps, smax=5.0, prior=1.0, eta=0.1):
    sig = edm_sigmas(steps, 0.01, smax, 7.0).tolist()
    c = prior**2 * I2
    for k in range(steps):
        p = torch.linalg.inv(S + sig[k] ** 2 * I2)
        h = 0.5 * (sig[k] ** 2 - sig[k + 1] ** 2) if family == "ve" else eta * sig[k] ** 2
        b = I2 - h * p  # the l = 0 drift with grad d dropped: 1/2 D s (ve) or 0 (kl has no score at l = 0)
        if family == "kl":
            b = I2
        c = b @ c @ b.T
    return c


# ---- 2-D mixture: the particle law is not Gaussian; the oracle fits a mixture to the ensemble --------------------------
MIX = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [[0.3, 0.3], [0.5, 0.2]])


@pytest.mark.parametrize("family,eta", [("ve", 0.1), ("kl", 0.05)])
def test_mpp_mixture_particles(family, eta):
    """Two-mode 2-D mixture (weights 0.3/0.7), prior N(0, I), sigma in [0.01, 5], N = 200 steps, M = 3000 particles.
    l = 1 uses the exact score only (no oracle): it is the reference. At step N/2 and at the end, l = 0 and 0.5 match
    it: mode-0 weight within 0.035 (4 SE = 0.033), overall mean within 0.1, per-mode std within 8% (4 SE of a
    difference: 5-7%, plus grid error about 2%)."""
    m_particles, n = 3000, 200
    bundle = toy_bundle(MIX, oracle_component(MIX, fit="mixture"))
    stats = {}
    for lam in LAMS:
        res = sampler(bundle, lam, family, n, 5.0, 1.0, eta)(FastNoise(m_particles, 2), snapshot_steps=(n // 2, n))
        for stop, x in zip((n // 2, n), res.trajectory):
            x = x.double()
            lab = torch.cdist(x, MIX.means).argmin(1)
            stats[(lam, stop)] = ((lab == 0).double().mean(), x.mean(0), x[lab == 0].std(0), x[lab == 1].std(0))
    for stop in (n // 2, n):
        w1, m1, a1, b1 = stats[(1.0, stop)]
        for lam in (0.0, 0.5):
            w, m, a, b = stats[(lam, stop)]
            assert abs(float(w - w1)) < 0.035, (family, lam, stop)
            assert torch.all((m - m1).abs() < 0.1)
            assert torch.all((a / a1 - 1).abs() < 0.08) and torch.all((b / b1 - 1).abs() < 0.08), (family, lam, stop)
    if family == "ve":  # and the ve flow does bring the mode weights to the target's
        assert abs(float(stats[(1.0, n)][0]) - 0.3) < 0.05


@pytest.mark.parametrize("family,w", [("ve", None), ("kl", None), ("ve", 2.5), ("kl", 0.0)])
def test_step_matches_the_formula_for_any_lambda(family, w):
    """Every step, written independently: ve x + D/2 [(1+l^2) s + w (1-l^2) grad d] + l sqrt(D) xi,
    kl x + eta_k [w (1-l^2) grad d + l^2 s] + l sqrt(2 eta_k) xi, eta_k = eta sigma_k^2; last step noise-free;
    w = --disc-weight (1 when not given: the theory's weight)."""
    gm = load_toy("pentagon")
    net, disc = sigma_disc(4)
    n, lam, eta = 9, 0.7, 0.2
    params = {"lambda": lam, "family": family, "steps": n, "sigma_max": 4.0, "eta": eta}
    if w is not None:
        params["disc_weight"] = w
    s = build(toy_bundle(gm, disc), params)
    assert s.resolved["disc_weight"] == (1.0 if w is None else w)
    w = 1.0 if w is None else w
    got = s(BatchNoise(4, range(6))).x
    sig = edm_sigmas(n, gm.sigma_min, 4.0, 7.0).tolist()
    noise = BatchNoise(4, range(6))
    x = s.prior_std * noise.randn(2)
    for k in range(n):
        xg = x.clone().requires_grad_(True)
        (gd,) = torch.autograd.grad(net(xg, torch.full((6,), sig[k])).sum(), xg)
        sc = gm.score(x, sig[k])
        if family == "ve":
            h = sig[k] ** 2 - sig[k + 1] ** 2
            x_mean, std = x + 0.5 * h * ((1 + lam**2) * sc + w * (1 - lam**2) * gd), lam * math.sqrt(h)
        else:
            h = eta * sig[k] ** 2
            x_mean, std = x + h * (w * (1 - lam**2) * gd + lam**2 * sc), lam * math.sqrt(2 * h)
        x = x_mean + std * noise.randn(2) if k < n - 1 else x_mean
    torch.testing.assert_close(got, x.detach(), rtol=1e-5, atol=1e-5)


# ---- special cases, step for step -----------------------------------------------------------------------------------
def sigma_disc(seed=0):
    torch.manual_seed(seed)
    net = MLP(in_dim=2, out_dim=1, hidden=32, depth=2, conditional=True).eval()
    disc = NetDiscriminator(net, output="logit", loss="vanilla", time={"kind": "sigma"})
    comp = Component("discriminator", disc, {"role": "discriminator", "time": {"kind": "sigma"}, "loss": "vanilla",
                                             "data": {"shape": [2]}}, "net")
    return net, comp


def test_ve_lambda_one_is_the_reverse_diffusion_predictor():
    """l = 1, family ve: x_mean = x + (s_k^2 - s_{k+1}^2) s(x, s_k), x = x_mean + sqrt(s_k^2 - s_{k+1}^2) xi, the
    last step returning x_mean (score_sde's ReverseDiffusionPredictor on the same grid and the same noise)."""
    gm = load_toy("pentagon")
    _, disc = sigma_disc()
    n = 12
    s = build(toy_bundle(gm, disc), {"lambda": 1.0, "family": "ve", "steps": n, "sigma_max": 20.0})
    got = s(BatchNoise(5, range(7))).x
    sig = edm_sigmas(n, gm.sigma_min, 20.0, 7.0).tolist()
    noise = BatchNoise(5, range(7))
    x = sig[0] * noise.randn(2)
    for k in range(n):
        g2 = sig[k] ** 2 - sig[k + 1] ** 2
        x_mean = x + g2 * gm.score(x, sig[k])
        x = x_mean + math.sqrt(g2) * noise.randn(2) if k < n - 1 else x_mean
    torch.testing.assert_close(got, x, rtol=1e-5, atol=1e-5)


def test_ve_lambda_zero_is_probability_flow_euler_plus_half_delta_grad_d():
    gm = load_toy("8gaussians")
    net, disc = sigma_disc(1)
    n = 10
    s = build(toy_bundle(gm, disc), {"lambda": 0.0, "family": "ve", "steps": n, "sigma_max": 3.0})
    s.prior_std = 1.0
    got = s(BatchNoise(2, range(5))).x
    sig = edm_sigmas(n, gm.sigma_min, 3.0, 7.0).tolist()
    x = BatchNoise(2, range(5)).randn(2)
    for k in range(n):
        delta = sig[k] ** 2 - sig[k + 1] ** 2
        xg = x.clone().requires_grad_(True)
        (gd,) = torch.autograd.grad(net(xg, torch.full((5,), sig[k])).sum(), xg)
        x = x + 0.5 * delta * gm.score(x, sig[k]) + 0.5 * delta * gd  # PF-ODE Euler (reverse-diffusion form) + guidance
    torch.testing.assert_close(got, x.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["ve", "kl"])
def test_batch_size_invariance(family):
    gm = load_toy("pentagon")
    _, disc = sigma_disc(2)
    s = build(toy_bundle(gm, disc), {"lambda": 0.5, "family": family, "steps": 15})
    full = s(BatchNoise(9, range(10))).x
    parts = torch.cat([s(BatchNoise(9, idx)).x for idx in ([0, 1, 2], [3, 4, 5, 6, 7, 8, 9])])
    assert (full - parts).abs().max() <= 1e-5 * max(1.0, float(full.abs().max()))


def test_cli_diffflow_on_toy_with_lambda_warning(tmp_path, monkeypatch, cli, caplog):
    """The CLI path with a saved sigma-conditioned discriminator; l > 1 warns; the grid comes from the discriminator."""
    from gpmcli.checkpoint import save_checkpoint

    net, _ = sigma_disc(3)
    grid = edm_sigmas(8, 0.01, 5.0, 7.0, append_zero=False).tolist()
    save_checkpoint(tmp_path / "d", net, {"role": "discriminator", "output": "logit", "loss": "vanilla",
                                           "arch": {"name": "mlp", "kwargs": {"in_dim": 2, "out_dim": 1, "hidden": 32,
                                                                              "depth": 2, "conditional": True}},
                                           "time": {"kind": "sigma", "family": "ve", "sigmas": grid, "n_steps": 8},
                                           "data": {"shape": [2], "range": None}})
    (tmp_path / "registry.toml").write_text('[bundles.toyflow]\nscore = "toy:pentagon"\ndiscriminator = "d"\n')
    monkeypatch.setenv("GPM_CHECKPOINTS", str(tmp_path))
    import json

    code, _, err = cli("sample", "--model", "diffflow", "-c", "toyflow", "--lambda", "1.5", "-n", "8",
                       "-o", tmp_path / "out")
    assert code == 0
    info = json.loads((tmp_path / "out/run.json").read_text())
    assert "analytic continuation" in err
    assert info["params"]["sigmas"] == pytest.approx(grid) and info["params"]["lambda"] == 1.5
    assert info["nfe_per_sample"] == 16
    import os
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "gpmcli", "-q", "sample", "--model", "diffflow", "-c", "toyflow",
                        "--family", "gan", "-n", "2", "-o", str(tmp_path / "o2")], capture_output=True, text=True,
                       env={**os.environ, "GPM_CHECKPOINTS": str(tmp_path)})
    assert p.returncode == 2 and "Traceback" not in p.stderr and "--family must be ve or kl" in p.stderr
    assert not (tmp_path / "o2" / "run.json").exists()


def test_grid_from_discriminator_config_and_override_warning(caplog):
    import logging

    gm = load_toy("pentagon")
    _, disc = sigma_disc(5)
    grid = [4.0, 2.0, 1.0, 0.5, 0.1]
    disc.config["time"] = {"kind": "sigma", "family": "ve", "sigmas": grid + [0.0], "n_steps": 5}  # 0 is implied
    s = build(toy_bundle(gm, disc), {"lambda": 0.3})
    assert s.sigmas == grid + [0.0] and s.n_steps == 5 and s.prior_std == 4.0
    with caplog.at_level(logging.WARNING, logger="gpm"):
        s = build(toy_bundle(gm, disc), {"lambda": 0.3, "steps": 7})
    assert s.n_steps == 7 and "trained on" in caplog.text
