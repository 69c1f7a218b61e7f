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

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.base import expand_sigma
from gpmcli.fields.schedules import rho_interp
from gpmcli.fields.score import EDMDenoiser
from gpmcli.train import Opt, RoleSpec, register_role
from gpmcli.train.adversarial import adam, build_net
from gpmcli.train.common import RoleTrainer


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
    """The online denoiser of the generator's distribution: an EDM-preconditioned MLP (vectors) or UNet (images)."""
    if len(shape) == 1:
        net, arch = build_net("mlp", in_dim=shape[0], out_dim=shape[0], hidden=width or 128, depth=3,
                              conditional=True, cond_dim=32, act="silu")
    else:
        net, arch = build_net("unet", in_ch=shape[0], ch=width or 16)
    return EDMDenoiser(net, sigma_data=sigma_data), arch


def load_data_denoiser(ref: str, shape: tuple[int, ...]):
    """The frozen data denoiser of ``--score REF`` (registry name, directory, hf: or toy: reference)."""
    from gpmcli.fields.score import denoiser_from_component
    from gpmcli.refs import parse_ref

    if not ref:
        raise UsageError("gpm train score-gan needs --score REF: the data score (a score checkpoint, a registry "
                         "bundle with a score, or toy:NAME)")
    comp = parse_ref(ref).component("score")
    if comp.data_shape and tuple(comp.data_shape) != tuple(shape):
        raise UsageError(f"--score {ref} models data of shape {list(comp.data_shape)}, but the training data has "
                         f"shape {list(shape)}")
    return denoiser_from_component(comp).eval(), comp


class ScoreGANTrainer(RoleTrainer):
    role = "generator"

    def setup(self):
        from gpmcli.train.gan import default_generator

        a, shape = self.args, tuple(self.ctx.data.shape)
        low_d = len(shape) == 1
        self.sigma_min = a["sigma_min"] if a["sigma_min"] is not None else (0.1 if low_d else 0.32)
        self.sigma_max = a["sigma_max"] if a["sigma_max"] is not None else (10.0 if low_d else 40.0)
        if a["score_steps"] < 1 or not 0 < self.sigma_min < self.sigma_max or a["latent"] < 1:
            raise UsageError("--score-steps and --latent must be >= 1 and 0 < --sigma-min < --sigma-max")
        self.Ddata, comp = load_data_denoiser(a["score"], shape)
        self.Ddata = self.Ddata.to(self.ctx.device).requires_grad_(False)
        sd = a["gen_sigma_data"] or float(getattr(self.Ddata, "sigma_data", 0.5))
        self.G, self.g_arch = default_generator(shape, a["latent"], a["width"], a["depth"])
        self.Dgen, self.dgen_arch = default_gen_denoiser(shape, sd, a["gen_width"])
        self.G, self.Dgen = self.G.to(self.ctx.device), self.Dgen.to(self.ctx.device)
        betas = (a["beta1"], 0.999)
        self.opt_g = adam(self.G.parameters(), self.ctx.opts.lr, betas)
        self.opt_s = adam(self.Dgen.parameters(), a["lr_score"] or self.ctx.opts.lr, betas)
        self.record = {"algorithm": "score-gan", "score": a["score"], "score_sha256": comp.sha256,
                       "sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "rho": a["rho"],
                       "w_gen": a["w_gen"], "w_data": a["w_data"], "score_steps": a["score_steps"],
                       "gen_denoiser": {"arch": self.dgen_arch, "sigma_data": sd}, "data_denoiser_mode": "eval"}

    def modules(self):
        return {"generator": self.G, "gen_denoiser": self.Dgen}

    def optimizers(self):
        return {"generator": self.opt_g, "gen_denoiser": self.opt_s}

    def sigmas(self, n: int, g: torch.Generator) -> torch.Tensor:
        return rho_interp(self.ctx.rand(n, generator=g), self.sigma_min, self.sigma_max, self.args["rho"])

    def fake(self, n: int, g: torch.Generator) -> torch.Tensor:
        with self.ctx.autocast():
            return self.G(self.ctx.randn(n, self.args["latent"], generator=g)).float().reshape(n, *self.ctx.data.shape)

    def noisy(self, x: torch.Tensor, g: torch.Generator):
        sigma = self.sigmas(x.shape[0], g)
        return x + expand_sigma(sigma, x) * self.ctx.randn(*x.shape, generator=g), sigma

    def train_step(self, real):
        a, n, g = self.args, real.shape[0], self.ctx.generator()
        # the online denoiser of the generator's distribution, unweighted loss
        with torch.no_grad():
            x = self.fake(n, g)
        xn, sigma = self.noisy(x, g)
        with self.ctx.autocast():
            ls = (self.Dgen(xn, sigma).float() - x).pow(2).reshape(n, -1).sum(1).mean()
        self.ctx.update(self.opt_s, ls)
        logs = {"loss_score": float(ls.detach())}
        if (self.ctx.step + 1) % a["score_steps"] == 0:
            x = self.fake(n, g)
            xn, sigma = self.noisy(x, g)
            self.Dgen.eval()
            with torch.no_grad(), self.ctx.autocast():
                direction = score_gan_direction(xn, sigma, self.Dgen(xn, sigma).float(),
                                                self.Ddata(xn, sigma).float(), a["w_gen"], a["w_data"])
            self.Dgen.train()
            lg = generator_loss(xn, direction)
            self.ctx.update(self.opt_g, lg)
            logs["field_norm"] = float(direction.reshape(n, -1).norm(dim=1).mean())
        return logs

    def exports(self):
        return {"": ("generator", {"role": "generator", "arch": self.g_arch,
                                   "latent": {"dim": self.args["latent"], "distribution": "normal"},
                                   "score_gan": self.record})}

    def card(self, name, config):
        r = self.record
        return (f"Score GAN generator (GPM Int-PM): moved along w_data s_data - w_gen s_gen with the frozen data "
                f"score `{r['score']}` and an online denoiser of its own samples (sigma from the rho = {r['rho']} "
                f"schedule on [{r['sigma_min']}, {r['sigma_max']}], a generator step every {r['score_steps']} "
                f"denoiser steps; the data denoiser runs in eval mode, GPM left its dropout on). "
                "Sample with `gpm sample --model score-gan --checkpoint DIR`.")


register_role(RoleSpec("score-gan", ScoreGANTrainer, "Score GAN generator (ALGORITHMS.md section 6)", options=[
    Opt("score", str, None, "the frozen data score: score checkpoint, registry bundle or toy:NAME (required)"),
    Opt("latent", int, 64, "latent dimension (z ~ N(0, I))"),
    Opt("width", int, None, "generator MLP width (default 128) or DCGAN base channels (default 32)"),
    Opt("depth", int, 3, "generator MLP hidden layers"),
    Opt("gen_width", int, None, "online denoiser width: MLP (default 128) or UNet base channels (default 16)"),
    Opt("gen_sigma_data", float, None, "sigma_data of the online denoiser (default: the data score's)"),
    Opt("score_steps", int, 1, "denoiser steps per generator step (GPM's nb_score_steps)"),
    Opt("sigma_min", float, None, "smallest noise level (default 0.1 for low-D data, 0.32 for images)"),
    Opt("sigma_max", float, None, "largest noise level (default 10 for low-D data, 40 for images)"),
    Opt("rho", float, 3.0, "rho of the noise-level schedule"),
    Opt("w_gen", float, 1.0, "weight of the generator score"),
    Opt("w_data", float, 1.0, "weight of the data score"),
    Opt("lr_score", float, None, "online denoiser learning rate (default --lr)"),
    Opt("beta1", float, 0.5, "Adam beta1 (beta2 is 0.999)"),
]))
