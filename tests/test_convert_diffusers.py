"""A diffusers UNet2DModel repo, converted (locally or from the stand-in Hub) and sampled by gpm's samplers.

The ancestral sampler must reproduce diffusers' own DDPM loop (DDPMScheduler, ``variance_type="fixed_large"``,
no clipping) when both use the same noise. These tests skip where the samplers / the stand-in Hub are not on the
branch yet.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clitools import gpm as _run, kind_available as _kind  # noqa: E402

diffusers = pytest.importorskip("diffusers")

T = 20  # training timesteps of the tiny model (= sampler steps, so the ladders coincide)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny_repo(tmp_path):
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 16), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D")).eval()
    with torch.no_grad():  # small output scale keeps the random network's chain in a sane range
        unet.conv_out.weight.mul_(0.1)
    sched = diffusers.DDPMScheduler(num_train_timesteps=T, beta_start=2e-3, beta_end=0.2, beta_schedule="linear",
                                    variance_type="fixed_large", clip_sample=False)
    repo = tmp_path / "repo"
    unet.save_pretrained(repo / "unet")
    sched.save_pretrained(repo / "scheduler")
    return repo, unet, sched


def _diffusers_ddpm(unet, sched, seed, idx, shape):
    """diffusers' DDPM loop with gpm's per-sample noise substituted for its random draws (same order)."""
    import diffusers.schedulers.scheduling_ddpm as ddpm

    from gpmcli.noise import BatchNoise

    noise = BatchNoise(seed, idx, "cpu")
    x = noise.randn(shape)
    draws = [noise.randn(shape) for _ in range(T)]
    it = iter(draws)
    orig = ddpm.randn_tensor
    ddpm.randn_tensor = lambda *a, **k: next(it)
    try:
        sched.set_timesteps(T)
        with torch.no_grad():
            for t in sched.timesteps:
                x = sched.step(unet(x, t).sample, t, x).prev_sample
    finally:
        ddpm.randn_tensor = orig
    return x


def test_ancestral_equals_diffusers_ddpm_loop(tiny_repo, tmp_path):
    if not _kind("ancestral"):
        pytest.skip("--model ancestral is not on this branch yet")
    repo, unet, sched = tiny_repo
    assert _run("-q", "convert", repo, "--from", "diffusers", "-o", tmp_path / "ck") == 0
    assert _run("-q", "sample", "--model", "ancestral", "--checkpoint", tmp_path / "ck", "--steps", T, "-n", 3,
                "-b", 2, "--seed", 7, "--format", "npz", "--raw", "-o", tmp_path / "out") == 0
    ours = np.load(tmp_path / "out" / "samples.npz")["samples"]  # raw: the random UNet leaves the data range
    ref = torch.cat([_diffusers_ddpm(unet, sched, 7, [0, 1], (1, 8, 8)),
                     _diffusers_ddpm(unet, sched, 7, [2], (1, 8, 8))]).numpy()
    assert ours.shape == (3, 1, 8, 8)
    assert np.abs(ours - ref).max() <= 1e-4, np.abs(ours - ref).max()


def test_edm_samples_converted_diffusers_model(tiny_repo, tmp_path):
    if not _kind("edm"):
        pytest.skip("--model edm is not on this branch yet")
    repo, _, _ = tiny_repo
    assert _run("-q", "convert", repo, "--from", "diffusers", "-o", tmp_path / "ck") == 0
    assert _run("-q", "sample", "--model", "edm", "--checkpoint", tmp_path / "ck", "--steps", 6, "-n", 2,
                "--format", "npz", "-o", tmp_path / "out") == 0
    x = np.load(tmp_path / "out" / "samples.npz")["samples"]
    assert x.shape == (2, 1, 8, 8) and np.isfinite(x).all()


def test_diffusers_repo_from_stand_in_hub(tiny_repo, tmp_path, request):
    pytest.importorskip("hubserver")
    hub = request.getfixturevalue("hub_server")
    from hubserver import files_of_dir

    from gpmcli.checkpoint import load_checkpoint

    repo, unet, _ = tiny_repo
    hub.add_revision("someone/tiny-ddpm", files_of_dir(repo), branch="main")
    assert _run("-q", "convert", "hf:someone/tiny-ddpm", "--from", "diffusers", "-o", tmp_path / "ck") == 0
    comp = load_checkpoint(tmp_path / "ck")
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 30])
    with torch.no_grad():
        assert torch.equal(comp.module(x, t), unet(x, t).sample)
    assert comp.config["provenance"]["source"] == "hf:someone/tiny-ddpm"
    assert _run("-q", "convert", "hf:someone/not-there", "--from", "diffusers", "-o", tmp_path / "x") == 3
