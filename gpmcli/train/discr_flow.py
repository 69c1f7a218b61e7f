"""``gpm train discriminator --for discr-flow``: the time-conditioned discriminator of GPM's Discriminator Flow
(ALGORITHMS.md section 4).

One optimiser step per data batch: particles ``z_0 ~ N(0, I)`` are moved by the *current* discriminator,
``z_{k+1} = z_k + (eta / N) v(z_k, k / N)`` for ``k = 0..N-2`` (no graph through the trajectory; the sampler's own
velocity field, :class:`~gpmcli.fields.discriminator.NetDiscriminator`), one random step ``k_i`` is picked per sample,
and the discriminator minimises ``mean a(f(z_i, t_i)) - mean b(f(x_i, t_i)) + lambda_GP mean (|grad f(x_hat_i, t_i)| -
center)^2`` with the real sample at the same ``t_i = k_i / N``. ``--refresh-every K`` simulates a trajectory pool of
``--pool`` particles once every K steps and draws the (particle, step) pairs of K optimiser steps from it (cheaper, and
recorded in the config). The flow time is embedded with Fourier features whose frequencies are a saved buffer.
The config's ``time`` block carries ``n_steps`` (N) and ``eta`` that ``gpm sample --model discr-flow`` must use.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gpmcli.checkpoint import model_card, save_checkpoint
from gpmcli.errors import UsageError
from gpmcli.fields.discriminator import NetDiscriminator
from gpmcli.samplers.integrate import em_step
from gpmcli.train.adversarial import (AdversarialTrainer, adam, build_net, disc_config, discriminator_loss,
                                      gradient_penalty)


def default_flow_net(shape: tuple[int, ...], width: int | None = None, depth: int = 3, cond_scale: float = 1.0):
    if len(shape) == 1:
        return build_net("mlp", in_dim=shape[0], out_dim=1, hidden=width or 256, depth=depth, conditional=True,
                         cond_dim=32, cond_scale=cond_scale, act="lrelu")
    c, h, _ = shape
    return build_net("time-dcgan-discriminator", nc=c, ndf=width or 32, image_size=h, cond_dim=32,
                     cond_scale=cond_scale)


class DiscrFlowTrainer(AdversarialTrainer):
    role = "discriminator"

    def __init__(self, data, *, n_steps: int = 56, eta: float = 20.0, loss: str = "vanilla", batch: int = 256,
                 lr: float = 2e-4, betas=(0.5, 0.999), gp: float = 0.0, gp_center: float = 0.0,
                 refresh_every: int = 1, pool: int | None = None, width: int | None = None, depth: int = 3,
                 cond_scale: float = 1.0, seed: int = 0, device="cpu"):
        super().__init__(data, seed=seed, device=device)
        if n_steps < 1 or eta <= 0 or refresh_every < 1:
            raise UsageError("--flow-steps must be >= 1, --eta positive and --refresh-every >= 1")
        torch.manual_seed(seed)
        self.n_steps, self.eta, self.loss, self.batch = int(n_steps), float(eta), loss, int(batch)
        self.gp, self.gp_center, self.refresh_every = float(gp), float(gp_center), int(refresh_every)
        self.pool_size = int(pool or batch)
        self.reading = disc_config(loss)
        net, self.arch = default_flow_net(tuple(data.shape), width, depth, cond_scale)
        self.D = net.to(self.device)
        self.modules = {"discriminator": self.D}
        self.optims = {"discriminator": adam(self.D.parameters(), lr, betas)}
        self.time = {"kind": "flow-time", "n_steps": self.n_steps, "eta": self.eta,
                     "embedding": "Fourier features of t = k/N (frequencies saved in the weights)"}
        self.field = NetDiscriminator(self.D, output=self.reading["output"], loss=loss, time=self.time,
                                      real=self.reading["real"], data_shape=tuple(data.shape))
        self.hparams = {"loss": loss, "batch": self.batch, "lr": lr, "betas": list(betas), "gp": self.gp,
                        "gp_center": self.gp_center, "refresh_every": self.refresh_every, "pool": self.pool_size}
        self.traj: torch.Tensor | None = None  # (N, pool, *shape): z_0..z_{N-1}

    def f(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.D(x, t).reshape(x.shape[0])

    @torch.no_grad()
    def simulate(self, z: torch.Tensor) -> torch.Tensor:
        """``z_0..z_{N-1}`` of the flow under the current discriminator, stacked ``(N, B, ...)``."""
        self.D.eval()
        n, dt = self.n_steps, self.eta / self.n_steps
        zs = [z]
        for k in range(n - 1):
            _, v = self.field.velocity(z, k=k, n=n)
            z, _ = em_step(z, v, dt)
            zs.append(z)
        return torch.stack(zs)

    def step(self) -> dict[str, float]:
        if self.traj is None or self.iteration % self.refresh_every == 0:
            self.traj = self.simulate(self.randn(self.pool_size, *self.data.shape))
        self.D.train()
        if self.refresh_every == 1 and self.pool_size == self.batch:
            idx = torch.arange(self.batch, device=self.device)
        else:
            idx = self.randint(self.pool_size, (self.batch,))
        k = self.randint(self.n_steps, (self.batch,))
        fake = self.traj[k, idx]
        real = self.real(self.batch)
        t = k.to(real.dtype) / self.n_steps
        ld = discriminator_loss(self.loss, self.f(fake, t), self.f(real, t))
        if self.gp:
            ld = ld + self.gp * gradient_penalty(lambda x: self.f(x, t), real, fake, self.rand(self.batch),
                                                 self.gp_center)
        self.optims["discriminator"].zero_grad(set_to_none=True)
        ld.backward()
        self.optims["discriminator"].step()
        return {"loss_d": float(ld.detach())}

    def extra_state(self) -> dict:
        return {"traj": self.traj} if self.traj is not None else {}

    def load_extra_state(self, state: dict) -> None:
        self.traj = state.get("traj")

    def export(self, out: Path, info: dict) -> None:
        data = {"shape": list(self.data.shape), "range": self.data.range, "dataset": self.data.dataset}
        training = {**self.hparams, **{k: v for k, v in info.items() if k not in ("command", "cards", "metrics")}}
        cfg = {"role": "discriminator", "arch": self.arch, **self.reading, "time": self.time, "data": data,
               "provenance": {"source": "trained by gpm", "license": "MIT", "command": info.get("command")},
               "training": training, "metrics": info.get("metrics", {})}
        save_checkpoint(out, self.D, cfg, card=info.get("card") or model_card(cfg))
