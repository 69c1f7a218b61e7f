"""``gpm train score-gan``: a generator trained by GPM's Score GAN (ALGORITHMS.md section 6), an Int-PM whose
particle field is the difference of two scores.

A frozen data denoiser ``D_data`` (``--score REF``: a score checkpoint of any parameterisation, or an analytic
``toy:NAME`` target) and an online denoiser ``D_gen`` trained on the generator's samples with the unweighted loss
``mean sum (D_gen(x + sigma eps, sigma) - x)^2``. Noise levels are drawn from the rho = 3 schedule on
``[sigma_min, sigma_max]`` (``sigma = (smax^(1/rho) + u (smin^(1/rho) - smax^(1/rho)))^rho``, ``u ~ U[0, 1]``; GPM:
[0.32, 40] for images, [0.1, 10] for toys). Every ``--score-steps`` denoiser steps, one generator step:
``x~ = g(z) + sigma eps``, ``grad = w_gen (D_gen(x~) - x~)/sigma - w_data (D_data(x~) - x~)/sigma``,
``loss = mean sum x~ . stopgrad(grad)``: the generator's samples move along ``sigma (w_data s_data - w_gen s_gen)``.
``D_data`` is evaluated in eval mode (GPM leaves its dropout on). Output: a generator checkpoint (``--model score-gan``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from gpmcli.checkpoint import model_card, save_checkpoint
from gpmcli.errors import UsageError
from gpmcli.fields.base import Denoiser, expand_sigma
from gpmcli.fields.score import EDMDenoiser
from gpmcli.train.adversarial import AdversarialTrainer, adam, build_net


def rho_sigmas(u: torch.Tensor, sigma_min: float, sigma_max: float, rho: float = 3.0) -> torch.Tensor:
    """The rho-schedule noise level at fraction ``u`` in [0, 1] (``u = 0``: sigma_max, ``u = 1``: sigma_min)."""
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (a + u * (b - a)) ** rho


def score_gan_direction(x_noisy: torch.Tensor, sigma: torch.Tensor, d_gen: torch.Tensor, d_data: torch.Tensor,
                        w_gen: float = 1.0, w_data: float = 1.0) -> torch.Tensor:
    """``w_gen (D_gen - x)/sigma - w_data (D_data - x)/sigma`` = ``sigma (w_gen s_gen - w_data s_data)``: the gradient
    of the generator loss with respect to each noisy sample (times the batch size)."""
    s = expand_sigma(sigma, x_noisy)
    return w_gen * (d_gen - x_noisy) / s - w_data * (d_data - x_noisy) / s


def generator_loss(x_noisy: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``mean_batch sum_dims x~ . stopgrad(direction)``."""
    return (x_noisy * direction.detach()).reshape(x_noisy.shape[0], -1).sum(1).mean()


def default_gen_denoiser(shape, sigma_data: float, width: int | None = None):
    """The online denoiser of the generator's distribution: an EDM-preconditioned network."""
    if len(shape) == 1:
        net, arch = build_net("mlp", in_dim=shape[0], out_dim=shape[0], hidden=width or 256, depth=3,
                              conditional=True, cond_dim=32, act="silu")
        return EDMDenoiser(net, sigma_data=sigma_data), arch
    try:
        net, arch = build_net("unet", in_ch=shape[0])
    except Exception as e:  # the small UNet comes with gpm train score
        raise UsageError(f"score-gan on images needs the 'unet' architecture ({e})") from None
    return EDMDenoiser(net, sigma_data=sigma_data), arch


class ScoreGANTrainer(AdversarialTrainer):
    role = "generator"

    def __init__(self, data, data_denoiser: Denoiser, *, score_ref: str, latent: int = 8, batch: int = 256,
                 lr: float = 2e-4, lr_score: float | None = None, betas=(0.5, 0.999), score_steps: int = 1,
                 sigma_min: float = 0.1, sigma_max: float = 10.0, rho: float = 3.0, w_gen: float = 1.0,
                 w_data: float = 1.0, width: int | None = None, depth: int = 3, sigma_data: float | None = None,
                 seed: int = 0, device="cpu"):
        super().__init__(data, seed=seed, device=device)
        if score_steps < 1 or not 0 < sigma_min < sigma_max:
            raise UsageError("--score-steps must be >= 1 and 0 < --sigma-min < --sigma-max")
        torch.manual_seed(seed)
        from gpmcli.train.gan import default_nets

        self.latent, self.batch, self.score_steps = int(latent), int(batch), int(score_steps)
        self.sigma_min, self.sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)
        self.w_gen, self.w_data = float(w_gen), float(w_data)
        g, self.g_arch, _, _ = default_nets(tuple(data.shape), self.latent, width, depth)
        self.G = g.to(self.device)
        sd = sigma_data if sigma_data is not None else float(getattr(data_denoiser, "sigma_data", 0.5))
        self.Dgen, self.dgen_arch = default_gen_denoiser(tuple(data.shape), sd)
        self.Dgen = self.Dgen.to(self.device)
        self.Ddata = data_denoiser.to(self.device).eval()
        for p in self.Ddata.parameters():
            p.requires_grad_(False)
        self.modules = {"generator": self.G, "gen_denoiser": self.Dgen}
        self.optims = {"generator": adam(self.G.parameters(), lr, betas),
                       "gen_denoiser": adam(self.Dgen.parameters(), lr_score or lr, betas)}
        self.hparams = {"algorithm": "score-gan", "score": score_ref, "latent_dim": self.latent, "batch": self.batch,
                        "lr": lr, "lr_score": lr_score or lr, "betas": list(betas), "score_steps": self.score_steps,
                        "sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "rho": self.rho,
                        "w_gen": self.w_gen, "w_data": self.w_data, "gen_denoiser_sigma_data": sd,
                        "data_denoiser_mode": "eval"}

    def sigmas(self, n: int) -> torch.Tensor:
        return rho_sigmas(self.rand(n), self.sigma_min, self.sigma_max, self.rho)

    def fake(self, n: int) -> torch.Tensor:
        return self.G(self.randn(n, self.latent)).reshape(n, *self.data.shape)

    def step(self) -> dict[str, float]:
        self.G.train()
        self.Dgen.train()
        # online denoiser of the generator's distribution, unweighted loss
        with torch.no_grad():
            x = self.fake(self.batch)
        sigma = self.sigmas(self.batch)
        xn = x + expand_sigma(sigma, x) * self.randn(*x.shape)
        ls = (self.Dgen(xn, sigma) - x).pow(2).reshape(self.batch, -1).sum(1).mean()
        self.optims["gen_denoiser"].zero_grad(set_to_none=True)
        ls.backward()
        self.optims["gen_denoiser"].step()
        logs = {"loss_score": float(ls.detach())}
        if (self.iteration + 1) % self.score_steps == 0:
            self.Dgen.eval()
            x = self.fake(self.batch)
            sigma = self.sigmas(self.batch)
            xn = x + expand_sigma(sigma, x) * self.randn(*x.shape)
            with torch.no_grad():
                direction = score_gan_direction(xn, sigma, self.Dgen(xn, sigma), self.Ddata(xn, sigma),
                                                self.w_gen, self.w_data)
            lg = generator_loss(xn, direction)
            self.optims["generator"].zero_grad(set_to_none=True)
            lg.backward()
            self.optims["generator"].step()
            logs["grad_norm"] = float(direction.reshape(self.batch, -1).norm(dim=1).mean())
        return logs

    def export(self, out: Path, info: dict) -> None:
        data = {"shape": list(self.data.shape), "range": self.data.range, "dataset": self.data.dataset}
        training = {**self.hparams, **{k: v for k, v in info.items() if k not in ("command", "card", "metrics")}}
        cfg = {"role": "generator", "arch": self.g_arch, "latent": {"dim": self.latent, "distribution": "normal"},
               "data": data, "provenance": {"source": "trained by gpm", "license": "MIT",
                                            "command": info.get("command")},
               "training": training, "metrics": info.get("metrics", {})}
        save_checkpoint(out, self.G, cfg, card=info.get("card") or model_card(cfg))
