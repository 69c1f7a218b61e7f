"""benchmarks/realsize.py compares gpm with reference loops at equal NFE; this checks that the references do the same
work: its plain Heun loop and epsilon-to-denoiser wrapper, written independently of gpm, land on gpm's ``edm_sample``
result on the same network, particles and noise levels, with the same number of network evaluations."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import realsize  # noqa: E402
import replicas  # noqa: E402

from gpmcli.fields.score import DiffusersUNet, denoiser_from_component, eps_component  # noqa: E402
from gpmcli.samplers.edm import edm_sample  # noqa: E402


class Counting(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, *a, **k):
        self.calls += 1
        return self.net(*a, **k)


def test_plain_heun_reference_matches_gpm_edm_on_the_cifar10_ddpm_architecture(one_thread):
    torch.manual_seed(0)
    unet, cfg = replicas.build_unet("google/ddpm-cifar10-32", width_div=8)  # published layout, narrow channels
    sched = {k: v for k, v in replicas.REPOS["google/ddpm-cifar10-32"][1].items() if not k.startswith("_")}
    ours, theirs = Counting(DiffusersUNet(unet)), Counting(unet)
    comp = eps_component(ours, sched, data_shape=(3, 32, 32))
    den = denoiser_from_component(comp)
    n = 4
    sigmas = realsize.karras_sigmas(n, den.sigma_min, den.sigma_max, 7.0)
    x0 = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * float(sigmas[0])
    with torch.inference_mode():
        a = edm_sample(den, x0.clone(), [float(s) for s in sigmas])
        import diffusers

        ac = diffusers.DDPMScheduler.from_config(sched).alphas_cumprod.numpy()
        b = realsize.plain_heun(realsize.EpsToDenoiser(theirs, ac), x0.clone(), sigmas)
    assert ours.calls == theirs.calls == 2 * n - 1
    err = (a - b).abs().max().item() / b.abs().max().item()
    assert err < 1e-4, err
