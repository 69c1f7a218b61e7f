"""DDLS (ALGORITHMS.md section 7) on an analytic energy with a closed-form stationary law, plus MALA and the CLI path."""

import json
import math

import pytest
import torch
from torch import nn

from gpmcli.checkpoint import save_checkpoint
from gpmcli.fields.base import Bundle, Component
from gpmcli.noise import BatchNoise
from gpmcli.samplers.ddls import build

from _onethread import one_thread  # noqa: F401

torch.manual_seed(0)
D_LAT, D_X = 2, 3
A = torch.tensor([[1.5, 0.0], [0.5, 2.0], [0.0, -1.0]])
B = torch.tensor([0.3, -0.2, 0.1])
C = torch.tensor([1.0, 0.5, -0.5])
Q = torch.tensor([[2.0, 0.3, 0.0], [0.3, 1.0, 0.0], [0.0, 0.0, 0.5]])


class QuadraticLogit(nn.Module):
    """d(x) = -1/2 (x - c)^T Q (x - c)."""

    def forward(self, x):
        r = x - C
        return -0.5 * ((r @ Q) * r).sum(1, keepdim=True)


def linear_generator():
    g = nn.Linear(D_LAT, D_X)
    with torch.no_grad():
        g.weight.copy_(A)
        g.bias.copy_(B)
    return g


def exact_law():
    """E(z) = |z|^2/2 + 1/2 (Az + b - c)^T Q (Az + b - c): Gaussian with precision I + A^T Q A."""
    prec = torch.eye(D_LAT, dtype=torch.float64) + A.double().T @ Q.double() @ A.double()
    cov = torch.linalg.inv(prec)
    mean = -cov @ A.double().T @ Q.double() @ (B - C).double()
    return mean, cov, prec


def ula_stationary_cov(prec, eps):
    """Stationary covariance of z' = z - eps/2 prec (z - m) + sqrt(eps) xi: per eigenvalue l, 1 / (l (1 - eps l / 4))."""
    lam, vec = torch.linalg.eigh(prec)
    return vec @ torch.diag(1.0 / (lam * (1 - eps * lam / 4))) @ vec.T


def bundle(output="logit"):
    gen = Component("generator", linear_generator(), {"role": "generator", "latent": {"dim": D_LAT},
                                                       "data": {"shape": [D_X], "range": None}}, "lin")
    disc = Component("discriminator", QuadraticLogit(), {"role": "discriminator", "output": output, "loss": "vanilla",
                                                          "time": None, "data": {"shape": [D_X], "range": None}}, "quad")
    return Bundle("analytic", {"generator": gen, "discriminator": disc})


def run(eps, steps, mala, n=4000, seed=0):
    s = build(bundle(), {"ddls_step": eps, "ddls_steps": steps, "mala": mala})
    # recover z from x = Az + b (A has full column rank)
    res = s(BatchNoise(seed, range(n)))
    z = torch.linalg.lstsq(A.double(), (res.x.double() - B.double()).T).solution.T
    return z, res


def test_ula_reaches_its_discrete_stationary_law_and_mala_the_exact_one():
    mean, cov, prec = exact_law()
    eps = 1.0 / float(torch.linalg.eigvalsh(prec).max())  # eps * l_max / 4 = 0.25: a 33% variance bias at l_max
    n = 1500  # chains; 60 steps mix: the slowest mode contracts by (1 - eps l_min / 2)^60 < 0.05
    z_ula, _ = run(eps, 60, False, n)
    z_mala, res = run(eps, 60, True, n)
    biased = ula_stationary_cov(prec, eps)
    lam, vec = torch.linalg.eigh(prec)
    # compare variances along the precision's eigenvectors (MC relative error sqrt(2/n) = 3.7%; tolerance 4 SE)
    tol = 4 * math.sqrt(2 / n)
    for z, expect in ((z_ula, biased), (z_mala, cov)):
        zc = (z - z.mean(0)) @ vec
        var = zc.pow(2).mean(0)
        exp_var = torch.diagonal(vec.T @ expect @ vec)
        assert torch.all((var / exp_var - 1).abs() < tol), (var, exp_var)
        se = torch.sqrt(torch.diagonal(expect) / n)
        assert torch.all((z.mean(0) - mean).abs() < 4 * se)
    # the bias is visible without MALA: along the stiffest direction ULA's variance is 1/(1 - eps l/4) = 1.33 x exact
    stiff = (z_ula - z_ula.mean(0)) @ vec[:, -1]
    assert float(stiff.pow(2).mean() * lam[-1]) > 1 + 3 * math.sqrt(2 / n)
    acc = res.diagnostics["acceptance_rate"]
    assert 0.5 < acc < 1.0


def test_temperature_and_diagnostics_reported():
    s = build(bundle(), {"ddls_step": 0.05, "ddls_steps": 20})
    assert s.resolved["temperature"] == pytest.approx(1.0)
    res = s(BatchNoise(0, range(16)))
    rows = res.diagnostics["every"]
    assert len(rows) == 10 and rows[-1]["step"] == 20
    assert {"mean_d", "mean_z2", "mean_grad_norm"} <= set(rows[0])
    # the energy gradient it reports is |z + A^T Q (Az + b - c)| (d = -1/2 r^T Q r): check the last row by hand
    z = torch.linalg.lstsq(A, (res.x - B).T).solution.T
    g = z + (z @ A.T + B - C) @ Q @ A
    assert rows[-1]["mean_grad_norm"] == pytest.approx(float(g.norm(dim=1).mean()), rel=1e-4)


def test_batch_size_invariance_with_mala():
    s = build(bundle(), {"ddls_step": 0.3, "ddls_steps": 30, "mala": True})
    full = s(BatchNoise(3, range(12))).x
    parts = torch.cat([s(BatchNoise(3, idx)).x for idx in ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11])])
    assert (full - parts).abs().max() <= 1e-5


def test_prob_discriminator_read_as_logit():
    """A discriminator that outputs a probability is read through its logit: the same chain as the logit network,
    exactly (no clamping) when the sigmoid is a visible last layer of an nn.Sequential."""

    class Scaled(nn.Module):
        def __init__(self, prob):
            super().__init__()
            self.prob = prob

        def forward(self, x):
            f = 0.3 * QuadraticLogit()(x)
            return torch.sigmoid(f) if self.prob else f

    def chain(module, output):
        b = bundle(output)
        b.components["discriminator"].module = module
        return build(b, {"ddls_step": 0.05, "ddls_steps": 10})(BatchNoise(0, range(8))).x

    ref = chain(Scaled(False), "logit")
    assert (chain(Scaled(True), "prob") - ref).abs().max() < 1e-4  # logit(sigmoid(f)) in float32
    exact = chain(nn.Sequential(Scaled(False), nn.Sigmoid()), "prob")  # sigmoid stripped: exact
    assert torch.equal(exact, ref)


def test_cli_ddls_end_to_end(tmp_path, monkeypatch, cli):
    """A tiny random MLP generator + discriminator pair saved as checkpoints and sampled through the CLI."""
    from gpmcli.nets.mlp import MLP

    torch.manual_seed(1)
    g = MLP(in_dim=4, out_dim=6, hidden=16, depth=2, conditional=False)
    d = MLP(in_dim=6, out_dim=1, hidden=16, depth=2, conditional=False)
    kw = lambda m, i, o: {"name": "mlp", "kwargs": {"in_dim": i, "out_dim": o, "hidden": 16, "depth": 2,  # noqa: E731
                                                    "conditional": False}}
    save_checkpoint(tmp_path / "tiny/generator", g, {"role": "generator", "arch": kw(g, 4, 6),
                                                      "latent": {"dim": 4, "distribution": "normal"},
                                                      "data": {"shape": [6], "range": None}})
    save_checkpoint(tmp_path / "tiny/discriminator", d, {"role": "discriminator", "arch": kw(d, 6, 1),
                                                          "output": "logit", "loss": "vanilla", "time": None,
                                                          "data": {"shape": [6], "range": None}})
    (tmp_path / "registry.toml").write_text('[defaults]\nddls = "tiny"\n\n[bundles.tiny]\n'
                                            'generator = "tiny/generator"\ndiscriminator = "tiny/discriminator"\n')
    monkeypatch.setenv("GPM_CHECKPOINTS", str(tmp_path))
    out = tmp_path / "out"
    code, _, _ = cli("sample", "--model", "ddls", "-n", "6", "-b", "4", "--ddls-steps", "25", "--mala", "-o", out)
    assert code == 0
    info = json.loads((out / "run.json").read_text())
    assert info["params"]["temperature"] == 1.0 and info["params"]["mala"] is True
    assert all(0 <= d["acceptance_rate"] <= 1 for d in info["diagnostics"])
    import numpy as np

    x = np.load(out / "samples.npz")["samples"]
    assert x.shape == (6, 6) and np.isfinite(x).all()
    # gan kind on the same bundle: one generator pass, equal to G(z) with z drawn from sample i's own generator
    code, _, _ = cli("sample", "--model", "gan", "-c", "tiny", "-n", "3", "-o", tmp_path / "gan")
    assert code == 0
    z = BatchNoise(0, range(3)).randn(4)
    with torch.no_grad():
        expect = g.eval()(z).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "gan/samples.npz")["samples"], expect, atol=1e-6)


def test_generator_range_is_mapped_to_the_discriminator_range():
    """G in [-1, 1], D trained on [0, 1]: d sees (x + 1) / 2, so E uses d((G(z) + 1) / 2)."""
    from gpmcli.fields.latent import range_map

    assert range_map((-1.0, 1.0), (0.0, 1.0)) == (0.5, 0.5) and range_map((0, 1), (0, 1)) is None
    b = bundle()
    b["generator"].config["data"]["range"] = [-1.0, 1.0]
    b["discriminator"].config["data"]["range"] = [0.0, 1.0]
    s = build(b, {"ddls_step": 0.05, "ddls_steps": 0})
    z = torch.randn(5, D_LAT)
    e, _, d = s.energy.energy_grad(z)
    x = z @ A.T + B
    torch.testing.assert_close(d, QuadraticLogit()((x + 1) / 2)[:, 0])
    torch.testing.assert_close(e, 0.5 * z.pow(2).sum(1) - d)


def test_bundle_sampler_defaults_sit_below_the_users_flags(cli, tmp_path, monkeypatch):
    """registry.toml ``[bundles.NAME.params.KIND]`` gives a bundle its sampler settings (toy-pentagon-ddls: MALA);
    the user's flags still win (``--no-mala``, ``--ddls-steps``), and run.json records what ran."""
    from gpmcli.nets.mlp import MLP

    torch.manual_seed(2)
    kw = lambda i, o: {"name": "mlp", "kwargs": {"in_dim": i, "out_dim": o, "hidden": 8, "depth": 1,  # noqa: E731
                                                 "conditional": False}}
    save_checkpoint(tmp_path / "t/generator", MLP(in_dim=3, out_dim=2, hidden=8, depth=1, conditional=False),
                    {"role": "generator", "arch": kw(3, 2), "latent": {"dim": 3, "distribution": "normal"},
                     "data": {"shape": [2], "range": None}})
    save_checkpoint(tmp_path / "t/discriminator", MLP(in_dim=2, out_dim=1, hidden=8, depth=1, conditional=False),
                    {"role": "discriminator", "arch": kw(2, 1), "output": "logit", "loss": "vanilla", "time": None,
                     "data": {"shape": [2], "range": None}})
    (tmp_path / "registry.toml").write_text(
        '[bundles.t]\ngenerator = "t/generator"\ndiscriminator = "t/discriminator"\n'
        'params.ddls = { mala = true, ddls_steps = 7 }\n')
    monkeypatch.setenv("GPM_CHECKPOINTS", str(tmp_path))

    def ran(*flags):
        out = tmp_path / f"o{len(list(tmp_path.glob('o*')))}"
        code, _, err = cli("sample", "--model", "ddls", "-c", "t", "-n", "3", "-o", out, *flags)
        assert code == 0, err
        return json.loads((out / "run.json").read_text())

    info = ran()
    assert info["params"]["mala"] is True and info["params"]["ddls_steps"] == 7 and info["nfe_per_sample"] == 8
    assert all("acceptance_rate" in d for d in info["diagnostics"])
    info = ran("--no-mala", "--ddls-steps", "2")
    assert info["params"]["mala"] is False and info["params"]["ddls_steps"] == 2
    assert not any("acceptance_rate" in d for d in info["diagnostics"])
    # a registry bundle name as a role override takes that bundle's component (its sampler defaults stay behind)
    out = tmp_path / "ov"
    code, _, err = cli("sample", "--model", "ddls", "--generator", "t", "--discriminator", "t", "-n", "2", "-o", out)
    assert code == 0, err
    info = json.loads((out / "run.json").read_text())
    assert info["components"]["generator"]["ref"] == "t/generator" and info["params"]["mala"] is False
    code, _, err = cli("sample", "--model", "ddls", "--generator", "t", "--discriminator", "t/generator", "-n", "2",
                       "-o", tmp_path / "ov2")
    assert code == 2
    # a parameter the kind does not read is an error, not silently ignored
    (tmp_path / "registry.toml").write_text('[bundles.t]\ngenerator = "t/generator"\ndiscriminator = "t/discriminator"\n'
                                            'params.ddls = { malla = true }\n')
    code, _, err = cli("sample", "--model", "ddls", "-c", "t", "-n", "2", "-o", tmp_path / "typo")
    assert code == 2 and "malla" in err and not (tmp_path / "typo" / "run.json").exists()
    # the gan kind reads no ddls defaults; a malformed params table is one clear error
    (tmp_path / "registry.toml").write_text('[bundles.t]\ngenerator = "t/generator"\nparams = { ddls = 3 }\n')
    code, _, err = cli("sample", "--model", "gan", "-c", "t", "-n", "2", "-o", tmp_path / "bad")
    assert code == 2 and "bundles.t.params" in err
