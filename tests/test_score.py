"""Parameterisation round-trips: score / eps / x0 / edm networks built from the same exact mixture give one denoiser."""

import math

import pytest
import torch
from torch import nn

from gpmcli.errors import UsageError
from gpmcli.fields.base import Component
from gpmcli.fields.score import (EDMDenoiser, EpsDenoiser, alphas_cumprod_from_schedule, denoiser_from_component)
from gpmcli.fields.toy import GaussianMixture

torch.set_num_threads(1)


def _gm():
    g = torch.Generator().manual_seed(0)
    return GaussianMixture([1.0, 2.0, 0.5], 2 * torch.randn(3, 4, generator=g, dtype=torch.float64), [0.2, 0.5, 0.1])


class ScoreNet(nn.Module):  # VE score network conditioned on sigma
    def __init__(self, gm):
        super().__init__()
        self.gm = gm

    def forward(self, x, c):
        return self.gm.score(x, c)


class X0Net(ScoreNet):  # conditioned on ln(sigma)/4
    def forward(self, x, c):
        return self.gm.denoise(x, torch.exp(4 * c))


class EDMNet(ScoreNet):  # F such that c_skip x + c_out F(c_in x) = D
    sd = 0.5

    def forward(self, xin, c):
        s = torch.exp(4 * c).reshape(-1, 1)
        x = xin * torch.sqrt(s**2 + self.sd**2)
        d = self.gm.denoise(x, s.reshape(-1))
        c_skip = self.sd**2 / (s**2 + self.sd**2)
        c_out = s * self.sd / torch.sqrt(s**2 + self.sd**2)
        return (d - c_skip * x) / c_out


class EpsNet(ScoreNet):  # eps_hat(x_t, t) on a discrete schedule; t may be fractional
    def __init__(self, gm, ac):
        super().__init__(gm)
        self.log_sig = 0.5 * (torch.log1p(-ac) - torch.log(ac))

    def forward(self, x_t, t):
        lo = t.floor().long().clamp(0, len(self.log_sig) - 2)
        w = (t - lo).reshape(-1)
        sig = torch.exp(self.log_sig[lo] + w * (self.log_sig[lo + 1] - self.log_sig[lo]))
        xt = x_t * torch.sqrt(1 + sig**2).reshape(-1, 1)  # back to sigma-space
        return (xt - self.gm.denoise(xt, sig)) / sig.reshape(-1, 1)


def _comp(net, p):
    return Component("score", net, {"role": "score", "parameterization": p, "data": {"shape": [4]}}, "test")


SCHED = {"kind": "linear", "beta_start": 1e-4, "beta_end": 0.02, "num_train_timesteps": 1000}


def test_all_parameterisations_agree_with_the_exact_denoiser():
    gm = _gm()
    ac = alphas_cumprod_from_schedule(SCHED)
    dens = {
        "score": denoiser_from_component(_comp(ScoreNet(gm), {"type": "score"})),
        "x0": denoiser_from_component(_comp(X0Net(gm), {"type": "x0"})),
        "edm": denoiser_from_component(_comp(EDMNet(gm), {"type": "edm", "sigma_data": 0.5})),
        "eps": denoiser_from_component(_comp(EpsNet(gm, ac), {"type": "eps", "schedule": SCHED})),
    }
    assert isinstance(dens["edm"], EDMDenoiser) and isinstance(dens["eps"], EpsDenoiser)
    g = torch.Generator().manual_seed(1)
    sig = torch.exp(torch.empty(64, dtype=torch.float64).uniform_(math.log(0.02), math.log(80.0), generator=g))
    x = gm.sample(64, g) + sig[:, None] * torch.randn(64, 4, generator=g, dtype=torch.float64)
    ref = gm(x, sig)
    for name, den in dens.items():
        assert (den(x, sig) - ref).abs().max().item() < 1e-8, name
        assert (den.score(x, sig) - gm.score(x, sig)).abs().max().item() < 1e-6 * (1 + 1 / sig.min().item() ** 2)
    # eps range is the schedule's
    assert dens["eps"].sigma_min == pytest.approx(math.sqrt((1 - ac[0]) / ac[0]))
    assert dens["eps"].sigma_max == pytest.approx(math.sqrt((1 - ac[-1]) / ac[-1]))


def test_wrong_parameterisation_is_detected():
    """The round trip is not vacuous: reading a score network as x0 gives a different denoiser."""
    gm = _gm()
    den = denoiser_from_component(_comp(ScoreNet(gm), {"type": "x0", "noise_cond": "sigma"}))
    x = gm.sample(8, torch.Generator().manual_seed(2))
    sig = torch.full((8,), 0.5, dtype=torch.float64)
    assert (den(x, sig) - gm(x, sig)).abs().max() > 0.1


@pytest.mark.parametrize("sched", [
    {"kind": "scaled_linear", "beta_start": 8.5e-4, "beta_end": 0.012, "num_train_timesteps": 1000},
    {"kind": "cosine", "num_train_timesteps": 200},
])
def test_schedules_match_their_closed_forms(sched):
    ac = alphas_cumprod_from_schedule(sched)
    t = sched["num_train_timesteps"]
    if sched["kind"] == "scaled_linear":
        betas = torch.linspace(8.5e-4**0.5, 0.012**0.5, t, dtype=torch.float64) ** 2
        assert torch.allclose(ac, torch.cumprod(1 - betas, 0))
    else:  # Nichol & Dhariwal: abar(t) = f(t)/f(0) (up to the 0.999 beta clip, inactive here until the end)
        f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        assert ac[t // 2].item() == pytest.approx(f((t // 2 + 1) / t) / f(0), rel=1e-9)


@pytest.mark.parametrize("p", [{"type": "eps"}, {"type": "eps", "schedule": {"kind": "nope"}},
                               {"type": "eps", "schedule": {"alphas_cumprod": [0.5, 0.9]}}, {"type": "v"},
                               {"type": "score", "noise_cond": "weird"}])
def test_bad_configs_are_usage_errors(p):
    with pytest.raises(UsageError):
        den = denoiser_from_component(_comp(ScoreNet(_gm()), p))
        den(torch.zeros(2, 4, dtype=torch.float64), torch.ones(2, dtype=torch.float64))
