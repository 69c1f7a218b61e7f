"""Reference parity: gpm's VP ancestral sampler on an eps field reproduces diffusers' DDPMScheduler loop."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

torch.set_num_threads(1)  # one core (OMP_NUM_THREADS=1); extra threads only contend

from gpmcli.fields.base import Bundle  # noqa: E402
from gpmcli.fields.score import denoiser_from_component, eps_component  # noqa: E402
from gpmcli.samplers import get_kind  # noqa: E402


class ScriptedNoise:
    """Stands in for BatchNoise: returns a fixed sequence of draws (initial noise, then one per step)."""

    def __init__(self, draws, device="cpu"):
        self.draws, self.k, self.device, self.indices = list(draws), 0, torch.device(device), list(range(len(draws[0])))

    def randn(self, *shape, dtype=torch.float32):
        out = self.draws[self.k] if self.k < len(self.draws) else torch.zeros_like(self.draws[0])
        self.k += 1
        return out.to(dtype)


class SkipEps(torch.nn.Module):
    """A random UNet plus the exact eps of a N(0, I) data distribution, sqrt(1 - abar_t) x_t: keeps the particles
    O(1) along the chain (a bare random UNet makes them grow to ~1e3, where float32 alone exceeds 1e-4)."""

    def __init__(self, unet, alphas_cumprod):
        super().__init__()
        self.unet = unet
        self.register_buffer("ac", alphas_cumprod.to(torch.float64))

    def forward(self, x, t):
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1).expand(x.shape[0])
        lo = t.floor().long().clamp(0, len(self.ac) - 1)
        hi = (lo + 1).clamp(max=len(self.ac) - 1)
        ac = self.ac[lo] + (t - lo) * (self.ac[hi] - self.ac[lo])
        return self.unet(x, t.to(x.dtype)).sample + (1 - ac).sqrt().to(x.dtype).reshape(-1, 1, 1, 1) * x


def _unet():
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    with torch.no_grad():  # random init has a zero output layer; make the network output non-trivial
        for p in unet.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return unet.eval()


def test_vp_ancestral_matches_ddpm_scheduler():
    n_train = 50
    unet = _unet()
    sched = diffusers.DDPMScheduler(num_train_timesteps=n_train, beta_start=2e-3, beta_end=0.4, beta_schedule="linear",
                                    variance_type="fixed_large", clip_sample=False, prediction_type="epsilon")
    net = SkipEps(unet, sched.alphas_cumprod)
    b, shape = 3, (1, 8, 8)
    x_init = torch.randn(b, *shape, generator=torch.Generator().manual_seed(1))
    step_noise = [torch.randn(b, *shape, generator=torch.Generator().manual_seed(100 + k)) for k in range(n_train)]

    # diffusers' loop; each step draws its noise from a generator seeded like step_noise[k]
    sched.set_timesteps(n_train)
    x = x_init.clone()
    with torch.no_grad():
        for k, t in enumerate(sched.timesteps):
            eps = net(x, t)
            x = sched.step(eps, t, x, generator=torch.Generator().manual_seed(100 + k)).prev_sample
    ref = x

    comp = eps_component(net, dict(sched.config), data_shape=shape, data_range=(-1, 1))
    sampler = get_kind("ancestral").build(Bundle("parity", {"score": comp}), {"steps": n_train})
    assert sampler.sde.beta_0 == pytest.approx(2e-3 * n_train) and sampler.sde.beta_1 == pytest.approx(0.4 * n_train)
    res = sampler(ScriptedNoise([x_init, *step_noise]))
    assert res.nfe == n_train
    diff = (res.x - ref).abs().max().item()
    assert diff <= 1e-4, diff
    assert 0.5 < ref.abs().max() < 20  # neither near zero nor blown up
    # the per-step noise matters: a different last-but-one noise changes the result well beyond the tolerance
    other = [*step_noise]
    other[-2] = -other[-2]
    assert (sampler(ScriptedNoise([x_init, *other])).x - ref).abs().max() > 1e-2


def test_eps_denoiser_maps_discrete_sigmas_to_integer_timesteps():
    unet = _unet()
    sched = diffusers.DDPMScheduler(num_train_timesteps=50, beta_start=2e-3, beta_end=0.4)
    den = denoiser_from_component(eps_component(unet, dict(sched.config), data_shape=(1, 8, 8)))
    sig = den.log_sigmas.exp()
    # gpm's float64 schedule matches diffusers' float32 one
    ac = sched.alphas_cumprod.double()
    assert torch.allclose(sig, ((1 - ac) / ac).sqrt(), rtol=1e-5)
    t = den.timestep(sig)
    assert torch.allclose(t, torch.arange(50, dtype=torch.float64), atol=1e-9)
    # midpoint in log-sigma maps half-way
    mid = torch.exp(0.5 * (sig[10].log() + sig[11].log()))
    assert den.timestep(mid.reshape(1)).item() == pytest.approx(10.5, abs=1e-9)
