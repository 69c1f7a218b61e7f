"""``gpm train discriminator --for ddls``: a logistic discriminator calibrated against a *frozen* generator, for DDLS
(ALGORITHMS.md section 7; Che et al. 2020 calibrate the GAN's discriminator the same way before sampling).

DDLS samples ``p_g(x) exp(d(x))``, which is the data distribution only when ``d = log q/p_g`` for the generator at
hand. A discriminator taken from the end of GAN training is rarely that: it was trained against earlier generators,
often under a gradient penalty that flattens it. This role fixes the generator (``--generator REF``: a generator
checkpoint or a bundle holding one) and minimises the vanilla logistic loss
``mean softplus(d(G(z))) + mean softplus(-d(x))`` on data batches ``x`` and fresh ``z ~ N(0, I)``, whose optimum is
``log q/p_g`` (tested in closed form). ``--init REF`` starts from an existing discriminator (e.g. the GAN's own),
otherwise a fresh MLP / DCGAN discriminator is built. The output is an unconditioned logit discriminator; put it in a
bundle beside the generator and sample with ``gpm sample --model ddls``.
"""

from __future__ import annotations

import copy

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.latent import GeneratorMap, latent_shape_of
from gpmcli.train import Opt, RoleSpec, register_role
from gpmcli.train.adversarial import adam, disc_config, discriminator_loss, gradient_penalty
from gpmcli.train.common import RoleTrainer
from gpmcli.train.gan import default_discriminator


def _component(ref: str, role: str, device):
    from gpmcli.registry import load_bundle

    b = load_bundle(ref, device=device)
    if role not in b:
        raise UsageError(f"{ref}: no {role} in it")
    return b[role]


class DDLSDiscTrainer(RoleTrainer):
    role = "discriminator"

    def setup(self):
        a, shape, dev = self.args, tuple(self.ctx.data.shape), self.ctx.device
        if not a["generator"]:
            raise UsageError("gpm train discriminator --for ddls needs --generator REF (the frozen generator)")
        if a["gp"] < 0:
            raise UsageError("--gp must be >= 0")
        gc = _component(a["generator"], "generator", dev)
        if gc.data_shape and tuple(gc.data_shape) != shape:
            raise UsageError(f"--generator {a['generator']} makes samples of shape {list(gc.data_shape)}, the data "
                             f"has {list(shape)}")
        g_range, d_range = gc.data_range, self.ctx.data.range
        if g_range and d_range and tuple(g_range) != tuple(d_range):
            raise UsageError(f"--generator {a['generator']} outputs values in {list(g_range)}, the data is in "
                             f"{list(d_range)}")
        self.latent = latent_shape_of(gc)
        self.G = GeneratorMap(gc.module.to(dev).eval().requires_grad_(False), self.latent, shape)
        self.generator_ref = gc.ref
        if a["init"]:
            dc = _component(a["init"], "discriminator", dev)
            if dc.config.get("output") != "logit" or dc.config.get("time"):
                raise UsageError(f"--init {a['init']}: DDLS needs an unconditioned logit discriminator")
            self.D, self.arch = copy.deepcopy(dc.module).to(dev).train().requires_grad_(True), dc.config["arch"]
            self.init_ref = dc.ref
        else:
            self.D, self.arch = default_discriminator(shape, a["width"], a["depth"])
            self.D, self.init_ref = self.D.to(dev), None
        self.opt = adam(self.D.parameters(), self.ctx.opts.lr, (a["beta1"], 0.999))

    def modules(self):
        return {"discriminator": self.D}

    def optimizers(self):
        return {"discriminator": self.opt}

    def f(self, x: torch.Tensor) -> torch.Tensor:
        with self.ctx.autocast():
            return self.D(x).reshape(x.shape[0]).float()

    def train_step(self, real):
        a, n, g = self.args, real.shape[0], self.ctx.generator()
        with torch.no_grad(), self.ctx.autocast():
            fake = self.G(self.ctx.randn(n, *self.latent, generator=g)).float()
        loss = discriminator_loss("vanilla", self.f(fake), self.f(real))
        if a["gp"]:
            loss = loss + a["gp"] * gradient_penalty(self.f, real, fake, self.ctx.rand(n, generator=g))
        self.ctx.update(self.opt, loss)
        with torch.no_grad():
            acc = 0.5 * ((self.f(real) > 0).float().mean() + (self.f(fake) < 0).float().mean())
        return {"loss_d": float(loss.detach()), "acc": float(acc)}

    def exports(self):
        return {"": ("discriminator", {"role": "discriminator", "arch": self.arch, **disc_config("vanilla"),
                                       "time": None, "calibrated_for": {"generator": self.generator_ref,
                                                                        "init": self.init_ref}})}

    def card(self, name, config):
        a = self.args
        init = f"started from `{self.init_ref}`" if self.init_ref else "a fresh network"
        gp = f", zero-centred gradient penalty {a['gp']}" if a["gp"] else ", no gradient penalty"
        return (f"Logistic discriminator calibrated for DDLS against the frozen generator `{self.generator_ref}` "
                f"({init}; vanilla loss{gp}): its logit estimates log q/p_g for that generator, which is what "
                "DDLS's energy E(z) = |z|^2/2 - d(G(z)) assumes. Sample with `gpm sample --model ddls --generator "
                f"{self.generator_ref} --discriminator DIR` (or a bundle naming both).")


register_role(RoleSpec("discriminator:ddls", DDLSDiscTrainer,
                       "logistic discriminator calibrated against a frozen generator, for DDLS (section 7)", options=[
    Opt("generator", str, None, "the frozen generator: checkpoint, registry bundle or hf: reference (required)"),
    Opt("init", str, None, "start from this discriminator (e.g. the GAN's own; must be an unconditioned logit)"),
    Opt("width", int, None, "MLP width (default 128) or DCGAN base channels (default 32), without --init"),
    Opt("depth", int, 3, "MLP hidden layers, without --init"),
    Opt("gp", float, 0.0, "zero-centred gradient penalty weight on real/fake interpolates"),
    Opt("beta1", float, 0.5, "Adam beta1 (beta2 is 0.999)"),
]))
