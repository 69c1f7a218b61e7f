"""``gpm train gan``: a generator and a discriminator trained adversarially (ALGORITHMS.md sections 6 and 8).

Non-saturating vanilla loss by default (``--loss hinge|ipm`` optional, with an optional gradient penalty), Adam 2e-4,
betas (0.5, 0.999), one discriminator and one generator step per iteration. Networks: MLPs for low-dimensional data,
a DCGAN pair for 32x32 images. Output ``OUT/generator`` (``--model gan``) and ``OUT/discriminator`` (unconditioned,
read by ``--model ddls``), with the latent ``{dim, distribution}`` and the discriminator's reading convention in their
configs.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gpmcli.checkpoint import model_card, save_checkpoint
from gpmcli.train.adversarial import (AdversarialTrainer, adam, build_net, disc_config, discriminator_loss,
                                      gradient_penalty, particle_loss)


def default_nets(shape: tuple[int, ...], latent: int, width: int | None = None, depth: int = 3):
    """``(generator, g_arch, discriminator, d_arch)`` for data of ``shape``: MLPs for vectors, DCGAN for images."""
    if len(shape) == 1:
        w = width or 256
        g, ga = build_net("mlp", in_dim=latent, out_dim=shape[0], hidden=w, depth=depth, conditional=False,
                          act="relu")
        d, da = build_net("mlp", in_dim=shape[0], out_dim=1, hidden=w, depth=depth, conditional=False, act="lrelu")
        return g, ga, d, da
    c, h, w_ = shape
    w = width or 32
    g, ga = build_net("dcgan-generator", nz=latent, ngf=w, nc=c, image_size=h)
    d, da = build_net("dcgan-discriminator", nc=c, ndf=w, image_size=h)
    return g, ga, d, da


class GANTrainer(AdversarialTrainer):
    role = "gan"

    def __init__(self, data, *, latent: int = 64, loss: str = "vanilla", batch: int = 64, lr: float = 2e-4,
                 lr_d: float | None = None, betas=(0.5, 0.999), gp: float = 0.0, gp_center: float = 0.0,
                 d_steps: int = 1, width: int | None = None, depth: int = 3, seed: int = 0, device="cpu"):
        super().__init__(data, seed=seed, device=device)
        torch.manual_seed(seed)  # network initialisation
        self.latent, self.loss, self.batch, self.gp, self.gp_center, self.d_steps = (
            int(latent), loss, int(batch), float(gp), float(gp_center), int(d_steps))
        disc_config(loss)  # validates the loss name
        g, self.g_arch, d, self.d_arch = default_nets(tuple(data.shape), self.latent, width, depth)
        self.G, self.D = g.to(self.device), d.to(self.device)
        self.modules = {"generator": self.G, "discriminator": self.D}
        self.optims = {"generator": adam(self.G.parameters(), lr, betas),
                       "discriminator": adam(self.D.parameters(), lr_d or lr, betas)}
        self.hparams = {"loss": loss, "latent_dim": self.latent, "batch": self.batch, "lr": lr, "lr_d": lr_d or lr,
                        "betas": list(betas), "gp": self.gp, "gp_center": self.gp_center, "d_steps": self.d_steps}

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return self.D(x).reshape(x.shape[0])

    def step(self) -> dict[str, float]:
        self.G.train()
        self.D.train()
        for _ in range(self.d_steps):
            real = self.real(self.batch)
            with torch.no_grad():
                fake = self.G(self.randn(self.batch, self.latent)).reshape(real.shape)
            ld = discriminator_loss(self.loss, self.f(fake), self.f(real))
            if self.gp:
                ld = ld + self.gp * gradient_penalty(self.f, real, fake, self.rand(self.batch), self.gp_center)
            self.optims["discriminator"].zero_grad(set_to_none=True)
            ld.backward()
            self.optims["discriminator"].step()
        fake = self.G(self.randn(self.batch, self.latent)).reshape(-1, *self.data.shape)
        lg = particle_loss(self.loss, self.f(fake))
        self.optims["generator"].zero_grad(set_to_none=True)
        lg.backward()
        self.optims["generator"].step()
        return {"loss_d": float(ld.detach()), "loss_g": float(lg.detach())}

    def export(self, out: Path, info: dict) -> None:
        data = {"shape": list(self.data.shape), "range": self.data.range, "dataset": self.data.dataset}
        prov = {"source": "trained by gpm", "license": "MIT", "command": info.get("command")}
        training = {**self.hparams, **{k: v for k, v in info.items() if k not in ("command", "cards", "metrics")}}
        gcfg = {"role": "generator", "arch": self.g_arch, "latent": {"dim": self.latent, "distribution": "normal"},
                "data": data, "provenance": prov, "training": training, "metrics": info.get("metrics", {})}
        dcfg = {"role": "discriminator", "arch": self.d_arch, **disc_config(self.loss), "time": None, "data": data,
                "provenance": prov, "training": training, "metrics": {}}
        for name, module, cfg in (("generator", self.G, gcfg), ("discriminator", self.D, dcfg)):
            save_checkpoint(out / name, module, cfg, card=info.get("cards", {}).get(name) or model_card(cfg))
