"""``gpm train gan``: a generator and a discriminator trained adversarially (ALGORITHMS.md sections 6 and 8).

Non-saturating vanilla loss by default (``--loss hinge|ipm`` optional), an optional gradient penalty
``--gp L`` (zero-centred on real/fake interpolates unless ``--gp-center 1``), Adam (``--lr``, betas
(``--beta1`` 0.5, 0.999)), one discriminator and one generator step per data batch. Networks: MLPs for
low-dimensional data, a DCGAN pair (``dcgan-generator`` / ``dcgan-discriminator`` of width ``--width``) for images.
Output ``OUT/generator`` (``--model gan``) and ``OUT/discriminator`` (unconditioned, read by ``--model ddls``), with the
latent ``{dim, distribution}`` and the discriminator's reading convention (output, loss, real) in their configs.
"""

from __future__ import annotations

import torch

from gpmcli.errors import UsageError
from gpmcli.train import Opt, RoleSpec, register_role
from gpmcli.train.adversarial import (LOSSES, adam, build_net, disc_config, discriminator_loss, gradient_penalty,
                                      particle_loss)
from gpmcli.train.common import RoleTrainer


def default_generator(shape: tuple[int, ...], latent: int, width: int | None = None, depth: int = 3):
    """``(generator, arch)`` for data of ``shape``: an MLP for vectors, a DCGAN generator for images."""
    if len(shape) == 1:
        return build_net("mlp", in_dim=latent, out_dim=shape[0], hidden=width or 128, depth=depth,
                         conditional=False, act="relu")
    c, h, w = shape
    if h != w or h < 8 or h & (h - 1):
        raise UsageError(f"the DCGAN networks need square power-of-two images (>= 8 px), not {h}x{w}")
    return build_net("dcgan-generator", nz=latent, ngf=width or 32, nc=c, image_size=h)


def default_discriminator(shape: tuple[int, ...], width: int | None = None, depth: int = 3):
    if len(shape) == 1:
        return build_net("mlp", in_dim=shape[0], out_dim=1, hidden=width or 128, depth=depth, conditional=False,
                         act="lrelu")
    c, h, w = shape
    if h != w or h < 8 or h & (h - 1):
        raise UsageError(f"the DCGAN networks need square power-of-two images (>= 8 px), not {h}x{w}")
    return build_net("dcgan-discriminator", nc=c, ndf=width or 32, image_size=h)


class GANTrainer(RoleTrainer):
    role = "generator"

    def setup(self):
        a, shape = self.args, tuple(self.ctx.data.shape)
        if a["latent"] < 1 or a["gp"] < 0:
            raise UsageError("--latent must be >= 1 and --gp >= 0")
        self.G, self.g_arch = default_generator(shape, a["latent"], a["width"], a["depth"])
        self.D, self.d_arch = default_discriminator(shape, a["width"], a["depth"])
        self.G, self.D = self.G.to(self.ctx.device), self.D.to(self.ctx.device)
        betas = (a["beta1"], 0.999)
        self.opt_g = adam(self.G.parameters(), self.ctx.opts.lr, betas)
        self.opt_d = adam(self.D.parameters(), a["lr_d"] or self.ctx.opts.lr, betas)

    def modules(self):
        return {"generator": self.G, "discriminator": self.D}

    def optimizers(self):
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def f(self, x: torch.Tensor) -> torch.Tensor:
        with self.ctx.autocast():
            return self.D(x).reshape(x.shape[0]).float()

    def fake(self, n: int, g: torch.Generator) -> torch.Tensor:
        with self.ctx.autocast():
            return self.G(self.ctx.randn(n, self.args["latent"], generator=g)).float().reshape(n, *self.ctx.data.shape)

    def train_step(self, real):
        a, n, g = self.args, real.shape[0], self.ctx.generator()
        with torch.no_grad():
            fake = self.fake(n, g)
        ld = discriminator_loss(a["loss"], self.f(fake), self.f(real))
        if a["gp"]:
            ld = ld + a["gp"] * gradient_penalty(self.f, real, fake, self.ctx.rand(n, generator=g), a["gp_center"])
        self.ctx.update(self.opt_d, ld)
        lg = particle_loss(a["loss"], self.f(self.fake(n, g)))
        self.ctx.update(self.opt_g, lg)
        return {"loss_d": float(ld.detach()), "loss_g": float(lg.detach())}

    def exports(self):
        a = self.args
        return {
            "generator": ("generator", {"role": "generator", "arch": self.g_arch,
                                        "latent": {"dim": a["latent"], "distribution": "normal"}}),
            "discriminator": ("discriminator", {"role": "discriminator", "arch": self.d_arch,
                                                **disc_config(a["loss"]), "time": None}),
        }

    def card(self, name, config):
        a = self.args
        gp = f", gradient penalty {a['gp']} (centre {a['gp_center']})" if a["gp"] else ""
        use = ("`gpm sample --model gan --checkpoint DIR`" if name == "generator" else
               "DDLS: `gpm sample --model ddls --generator DIR/generator --discriminator DIR/discriminator`")
        return (f"GAN {name} ({a['loss']} loss{gp}, latent N(0, I_{a['latent']}), Adam betas ({a['beta1']}, 0.999)). "
                f"Use: {use}.")


register_role(RoleSpec("gan", GANTrainer, "GAN generator + discriminator (MLP for low-D data, DCGAN for images)",
                       options=[
    Opt("loss", str, "vanilla", "vanilla (non-saturating) | hinge | ipm", LOSSES),
    Opt("latent", int, 64, "latent dimension (z ~ N(0, I))"),
    Opt("width", int, None, "MLP width (default 128) or DCGAN base channels (default 32)"),
    Opt("depth", int, 3, "MLP hidden layers"),
    Opt("gp", float, 0.0, "gradient penalty weight on real/fake interpolates"),
    Opt("gp_center", float, 0.0, "gradient penalty centre: 0 (zero-centred) or 1 (WGAN-GP)"),
    Opt("lr_d", float, None, "discriminator learning rate (default --lr)"),
    Opt("beta1", float, 0.5, "Adam beta1 (beta2 is 0.999)"),
]))
