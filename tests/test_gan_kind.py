"""``gan`` / ``score-gan`` kinds: one generator pass x = G(z), z ~ N(0, I) of the checkpoint's latent shape, eval mode."""

import pytest
import torch
from torch import nn

from gpmcli.fields.base import Bundle, Component
from gpmcli.noise import BatchNoise
from gpmcli.samplers import get_kind

from _onethread import one_thread  # noqa: F401


class ConvGen(nn.Module):
    """A latent of shape (4, 1, 1) -> 1x4x4 image, with BatchNorm (whose eval statistics must be used)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.ConvTranspose2d(4, 8, 4), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 1, 1), nn.Tanh())

    def forward(self, z):
        return self.net(z)


def gen_bundle():
    torch.manual_seed(0)
    g = ConvGen()
    with torch.no_grad():  # non-trivial running statistics
        g.net[1].running_mean.uniform_(-1, 1)
        g.net[1].running_var.uniform_(0.5, 2)
    g.train()  # as a user might hand it over: the kind must switch to eval mode
    cfg = {"role": "generator", "latent": {"dim": 4, "shape": [4, 1, 1], "distribution": "normal"},
           "data": {"shape": [1, 4, 4], "range": [-1, 1]}}
    return g, Bundle("g", {"generator": Component("generator", g, cfg, "g")})


@pytest.mark.parametrize("kind", ["gan", "score-gan"])
def test_one_generator_pass_in_eval_mode(kind):
    g, bundle = gen_bundle()
    s = get_kind(kind).build(bundle, {"steps": None})
    res = s(BatchNoise(3, range(5)))
    assert res.nfe == 1 and s.data_shape == (1, 4, 4) and s.data_range == (-1.0, 1.0)
    z = BatchNoise(3, range(5)).randn(4, 1, 1)
    g.eval()
    with torch.no_grad():
        torch.testing.assert_close(res.x, g(z))
    # batch invariance (would fail with batch statistics)
    one = torch.cat([s(BatchNoise(3, [i])).x for i in range(5)])
    assert (one - res.x).abs().max() <= 1e-5


def test_missing_latent_is_a_usage_error():
    from gpmcli.errors import UsageError

    g, bundle = gen_bundle()
    bundle["generator"].config.pop("latent")
    with pytest.raises(UsageError):
        get_kind("gan").build(bundle, {})
