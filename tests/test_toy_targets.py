"""Analytic toy targets: GPM's pentagon orientation, and sigma_max scaled with the target's extent so that the samplers'
prior N(0, sigma_max^2 I) matches the noised target (mode weights of a wide 16-D mixture are recovered)."""

import math

import pytest
import torch

from gpmcli.fields.base import Bundle, Component
from gpmcli.fields.sde import make_sde
from gpmcli.fields.toy import GaussianMixture, load_toy, toy_config
from gpmcli.noise import BatchNoise
from gpmcli.samplers import get_kind

from _onethread import one_thread  # noqa: F401

WEIGHTS = [0.1, 0.2, 0.3, 0.4]


def test_pentagon_has_gpms_vertex_at_3_0():
    gm = load_toy("pentagon")
    means = gm.means
    assert torch.allclose(means[0], torch.tensor([3.0, 0.0], dtype=torch.float64), atol=1e-12)
    angles = sorted(math.degrees(math.atan2(float(m[1]), float(m[0]))) % 360 for m in means)
    assert angles == pytest.approx([0, 72, 144, 216, 288], abs=1e-6)
    assert torch.allclose(means.norm(dim=1), torch.full((5,), 3.0, dtype=torch.float64)) and torch.allclose(gm.covs[0], 0.25 * torch.eye(2,
                                                                                         dtype=torch.float64))
    assert gm.sigma_max == 80.0  # its extent (3.5) is small against EDM's 80: unchanged


def wide_mixture():
    """16-D, 4 components with unequal weights; means of norm 60-76 (20x the test suite's mix16)."""
    g = torch.Generator().manual_seed(5)
    means = 20 * torch.randn(4, 16, generator=g, dtype=torch.float64)
    return GaussianMixture(WEIGHTS, means, [0.25, 0.5, 0.3, 0.4], name="wide16")


def test_sigma_max_scales_with_the_extent():
    gm = wide_mixture()
    extent = float((gm.means.norm(dim=1) + gm.evals.max(-1).values.sqrt()).max())
    assert gm.sigma_max == pytest.approx(10 * extent) and gm.sigma_max > 700
    assert toy_config(gm, "w")["parameterization"]["sigma_max"] == gm.sigma_max
    assert make_sde("ve", 10, gm).sigma_max == pytest.approx(50 * gm.sigma_max / 80)
    assert make_sde("ve", 10, load_toy("pentagon")).sigma_max == 50.0


@pytest.mark.parametrize("kind", ["edm", "ode"])
def test_mode_weights_of_a_wide_mixture_are_recovered(kind):
    """With sigma_max = 80 the prior sits 0.75-0.95 noise stds away from these modes and the deterministic samplers
    return weights off by up to 0.06 (measured: edm [0.133, 0.227, 0.265, 0.377], ode [0.142, 0.237, 0.24, 0.381]);
    the binomial std of a weight at N = 2,000 is <= 0.011."""
    gm = wide_mixture()
    b = Bundle("w", {"score": Component("score", gm, toy_config(gm, "w"), "w")})
    x = get_kind(kind).build(b, {})(BatchNoise(1, range(2000))).x.double()
    nearest = ((x[:, None, :] - gm.means[None]) ** 2).sum(-1).argmin(1)
    frac = torch.bincount(nearest, minlength=4).double() / len(x)
    assert (frac - torch.tensor(WEIGHTS, dtype=torch.float64)).abs().max() < 0.025, frac
